"""Settings of the feature builders and churn labels (validated sections of the config)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TierTarget(Strict):
    """Service-level target of one complaint priority tier, in hours (None = no target)."""

    first_response_hours: float | None = Field(default=None, gt=0)
    resolution_hours: float | None = Field(default=None, gt=0)


def _default_targets() -> dict[str, TierTarget]:
    # From ../shared/domain.md: urgent 1h/24h, high 4h/48h, normal 24h/3 days,
    # suggestion 5 working days (taken as 7 calendar days) / none.
    return {
        "urgent": TierTarget(first_response_hours=1, resolution_hours=24),
        "high": TierTarget(first_response_hours=4, resolution_hours=48),
        "normal": TierTarget(first_response_hours=24, resolution_hours=72),
        "suggestion": TierTarget(first_response_hours=168, resolution_hours=None),
    }


class LifecycleSettings(Strict):
    """Thresholds that place a customer in a lifecycle stage."""

    new_max_tenure_days: int = Field(default=180, gt=0)
    dormant_min_days_inactive: int = Field(default=90, gt=0)
    declining_max_trend_ratio: float = Field(default=0.7, gt=0)
    growing_min_trend_ratio: float = Field(default=1.3, gt=0)


class FeatureSettings(Strict):
    """What the feature builders compute."""

    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    top_complaint_categories: int = Field(default=10, ge=1, le=50)
    complaint_targets: dict[str, TierTarget] = Field(default_factory=_default_targets)
    lifecycle: LifecycleSettings = LifecycleSettings()
    static_features: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _windows_positive(self) -> "FeatureSettings":
        if not self.windows_days or any(w <= 0 for w in self.windows_days):
            raise ValueError("windows_days must be a non-empty list of positive day counts")
        return self


class CutoffSettings(Strict):
    """Monthly training cutoffs: how many, how far apart."""

    count: int = Field(default=12, ge=1, le=120)
    spacing_months: int = Field(default=1, ge=1, le=12)


class LabelSettings(Strict):
    """How churn and future value are defined."""

    definition: Literal["closure", "inactivity"] = "closure"
    horizon_days: int = Field(default=90, gt=0, le=730)
    inactivity_lookback_days: int = Field(default=180, gt=0)
    value_column: str = "amount"
    cutoffs: CutoffSettings = CutoffSettings()
