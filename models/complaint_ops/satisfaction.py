"""Satisfaction by unit: which branches and business lines score significantly below the rest.

Scores: CSAT (surveys, 1-5), NPS (surveys: each answer counts +1 promoter 9-10, -1
detractor 0-6, 0 passive, so the mean is the unit's NPS / 100) and complaint satisfaction
(complaints, 1-5 at closure). Each unit with at least `min_answers` answers is compared
with all other answers by a one-sided Welch t-test (unit mean below the rest; unequal
variances, large-sample robust for bounded scores). The p-values of one score and unit
type (e.g. CSAT by branch) are one family, corrected by Benjamini-Hochberg
(statsmodels `multipletests`, `fdr_bh`) at `alpha`: among the units flagged, the
expected share of false alarms is at most alpha. Units with fewer answers are listed,
not tested (`tested` false). Only unit names, counts and means leave this module.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from statsmodels.stats.multitest import multipletests

from models.complaint_ops.settings import SatisfactionSettings

PROMOTER_MIN, DETRACTOR_MAX = 9, 6
UNIT_TYPES: tuple[str, ...] = ("branch", "business_line")
COLUMNS = ["score", "unit_type", "unit", "answers", "mean", "rest_mean", "difference", "p_value", "q_value",
           "tested", "significantly_below", "rank"]


def score_values(complaints: pd.DataFrame | None, surveys: pd.DataFrame | None) -> dict[str, pd.DataFrame]:
    """Per score: the answers with their units (columns value, branch, business_line where present)."""
    out: dict[str, pd.DataFrame] = {}
    if surveys is not None:
        units = [u for u in UNIT_TYPES if u in surveys.columns]
        if "csat" in surveys.columns:
            out["csat"] = surveys[units].assign(value=pd.to_numeric(surveys["csat"], errors="coerce"))
        if "nps" in surveys.columns:
            nps = pd.to_numeric(surveys["nps"], errors="coerce")
            contribution = np.where(nps >= PROMOTER_MIN, 1.0, np.where(nps <= DETRACTOR_MAX, -1.0, 0.0))
            out["nps"] = surveys[units].assign(value=np.where(nps.isna(), np.nan, contribution))
    if complaints is not None and "satisfaction" in complaints.columns:
        units = [u for u in UNIT_TYPES if u in complaints.columns]
        out["complaint_satisfaction"] = complaints[units].assign(
            value=pd.to_numeric(complaints["satisfaction"], errors="coerce"))
    return {k: v.dropna(subset=["value"]) for k, v in out.items()}


def compare_units(values: pd.DataFrame, unit_type: str, score: str, settings: SatisfactionSettings) -> pd.DataFrame:
    """Each unit against the rest: Welch t-test (one-sided, below), BH-corrected within the family."""
    frame = values.dropna(subset=[unit_type])
    v = frame["value"].to_numpy(dtype=float)
    unit = frame[unit_type].astype("str").to_numpy()
    rows = []
    for name in sorted(set(unit)):
        inside = unit == name
        a, b = v[inside], v[~inside]
        tested = len(a) >= settings.min_answers and len(b) >= settings.min_answers
        p = float("nan")
        if tested:
            if np.std(a) == 0 and np.std(b) == 0:
                p = 0.0 if a.mean() < b.mean() else 1.0
            else:
                p = float(stats.ttest_ind(a, b, equal_var=False, alternative="less").pvalue)
        rows.append({"score": score, "unit_type": unit_type, "unit": name, "answers": int(len(a)),
                     "mean": float(a.mean()), "rest_mean": float(b.mean()) if len(b) else float("nan"),
                     "difference": float(a.mean() - b.mean()) if len(b) else float("nan"),
                     "p_value": p, "tested": tested})
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("q_value", "significantly_below", "rank")])
    table["q_value"] = np.nan
    tested = table["tested"].to_numpy(dtype=bool) & table["p_value"].notna().to_numpy()
    if tested.any():
        reject, q, _, _ = multipletests(table.loc[tested, "p_value"].to_numpy(), alpha=settings.alpha,
                                        method="fdr_bh")
        table.loc[tested, "q_value"] = q
        table["significantly_below"] = False
        table.loc[tested, "significantly_below"] = reject
    else:
        table["significantly_below"] = False
    return table


def satisfaction_by_unit(complaints: pd.DataFrame | None, surveys: pd.DataFrame | None,
                         settings: SatisfactionSettings) -> pd.DataFrame:
    """Every score x unit type x unit, units significantly below the rest first (largest gap first)."""
    parts = []
    for score, values in score_values(complaints, surveys).items():
        for unit_type in UNIT_TYPES:
            if unit_type in values.columns and values[unit_type].notna().any():
                parts.append(compare_units(values, unit_type, score, settings))
    if not parts:
        return pd.DataFrame(columns=COLUMNS)
    table = pd.concat(parts, ignore_index=True)
    table["significantly_below"] = table["significantly_below"].astype(bool)
    table = table.sort_values(["significantly_below", "difference", "score", "unit_type", "unit"],
                              ascending=[False, True, True, True, True], kind="stable").reset_index(drop=True)
    table["rank"] = np.arange(1, len(table) + 1)
    return table[COLUMNS]
