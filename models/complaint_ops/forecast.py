"""Weekly complaint volume: counts per category and channel, a backtested forecast with intervals.

Weeks start on Monday and are half-open, `[week_start, week_start + 7 days)`; only whole
weeks are used (the first Monday on or after the first complaint up to the last week that
ends by `as_of`), so a partial week never looks like a drop in volume.

Per series the candidate models (statsmodels: ETS with the trend chosen by AIC, a small
ARIMA chosen by AIC; the seasonal naive forecast with drift, i.e. last season's week plus the
mean change from one season to the next, as in fable's `SNAIVE(y ~ drift())`; and the
seasonal naive forecast itself) are compared on a rolling-origin backtest: origins one
horizon apart, each model refitted on the weeks before the origin and scored by its mean
absolute error on the horizon after it. The selection itself is backtested: at every fold
after the first, the model with the lowest error on the folds before it is the one scored
(`selected` in the backtest table), so the reported error never saw the fold it is measured
on. MASE is that error over the in-sample error of the seasonal naive forecast on the weeks
before each origin (a season longer than the history falls back to the naive forecast, said
in `scale_reference`), averaged over those folds; the seasonal naive forecast gets the same
figure on the same folds. MASE below the seasonal naive one means the forecast beats it.
The model with the lowest error over all folds is then refitted on every week and forecasts
`horizon_weeks` ahead with prediction intervals (statsmodels' own; seasonal naive with or
without drift: residual-based normal intervals widening with each season ahead).

statsforecast (AutoETS/AutoARIMA/MSTL) pins pandas < 3, so statsmodels is used.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats
from threadpoolctl import threadpool_limits

from models.complaint_ops.settings import ForecastSettings

TOTAL = "total"
WEEK = pd.Timedelta(days=7)
ARIMA_ORDERS: tuple[tuple[int, int, int], ...] = ((1, 0, 0), (1, 0, 1), (2, 0, 0))
WEEKLY_COLUMNS = ["series", "dimension", "value", "week_start", "complaints"]
BACKTEST_COLUMNS = ["series", "model", "fold", "origin_week", "selected", "mae"]
ACCURACY_COLUMNS = ["series", "dimension", "value", "model", "weeks", "complaints", "folds", "mae",
                    "mae_seasonal_naive", "mase", "mase_seasonal_naive", "scale_reference"]
SKIPPED_COLUMNS = ["series", "weeks", "complaints", "reason"]


@dataclass
class ForecastResult:
    """Counts, the forecast, per-fold backtest errors and the per-series summary."""

    weekly: pd.DataFrame
    forecast: pd.DataFrame
    backtest: pd.DataFrame
    accuracy: pd.DataFrame
    skipped: pd.DataFrame
    summary: dict[str, object] = field(default_factory=dict)


def forecast_columns(levels: tuple[int, ...]) -> list[str]:
    """Columns of the forecast table for these interval levels."""
    return ["series", "dimension", "value", "model", "week_start", "forecast",
            *[f"{side}_{level}" for level in levels for side in ("lower", "upper")]]


def empty_result(levels: tuple[int, ...]) -> ForecastResult:
    """No series to forecast: every table empty, with its columns."""
    return ForecastResult(weekly=pd.DataFrame(columns=WEEKLY_COLUMNS),
                          forecast=pd.DataFrame(columns=forecast_columns(levels)),
                          backtest=pd.DataFrame(columns=BACKTEST_COLUMNS),
                          accuracy=pd.DataFrame(columns=ACCURACY_COLUMNS),
                          skipped=pd.DataFrame(columns=SKIPPED_COLUMNS),
                          summary={"series_forecast": 0, "series_skipped": 0})


def week_grid(opened: pd.Series, as_of: pd.Timestamp) -> pd.DatetimeIndex:
    """The whole Monday-start weeks from the first complaint's week to the last week ending by `as_of`."""
    first_day = opened.min().normalize()
    start = first_day + pd.Timedelta(days=(7 - first_day.day_of_week) % 7)
    last_start = as_of.normalize() - pd.Timedelta(days=as_of.normalize().day_of_week)
    if last_start + WEEK > as_of:
        last_start -= WEEK
    if last_start < start:
        return pd.DatetimeIndex([], dtype="datetime64[us]")
    return pd.date_range(start, last_start, freq="7D").astype("datetime64[us]")


