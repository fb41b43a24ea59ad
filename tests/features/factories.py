"""Small hand-made input tables for the feature tests (seeded, a few dozen customers)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from features.contract import Tables

START = pd.Timestamp("2023-01-01")
DAYS = 700
AS_OF = START + pd.Timedelta(days=DAYS)
CATEGORIES = ("fees", "system_lag", "transfer_failure", "not_in_the_list")
CHANNELS = ("phone", "email", "mobile_app", "carrier_pigeon")
TIERS = ("urgent", "high", "normal", "suggestion")


def _times(rng: np.random.Generator, n: int, start: pd.Timestamp = START, days: int = DAYS) -> pd.Series:
    """Random times with sub-second parts, some exactly at midnight (cutoff candidates)."""
    seconds = rng.integers(0, days * 86_400, n).astype("int64") * 1_000_000
    seconds = np.where(rng.random(n) < 0.1, (seconds // 86_400_000_000) * 86_400_000_000, seconds)
    micro = np.where(rng.random(n) < 0.5, rng.integers(0, 1_000_000, n), 0)
    return pd.Series((start.as_unit("us").value // 1_000 + seconds + micro).astype("datetime64[us]"))


def random_tables(seed: int, n_customers: int = 40, transactions: int = 1_500, complaints: int = 150,
                  surveys: int = 150, contacts: int = 80, with_treatment: bool = True) -> Tables:
    """Every table of the contract, random but valid (events after signup, times ordered)."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:04d}" for i in rng.permutation(n_customers)])
    signup = (START - pd.Timedelta(days=200)) + pd.to_timedelta(rng.integers(0, DAYS, n_customers), unit="D")
    closed = pd.Series(pd.NaT, index=range(n_customers), dtype="datetime64[us]")
    closing = rng.random(n_customers) < 0.35
    closed[closing] = (signup[closing] + pd.to_timedelta(rng.integers(30, 600, closing.sum()), unit="D")).astype(
        "datetime64[us]")
    closed = closed.where(closed < AS_OF)
    customers = pd.DataFrame({
        "customer_id": pd.Series(ids, dtype="str"),
        "signup_date": pd.Series(signup, dtype="datetime64[us]"),
        "closed_date": closed,
        "segment": pd.Series(rng.choice(["mass", "affluent", "private"], n_customers), dtype="str"),
        "products_held": rng.integers(1, 5, n_customers).astype("float64"),
    })

    def owners(n: int) -> pd.Series:
        return pd.Series(rng.choice(ids, n), dtype="str")

    tx = pd.DataFrame({"customer_id": owners(transactions), "timestamp": _times(rng, transactions),
                       "amount": np.round(rng.normal(60, 120, transactions), 2)})
    opened = _times(rng, complaints)
    response = opened + pd.to_timedelta(rng.exponential(20, complaints), unit="h").round("s")
    resolved = response + pd.to_timedelta(rng.exponential(60, complaints), unit="h").round("s")
    response = response.where(rng.random(complaints) < 0.9)
    resolved = resolved.where(rng.random(complaints) < 0.8)
    resolved = resolved.where(resolved.isna() | response.notna(), None)
    cx = pd.DataFrame({
        "complaint_id": pd.Series([f"K{i}" for i in range(complaints)], dtype="str"),
        "customer_id": owners(complaints), "opened_at": opened,
        "category": pd.Series(rng.choice(CATEGORIES, complaints), dtype="str"),
        "priority": pd.Series(rng.choice(TIERS, complaints), dtype="str").where(rng.random(complaints) < 0.95),
        "channel": pd.Series(rng.choice(CHANNELS, complaints), dtype="str"),
        "first_response_at": response.astype("datetime64[us]"),
        "resolved_at": resolved.astype("datetime64[us]"),
        "satisfaction": np.where(resolved.notna() & (rng.random(complaints) < 0.8),
                                 rng.integers(1, 6, complaints), np.nan),
    })
    sv = pd.DataFrame({
        "customer_id": owners(surveys), "answered_at": _times(rng, surveys),
        "nps": np.where(rng.random(surveys) < 0.8, rng.integers(0, 11, surveys), np.nan),
        "csat": np.where(rng.random(surveys) < 0.7, rng.integers(1, 6, surveys), np.nan),
    })
    ct = pd.DataFrame({"customer_id": owners(contacts), "contacted_at": _times(rng, contacts),
                       "action": pd.Series(rng.choice(["call", "offer"], contacts), dtype="str")})
    if with_treatment:
        ct["treatment"] = rng.integers(0, 2, contacts).astype("float64")
    # keep only events after each owner's signup, as the contract requires
    signup_of = dict(zip(ids, customers["signup_date"]))
    frames = []
    for frame, column in ((tx, "timestamp"), (cx, "opened_at"), (sv, "answered_at"), (ct, "contacted_at")):
        keep = frame[column].to_numpy() >= frame["customer_id"].map(signup_of).to_numpy()
        frames.append(frame[keep].reset_index(drop=True))
    return Tables(customers, *frames, as_of=AS_OF)


def subset(tables: Tables, ids: set[str]) -> Tables:
    """The tables of some customers only (rows kept in their original order)."""
    def part(frame: pd.DataFrame | None) -> pd.DataFrame | None:
        if frame is None:
            return None
        return frame[frame["customer_id"].isin(ids)].reset_index(drop=True)

    return Tables(part(tables.customers), part(tables.transactions), part(tables.complaints),
                  part(tables.surveys), part(tables.contacts), as_of=tables.as_of)
