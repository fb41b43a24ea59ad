"""Settings of the feature builders and churn labels (validated sections of the config)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class SettingsProblem(ValueError):
    """A setting that does not fit the data (found when the data is read); names the dotted config key.

    The CLI reports it as a config error (exit code 2), like a bad value in the file.
    """

    def __init__(self, key: str, message: str):
        self.key = key
        self.message = message
        super().__init__(f"{key}: {message}")


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


# Complaint categories and channels that get their own feature columns. Fixed lists (not
# "the most frequent in the data") so a partition of the customers, a scoring run and a
# training run all produce the same columns. Values not listed are pooled as `other`.
# From shared/domain.md and the demo data generator.
DEFAULT_COMPLAINT_CATEGORIES: tuple[str, ...] = (
    "transfer_failure", "system_lag", "transfer_verification", "duplicate_documents",
    "branch_queue", "wealth_yield_display", "card_problem", "fees", "staff_attitude",
    "slow_response", "accessibility",
)
DEFAULT_COMPLAINT_CHANNELS: tuple[str, ...] = (
    "branch", "phone", "mobile_app", "online_banking", "social", "email",
)
_NAME_PART = re.compile(r"^[a-z0-9][a-z0-9_]*$")


class DuckDBSettings(Strict):
    """Resources of the relational engine's embedded DuckDB (features/relational/, pipelines/relational.py)."""

    threads: int | None = Field(default=None, ge=1, description="Worker threads; empty: one per core")
    memory_limit: str | None = Field(
        default=None, pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$",
        description="Memory DuckDB may use before spilling to disk, e.g. 2GB; empty: a third of this machine's "
                    "memory (DuckDB's own default, 80%, leaves too little for the rows the stage then holds)")
    temp_directory: str | None = Field(
        default=None, description="Where DuckDB spills beyond memory_limit; empty: churn-care-duckdb in the "
                                  "system's temporary directory")
    rows_per_statement: int | None = Field(
        default=None, ge=1,
        description="At most this many (customer, cutoff) rows aggregated by one statement: beyond it the customers "
                    "are split into buckets by a hash of their id, each computed on its own, and the population-wide "
                    "features (RFM quintile scores, BTYD fits) computed once over all of them; empty: "
                    "ROWS_PER_GB (pipelines/relational.py) per GB of memory_limit. Changes how, never what")


SPARK_TIME_ZONE = "UTC"
"""The Spark session time zone the relational engine runs in: times are naive UTC, as everywhere."""


class SparkSettings(Strict):
    """The Spark session the relational engine runs on (`features.spark`; pipelines/relational.py
    `connect_spark`). Like `features.duckdb`, these change where and how fast, never what is computed."""

    master: str = Field(default="local[2]", min_length=1,
                        description="Spark master URL: local[N] (N cores of this machine), spark://host:port, yarn")
    app_name: str = Field(default="churn-care features", min_length=1)
    config: dict[str, str] = Field(
        default_factory=dict,
        description="Extra Spark properties, e.g. spark.driver.memory: 4g (spark.sql.session.timeZone is always UTC)")

    @field_validator("config")
    @classmethod
    def _utc(cls, config: dict[str, str]) -> dict[str, str]:
        zone = config.get("spark.sql.session.timeZone")
        if zone is not None and zone != SPARK_TIME_ZONE:
            raise ValueError(f"spark.sql.session.timeZone is {zone!r}; the engine reads every time as naive UTC, "
                             f"so it must be {SPARK_TIME_ZONE!r} (or left out)")
        return config


