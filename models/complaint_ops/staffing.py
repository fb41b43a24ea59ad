"""Agents needed per week to answer the forecast complaints within each tier's response target.

Workload model (Erlang C, one queue per tier, documented in the README):

- the week's forecast (the total series; mean or upper interval bound,
  `complaints.staffing.forecast_bound`) is split over the tiers by their share in the
  last `tier_mix_weeks` whole weeks;
- complaints of a tier arrive at random (Poisson) over the care team's open hours:
  rate = volume / `open_hours_per_week`; each takes `handling_hours[tier]` on average,
  so the offered load is A = rate x handling time agents (Erlangs);
- with N agents the chance a complaint waits longer than the tier's first-response
  target t (`features.complaint_targets`, counted in open hours) is
  C(N, A) exp(-(N - A) t / handling time), C the Erlang C probability of waiting;
  the agents on duty are the fewest N > A that answer `service_level` of complaints
  within t and keep occupancy A / N at most `max_occupancy` (a tier without a response
  target needs only the occupancy bound);
- agents to schedule = agents on duty / (1 - `shrinkage`), rounded up.

Erlang C is a closed formula; the workforce library that implements it (pyworkforce)
pulls in a 20 MB optimisation solver, so the formula is written here (Erlang B recursion,
numerically stable for hundreds of agents).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from features.contract import PRIORITY_TIERS
from features.settings import TierTarget
from models.complaint_ops.forecast import TOTAL, WEEK
from models.complaint_ops.settings import StaffingSettings

MAX_AGENTS = 100_000
PLAN_COLUMNS = ["week_start", "tier", "share", "forecast_complaints", "staffed_for_complaints", "load_erlangs",
                "handling_hours", "response_target_hours", "agents_on_duty", "agents_to_schedule",
                "service_level", "occupancy"]


def erlang_c(agents: int, load: float) -> float:
    """Probability that an arriving complaint waits (Erlang C), for `agents` > `load` Erlangs."""
    if agents <= load:
        return 1.0
    blocking = 1.0
    for k in range(1, agents + 1):
        blocking = load * blocking / (k + load * blocking)
    return agents * blocking / (agents - load * (1.0 - blocking))


def service_level(agents: int, load: float, target_hours: float, handling_hours: float) -> float:
    """Share of complaints answered within `target_hours` with `agents` agents."""
    if agents <= load:
        return 0.0
    return 1.0 - erlang_c(agents, load) * math.exp(-(agents - load) * target_hours / handling_hours)


def agents_needed(load: float, target_hours: float | None, handling_hours: float, level: float,
                  max_occupancy: float) -> int:
    """Fewest agents meeting the service level within the target and the occupancy cap (0 for no load)."""
    if load <= 0:
        return 0
    agents = max(1, math.ceil(load / max_occupancy - 1e-9))
    if agents <= load:
        agents = math.floor(load) + 1
    if target_hours is None:
        return agents
    while service_level(agents, load, target_hours, handling_hours) < level:
        agents += 1
        if agents > MAX_AGENTS:
            raise ValueError(f"more than {MAX_AGENTS} agents needed for a load of {load:.1f} Erlangs")
    return agents


def tier_mix(complaints: pd.DataFrame, last_week_end: pd.Timestamp, weeks: int) -> pd.Series:
    """Share of each tier among complaints of the last `weeks` whole weeks (tiers absent there: 0)."""
    opened = pd.to_datetime(complaints["opened_at"])
    recent = (opened >= last_week_end - weeks * WEEK) & (opened < last_week_end) & complaints["priority"].notna()
    counts = complaints.loc[recent, "priority"].astype("str").value_counts()
    counts = counts.reindex(list(PRIORITY_TIERS), fill_value=0)
    total = counts.sum()
    return (counts / total) if total else counts.astype(float)


def staffing_plan(forecast: pd.DataFrame, complaints: pd.DataFrame, targets: dict[str, TierTarget],
                  settings: StaffingSettings, levels: tuple[int, ...]) -> pd.DataFrame:
    """Per forecast week and tier: volume, load, agents on duty and to schedule, service level, occupancy."""
    total = forecast.loc[forecast["series"] == TOTAL].sort_values("week_start")
    columns = PLAN_COLUMNS
    if total.empty or "priority" not in complaints.columns:
        return pd.DataFrame(columns=columns)
    bound = f"upper_{max(levels)}" if settings.forecast_bound == "upper" else "forecast"
    mix = tier_mix(complaints, pd.Timestamp(total["week_start"].iloc[0]), settings.tier_mix_weeks)
    rows = []
    for week, mean, volume in zip(total["week_start"], total["forecast"], total[bound]):
        for tier in PRIORITY_TIERS:
            share = float(mix.get(tier, 0.0))
            handling = float(settings.handling_hours.get(tier, np.nan))
            if share == 0 or not handling > 0:
                continue
            target = targets[tier].first_response_hours if tier in targets else None
            load = volume * share / settings.open_hours_per_week * handling
            agents = agents_needed(load, target, handling, settings.service_level, settings.max_occupancy)
            rows.append({"week_start": week, "tier": tier, "share": share,
                         "forecast_complaints": float(mean * share), "staffed_for_complaints": float(volume * share),
                         "load_erlangs": load, "handling_hours": handling, "response_target_hours": target,
                         "agents_on_duty": agents,
                         "agents_to_schedule": math.ceil(agents / (1.0 - settings.shrinkage) - 1e-9),
                         "service_level": (service_level(agents, load, target, handling)
                                           if target is not None and agents > 0 else None),
                         "occupancy": load / agents if agents else 0.0})
    return pd.DataFrame(rows, columns=columns)
