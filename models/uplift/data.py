"""The uplift training rows: customers at a cutoff who were contacted, or kept as control, just after it.

Definition (one row per customer and cutoff):
- cutoffs are month starts (every `uplift.cutoff_spacing_months`) from the month of the first
  contact record up to the last one whose label window [cutoff, cutoff + horizon) ends by the
  data's as_of;
- a customer is a row at cutoff c when they are in the churn population at c (same rule as
  the churn table) and their *first* contact record in [c, c + `uplift.treatment_window_days`)
  has a known treatment: 1 = contacted, 0 = randomised control (not contacted). That is the
  decision a list made at c leads to; records with an unknown treatment are not rows (counted);
- features: exactly the churn model's point-in-time features at c (events before c, the same
  code, RFM edges of the whole population at c), so the model scores the same table `churn score`
  builds; the contact that makes the row is after c and never in them;
- outcome: the churn label of c, churned in [c, c + horizon), and future_value in that window.
The contact lands inside the label window, so the label measures its effect within the horizon.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from features._grouping import cutoff_us, datetimes_us
from features.build import (ExclusionSink, FeatureValues, feature_values, no_cutoff_message, prepare,
                            sampled_tables, tables_as_of, training_cutoffs, training_rows_at)
from features.contract import Tables
from features.ids import is_in
from features.labels import label_arrays, population_reasons
from features.settings import FeatureSettings, LabelSettings, SettingsProblem
from models.uplift.settings import UpliftSettings

TREATMENT_COLUMNS: tuple[str, ...] = ("treatment", "action", "contacted_at")
"""Columns of the uplift table that describe the contact (never model features)."""


def control_group_problem(contacts: pd.DataFrame | None) -> str | None:
    """Why no uplift can be learned from this contacts table (None when it can)."""
    if contacts is None:
        return "there is no contacts table (data.tables.contacts), so there is no contact history to learn from"
    if "treatment" not in contacts.columns:
        return ("the contacts table has no treatment column, so there is no randomised control group "
                "(treatment = 0: picked for a contact and deliberately not contacted)")
    treatment = pd.to_numeric(contacts["treatment"], errors="coerce")
    if not (treatment == 0).any():
        return (f"the contacts table has no randomised control group: none of its {len(contacts):,} rows has "
                "treatment = 0")
    if not (treatment == 1).any():
        return "the contacts table has no contacted customer (treatment = 1), only controls"
    return None


def uplift_cutoffs(tables: Tables, labels: LabelSettings, settings: UpliftSettings) -> list[pd.Timestamp]:
    """Month starts from the first contact's month to the last whose label window ends by as_of."""
    contacts = tables.contacts
    if contacts is None or contacts.empty:
        return []
    first = pd.Timestamp(contacts["contacted_at"].min())
    last_allowed = tables_as_of(tables) - pd.Timedelta(days=labels.horizon_days)
    start = pd.Timestamp(year=first.year, month=first.month, day=1)
    cutoffs: list[pd.Timestamp] = []
    cutoff = start
    while cutoff <= last_allowed:
        cutoffs.append(pd.Timestamp(cutoff).as_unit("us"))
        cutoff = cutoff + pd.DateOffset(months=settings.cutoff_spacing_months)
    return cutoffs


def contact_assignments(contacts: pd.DataFrame, cutoff: pd.Timestamp, window_days: int) -> tuple[pd.DataFrame, int]:
    """Each customer's first contact record in [cutoff, cutoff + window): treatment, action, time.

    Returns the assignments and how many records in the window had no known treatment (left out).
    """
    start = cutoff_us(cutoff)
    end = start + window_days * 86_400_000_000
    time = datetimes_us(contacts["contacted_at"])
    inside = (time >= start) & (time < end)
    window = contacts.loc[inside, ["customer_id", "contacted_at", "action", "treatment"]].copy()
    window["customer_id"] = window["customer_id"].astype("str")
    treatment = pd.to_numeric(window["treatment"], errors="coerce")
    unknown = int(treatment.isna().sum())
    window = window.assign(treatment=treatment)[treatment.notna()]
    window = window.sort_values(["customer_id", "contacted_at", "treatment"], kind="stable")
    first = window.drop_duplicates("customer_id", keep="first")
    return (pd.DataFrame({"customer_id": first["customer_id"].to_numpy(),
                          "treatment": first["treatment"].to_numpy(dtype=np.int64),
                          "action": first["action"].astype("str").to_numpy(),
                          "contacted_at": first["contacted_at"].to_numpy()}), unknown)


def iter_uplift_tables(tables: Tables, features: FeatureSettings, labels: LabelSettings,
                       settings: UpliftSettings, cutoffs: list[pd.Timestamp] | None = None
                       ) -> Iterator[tuple[pd.DataFrame, dict[str, int]]]:
    """Uplift rows one cutoff at a time (features, churned, future_value, treatment, action,
    contacted_at), with counts of what was left out at that cutoff and why."""
    if tables.contacts is None:
        return
    cutoffs = uplift_cutoffs(tables, labels, settings) if cutoffs is None else cutoffs
    if not cutoffs:
        return
    rows = UpliftRows(tables, features, labels, settings, len(cutoffs) > 1)
    for cutoff in cutoffs:
        frame, counts, _ = rows.at(cutoff)
        yield frame, counts


