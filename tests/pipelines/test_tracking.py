"""Which MLflow store a stage uses: the config's, unless the user's environment names another."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest

from pipelines.config import Config, parse_config
from pipelines.tracking import configure_tracking


@pytest.fixture
def mlflow_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MLFLOW_TRACKING_URI from the environment; MLflow's own global URI put back afterwards."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    yield
    mlflow.set_tracking_uri(before)
    os.environ.pop("MLFLOW_TRACKING_URI", None)


def config(folder: Path, name: str) -> Config:
    return parse_config({"data": {"tables": {"customers": {"path": str(folder / "customers.csv")}}},
                         "tracking": {"tracking_uri": f"sqlite:///{folder}/{name}.db",
                                      "artifact_location": str(folder / f"{name}-artifacts")}})


def test_a_second_config_in_the_same_process_uses_its_own_store(tmp_path: Path, mlflow_state: None) -> None:
    """MLflow writes the URI it is given into MLFLOW_TRACKING_URI, which wins over `tracking.tracking_uri`:
    left there, the first config's store would be every later config's in the same process (a notebook,
    a scheduler; in the tests, a store a finished test had already removed)."""
    first, second = config(tmp_path, "first"), config(tmp_path, "second")
    configure_tracking(first)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    configure_tracking(second)
    assert mlflow.get_tracking_uri() == f"sqlite:///{tmp_path}/second.db"
    assert mlflow.get_experiment_by_name(second.tracking.experiment) is not None
    assert (tmp_path / "second.db").is_file()


def test_the_users_own_tracking_uri_still_wins(tmp_path: Path, mlflow_state: None,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    users = f"sqlite:///{tmp_path}/shared.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", users)
    configure_tracking(config(tmp_path, "first"))
    configure_tracking(config(tmp_path, "second"))
    assert os.environ["MLFLOW_TRACKING_URI"] == users and mlflow.get_tracking_uri() == users
    assert (tmp_path / "shared.db").is_file() and not (tmp_path / "first.db").exists()
