"""Inspection of a user's tables for `churn init`: column names, types, history, rhythm, value.

Pure: column names and frames in, facts out. `pipelines/init.py` reads the files (with
the project's own reader) and turns these facts into a commented config. Every rule here
is stated in the docstring of the function that applies it, and `pipelines/init.py`
repeats it beside each choice in the written config.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from features._grouping import distinct_sorted
from features.static import numeric_values

# ---------------------------------------------------------------- column names


def normalise(name: str) -> str:
    """A column name compared case-, spacing- and punctuation-insensitively: 'Customer ID' -> 'customerid'."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def tokens(name: str) -> list[str]:
    """The words of a column name: 'CustomerID' -> ['customer', 'id'], 'e_mail' -> ['e', 'mail']."""
    return [t.lower() for t in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|\d+", str(name))]


_CUSTOMER = ("customerid", "customer", "clientid", "client", "custid", "customerno", "customernumber",
             "customernr", "clientno", "clientnumber", "memberid", "userid", "accountid")
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "customers": {
        "customer_id": (*_CUSTOMER, "id"),
        "signup_date": ("signupdate", "signup", "signedup", "signupat", "opened", "openeddate", "openedon",
                        "opendate", "openingdate", "accountopened", "startdate", "start", "firstpurchase",
                        "firstpurchasedate", "firstorderdate", "joindate", "joined", "joineddate", "joinedon",
                        "createdat", "created", "createddate", "registrationdate", "registered",
                        "customersince", "since", "onboardingdate", "acquisitiondate", "enrollmentdate"),
        "closed_date": ("closeddate", "closed", "closedon", "closedat", "closingdate", "closuredate", "churndate",
                        "churnedat", "churnedon", "enddate", "end", "canceldate", "cancellationdate",
                        "cancelledat", "canceledat", "cancelled", "canceled", "terminationdate", "terminated",
                        "exitdate", "leftdate", "leavedate"),
    },
    "transactions": {
        "customer_id": _CUSTOMER,
        "timestamp": ("timestamp", "date", "datetime", "time", "invoicedate", "transactiondate", "transactiontime",
                      "transactiondatetime", "txdate", "txndate", "trxdate", "tradedate", "bookingdate",
                      "postingdate", "valuedate", "orderdate", "purchasedate", "eventtime", "eventdate",
                      "createdat", "ts"),
        "amount": ("amount", "amt", "value", "revenue", "sales", "total", "totalamount", "transactionamount",
                   "txamount", "txnamount", "netamount", "spend", "turnover"),
        "channel": ("channel", "saleschannel", "transactionchannel"),
        "product": ("product", "producttype", "productcategory", "productline"),
    },
    "complaints": {
        "complaint_id": ("complaintid", "caseid", "ticketid", "complaintno", "complaintnumber", "casenumber",
                         "ticketnumber", "case", "ticket", "id"),
        "customer_id": _CUSTOMER,
        "opened_at": ("openedat", "opened", "openeddate", "createdat", "created", "receivedat", "received",
                      "reportedat", "reported", "opendate", "complaintdate", "loggedat", "date", "datetime",
                      "timestamp"),
        "category": ("category", "complainttype", "complaintcategory", "type", "reason", "issue", "issuetype",
                     "topic", "rootcause"),
        "priority": ("priority", "severity", "tier", "urgency"),
        "channel": ("channel", "source"),
        "product": ("product", "productline"),
        "first_response_at": ("firstresponseat", "firstresponse", "firstresponsedate", "respondedat",
                              "responsedate", "firstreplyat", "firstreply", "repliedat"),
        "resolved_at": ("resolvedat", "resolved", "resolveddate", "resolutiondate", "closedat", "closed",
                        "closeddate", "solvedat"),
        "satisfaction": ("satisfaction", "satisfactionscore", "rating", "csat", "score"),
        "text": ("text", "description", "comment", "comments", "body", "message", "details", "notes",
                 "complainttext"),
        "branch": ("branch", "branchname", "branchid", "branchcode", "office", "outlet"),
        "business_line": ("businessline", "lineofbusiness", "lob", "businessunit", "division"),
    },
    "surveys": {
        "customer_id": _CUSTOMER,
        "answered_at": ("answeredat", "answered", "answerdate", "surveydate", "responsedate", "respondedat",
                        "submittedat", "submitted", "completedat", "date", "datetime", "timestamp", "createdat"),
        "nps": ("nps", "npsscore", "recommend", "likelihoodtorecommend", "recommendscore"),
        "csat": ("csat", "csatscore", "satisfaction", "satisfactionscore"),
        "branch": ("branch", "branchname", "branchid", "branchcode", "office", "outlet"),
        "business_line": ("businessline", "lineofbusiness", "lob", "businessunit", "division"),
    },
    "contacts": {
        "customer_id": _CUSTOMER,
        "contacted_at": ("contactedat", "contacted", "contactdate", "sentat", "calldate", "date", "datetime",
                         "timestamp", "createdat"),
        "action": ("action", "campaign", "offer", "actiontype", "treatmenttype", "intervention"),
        "treatment": ("treatment", "treated", "istreatment", "treatmentflag", "intreatment"),
        "channel": ("channel",),
        "cost": ("cost", "contactcost", "actioncost"),
    },
}
"""Per table and contract column: the file column names (normalised) that mean it, best first."""