def weekly_counts(complaints: pd.DataFrame, as_of: pd.Timestamp,
                  dimensions: tuple[str, ...] = ("category", "channel")) -> pd.DataFrame:
    """Complaints per whole week: the total and one series per value of each dimension (zero weeks kept)."""
    opened = pd.to_datetime(complaints["opened_at"])
    weeks = week_grid(opened, as_of)
    columns = WEEKLY_COLUMNS
    if len(weeks) == 0:
        return pd.DataFrame({c: pd.Series(dtype="str" if c in columns[:3] else "int64") for c in columns})
    index = ((opened - weeks[0]) // WEEK).to_numpy()
    inside = (opened >= weeks[0]) & (opened < weeks[-1] + WEEK)
    parts = []
    groups: list[tuple[str, str, np.ndarray]] = [(TOTAL, TOTAL, np.ones(len(opened), dtype=bool))]
    for dim in dimensions:
        if dim not in complaints.columns:
            continue
        values = complaints[dim].astype("str")
        known = complaints[dim].notna()
        groups += [(dim, v, (values == v).to_numpy() & known.to_numpy()) for v in sorted(values[known].unique())]
    for dim, value, mask in groups:
        take = mask & inside.to_numpy()
        counts = np.bincount(index[take].astype(np.int64), minlength=len(weeks))
        parts.append(pd.DataFrame({"series": TOTAL if dim == TOTAL else f"{dim}={value}", "dimension": dim,
                                   "value": value, "week_start": weeks, "complaints": counts.astype(np.int64)}))
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({"series": "str", "dimension": "str", "value": "str"})


def _z(level: int) -> float:
    return float(stats.norm.ppf(0.5 + level / 200.0))


def _seasonal_naive(y: np.ndarray, horizon: int, season: int, levels: tuple[int, ...],
                    drift: bool = False) -> pd.DataFrame:
    """Last season's week; with `drift`, plus the mean season-on-season change once per season ahead."""
    m = season if len(y) > season else 1
    steps = np.arange(horizon)
    ahead = steps // m + 1  # seasons ahead
    differences = y[m:] - y[:-m]
    slope = float(differences.mean()) if drift and len(differences) else 0.0
    mean = y[len(y) - m + (steps % m)] + ahead * slope
    residuals = differences - slope
    sigma = float(np.sqrt(np.mean(residuals ** 2))) if len(residuals) else 0.0
    # fable's interval for the drift forecast also carries the slope's own uncertainty (k^2 / T).
    spread = sigma * np.sqrt(ahead * (1.0 + (ahead / max(len(differences), 1) if drift else 0.0)))
    out = {"mean": mean}
    for level in levels:
        out[f"lower_{level}"] = mean - _z(level) * spread
        out[f"upper_{level}"] = mean + _z(level) * spread
    return pd.DataFrame(out)


def _series(y: np.ndarray) -> pd.Series:
    # statsmodels wants an index with a frequency for its prediction frames; the dates themselves do not matter.
    return pd.Series(y, index=pd.date_range("2000-01-03", periods=len(y), freq="W-MON"))


def _ets(y: np.ndarray, horizon: int, levels: tuple[int, ...]) -> pd.DataFrame:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    series = _series(y)
    fits = []
    for trend in (None, "add"):
        try:
            fits.append(ETSModel(series, error="add", trend=trend, damped_trend=trend is not None)
                        .fit(disp=False, maxiter=200))
        except (ValueError, np.linalg.LinAlgError):
            continue
    fits = [f for f in fits if np.isfinite(f.aic)]
    if not fits:
        raise ValueError("ETS did not fit")
    best = min(fits, key=lambda f: f.aic)
    out: dict[str, np.ndarray] = {}
    for level in levels:
        frame = best.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=1 - level / 100.0)
        out["mean"] = frame["mean"].to_numpy()
        out[f"lower_{level}"] = frame["pi_lower"].to_numpy()
        out[f"upper_{level}"] = frame["pi_upper"].to_numpy()
    return pd.DataFrame(out)


