"""Complaint-tone features: computed from complaints opened before the cutoff only, counted as defined."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from features.build import build_features
from features.complaint_text import SENTIMENT_WINDOW, sentiment_scores
from features.contract import Tables
from features.settings import FeatureSettings
from tests.features.factories import START, random_tables

SETTINGS = FeatureSettings(complaint_sentiment=True)
PHRASES = ("The card was blocked again, this is unacceptable and I am angry.",
           "Thanks for the quick help, the staff were friendly.",
           "My transfer is pending.", "Terrible service, worst bank ever!", "")
CUTOFF = START + pd.Timedelta(days=400)
NEGATIVE = f"negative_complaints_{SENTIMENT_WINDOW}d"
MEAN = f"mean_complaint_sentiment_{SENTIMENT_WINDOW}d"


def with_text(seed: int) -> Tables:
    tables = random_tables(seed, n_customers=60, complaints=400)
    rng = np.random.default_rng(seed)
    texts = pd.Series(rng.choice(PHRASES, len(tables.complaints)), dtype="str")
    return dataclasses.replace(tables, complaints=tables.complaints.assign(text=texts.to_numpy()))


def test_tone_features_ignore_complaints_at_or_after_the_cutoff_and_their_text() -> None:
    tables = with_text(4)
    complaints = tables.complaints
    at_cutoff = complaints.index[:5]
    complaints = complaints.copy()
    complaints.loc[at_cutoff, "opened_at"] = CUTOFF  # stamped at the cutoff: after it
    tables = dataclasses.replace(tables, complaints=complaints)
    full = build_features(tables, CUTOFF, SETTINGS)
    assert {NEGATIVE, MEAN} <= set(full.columns)
    later = complaints["opened_at"] >= CUTOFF
    assert later.sum() > 5
    rewritten = complaints.assign(text=np.where(later, "Worst bank ever, I am furious and disgusted!",
                                                complaints["text"]))
    truncated = dataclasses.replace(tables, complaints=complaints[~later])
    for other in (dataclasses.replace(tables, complaints=rewritten), truncated):
        pd.testing.assert_frame_equal(full[["customer_id", NEGATIVE, MEAN]],
                                      build_features(other, CUTOFF, SETTINGS)[["customer_id", NEGATIVE, MEAN]])


def test_tone_features_count_negative_texts_in_the_half_open_window() -> None:
    tables = with_text(5)
    frame = tables.complaints.assign(score=sentiment_scores(tables.complaints["text"]))
    start = CUTOFF - pd.Timedelta(days=SENTIMENT_WINDOW)
    built = build_features(tables, CUTOFF, SETTINGS).set_index("customer_id")  # the population at the cutoff
    window = frame[(frame["opened_at"] >= start) & (frame["opened_at"] < CUTOFF) & frame["score"].notna()
                   & frame["customer_id"].isin(built.index)]
    expected = (window["score"] < SETTINGS.complaint_negative_below).groupby(window["customer_id"]).sum()
    counted = built[NEGATIVE]
    assert counted.sum() == expected.sum() > 0
    assert (counted.reindex(expected.index) == expected).all()
    means = window.groupby("customer_id")["score"].mean()
    assert np.allclose(built[MEAN].reindex(means.index), means)
    assert built.loc[~built.index.isin(window["customer_id"]), MEAN].isna().all()
    assert NEGATIVE not in build_features(tables, CUTOFF, FeatureSettings()).columns  # off by default
