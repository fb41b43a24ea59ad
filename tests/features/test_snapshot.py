"""A snapshot whose churn is a flag: the customers' dates derived from the flag and the tenure (features/snapshot.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.settings import ChurnFlagSettings
from features.snapshot import flag_values, flag_window_start, tenure_in_days, with_flag_dates

AS_OF = pd.Timestamp("2026-07-01")
START = pd.Timestamp("2026-04-02")  # as_of - 90 days


def test_the_usual_flag_spellings_are_read_and_anything_else_is_named() -> None:
    values = pd.Series(["Yes", "no", " TRUE ", "false", "1", "0", "1.0", "0.0", "Y", "n", "t", "F", "maybe", None, "2"])
    churned, unreadable = flag_values(values, None)
    assert churned.tolist() == [True, False, True, False, True, False, True, False, True, False, True, False,
                                False, False, False]
    assert np.flatnonzero(unreadable).tolist() == [12, 13, 14]
    booleans = pd.Series([True, False, True])
    assert flag_values(booleans, None)[0].tolist() == [True, False, True]
    assert flag_values(pd.Series([1.0, 0.0, np.nan]), None)[1].tolist() == [False, False, True]


def test_listed_churned_values_make_every_other_value_a_stayer() -> None:
    values = pd.Series(["Attrited Customer", "Existing Customer", "attrited customer ", "", None])
    churned, unreadable = flag_values(values, ["Attrited Customer"])
    assert churned.tolist() == [True, False, True, False, False]
    assert unreadable.tolist() == [False, False, False, True, True]
    numbers = pd.Series(["1.0", "2", "0", "1"])
    assert flag_values(numbers, [1])[0].tolist() == [True, False, False, True]  # as numbers: 1 is 1.0
    assert flag_values(numbers, ["2"])[0].tolist() == [False, True, False, False]
    # YAML reads an unquoted `[Yes]` as [true]: it means the usual words for churned, not the text "True"
    assert flag_values(pd.Series(["Yes", "No", "TRUE"]), [True])[0].tolist() == [True, False, True]


@pytest.mark.parametrize(("unit", "expected"), [("days", [1, 1, 45, 3]), ("weeks", [1, 7, 315, 18]),
                                                 ("months", [1, 30, 1370, 76]), ("years", [1, 365, 16436, 913])])
def test_tenure_is_whole_days_in_its_unit_and_a_new_customer_counts_one_day(unit: str, expected: list[int]) -> None:
    days, unreadable = tenure_in_days(pd.Series(["0", "1", "45", "2.5"]), unit)
    assert days.tolist() == expected and not unreadable.any()
    _, bad = tenure_in_days(pd.Series(["3", "-1", "x", None, "inf"]), "months")
    assert bad.tolist() == [False, True, True, True, True]


def snapshot() -> pd.DataFrame:
    return pd.DataFrame({"customer_id": ["A", "B", "C", "D"], "Churn": ["Yes", "No", "No", "Yes"],
                         "tenure": ["12", "0", "3", "40"], "plan": ["x", "y", "x", "y"]})


def test_the_flag_gives_each_churner_a_closure_at_the_windows_start_and_the_tenure_a_signup() -> None:
    customers = snapshot()
    before = customers.copy()
    flag = ChurnFlagSettings(column="Churn", tenure_column="tenure", tenure_unit="months")
    derived, problems = with_flag_dates(customers, flag, AS_OF, 90)
    assert problems == []
    pd.testing.assert_frame_equal(customers, before)  # the input is not changed
    assert flag_window_start(AS_OF, 90) == START
    assert derived["closed_date"].tolist()[0] == START and derived["closed_date"].isna().tolist() == [False, True,
                                                                                                      True, False]
    tenure_at_start = (START - derived["signup_date"]).dt.days.tolist()
    assert tenure_at_start == [365, 1, 91, 1218]  # 12, 0 (one day), 3 and 40 months of 365.25 / 12 days
    assert list(derived.columns[:4]) == list(customers.columns)  # the file's columns kept as they are


def test_without_a_tenure_everyone_is_present_from_the_day_before_the_window() -> None:
    derived, problems = with_flag_dates(snapshot(), ChurnFlagSettings(column="Churn"), AS_OF, 30)
    assert problems == [] and (derived["signup_date"] == pd.Timestamp("2026-05-31")).all()


def test_the_files_own_signup_dates_are_kept_and_one_who_joined_inside_the_window_closes_after_joining() -> None:
    customers = snapshot().drop(columns="tenure").assign(signup_date=["2020-01-01", "2021-05-05", "2026-05-01",
                                                                      "2026-05-10"])
    derived, problems = with_flag_dates(customers, ChurnFlagSettings(column="Churn"), AS_OF, 90)
    assert problems == [] and derived["signup_date"].tolist() == customers["signup_date"].tolist()
    assert derived["closed_date"].tolist()[0] == START and derived["closed_date"].tolist()[3] == pd.Timestamp("2026-05-10")


def test_unreadable_flags_or_tenures_and_conflicting_dates_are_problems_naming_rows_and_fix() -> None:
    customers = snapshot()
    customers.loc[1, "Churn"] = "maybe"
    customers.loc[2, "tenure"] = "-3"
    flag = ChurnFlagSettings(column="Churn", tenure_column="tenure")
    derived, problems = with_flag_dates(customers, flag, AS_OF, 90)
    assert "closed_date" not in derived.columns  # nothing derived from bad values
    flag_problem, tenure_problem = problems
    assert (flag_problem.column, flag_problem.rows) == ("Churn", 1) and "maybe" in flag_problem.message
    assert flag_problem.examples == ("row 2 (customer B)",) and "churned_values" in flag_problem.fix
    assert (tenure_problem.column, tenure_problem.rows) == ("tenure", 1) and "-3" in tenure_problem.message
    dated = snapshot().assign(closed_date=["", "", "", "2026-05-01"])
    _, problems = with_flag_dates(dated, ChurnFlagSettings(column="Churn"), AS_OF, 90)
    assert [p.column for p in problems] == ["closed_date"] and "one or the other" in problems[0].fix
    _, problems = with_flag_dates(snapshot(), ChurnFlagSettings(column="Exited"), AS_OF, 90)
    assert [p.column for p in problems] == ["Exited"] and "labels.churn_flag.column" in problems[0].fix