def _arima(y: np.ndarray, horizon: int, levels: tuple[int, ...]) -> pd.DataFrame:
    from statsmodels.tsa.arima.model import ARIMA

    series = _series(y)
    fits = []
    for order in ARIMA_ORDERS:
        try:
            fits.append(ARIMA(series, order=order, trend="c").fit())
        except (ValueError, np.linalg.LinAlgError):
            continue
    fits = [f for f in fits if np.isfinite(f.aic)]
    if not fits:
        raise ValueError("ARIMA did not fit")
    best = min(fits, key=lambda f: f.aic)
    prediction = best.get_forecast(horizon)
    out = {"mean": np.asarray(prediction.predicted_mean)}
    for level in levels:
        interval = np.asarray(prediction.conf_int(alpha=1 - level / 100.0))
        out[f"lower_{level}"], out[f"upper_{level}"] = interval[:, 0], interval[:, 1]
    return pd.DataFrame(out)


def _stl_ets(y: np.ndarray, horizon: int, season: int, levels: tuple[int, ...]) -> pd.DataFrame:
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel
    from statsmodels.tsa.forecasting.stl import STLForecast

    if len(y) < 2 * season + 1:
        raise ValueError(f"STL needs two seasons of {season} weeks")
    fitted = STLForecast(_series(y), ETSModel, model_kwargs={"error": "add", "trend": "add", "damped_trend": True},
                         period=season, robust=True).fit(fit_kwargs={"disp": False, "maxiter": 200})
    out: dict[str, np.ndarray] = {}
    for level in levels:
        frame = fitted.get_prediction(start=len(y), end=len(y) + horizon - 1).summary_frame(alpha=1 - level / 100.0)
        out["mean"] = frame["mean"].to_numpy()
        out[f"lower_{level}"] = frame["mean_ci_lower"].to_numpy()
        out[f"upper_{level}"] = frame["mean_ci_upper"].to_numpy()
    return pd.DataFrame(out)


def predict(model: str, y: np.ndarray, horizon: int, season: int, levels: tuple[int, ...]) -> pd.DataFrame:
    """One model's forecast of the next `horizon` weeks with intervals; counts are never below zero."""
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # convergence chatter; a failed fit raises and falls back
        if model == "ets":
            frame = _ets(y, horizon, levels)
        elif model == "arima":
            frame = _arima(y, horizon, levels)
        elif model == "stl_ets":
            frame = _stl_ets(y, horizon, season, levels)
        elif model == "seasonal_naive_drift":
            frame = _seasonal_naive(y, horizon, season, levels, drift=True)
        else:
            frame = _seasonal_naive(y, horizon, season, levels)
    return frame.clip(lower=0.0)


def _scale(y: np.ndarray, season: int) -> tuple[float, str]:
    m = season if len(y) > season else 1
    errors = np.abs(y[m:] - y[:-m])
    reference = "seasonal_naive" if m > 1 else "naive"
    return (float(errors.mean()) if len(errors) else float("nan")), reference