def guess_columns(table: str, file_columns: list[str], contract_columns: list[str],
                  fixed: dict[str, str] | None = None,
                  rejected: dict[str, set[str]] | None = None) -> dict[str, str]:
    """contract column -> file column, for the contract columns whose file column can be named.

    `fixed` (from `--column`) is taken as given. Every other contract column takes the
    first of its synonyms (`SYNONYMS`, best first; the contract name itself always counts)
    that names a file column not used yet, compared with `normalise`; `rejected` holds file
    columns already found unfit for a contract column (e.g. a `closed` column holding
    yes/no flags rather than dates).
    """
    fixed = dict(fixed or {})
    rejected = rejected or {}
    used = set(fixed.values())
    by_norm: dict[str, str] = {}
    for column in file_columns:
        by_norm.setdefault(normalise(column), column)
    mapping = dict(fixed)
    for contract in contract_columns:
        if contract in mapping:
            continue
        for synonym in (normalise(contract), *SYNONYMS.get(table, {}).get(contract, ())):
            column = by_norm.get(synonym)
            if column is not None and column not in used and column not in rejected.get(contract, set()):
                mapping[contract] = column
                used.add(column)
                break
    return mapping


def price_and_quantity(file_columns: list[str]) -> tuple[str, str] | None:
    """A price and a quantity column (their product would be the amount, which init cannot guess)."""
    price = next((c for c in file_columns if {"price", "unitprice"} & {normalise(c), *tokens(c)}), None)
    quantity = next((c for c in file_columns if {"quantity", "qty", "units"} & {normalise(c), *tokens(c)}), None)
    return (price, quantity) if price and quantity else None


# ---------------------------------------------------------------- content


def date_share(values: pd.Series) -> float:
    """Share of the non-empty values that are ISO 8601 dates (the contract's date format); 0 if none."""
    if pd.api.types.is_datetime64_any_dtype(values):
        return 1.0 if values.notna().any() else 0.0
    if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
        return 0.0
    text = values.dropna().astype("str").str.strip()
    text = text[text != ""]
    if text.empty:
        return 0.0
    sample = text.sample(min(len(text), 2000), random_state=0) if len(text) > 2000 else text
    parsed = pd.to_datetime(sample, format="ISO8601", errors="coerce", utc=True)
    return float(parsed.notna().mean())


@dataclass(frozen=True)
class History:
    """Where the events start (robustly), end, and how dense they are per month."""

    first: pd.Timestamp          # the earliest event
    start: pd.Timestamp          # the start of the dense history (see `history`)
    ignored: int                 # events before `start`
    months: int                  # calendar months from start to as_of
    median_per_month: float      # median events per month from start on


