"""Per-customer reasons in plain words, from LightGBM's own TreeSHAP contributions.

Each customer's strongest risk-raising features are turned into sentences a care agent
can read ("2 complaints still open, oldest 9 days") from the templates kept in the
feature catalogue (`features/catalogue.py`). Contributions are computed on the raw
booster: calibration is monotone, so it does not change which features drive the risk.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd


_NAN_WORD = re.compile(r"\bnan\b")
# "1 days" -> "1 day": templates are written for the plural.
_ONE_PLURAL = re.compile(r"(?<![\d.,])1 (day|hour|month|complaint|transaction|point|product)s\b")


class _Row(dict):
    """Template values: missing keys render as 'unknown' instead of failing."""

    def __missing__(self, key: str) -> str:
        return "unknown"


def render_reason(feature: str, row: dict[str, object], templates: dict[str, str]) -> str:
    """One sentence for one feature of one customer."""
    value = row.get(feature)
    template = templates.get(feature)
    label = feature.replace("_", " ")
    if isinstance(value, float) and math.isnan(value):
        # Missing means "never happened" here (no transaction in the window, no survey ever).
        return f"{label}: none on record"
    if template:
        try:
            shown = int(value) if isinstance(value, float) and value.is_integer() else value
            text = template.format_map(_Row(row, value=shown))
            if not _NAN_WORD.search(text):
                return _ONE_PLURAL.sub(r"1 \1", text)
        except (ValueError, TypeError):
            pass
    if isinstance(value, float):
        return f"{label}: {value:,.0f}" if value.is_integer() else f"{label}: {value:,.1f}"
    return f"{label}: {value}"


def top_drivers(contributions: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column positions and values of each row's k largest positive contributions."""
    values = contributions.drop(columns=["base_value"], errors="ignore").to_numpy(dtype=float)
    k = min(k, values.shape[1])
    # argpartition then sort just the k: O(n f) instead of a full sort per row.
    part = np.argpartition(-values, kth=k - 1, axis=1)[:, :k]
    part_values = np.take_along_axis(values, part, axis=1)
    order = np.argsort(-part_values, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(part_values, order, axis=1)


def reason_codes(frame: pd.DataFrame, contributions: pd.DataFrame, templates: dict[str, str],
                 k: int = 3) -> pd.DataFrame:
    """The top-k reasons (features raising risk) per row of `frame`, as text.

    Returns one row per input row with `reason_1..k` (sentences) and `driver_1..k`
    (feature names); reasons that lower risk are never shown, so a slot may be empty.
    """
    features = [c for c in contributions.columns if c != "base_value"]
    positions, values = top_drivers(contributions, k + 2)
    records = frame.to_dict(orient="records")
    out: dict[str, list[object]] = {f"{kind}_{i + 1}": [] for i in range(k) for kind in ("reason", "driver")}
    for row_index, row in enumerate(records):
        chosen: list[tuple[str, str]] = []
        for position, value in zip(positions[row_index], values[row_index]):
            if value <= 0 or len(chosen) == k:
                break
            feature = features[position]
            text = render_reason(feature, row, templates)
            # Related features tell one story ("81,258 moved out in one go 45 days ago" and the same
            # with ", 17x their usual transaction"): say it once, in its fullest form, where it ranks.
            same = [i for i, (_, existing) in enumerate(chosen) if existing.startswith(text) or text.startswith(existing)]
            if not same:
                chosen.append((feature, text))
            elif len(text) > len(chosen[same[0]][1]):
                chosen[same[0]] = (chosen[same[0]][0], text)
        for i in range(k):
            feature, text = chosen[i] if i < len(chosen) else (None, None)
            out[f"reason_{i + 1}"].append(text)
            out[f"driver_{i + 1}"].append(feature)
    columns = [f"{kind}_{i + 1}" for kind in ("reason", "driver") for i in range(k)]
    return pd.DataFrame(out, index=frame.index)[columns]
