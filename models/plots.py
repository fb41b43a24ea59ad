"""Evaluation charts as matplotlib figures (saving them is the pipeline's job).

Every chart has a title, axis labels and units.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from models.evaluation import gains_table, reliability_table, value_by_decile  # noqa: E402


def _figure(title: str, xlabel: str, ylabel: str, size: tuple[float, float] = (6.4, 4.8)) -> tuple[Figure, plt.Axes]:
    fig, ax = plt.subplots(figsize=size, dpi=110)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def roc_figure(curves: pd.DataFrame) -> Figure:
    """ROC curves of `models.evaluation.roc_table` (one per model)."""
    fig, ax = _figure("ROC curve on the out-of-time test set", "False positive rate (share of stayers flagged)",
                      "True positive rate (share of churners flagged)")
    for name, curve in curves.groupby("model", sort=False):
        ax.plot(curve["false_positive_rate"], curve["true_positive_rate"], label=name)
    ax.plot([0, 1], [0, 1], ls="--", c="grey", label="random")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def pr_figure(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    fig, ax = _figure("Precision-recall curve", "Recall (share of churners found)", "Precision (share of flagged who churn)")
    for name, score in scores.items():
        precision, recall, _ = precision_recall_curve(y, score)
        ax.plot(recall, precision, label=name)
    ax.axhline(float(np.mean(y)), ls="--", c="grey", label="base rate")
    ax.legend(loc="upper right")
    fig.tight_layout()
    return fig


def reliability_figure(y: np.ndarray, p: np.ndarray) -> Figure:
    table = reliability_table(y, p)
    fig, ax = _figure("Reliability diagram (calibrated churn probability)", "Mean predicted probability (%)",
                      "Observed churn rate (%)")
    top = max(table["mean_predicted"].max(), table["observed_rate"].max()) * 100 * 1.05
    ax.plot([0, top], [0, top], ls="--", c="grey", label="perfect calibration")
    ax.plot(table["mean_predicted"] * 100, table["observed_rate"] * 100, marker="o", label="model (10 equal-size bins)")
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig


def gains_figure(y: np.ndarray, scores: dict[str, np.ndarray]) -> Figure:
    fig, ax = _figure("Cumulative gains", "Customers contacted, top share by score (%)", "Churners captured (%)")
    for name, score in scores.items():
        table = gains_table(y, score)
        ax.plot(table["share_contacted"] * 100, table["share_churners_captured"] * 100, label=name)
    ax.plot([0, 100], [0, 100], ls="--", c="grey", label="random")
    ax.legend(loc="lower right")
    fig.tight_layout()
    return fig


def profit_figure(curves: dict[str, pd.DataFrame], currency: str = "currency units") -> Figure:
    fig, ax = _figure("Retention campaign profit by share contacted", "Customers contacted, top share by risk (%)",
                      f"Expected profit ({currency})")
    for name, curve in curves.items():
        ax.plot(curve["share_contacted"] * 100, curve["expected_profit"], label=name)
        best = curve.loc[curve["expected_profit"].idxmax()]
        ax.scatter([best["share_contacted"] * 100], [best["expected_profit"]], zorder=3)
    ax.axhline(0, c="grey", lw=0.8)
    ax.legend(loc="lower left")
    fig.tight_layout()
    return fig


def importance_figure(importance: pd.Series, top: int = 20) -> Figure:
    data = importance.sort_values(ascending=True).tail(top)
    fig, ax = _figure(f"Feature importance (total gain, top {len(data)})", "Total gain (log-loss reduction)", "Feature",
                      size=(7.5, 6.0))
    ax.barh(data.index, data.to_numpy())
    fig.tight_layout()
    return fig


def shap_summary_figure(contributions: pd.DataFrame, matrix: pd.DataFrame, top: int = 15, seed: int = 0) -> Figure:
    """Beeswarm-style summary: each dot a customer, x its contribution, colour its feature value rank."""
    values = contributions.drop(columns=["base_value"], errors="ignore")
    order = values.abs().mean().sort_values(ascending=False).head(top).index[::-1]
    fig, ax = _figure("SHAP summary: how each feature moves churn risk",
                      "Contribution to churn log-odds (TreeSHAP)", "Feature", size=(8.0, 6.5))
    rng = np.random.default_rng(seed)
    for i, name in enumerate(order):
        x = values[name].to_numpy()
        raw = matrix[name]
        colour = (raw.cat.codes.to_numpy(dtype=float) if isinstance(raw.dtype, pd.CategoricalDtype)
                  else raw.to_numpy(dtype=float))
        ranks = pd.Series(colour).rank(pct=True).to_numpy()
        jitter = rng.uniform(-0.3, 0.3, size=len(x))
        points = ax.scatter(x, np.full(len(x), i) + jitter, c=ranks, cmap="coolwarm", s=4, alpha=0.6, vmin=0, vmax=1)
    ax.set_yticks(range(len(order)), order)
    ax.axvline(0, c="grey", lw=0.8)
    bar = fig.colorbar(points, ax=ax)
    bar.set_label("Feature value (percentile: blue low, red high)")
    fig.tight_layout()
    return fig


def value_decile_figure(actual: np.ndarray, predicted: np.ndarray, currency: str = "currency units") -> Figure:
    table = value_by_decile(actual, predicted)
    fig, ax = _figure("Customer value: predicted vs actual by decile of prediction", "Decile of predicted value (1 = lowest)",
                      f"Mean value in the next horizon ({currency})")
    width = 0.4
    ax.bar(table["decile"] - width / 2, table["mean_predicted"], width, label="predicted")
    ax.bar(table["decile"] + width / 2, table["mean_actual"], width, label="actual")
    ax.set_xticks(table["decile"])
    ax.legend(loc="upper left")
    fig.tight_layout()
    return fig
