"""Complaint text: sentiment per complaint and suggested category and priority for new complaints.

- Sentiment: `features.complaint_text.sentiment_scores` (VADER; the same scores the churn
  features use), re-exported here.
- Suggestions: TF-IDF of words and word pairs (sublinear counts) with a one-vs-rest logistic
  regression (scikit-learn, liblinear), one model per target (category, priority) on one TF-IDF fitted on
  the training texts (each distinct text transformed once). Trained on the earliest
  complaints and evaluated on the latest `test_share` (by opening time, so the test is on
  complaints the model could not have seen), by macro-F1 against a majority-class baseline
  fitted on the same training rows.

Text never leaves this module: outputs hold ids, labels, scores and metrics only.
"""

from __future__ import annotations

from dataclasses import dataclass
import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.multiclass import OneVsRestClassifier
from sklearn.metrics import accuracy_score, f1_score
from scipy import sparse

from features.complaint_text import sentiment_scores  # noqa: F401  (the stage's sentiment: one implementation)

TARGETS: tuple[str, ...] = ("category", "priority")
QUALITY_COLUMNS = ["target", "classes", "train_complaints", "test_complaints", "macro_f1", "baseline_macro_f1",
                   "accuracy", "baseline_accuracy", "majority_class", "macro_f1_gain"]


def vectorizer() -> TfidfVectorizer:
    """TF-IDF of words and word pairs (sublinear counts); fitted once on the training texts, shared by every target."""
    return TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True, lowercase=True, strip_accents="unicode")


def linear_model(seed: int) -> OneVsRestClassifier:
    """One-vs-rest logistic regression on the TF-IDF rows; deterministic."""
    return OneVsRestClassifier(LogisticRegression(C=4.0, solver="liblinear", max_iter=1000, random_state=seed))


def tfidf_rows(fitted: TfidfVectorizer, texts: pd.Series) -> sparse.csr_matrix:
    """TF-IDF rows of `texts`, each distinct text transformed once (templated complaints repeat a lot)."""
    distinct, inverse = np.unique(texts.to_numpy(dtype=object).astype(str), return_inverse=True)
    return fitted.transform(distinct)[inverse]


@dataclass
class TextResult:
    """Held-out quality per target and the suggestions for the held-out complaints (ids and labels only)."""

    quality: pd.DataFrame
    suggestions: pd.DataFrame
    messages: list[str]


def suggest_labels(complaints: pd.DataFrame, test_share: float, min_texts: int, seed: int,
                   max_train: int | None = None) -> TextResult:
    """Train on the earliest complaints (at most the latest `max_train` of them), evaluate on the latest,
    suggest labels for the latest."""
    usable = complaints["text"].notna() & (complaints["text"].astype("str").str.strip() != "")
    frame = complaints.loc[usable].sort_values(["opened_at", "complaint_id"], kind="stable")
    messages: list[str] = []
    quality_rows = []
    suggestions = frame[["complaint_id", "opened_at"]].iloc[0:0].copy()
    if len(frame) < min_texts:
        messages.append(f"only {len(frame)} complaints have text (complaints.text.min_texts = {min_texts}); "
                        "no text classifier trained")
        return TextResult(pd.DataFrame(columns=QUALITY_COLUMNS), suggestions, messages)
    cut = int(round(len(frame) * (1.0 - test_share)))
    train, test = frame.iloc[:cut], frame.iloc[cut:]
    if max_train is not None and len(train) > max_train:
        messages.append(f"category/priority suggestions learn from the latest {max_train:,} of {len(train):,} "
                        "training complaints (complaints.text.max_train_complaints; null: all)")
        train = train.iloc[-max_train:]
    suggestions = test[["complaint_id", "opened_at"]].reset_index(drop=True)
    texts = vectorizer().fit(train["text"].astype("str"))
    x_train, x_test = tfidf_rows(texts, train["text"]), tfidf_rows(texts, test["text"])
    for target in TARGETS:
        if target not in frame.columns:
            continue
        labelled_train = train[target].notna()
        labelled_test = test[target].notna()
        y_train = train.loc[labelled_train, target].astype("str")
        y_test = test.loc[labelled_test, target].astype("str")
        if y_train.nunique() < 2 or len(y_test) == 0:
            messages.append(f"{target}: fewer than two labels in the training complaints; not trained")
            continue
        model = linear_model(seed).fit(x_train[labelled_train.to_numpy()], y_train)
        baseline = DummyClassifier(strategy="most_frequent").fit(np.zeros((len(y_train), 1)), y_train)
        probabilities = model.predict_proba(x_test)  # argmax = predict (one-vs-rest: monotone per class)
        best = probabilities.argmax(axis=1)
        predicted = model.classes_[best][labelled_test.to_numpy()]
        majority = baseline.predict(np.zeros((len(y_test), 1)))
        labels = sorted(set(y_train) | set(y_test))
        quality_rows.append({
            "target": target, "classes": len(labels), "train_complaints": int(len(y_train)),
            "test_complaints": int(len(y_test)),
            "macro_f1": float(f1_score(y_test, predicted, labels=labels, average="macro", zero_division=0)),
            "baseline_macro_f1": float(f1_score(y_test, majority, labels=labels, average="macro", zero_division=0)),
            "accuracy": float(accuracy_score(y_test, predicted)),
            "baseline_accuracy": float(accuracy_score(y_test, majority)),
            "majority_class": str(majority[0]),
        })
        suggestions[f"suggested_{target}"] = pd.Series(model.classes_[best], dtype="str")
        suggestions[f"{target}_confidence"] = probabilities.max(axis=1).round(6)
        suggestions[f"actual_{target}"] = test[target].astype("str").to_numpy()
    quality = pd.DataFrame(quality_rows, columns=[c for c in QUALITY_COLUMNS if c != "macro_f1_gain"])
    quality["macro_f1_gain"] = quality["macro_f1"] - quality["baseline_macro_f1"]
    return TextResult(quality, suggestions, messages)