class UpliftRows:
    """The uplift rows of the training sample's customers (as the churn table's: `sampled_tables`), cutoff by
    cutoff, from the tables prepared once."""

    def __init__(self, tables: Tables, features: FeatureSettings, labels: LabelSettings, settings: UpliftSettings,
                 many_cutoffs: bool) -> None:
        self.contacts = tables.contacts
        self.features, self.labels, self.settings = features, labels, settings
        self.sampled, self.everyone = sampled_tables(tables, labels)
        self.prepared = prepare(self.sampled, features, labels.value_column, many_cutoffs=many_cutoffs,
                                customer_value_column=labels.customer_value_column, all_customers=self.everyone)
        self.position = pd.Index(self.prepared.customer_ids.to_numpy(dtype=object))

    def at(self, cutoff: pd.Timestamp) -> tuple[pd.DataFrame, dict[str, int], FeatureValues | None]:
        """One cutoff's rows, what was left out, and the population's feature values when a row needed them
        (every customer's, as the training rows of the cutoff compute them: they can take them, `features_at`)."""
        prepared, labels = self.prepared, self.labels
        assigned, unknown = contact_assignments(self.contacts, cutoff, self.settings.treatment_window_days)
        moment = cutoff_us(cutoff)
        population = population_reasons(prepared, moment, labels) < 0
        where = self.position.get_indexer(assigned["customer_id"])
        known = where >= 0
        in_population = np.zeros(len(assigned), dtype=bool)
        in_population[known] = population[where[known]]
        counts = {"contact_records_unknown_treatment": unknown}
        if self.everyone is None:
            counts["contacted_not_in_population"] = int((~in_population).sum())
        else:
            in_sample = is_in(assigned["customer_id"], self.sampled.customers["customer_id"])
            counts["contacted_not_in_population"] = int((in_sample & ~in_population).sum())
            counts["contacted_not_in_training_sample"] = int((~in_sample).sum())
        assigned = assigned[in_population]
        if assigned.empty:
            return pd.DataFrame(), counts, None
        rows = np.zeros(prepared.n_customers, dtype=bool)
        rows[where[in_population]] = True
        positions = np.flatnonzero(rows)
        # computed over the whole population (RFM edges as in the churn table), kept for the rows only
        values = feature_values(prepared, moment, self.features, population, horizon_days=labels.horizon_days)
        columns: dict[str, object] = {
            "customer_id": prepared.customer_ids.iloc[positions].reset_index(drop=True),
            "cutoff": np.full(len(positions), moment, dtype=np.int64).view("datetime64[us]"),
        }
        columns.update({name: array[positions] for name, array in values.items()})
        churned, value = label_arrays(prepared, moment, labels)
        frame = pd.DataFrame(columns).assign(churned=churned[positions], future_value=value[positions])
        return frame.merge(assigned, on="customer_id", how="left", validate="one_to_one"), counts, values


def iter_training_and_uplift_tables(tables: Tables, features: FeatureSettings, labels: LabelSettings,
                                    settings: UpliftSettings, on_excluded: ExclusionSink | None = None,
                                    first_event: pd.Timestamp | None = None
                                    ) -> Iterator[tuple[str, pd.DataFrame, dict[str, int]]]:
    """The training rows (as `features.build.iter_training_tables`, kind "train") and the uplift rows (as
    `iter_uplift_tables`, kind "uplift", with their counts) in one pass over the union of their cutoffs, oldest
    first: the tables prepared once, and each cutoff both tables need computed once (every training cutoff is an
    uplift cutoff when the contact history goes back as far: on the 1M bank 12 of the 28).

    The same frames as the two passes, in the same order within each kind. `first_event`: as
    `training_cutoffs`'."""
    training = training_cutoffs(tables, labels, first_event)
    if not training:
        raise SettingsProblem("labels.horizon_days", no_cutoff_message(tables, labels, first_event))
    uplift = uplift_cutoffs(tables, labels, settings) if tables.contacts is not None else []
    training_at = {cutoff_us(c): c for c in training}  # each kind keeps its own cutoff values (and their unit)
    uplift_at = {cutoff_us(c): c for c in uplift}
    every = sorted(training_at.keys() | uplift_at.keys())
    rows = UpliftRows(tables, features, labels, settings, len(every) > 1)
    for moment in every:
        values: FeatureValues | None = None
        if moment in uplift_at:  # first: the training rows then take its values (`features_at`)
            frame, counts, values = rows.at(uplift_at[moment])
            yield "uplift", frame, counts
        if moment in training_at:
            frame = training_rows_at(rows.prepared, training_at[moment], features, labels, on_excluded, values=values)
            if frame is not None:
                yield "train", frame, {}


def uplift_table(pieces: Iterable[tuple[pd.DataFrame, dict[str, int]]]) -> tuple[pd.DataFrame, dict[str, int]]:
    """The uplift table of its cutoffs' rows, and the totals of what was left out."""
    frames: list[pd.DataFrame] = []
    totals: dict[str, int] = {}
    for frame, counts in pieces:
        for key, count in counts.items():
            totals[key] = totals.get(key, 0) + count
        if len(frame):
            frames.append(frame)
    if not frames:
        return pd.DataFrame(), totals
    return pd.concat(frames, ignore_index=True), totals


def build_uplift_table(tables: Tables, features: FeatureSettings, labels: LabelSettings,
                       settings: UpliftSettings, cutoffs: list[pd.Timestamp] | None = None
                       ) -> tuple[pd.DataFrame, dict[str, int]]:
    """Every uplift row (see the module docstring) and the totals of what was left out."""
    return uplift_table(iter_uplift_tables(tables, features, labels, settings, cutoffs))
