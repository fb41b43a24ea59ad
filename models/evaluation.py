"""How good the models are, in statistics and in money.

The profit curve follows the expected-maximum-profit idea of Verbraken et al. (2013):
contacting a would-be churner keeps them with probability `retention_success_rate`
and earns their lifetime value minus the offer; contacting a customer who would have
stayed costs the contact and (if they take it) the offer. Every contact costs
`contact_cost`. Ranking customers by predicted risk and contacting the top k% gives the
expected profit at k; its maximum is the figure to beat.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score, roc_curve

from models.settings import EconomicsSettings

TOP_SHARES: tuple[float, ...] = (0.05, 0.10, 0.20)


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Mean |observed rate - mean predicted| over equal-count bins, weighted by bin size.

    Equal-count bins keep every bin populated when churn is rare.
    """
    order = np.argsort(p, kind="stable")
    groups = np.array_split(order, bins)
    total = len(p)
    return float(sum(len(g) / total * abs(y[g].mean() - p[g].mean()) for g in groups if len(g)))


def reliability_table(y: np.ndarray, p: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed churn rate per equal-count bin (for the reliability diagram)."""
    order = np.argsort(p, kind="stable")
    rows = [{"bin": i + 1, "customers": len(g), "mean_predicted": float(p[g].mean()),
             "observed_rate": float(y[g].mean())} for i, g in enumerate(np.array_split(order, bins)) if len(g)]
    return pd.DataFrame(rows)


def _top_mask(score: np.ndarray, share: float) -> np.ndarray:
    """The top `share` of rows by score; ties broken by position so the result is deterministic."""
    count = max(1, int(round(share * len(score))))
    order = np.argsort(-score, kind="stable")
    mask = np.zeros(len(score), dtype=bool)
    mask[order[:count]] = True
    return mask


def churn_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Ranking, calibration and top-of-list figures of a churn score on labelled rows."""
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    base = float(y.mean())
    metrics = {"base_rate": base, "rows": float(len(y))}
    if 0 < y.sum() < len(y):
        metrics["roc_auc"] = float(roc_auc_score(y, p))
        metrics["pr_auc"] = float(average_precision_score(y, p))
    if np.all((p >= 0) & (p <= 1)):
        clipped = np.clip(p, 1e-6, 1 - 1e-6)
        metrics["brier"] = float(brier_score_loss(y, clipped))
        metrics["log_loss"] = float(log_loss(y, clipped, labels=[0, 1]))
        metrics["expected_calibration_error"] = expected_calibration_error(y, p)
    for share in TOP_SHARES:
        top = _top_mask(p, share)
        pct = int(share * 100)
        captured = float(y[top].sum() / max(y.sum(), 1))
        metrics[f"captured_top_{pct}pct"] = captured
        metrics[f"lift_top_{pct}pct"] = float(y[top].mean() / base) if base > 0 else float("nan")
    return metrics


def gains_table(y: np.ndarray, score: np.ndarray, steps: int = 100) -> pd.DataFrame:
    """Share of churners captured when contacting the top 0..100% by score."""
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    cumulative = np.concatenate([[0], np.cumsum(np.asarray(y)[order])])
    shares = np.linspace(0, 1, steps + 1)
    counts = np.round(shares * len(order)).astype(int)
    total = max(cumulative[-1], 1)
    return pd.DataFrame({"share_contacted": shares, "share_churners_captured": cumulative[counts] / total})


def profit_curve(y: np.ndarray, score: np.ndarray, customer_value: np.ndarray,
                 economics: EconomicsSettings, steps: int = 100) -> pd.DataFrame:
    """Expected campaign profit of contacting the top k% by score, for k = 0..100."""
    y = np.asarray(y, dtype=int)
    value = np.asarray(customer_value, dtype=float)
    gamma = economics.retention_success_rate
    per_customer = np.where(
        y == 1,
        gamma * (value - economics.offer_cost) - economics.contact_cost,
        -(economics.contact_cost + economics.offer_acceptance_non_churners * economics.offer_cost),
    )
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    cumulative = np.concatenate([[0.0], np.cumsum(per_customer[order])])
    shares = np.linspace(0, 1, steps + 1)
    counts = np.round(shares * len(order)).astype(int)
    return pd.DataFrame({"share_contacted": shares, "customers_contacted": counts,
                         "expected_profit": cumulative[counts]})


def expected_contact_profit(probability: np.ndarray, customer_value: np.ndarray,
                            economics: EconomicsSettings) -> np.ndarray:
    """Expected profit of contacting each customer under the profit curve's economics.

    A campaign ranks by this, not by risk alone: would-be churners are often the customers
    whose value is already fading, so the riskiest are rarely the ones worth an offer.
    """
    p = np.asarray(probability, dtype=float)
    value = np.asarray(customer_value, dtype=float)
    return (p * economics.retention_success_rate * (value - economics.offer_cost)
            - economics.contact_cost
            - (1.0 - p) * economics.offer_acceptance_non_churners * economics.offer_cost)


def best_profit(curve: pd.DataFrame) -> dict[str, float]:
    """The most profitable share to contact and its expected profit."""
    best = curve.loc[curve["expected_profit"].idxmax()]
    return {"best_share_contacted": float(best["share_contacted"]),
            "best_profit": float(best["expected_profit"]),
            "best_customers_contacted": float(best["customers_contacted"])}


def value_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Ranking and error of a value forecast."""
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    top = _top_mask(predicted, 0.10)
    positive_total = np.clip(actual, 0, None).sum()
    return {
        "spearman": float(spearmanr(actual, predicted).statistic) if np.std(predicted) > 0 else 0.0,
        "mae": float(np.mean(np.abs(actual - predicted))),
        "rmse": float(np.sqrt(np.mean((actual - predicted) ** 2))),
        "total_error_pct": float(100 * (predicted.sum() - actual.sum()) / max(abs(actual.sum()), 1e-9)),
        "top_decile_value_share": float(np.clip(actual[top], 0, None).sum() / max(positive_total, 1e-9)),
    }


def value_by_decile(actual: np.ndarray, predicted: np.ndarray) -> pd.DataFrame:
    """Mean predicted and actual value per decile of predicted value (1 = lowest)."""
    order = np.argsort(np.asarray(predicted, dtype=float), kind="stable")
    rows = [{"decile": i + 1, "mean_predicted": float(np.asarray(predicted)[g].mean()),
             "mean_actual": float(np.asarray(actual)[g].mean())}
            for i, g in enumerate(np.array_split(order, 10)) if len(g)]
    return pd.DataFrame(rows)


def stayer_value_metrics(churned: np.ndarray, actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """`value_metrics` on the customers who stayed: the value model predicts value while a customer."""
    kept = np.asarray(churned, dtype=int) == 0
    return value_metrics(np.asarray(actual, dtype=float)[kept], np.asarray(predicted, dtype=float)[kept])


def lifetime_value(next_horizon_value: np.ndarray, churn_probability: np.ndarray,
                   economics: EconomicsSettings, horizon_days: int) -> np.ndarray:
    """Expected profit over the coming `lifetime_horizons` horizons, discounted.

    Profit per horizon = value_margin x the value the customer brings in a horizon while a
    customer. Horizon k (k = 1..K) counts only if the customer is still there at its end,
    with probability (1 - p)^k, p being the churn probability per horizon (assumed
    constant), and is discounted from its start: (1 + annual rate)^(-(k - 1) x horizon / 365).
    So LTV = margin x value x sum_k (1 - p)^k d^(k-1). At p = 0 (the value if retained)
    that is margin x value x (1 + d + ... + d^(K-1)); at p = 0.96 the coming horizon
    weighs 0.04, not 1: a customer about to leave is not credited with the next quarter.
    """
    value = np.clip(np.asarray(next_horizon_value, dtype=float), 0, None) * economics.value_margin
    retention = 1.0 - np.asarray(churn_probability, dtype=float)
    discount = (1.0 + economics.annual_discount_rate) ** (-horizon_days / 365.0)
    factor = np.zeros_like(retention)
    for k in range(1, economics.lifetime_horizons + 1):
        factor += retention ** k * discount ** (k - 1)
    return value * factor


def roc_table(y: np.ndarray, scores: dict[str, np.ndarray], points: int = 200) -> pd.DataFrame:
    """ROC curve of each model thinned to about `points` rows (for `dvc plots`)."""
    frames = []
    for name, score in scores.items():
        if not 0 < int(np.sum(y)) < len(y):
            continue
        fpr, tpr, _ = roc_curve(y, score)
        keep = np.unique(np.linspace(0, len(fpr) - 1, min(points, len(fpr))).round().astype(int))
        frames.append(pd.DataFrame({"false_positive_rate": fpr[keep].round(5), "true_positive_rate": tpr[keep].round(5),
                                    "model": name}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["false_positive_rate", "true_positive_rate", "model"])