def history(times: pd.Series, as_of: pd.Timestamp, min_share: float = 0.1) -> History:
    """The history the events cover: from the first month with at least `min_share` of the
    median count of the months with events (a few stray old rows, or a thin ramp-up while a
    system was being filled, do not count as history) to as_of."""
    values = pd.to_datetime(times).to_numpy()
    values = values[~np.isnat(values)]
    values = values[values < np.datetime64(as_of)]
    if not len(values):
        return History(pd.NaT, pd.NaT, 0, 0, 0.0)
    month = values.astype("datetime64[M]").astype(np.int64)
    first_code = int(month.min())
    counts = np.bincount(month - first_code)
    median = float(np.median(counts[counts > 0]))
    dense = np.flatnonzero(counts >= max(1.0, min_share * median))
    start_code = first_code + int(dense[0] if len(dense) else 0)
    keep = month >= start_code
    start = pd.Timestamp(values[keep].min())
    span = (as_of.year - start.year) * 12 + as_of.month - start.month
    return History(pd.Timestamp(values.min()), start, int((~keep).sum()), int(span),
                   float(np.median(counts[start_code - first_code:][counts[start_code - first_code:] > 0])))


def typical_gaps(customer_ids: pd.Series, times: pd.Series) -> pd.Series:
    """Each customer's median gap in days between consecutive days with a transaction
    (customers with at least two such days)."""
    day = pd.to_datetime(times).to_numpy().astype("datetime64[D]").astype(np.int64)
    code, _ = pd.factorize(customer_ids, use_na_sentinel=True)
    keep = (code >= 0) & (day != np.datetime64("NaT").astype(np.int64))
    if not keep.any():
        return pd.Series([], dtype="float64")
    day = day[keep]
    first = int(day.min())
    span = int(day.max()) - first + 1
    key = distinct_sorted(code[keep].astype(np.int64) * span + (day - first))  # one entry per (customer, day), sorted
    owner, when = key // span, key % span
    same = owner[1:] == owner[:-1]
    gaps = (when[1:] - when[:-1])[same]
    if not len(gaps):
        return pd.Series([], dtype="float64")
    return pd.Series(gaps, index=owner[1:][same]).groupby(level=0).median().astype("float64")


def round_up(days: float, step: int = 30) -> int:
    """Days rounded up to a multiple of `step`."""
    return int(math.ceil(days / step) * step)


