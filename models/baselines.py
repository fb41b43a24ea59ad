"""Baselines trained and evaluated on the same split as the models, so the gain is measured.

- logistic regression on the same features (imputed, scaled, one-hot categoricals);
- a recency-only rule: the longer since the last transaction, the higher the risk;
- for value, last period's value carried forward.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from models.data import FeatureSchema

RECENCY_FEATURE = "days_since_last_transaction"


def fit_logistic_baseline(frame: pd.DataFrame, fit: np.ndarray, schema: FeatureSchema, seed: int) -> Pipeline:
    """Logistic regression on the model's features; a strong, transparent reference."""
    x = schema.matrix(frame)
    categorical = [c for c in schema.features if c in schema.categorical]
    numeric = [c for c in schema.features if c not in schema.categorical]
    prepare = ColumnTransformer([
        ("numeric", make_pipeline(SimpleImputer(strategy="median", add_indicator=True,
                                                keep_empty_features=True), StandardScaler()), numeric),
        ("categorical", make_pipeline(SimpleImputer(strategy="constant", fill_value="<missing>",
                                                     keep_empty_features=True),
                                      OneHotEncoder(handle_unknown="ignore")), categorical),
    ], sparse_threshold=0.0)
    model = Pipeline([("prepare", prepare),
                      ("logistic", LogisticRegression(max_iter=2000, C=1.0, random_state=seed))])
    x_fit = x[fit].astype({c: "object" for c in categorical})
    model.fit(x_fit, frame["churned"].to_numpy(dtype=int)[fit])
    return model


def logistic_scores(model: Pipeline, frame: pd.DataFrame, schema: FeatureSchema) -> np.ndarray:
    x = schema.matrix(frame).astype({c: "object" for c in schema.categorical})
    return model.predict_proba(x)[:, 1]


def recency_scores(frame: pd.DataFrame) -> np.ndarray | None:
    """Days since the last transaction (never active = riskiest); None without transactions."""
    if RECENCY_FEATURE not in frame.columns:
        return None
    days = frame[RECENCY_FEATURE].to_numpy(dtype=float)
    worst = np.nanmax(days) + 1 if np.isfinite(days).any() else 1.0
    return np.where(np.isfinite(days), days, worst)


def carry_forward_value(frame: pd.DataFrame, horizon_days: int) -> np.ndarray | None:
    """Value of the last period as the forecast of the next, scaled to the horizon's length.

    Uses the transaction-amount window closest to the horizon (e.g. `transaction_amount_90d`).
    """
    windows = {int(m.group(1)): c for c in frame.columns
               if (m := re.fullmatch(r"transaction_amount_(\d+)d", c))}
    if not windows:
        return None
    days = min(windows, key=lambda w: (abs(w - horizon_days), w))
    values = frame[windows[days]].to_numpy(dtype=float) * horizon_days / days
    return np.clip(np.nan_to_num(values, nan=0.0), 0, None)