class FeatureSettings(Strict):
    """What the feature builders compute."""

    windows_days: tuple[int, ...] = (30, 90, 180, 365)
    top_complaint_categories: int = Field(
        default=10, ge=1, le=50,
        description="How many of `complaint_categories` (in list order) get their own count column",
    )
    complaint_categories: tuple[str, ...] = Field(
        default=DEFAULT_COMPLAINT_CATEGORIES,
        description="Complaint categories in priority order; others are pooled as `other`",
    )
    complaint_channels: tuple[str, ...] = Field(
        default=DEFAULT_COMPLAINT_CHANNELS,
        description="Complaint channels with their own count column; others are pooled as `other`",
    )
    complaint_targets: dict[str, TierTarget] = Field(default_factory=_default_targets)
    complaint_sentiment: bool = Field(
        default=False,
        description="Add the tone of complaint text (VADER) as features: negative complaints and mean "
                    "sentiment in the 90 days before the cutoff (needs a complaints text column)")
    complaint_negative_below: float = Field(
        default=-0.05, ge=-1, le=0, description="VADER compound score below which a complaint reads negative")
    lifecycle: LifecycleSettings = LifecycleSettings()
    engine: Literal["auto", "pandas", "duckdb", "spark"] = Field(
        default="auto",
        description="What computes the feature tables of `churn features` and `churn score`: pandas (in memory, "
                    "fastest while the tables fit in RAM), duckdb (reads the input files itself, out of core within "
                    "features.duckdb.memory_limit), spark (features.spark; pip install 'churn-care[spark]'), or auto: "
                    "pandas while the input rows the stage holds fit features.pandas_max_rows, else duckdb (the stage says "
                    "which and why). duckdb and spark need a passing `churn validate` of the same input files first")
    pandas_max_rows: int | None = Field(
        default=None, ge=0,
        description="With engine auto: the most input rows (Parquet row counts, CSV lines estimated from the file "
                    "size) the pandas engine holds; more go to duckdb. The rows a stage holds: every table's, except "
                    "that `churn score` holds only the transactions its features look back to. Empty: what half of "
                    "this machine's memory holds at the pandas engine's measured footprint per row. Decides how, "
                    "never what: a model or feature table is the config's whatever it is")
    duckdb: DuckDBSettings = DuckDBSettings()
    spark: SparkSettings = SparkSettings()
    btyd: bool = Field(
        default=True,
        description="Buy-till-you-die features from the transactions: BTYD frequency, recency and age, and "
                    "from a BG/NBD and a Gamma-Gamma model fitted at each cutoff the probability of being "
                    "alive, of buying in the label horizon, the expected purchases, spend and value "
                    "(features/btyd.py); false leaves the family out",
    )
    btyd_history_days: int | None = Field(
        default=365, ge=30, le=3650,
        description="The BTYD history is the purchases in [cutoff - this many days, cutoff). A window the same "
                    "length at every cutoff keeps the BTYD age, recency and frequency meaning the same thing at "
                    "every cutoff: counted over everything before the cutoff, they count from the start of the "
                    "data for every customer who bought before it, so they grow with the calendar and the "
                    "scoring cutoff lies beyond every training value (on the demo bank the age's drift PSI was "
                    "2.1). Empty: every purchase before the cutoff, for data that holds each customer's history "
                    "from their first purchase (a cohort)",
    )
    static_features: tuple[str, ...] = ()
    static_types: dict[str, Literal["numeric", "categorical"]] = Field(
        default_factory=dict,
        description="Declared type of a static feature; default: numeric when every non-empty value is a "
                    "number (CSV or Parquet alike), else categorical",
    )
    allow_identifier_like: tuple[str, ...] = Field(
        default=(),
        description="Static features allowed although they look like identifiers or free text "
                    "(near-unique text); refused otherwise, so personal data never becomes a feature",
    )

    @model_validator(mode="after")
    def _windows_positive(self) -> "FeatureSettings":
        if not self.windows_days or any(w <= 0 for w in self.windows_days):
            raise ValueError("windows_days must be a non-empty list of positive day counts")
        if len(set(self.windows_days)) != len(self.windows_days):
            raise ValueError("windows_days must not repeat a window")
        for key in ("complaint_categories", "complaint_channels"):
            values = getattr(self, key)
            bad = [v for v in values if not _NAME_PART.match(v) or v == "other"]
            if bad:
                raise ValueError(f"{key}: {bad} are not usable in column names "
                                 "(lower-case letters, digits and _; 'other' is reserved)")
            if len(set(values)) != len(values):
                raise ValueError(f"{key} must not repeat a value")
        return self

    @property
    def longest_window(self) -> int:
        """The longest window in days: the period of the per-category and service features."""
        return max(self.windows_days)

    @property
    def own_column_categories(self) -> tuple[str, ...]:
        """The complaint categories with their own count column (the first N of the list)."""
        return self.complaint_categories[: self.top_complaint_categories]


class CutoffSettings(Strict):
    """Training cutoffs: how many, how far apart, and where the latest one sits.

    `month_start`: the latest cutoff is the last first-of-a-month whose label window
    [cutoff, cutoff + horizon) ends by `data.as_of`. `as_of`: the latest cutoff is exactly
    `data.as_of - horizon_days` (for a snapshot, whose closures are known only up to the
    snapshot date). Earlier cutoffs step back `spacing_months` at a time.
    """

    count: int = Field(default=12, ge=1, le=120)
    spacing_months: int = Field(default=1, ge=1, le=12)
    anchor: Literal["month_start", "as_of"] = "month_start"


class ChurnFlagSettings(Strict):
    """A snapshot whose churn is a flag column (who left), not a closure date (features/snapshot.py).

    The flag says who left in the window [as_of - horizon_days, as_of) before the snapshot date
    `data.as_of`; each customer's signup_date (from `tenure_column`, counted back from the window's
    start) and closed_date (the window's start, for those flagged) are derived when the table is read.
    """

    column: str = Field(description="Customers column saying who left in the window, e.g. Churn (Yes/No), Exited (1/0)")
    churned_values: list[str | int | float | bool] | None = Field(
        default=None, min_length=1,
        description="Values of `column` that mean churned (any other value: stayed), compared ignoring case and "
                    "surrounding spaces, numbers as numbers (1 matches 1.0); default: 1, true, yes, y, t, with 0, "
                    "false, no, n, f meaning stayed")
    tenure_column: str | None = Field(
        default=None, description="Customers column with each customer's tenure at the snapshot (a number); "
                                  "null: none (tenure_days is then the same for everyone)")
    tenure_unit: Literal["days", "weeks", "months", "years"] = "months"


class LabelSettings(Strict):
    """How churn and future value are defined."""

    definition: Literal["closure", "inactivity"] = "closure"
    horizon_days: int = Field(default=90, gt=0, le=730)
    inactivity_lookback_days: int = Field(default=180, gt=0)
    value_column: str = Field(
        default="amount", description="Transactions column summed as the customer's value in a horizon")
    customer_value_column: str | None = Field(
        default=None,
        description="Customers column with each customer's value per month (e.g. a monthly charge); "
                    "the value when there is no transactions table (snapshot data)")
    cutoffs: CutoffSettings = CutoffSettings()
    churn_flag: ChurnFlagSettings | None = Field(
        default=None,
        description="A snapshot with a churn flag and tenure instead of dates (one cutoff, anchored at as_of)")
    max_training_customers: int | None = Field(
        default=1_000_000, ge=1,
        description="At most this many customers make the training table's and the uplift rows: a uniform "
                    "sample by hashed customer id, the same customers at every cutoff and in every run, so a very "
                    "large bank's training features are built for a sample (the scoring table keeps everyone). "
                    "The default keeps a bank's training within this machine class (a 1M-customer bank: about "
                    "7 GB to build its 12 cutoffs, 6 GB to train); null: every customer")