def window_value(customer_ids: pd.Series, times: pd.Series, values: pd.Series,
                 start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Sum of `values` per customer over the events in [start, end), customers with an event there."""
    inside = ((times >= start) & (times < end)).to_numpy(dtype=bool)
    return pd.Series(values.to_numpy(dtype="float64")[inside]).groupby(
        customer_ids.astype("str").to_numpy()[inside]).sum()


# ---------------------------------------------------------------- static columns

PERSONAL_WORDS = {
    "name", "firstname", "lastname", "surname", "fullname", "forename", "email", "mail", "phone", "mobile",
    "telephone", "tel", "cell", "fax", "address", "street", "addr", "zip", "zipcode", "postcode", "postal",
    "ssn", "socialsecurity", "nationalid", "passport", "iban", "swift", "bic", "accountnumber", "cardnumber",
    "pan", "taxid", "tin", "dob", "birth", "birthdate", "birthday", "dateofbirth", "ip", "ipaddress",
    "username", "login", "password", "latitude", "longitude", "lat", "lon", "lng", "gps",
}
"""Column-name words that mean personal data (never a model feature)."""
PROTECTED_WORDS = {"gender", "sex", "race", "racial", "ethnicity", "ethnic", "religion", "religious",
                   "nationality", "citizenship", "disability", "disabled", "orientation", "pregnancy", "pregnant"}
"""Column-name words of protected characteristics: deciding whom to serve by them can be unlawful
discrimination (equal-treatment and fair-lending rules), so they are not features unless a
compliance team decides otherwise."""
IDENTIFIER_WORDS = {"id", "uuid", "guid", "ref", "reference", "hash", "token"}
"""Column-name words that mean an identifier."""
OUTCOME_WORDS = {
    "churn", "churned", "churnflag", "exited", "exit", "attrition", "attrited", "leaver", "left", "closed",
    "closure", "cancelled", "canceled", "cancel", "cancellation", "terminated", "termination", "target",
    "label", "outcome", "retained", "lost", "defected", "deactivated",
}
"""Column-name words that mean the churn outcome or something recorded after it."""
OUTCOME_VALUES = ("closed", "churn", "cancel", "terminat", "exited", "attrit", "inactive", "deactivat",
                  "left", "lost", "dormant")
"""Text values that describe an outcome (a status column saying 'closed' is the label in disguise)."""
EXPORT_TIME_WORDS = {"tenure", "since", "last", "recency", "total", "cumulative", "lifetime", "ltv", "todate"}
"""Column-name words of measures taken at export time (tenure so far, totals to date, last activity):
as of the export, not of the cutoff, so they leak the label window into training rows."""
NEAR_UNIQUE_SHARE = 0.5
MOSTLY_EMPTY_SHARE = 0.95


@dataclass(frozen=True)
class StaticColumn:
    """One customers column considered as a static feature: kept (with its type) or left out (why)."""

    name: str
    kept: bool
    kind: str          # numeric | categorical (kept) or what it is (left out)
    why: str


def _words(name: str) -> set[str]:
    parts = tokens(name)
    joined = {"".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, min(len(parts), i + 3) + 1)}
    return set(parts) | joined | {normalise(name)}


def classify_static(customers: pd.DataFrame, skip: set[str], closed: pd.Series | None) -> list[StaticColumn]:
    """Decide, for every customers column not in `skip` (keys and dates of the contract), whether it
    becomes a static feature, in this order of rules (the first that applies wins):

    1. personal data by its name (`PERSONAL_WORDS`: name, email, phone, address, ssn, birth date, ...),
       or a protected characteristic (`PROTECTED_WORDS`: gender, race, religion, nationality, ...);
    2. an identifier by its name (`IDENTIFIER_WORDS`: id, uuid, reference, ...);
    3. the churn outcome or post-outcome by its name (`OUTCOME_WORDS`: churn, exited, closed, status
       values like 'closed', ...) or by its content: a text column whose values name an outcome
       (`OUTCOME_VALUES`), or (when closures exist) whose values tell closed from open customers
       almost perfectly (levels (almost) only of closed customers, `_separates`, cover >= 80% of them);
    4. measured at export time (`EXPORT_TIME_WORDS`: tenure, total, last, since, ...);
    5. a date (>= 90% of the values are ISO dates): derive a number such as an age instead;
    6. empty in more than 95% of the rows, or a single value: no information;
    7. near-unique text (> 50% distinct among the non-empty values): an identifier or free text;
    otherwise kept: numeric when every non-empty value is a number (CSV text '29.85' included),
    else categorical.
    """
    out: list[StaticColumn] = []
    closed_mask = closed.notna().to_numpy() if closed is not None and closed.notna().any() else None
    for name in customers.columns:
        if name in skip:
            continue
        column = customers[name]
        words = _words(str(name))
        present = column.notna() & (column.astype("str").str.strip() != "")
        non_empty = int(present.sum())
        numbers = numeric_values(column)
        text = column.astype("str").where(present)
        hit = sorted(words & PERSONAL_WORDS)
        if hit:
            out.append(StaticColumn(name, False, "personal data", f"personal data by its name ({hit[0]})"))
            continue
        hit = sorted(words & PROTECTED_WORDS)
        if hit:
            out.append(StaticColumn(name, False, "protected attribute",
                                    f"a protected characteristic ({hit[0]}): treating customers differently by it "
                                    "can be unlawful discrimination; add it only if your compliance team agrees"))
            continue
        hit = sorted(words & IDENTIFIER_WORDS)
        if hit:
            out.append(StaticColumn(name, False, "identifier", f"an identifier by its name ({hit[0]})"))
            continue
        hit = sorted(words & OUTCOME_WORDS)
        if hit:
            out.append(StaticColumn(name, False, "outcome",
                                    f"the churn outcome or recorded after it, by its name ({hit[0]})"))
            continue
        if numbers is None and non_empty:
            levels = text.dropna().str.lower().unique()
            told = sorted(v for v in levels if any(word in v for word in OUTCOME_VALUES))
            if told and len(levels) <= 20:
                out.append(StaticColumn(name, False, "outcome",
                                        f"a status recorded after the outcome (values such as {told[0]!r})"))
                continue
        if closed_mask is not None and non_empty and _separates(text if numbers is None else column, closed_mask):
            out.append(StaticColumn(name, False, "outcome",
                                    "post-outcome: its values tell closed from open customers almost perfectly"))
            continue
        hit = sorted(words & EXPORT_TIME_WORDS)
        if hit:
            own = " (the pipeline computes tenure_days itself)" if words & {"tenure", "since"} else ""
            out.append(StaticColumn(name, False, "export-time measure",
                                    f"measured at export time ({hit[0]}), not at the cutoff: it would leak the "
                                    f"future into training rows{own}"))
            continue
        if numbers is None and non_empty and date_share(column) >= 0.9:
            out.append(StaticColumn(name, False, "date", "a date: derive a number such as an age instead"))
            continue
        if non_empty <= (1 - MOSTLY_EMPTY_SHARE) * len(column):
            out.append(StaticColumn(name, False, "empty", f"empty in {1 - non_empty / max(len(column), 1):.0%} "
                                                          "of the rows"))
            continue
        if (numbers if numbers is not None else text).nunique() <= 1:
            out.append(StaticColumn(name, False, "constant", "a single value: no information"))
            continue
        if numbers is None and text.nunique() > NEAR_UNIQUE_SHARE * non_empty:
            out.append(StaticColumn(name, False, "near-unique text",
                                    f"near-unique text ({text.nunique():,} distinct values in {non_empty:,} rows): "
                                    "an identifier or free text"))
            continue
        kind = "numeric" if numbers is not None else "categorical"
        why = ("every non-empty value is a number" if kind == "numeric"
               else f"text with {text.nunique():,} distinct values")
        out.append(StaticColumn(name, True, kind, why))
    return out


def _separates(values: pd.Series, closed: np.ndarray) -> bool:
    """Levels held (almost) only by closed customers cover >= 80% of the closed ones (up to 50 levels).

    "Almost only": open customers at most 2% of the level, and at most a tenth of their share in the whole
    table. Where most customers left (a flag that marks 99% as churned, say) every level is 98% closed by
    chance; only a level nearly empty of the open customers the table does have is the outcome in disguise.
    """
    levels = values.astype("str").where(values.notna())
    if levels.nunique() > 50 or closed.sum() < 5:
        return False
    open_overall = 1.0 - float(closed.mean())
    if open_overall <= 0:
        return False  # everyone closed: nothing to tell apart
    table = pd.crosstab(levels.fillna("(empty)").to_numpy(), closed)
    if True not in table.columns:
        return False
    share_open = 1.0 - table[True] / table.sum(axis=1)
    only_closed = table[True][share_open <= min(0.02, open_overall / 10)].sum()
    return bool(only_closed >= 0.8 * closed.sum())


# ---------------------------------------------------------------- value of a snapshot

VALUE_WORDS: tuple[str, ...] = ("charge", "charges", "fee", "fees", "revenue", "value", "spend", "amount",
                                "price", "premium", "balance", "cost")
"""Names of a money-looking customers column, best first."""
NOT_MONTHLY_WORDS = {"total", "cumulative", "lifetime", "annual", "yearly", "year", "ltv", "todate"}


def value_column_candidates(customers: pd.DataFrame, skip: set[str]) -> list[tuple[str, str]]:
    """Numeric customers columns that may hold each customer's value per month, best first, with
    a note: a money word in the name (`VALUE_WORDS`, earlier words first; 'monthly' in the name
    first), every non-empty value a number, the median above zero; names saying the value is
    not per month (total, lifetime, annual, ...) are passed over."""
    found: list[tuple[int, int, str, str]] = []
    for name in customers.columns:
        if name in skip:
            continue
        words = _words(str(name))
        rank = next((i for i, w in enumerate(VALUE_WORDS) if w in words), None)
        if rank is None or words & NOT_MONTHLY_WORDS:
            continue
        numbers = numeric_values(customers[name])
        if numbers is None or not numbers.notna().any() or not numbers.median() > 0:
            continue
        monthly = 0 if words & {"monthly", "month", "pm", "mrr"} else 1
        found.append((monthly, rank, str(name), f"numeric, median {numbers.median():,.2f}"))
    return [(name, note) for _, _, name, note in sorted(found)]
