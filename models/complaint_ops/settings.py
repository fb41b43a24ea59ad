"""Settings of `churn complaints` (the `complaints` config section)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from features.settings import Strict

ForecastModel = Literal["ets", "arima", "stl_ets", "seasonal_naive_drift", "seasonal_naive"]


class ForecastSettings(Strict):
    """Weekly complaint volume forecast per category and channel."""

    horizon_weeks: int = Field(default=13, ge=1, le=104, description="Weeks forecast ahead")
    season_weeks: int = Field(default=52, ge=2, le=104,
                              description="Season length of the seasonal-naive reference (a year of weeks)")
    backtest_folds: int = Field(default=3, ge=2, le=12,
                                description="Rolling origins, each one horizon apart; every fold after the "
                                            "first is scored with the model the folds before it chose "
                                            "(the reported MASE)")
    min_train_weeks: int = Field(default=26, ge=8,
                                 description="Fewest weeks of history before the first backtest origin")
    models: tuple[ForecastModel, ...] = Field(
        default=("ets", "arima", "seasonal_naive_drift", "seasonal_naive"), min_length=1,
        description="Candidate models; chosen per series on the backtest (seasonal_naive is always scored "
                    "as the reference)")
    interval_levels: tuple[int, ...] = Field(default=(80, 95), min_length=1,
                                             description="Prediction-interval levels in percent")
    min_complaints: int = Field(default=100, ge=0,
                                description="Series with fewer complaints in the history are not forecast "
                                            "(listed in the summary)")

    @field_validator("interval_levels")
    @classmethod
    def _levels(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not 50 <= v <= 99 for v in value):
            raise ValueError("each level is a percentage between 50 and 99")
        return tuple(sorted(set(value)))


class StaffingSettings(Strict):
    """Agents needed per week from the forecast (Erlang C per tier)."""

    open_hours_per_week: float = Field(default=60.0, gt=0, le=168,
                                       description="Hours per week the care team answers complaints")
    handling_hours: dict[str, float] = Field(
        default_factory=lambda: {"urgent": 1.5, "high": 1.0, "normal": 0.5, "suggestion": 0.25},
        description="Average handling time per complaint of each tier, in hours")
    service_level: float = Field(default=0.8, gt=0, lt=1,
                                 description="Share of complaints to answer within the tier's first-response "
                                             "target (features.complaint_targets)")
    max_occupancy: float = Field(default=0.85, gt=0, le=1, description="Highest share of time agents are busy")
    shrinkage: float = Field(default=0.3, ge=0, lt=1,
                             description="Share of paid time not available (leave, training, breaks)")
    tier_mix_weeks: int = Field(default=26, ge=1, description="Recent weeks whose tier mix splits the forecast")
    forecast_bound: Literal["mean", "upper"] = Field(
        default="upper", description="Staff for the mean forecast or the upper bound of the widest interval")

    @field_validator("handling_hours")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        bad = [k for k, v in value.items() if not v > 0]
        if bad:
            raise ValueError(f"handling time must be > 0 hours for {bad}")
        return value


class SatisfactionSettings(Strict):
    """Units (branches, business lines) significantly below the rest."""

    alpha: float = Field(default=0.05, gt=0, lt=0.5,
                         description="False discovery rate (Benjamini-Hochberg) per score and unit type")
    min_answers: int = Field(default=20, ge=2, description="Units with fewer answers are listed but not tested")


class TextSettings(Strict):
    """Complaint text: category/priority suggestions and sentiment (text never leaves the stage)."""

    enabled: bool = True
    test_share: float = Field(default=0.25, gt=0, lt=1, description="Latest share of complaints held out")
    min_texts: int = Field(default=200, ge=20, description="Fewest complaints with text to train the classifier")
    max_train_complaints: int | None = Field(
        default=200_000, ge=100, description="The suggestions learn from at most the latest this-many training "
        "complaints (null: all); the fits grow with rows x classes, macro-F1 hardly beyond this")
    negative_below: float = Field(default=-0.05, ge=-1, le=0,
                                  description="VADER compound score below which a complaint reads negative")


class ComplaintOpsSettings(Strict):
    """The `complaints` section: forecast, staffing, satisfaction by unit, heat maps, text."""

    forecast: ForecastSettings = ForecastSettings()
    staffing: StaffingSettings = StaffingSettings()
    satisfaction: SatisfactionSettings = SatisfactionSettings()
    text: TextSettings = TextSettings()
