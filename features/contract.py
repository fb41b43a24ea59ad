"""The data contract: the tables the pipeline reads, their columns and what each means.

Every other module refers to columns by the canonical names defined here. Users whose
files use other names map them in the config (`data.tables.<table>.columns`), so the
rest of the code never sees their names. `docs/data-contract.md` is the prose version.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pandas as pd

ColumnKind = Literal["id", "datetime", "float", "int", "category", "text"]


@dataclass(frozen=True)
class ColumnSpec:
    """One column of a table in the contract."""

    name: str
    kind: ColumnKind
    required: bool = False
    nullable: bool = True
    unique: bool = False
    allowed: tuple[str, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str = ""


@dataclass(frozen=True)
class TableSpec:
    """One input table: its columns, its key, and the column that dates each event."""

    name: str
    columns: tuple[ColumnSpec, ...]
    event_time: str | None = None
    description: str = ""
    required: bool = False
    extra_columns_allowed: bool = False

    def column(self, name: str) -> ColumnSpec:
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(f"{self.name} has no column {name!r} in the data contract")

    @property
    def required_columns(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)


PRIORITY_TIERS: tuple[str, ...] = ("urgent", "high", "normal", "suggestion")

CUSTOMERS = TableSpec(
    name="customers",
    required=True,
    extra_columns_allowed=True,
    description="One row per customer. Further columns are static attributes.",
    columns=(
        ColumnSpec("customer_id", "id", required=True, nullable=False, unique=True,
                   description="Customer identifier (text); unique."),
        ColumnSpec("signup_date", "datetime", required=True, nullable=False,
                   description="Date the relationship started."),
        ColumnSpec("closed_date", "datetime",
                   description="Date the account was closed (contractual churn); empty if open."),
    ),
)

TRANSACTIONS = TableSpec(
    name="transactions",
    event_time="timestamp",
    description="One row per transaction.",
    columns=(
        ColumnSpec("customer_id", "id", required=True, nullable=False),
        ColumnSpec("timestamp", "datetime", required=True, nullable=False),
        ColumnSpec("amount", "float", required=True, nullable=False,
                   description="Amount in the account currency; negative = refund or outflow."),
        ColumnSpec("channel", "category", description="e.g. card, mobile_app, branch."),
        ColumnSpec("product", "category", description="e.g. current_account, credit_card."),
    ),
)

COMPLAINTS = TableSpec(
    name="complaints",
    event_time="opened_at",
    description="One row per complaint, suggestion or inquiry.",
    columns=(
        ColumnSpec("complaint_id", "id", required=True, nullable=False, unique=True),
        ColumnSpec("customer_id", "id", required=True, nullable=False),
        ColumnSpec("opened_at", "datetime", required=True, nullable=False),
        ColumnSpec("category", "category", required=True, nullable=False,
                   description="Root category, e.g. transfer_failure, system_lag, fees."),
        ColumnSpec("priority", "category", allowed=PRIORITY_TIERS,
                   description="Service tier: urgent, high, normal or suggestion."),
        ColumnSpec("channel", "category"),
        ColumnSpec("product", "category"),
        ColumnSpec("first_response_at", "datetime",
                   description="First reply to the customer; empty if none yet."),
        ColumnSpec("resolved_at", "datetime", description="Closure time; empty while open."),
        ColumnSpec("satisfaction", "float", minimum=1, maximum=5,
                   description="1-5 score given at closure."),
        ColumnSpec("text", "text", description="Free text; never logged or reported."),
        ColumnSpec("branch", "category", description="Branch that handled the complaint, e.g. north_02."),
        ColumnSpec("business_line", "category",
                   description="Business line, e.g. everyday_banking, cards, loans, wealth, business_banking."),
    ),
)

SURVEYS = TableSpec(
    name="surveys",
    event_time="answered_at",
    description="One row per survey answer.",
    columns=(
        ColumnSpec("customer_id", "id", required=True, nullable=False),
        ColumnSpec("answered_at", "datetime", required=True, nullable=False),
        ColumnSpec("nps", "float", minimum=0, maximum=10, description="Likelihood to recommend, 0-10."),
        ColumnSpec("csat", "float", minimum=1, maximum=5, description="Satisfaction, 1-5."),
        ColumnSpec("branch", "category", description="Branch of the surveyed touchpoint, e.g. north_02."),
        ColumnSpec("business_line", "category", description="Business line the answer is about."),
    ),
)

CONTACTS = TableSpec(
    name="contacts",
    event_time="contacted_at",
    description="One row per past retention action (or randomised hold-out).",
    columns=(
        ColumnSpec("customer_id", "id", required=True, nullable=False),
        ColumnSpec("contacted_at", "datetime", required=True, nullable=False),
        ColumnSpec("action", "category", required=True, nullable=False),
        ColumnSpec("treatment", "int", minimum=0, maximum=1,
                   description="1 = contacted, 0 = randomised control (not contacted)."),
        ColumnSpec("channel", "category"),
        ColumnSpec("cost", "float", minimum=0),
    ),
)

TABLES: dict[str, TableSpec] = {
    t.name: t for t in (CUSTOMERS, TRANSACTIONS, COMPLAINTS, SURVEYS, CONTACTS)
}
EVENT_TABLES: tuple[str, ...] = ("transactions", "complaints", "surveys", "contacts")


@dataclass(frozen=True)
class EarlierTransactions:
    """What a stage that reads only the recent transactions (`churn score`) keeps of the older ones.

    The `Tables.transactions` beside it hold the rows dated from `since` on (and any undated ones);
    `customers` holds, per customer id with older rows, the first and the latest of their times
    (`first`, `latest`): the only things the features at a cutoff read of them (days since the last
    transaction, where the history starts).
    """

    since: pd.Timestamp
    customers: pd.DataFrame
    rows: int
    """How many rows before `since` the summary stands for."""


@dataclass
class Tables:
    """The input tables after loading, mapping and type coercion; absent tables are None.

    `as_of` is the moment the data is complete up to (exclusive): `data.as_of` from the
    config, else midnight after the latest event. Feature builders and models take this
    object and never mutate it. `earlier_transactions`: set when `transactions` holds only the
    recent rows (`EarlierTransactions`).
    """

    customers: pd.DataFrame
    transactions: pd.DataFrame | None = None
    complaints: pd.DataFrame | None = None
    surveys: pd.DataFrame | None = None
    contacts: pd.DataFrame | None = None
    as_of: pd.Timestamp | None = field(default=None)
    earlier_transactions: EarlierTransactions | None = None

    def present(self) -> list[str]:
        """Names of the tables that were supplied."""
        return [name for name in TABLES if getattr(self, name) is not None]

