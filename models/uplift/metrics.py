"""Uplift evaluation on randomised rows: Qini and uplift curves, Qini coefficient, AUUC, uplift@k.

Written here (a few lines of numpy) rather than taken from scikit-uplift, whose metrics break
on scikit-learn 1.10, or causalml, which pulls xgboost, numba and shap. Definitions, for rows
sorted by predicted uplift (highest first), with n_t(k), n_c(k) treated and control rows among
the top k and r_t(k), r_c(k) the churners among them (outcome: churn, so a good contact makes
r_t smaller than expected):
- Qini curve Q(k) = r_c(k) * n_t(k) / n_c(k) - r_t(k): churners the contacts of the top k kept
  (the control rate scaled to the treated count); 0 when the top k holds no control row.
- uplift curve U(k) = (r_c(k) / n_c(k) - r_t(k) / n_t(k)) * k: churn prevented among the top k
  had all of them been contacted.
- Qini coefficient: mean over k of (Q(k) - the random line k/N * Q(N)), divided by the treated
  count N_t (so it reads as churn probability prevented per treated row above random targeting).
- AUUC: mean over k of U(k) / N (the area under the uplift curve per row); random targeting
  gives about half of U(N) / N.
- uplift@k: r_c/n_c - r_t/n_t within the top share k.
Intervals: percentile bootstrap over rows, resampled within the treated and the control arms
(the predictions are fixed: it measures the sampling noise of the evaluation rows).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

GRID_POINTS = 100


def _cumulative(uplift: np.ndarray, treatment: np.ndarray, churned: np.ndarray) -> tuple[np.ndarray, ...]:
    order = np.argsort(-np.asarray(uplift, dtype=float), kind="stable")
    t = np.asarray(treatment, dtype=np.int64)[order]
    y = np.asarray(churned, dtype=np.int64)[order]
    n_t = np.cumsum(t)
    n_c = np.cumsum(1 - t)
    r_t = np.cumsum(y * t)
    r_c = np.cumsum(y * (1 - t))
    return n_t, n_c, r_t, r_c


def uplift_curves(uplift: np.ndarray, treatment: np.ndarray, churned: np.ndarray,
                  points: int = GRID_POINTS) -> pd.DataFrame:
    """Qini and uplift curves at `points` + 1 shares of the rows (0 .. 1), plus the random lines."""
    n = len(uplift)
    n_t, n_c, r_t, r_c = _cumulative(uplift, treatment, churned)
    shares = np.linspace(0, 1, points + 1)
    k = np.round(shares * n).astype(np.int64)
    idx = np.maximum(k - 1, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        qini = np.where(n_c[idx] > 0, r_c[idx] * n_t[idx] / n_c[idx] - r_t[idx], 0.0)
        rate_gap = np.where((n_c[idx] > 0) & (n_t[idx] > 0), r_c[idx] / n_c[idx] - r_t[idx] / n_t[idx], 0.0)
    qini = np.where(k == 0, 0.0, qini)
    curve = np.where(k == 0, 0.0, rate_gap * k)
    return pd.DataFrame({"share_targeted": shares, "rows_targeted": k, "qini": qini,
                         "qini_random": shares * qini[-1], "uplift_curve": curve,
                         "uplift_random": shares * curve[-1]})


def uplift_at(uplift: np.ndarray, treatment: np.ndarray, churned: np.ndarray, share: float) -> float:
    """Churn rate of control minus churn rate of treated among the top `share` by predicted uplift."""
    n = len(uplift)
    count = max(1, int(round(share * n)))
    n_t, n_c, r_t, r_c = _cumulative(uplift, treatment, churned)
    i = count - 1
    if n_t[i] == 0 or n_c[i] == 0:
        return float("nan")
    return float(r_c[i] / n_c[i] - r_t[i] / n_t[i])


def point_metrics(uplift: np.ndarray, treatment: np.ndarray, churned: np.ndarray,
                  top_shares: tuple[float, ...]) -> dict[str, float]:
    """Qini coefficient, AUUC and uplift@k of one set of predictions."""
    curves = uplift_curves(uplift, treatment, churned)
    treated = max(int(np.sum(treatment)), 1)
    n = max(len(uplift), 1)
    metrics = {
        "qini": float((curves["qini"] - curves["qini_random"]).mean() / treated),
        "auuc": float(curves["uplift_curve"].mean() / n),
        "auuc_random": float(curves["uplift_random"].mean() / n),
        "average_uplift": float(curves["uplift_curve"].iloc[-1] / n),
    }
    for share in top_shares:
        metrics[f"uplift_at_{int(round(share * 100))}pct"] = uplift_at(uplift, treatment, churned, share)
    return metrics


def bootstrap_metrics(uplift: np.ndarray, treatment: np.ndarray, churned: np.ndarray,
                      top_shares: tuple[float, ...], resamples: int, seed: int,
                      level: float = 0.95) -> dict[str, dict[str, float]]:
    """Each metric with its percentile bootstrap interval: {name: {value, low, high}}."""
    uplift = np.asarray(uplift, dtype=float)
    treatment = np.asarray(treatment, dtype=np.int64)
    churned = np.asarray(churned, dtype=np.int64)
    point = point_metrics(uplift, treatment, churned, top_shares)
    rng = np.random.default_rng(seed)
    arms = [np.flatnonzero(treatment == 1), np.flatnonzero(treatment == 0)]
    draws: dict[str, list[float]] = {name: [] for name in point}
    for _ in range(resamples):
        rows = np.concatenate([rng.choice(arm, size=len(arm), replace=True) for arm in arms if len(arm)])
        rows.sort()
        for name, value in point_metrics(uplift[rows], treatment[rows], churned[rows], top_shares).items():
            draws[name].append(value)
    tail = (1.0 - level) / 2.0
    out: dict[str, dict[str, float]] = {}
    for name, value in point.items():
        values = np.asarray(draws[name], dtype=float)
        values = values[np.isfinite(values)]
        low, high = (np.quantile(values, [tail, 1 - tail]) if len(values) else (np.nan, np.nan))
        out[name] = {"value": float(value), "low": float(low), "high": float(high)}
    return out