def forecast_complaints(complaints: pd.DataFrame, as_of: pd.Timestamp, settings: ForecastSettings,
                        dimensions: tuple[str, ...] = ("category", "channel")) -> ForecastResult:
    """Counts, backtest, chosen model and forecast for the total and every category and channel."""
    weekly = weekly_counts(complaints, as_of, dimensions)
    h, season, levels = settings.horizon_weeks, settings.season_weeks, settings.interval_levels
    candidates = tuple(dict.fromkeys(settings.models + ("seasonal_naive",)))
    forecasts, folds, accuracy, skipped = [], [], [], []
    for (series, dimension, value), part in weekly.groupby(["series", "dimension", "value"], sort=False):
        y = part["complaints"].to_numpy(dtype=float)
        weeks = pd.DatetimeIndex(part["week_start"])
        n_folds = min(settings.backtest_folds, (len(y) - settings.min_train_weeks) // h)
        if y.sum() < settings.min_complaints or n_folds < 2:
            skipped.append({"series": series, "weeks": len(y), "complaints": int(y.sum()),
                            "reason": (f"fewer than complaints.forecast.min_complaints={settings.min_complaints} "
                                       "complaints" if y.sum() < settings.min_complaints else
                                       f"history of {len(y)} weeks is too short for two backtest folds of "
                                       f"{h} weeks after complaints.forecast.min_train_weeks="
                                       f"{settings.min_train_weeks}")})
            continue
        origins = [len(y) - (n_folds - k) * h for k in range(n_folds)]
        errors: dict[str, list[float]] = {m: [] for m in candidates}

        def best(folds_seen: int) -> str:
            return min(candidates, key=lambda m: (np.mean(errors[m][:folds_seen]), candidates.index(m)))

        # The selection is backtested too: fold k is scored with the model folds 1..k-1 chose.
        picked: dict[int, str] = {}
        for fold, origin in enumerate(origins):
            if fold:
                picked[fold] = best(fold)
            actual = y[origin:origin + h]
            for model in candidates:
                try:
                    mean = predict(model, y[:origin], h, season, levels)["mean"].to_numpy()
                    mae = float(np.mean(np.abs(actual - mean)))
                except ValueError:
                    mae = float("inf")
                errors[model].append(mae)
                folds.append({"series": series, "model": model, "fold": fold + 1, "origin_week": weeks[origin],
                              "selected": picked.get(fold) == model, "mae": mae})
        scales = [_scale(y[:origin], season) for origin in origins[1:]]
        reference = scales[0][1]
        scored = [errors[picked[fold]][fold] for fold in range(1, n_folds)]
        naive = [errors["seasonal_naive"][fold] for fold in range(1, n_folds)]
        usable = all(scale > 0 for scale, _ in scales)
        chosen = best(n_folds)
        accuracy.append({"series": series, "dimension": dimension, "value": value, "model": chosen,
                         "weeks": len(y), "complaints": int(y.sum()), "folds": n_folds,
                         "mae": float(np.mean(scored)), "mae_seasonal_naive": float(np.mean(naive)),
                         "mase": float(np.mean([e / s for e, (s, _) in zip(scored, scales)]))
                         if usable else float("nan"),
                         "mase_seasonal_naive": float(np.mean([e / s for e, (s, _) in zip(naive, scales)]))
                         if usable else float("nan"),
                         "scale_reference": reference})
        try:
            final = predict(chosen, y, h, season, levels)
        except ValueError:
            chosen = "seasonal_naive"
            final = predict(chosen, y, h, season, levels)
        final.insert(0, "week_start", pd.date_range(weeks[-1] + WEEK, periods=h, freq="7D").astype("datetime64[us]"))
        final.insert(0, "model", chosen)
        final.insert(0, "value", value)
        final.insert(0, "dimension", dimension)
        final.insert(0, "series", series)
        forecasts.append(final.rename(columns={"mean": "forecast"}))
    acc = pd.DataFrame(accuracy, columns=ACCURACY_COLUMNS)
    result = ForecastResult(
        weekly=weekly,
        forecast=(pd.concat(forecasts, ignore_index=True)[forecast_columns(levels)] if forecasts
                  else pd.DataFrame(columns=forecast_columns(levels))),
        backtest=pd.DataFrame(folds, columns=BACKTEST_COLUMNS), accuracy=acc,
        skipped=pd.DataFrame(skipped, columns=SKIPPED_COLUMNS))
    if len(acc):
        result.summary = {
            "series_forecast": int(len(acc)), "series_skipped": int(len(skipped)),
            "weeks_of_history": int(acc["weeks"].max()),
            "mase_overall": float(acc["mase"].mean()),
            "mase_seasonal_naive_overall": float(acc["mase_seasonal_naive"].mean()),
            "mae_ratio_to_seasonal_naive": float(acc["mae"].sum() / acc["mae_seasonal_naive"].sum())
            if acc["mae_seasonal_naive"].sum() > 0 else None,
            "mase_total": float(acc.loc[acc["series"] == TOTAL, "mase"].iloc[0])
            if (acc["series"] == TOTAL).any() else None,
            "models_chosen": {k: int(v) for k, v in acc["model"].value_counts().sort_index().items()},
        }
    else:
        result.summary = {"series_forecast": 0, "series_skipped": int(len(skipped))}
    return result
