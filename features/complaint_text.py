"""The tone of complaint text: a sentiment score per complaint, for features and the complaints stage.

VADER's compound score (-1 very negative .. +1 very positive) from the `vadersentiment`
package; its lexicon ships inside the package, so nothing is downloaded at run time. Each
distinct text is scored once (templated and repeated texts are common). Only the score
leaves this module, never the text.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd

SENTIMENT_WINDOW = 90
"""Days of the complaint-tone features: [cutoff - 90 days, cutoff)."""
TONE_DECIMALS = 4
"""Decimals of a complaint's tone (VADER rounds its compound score to 4): tones are summed exactly in these
units on every engine (features/relational/complaints.py `TONE`, features/complaints.py)."""


@lru_cache(maxsize=1)
def _analyzer() -> object:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment_scores(texts: pd.Series) -> np.ndarray:
    """VADER compound score per text (NaN for a missing or blank text); each distinct text scored once."""
    values = texts.astype("str").where(texts.notna(), "")
    codes, uniques = pd.factorize(values, sort=True)
    analyzer = _analyzer()
    scores = np.array([analyzer.polarity_scores(t)["compound"] if t.strip() else np.nan  # type: ignore[attr-defined]
                       for t in uniques], dtype=float)
    out = np.full(len(values), np.nan)
    known = codes >= 0
    out[known] = scores[codes[known]]
    return out
