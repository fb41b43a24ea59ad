"""`churn features` with `features.engine: duckdb` against the pandas engine, on a small generated bank.

The relational engine reads the event files itself (never loaded into pandas), so it requires a passing
`churn validate` of exactly those files. Its five outputs must be the pandas engine's: the same rows,
columns and types, every cell equal (both engines sum money, tones and durations exactly, so the BTYD
fits on those sums are the same too).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

import pipelines.features as features_stage
import pipelines.relational as relational
from pipelines.cli import EXIT_REFUSED, app
from pipelines.config import Config
from features.catalogue import catalogue
from features.settings import FeatureSettings
from pipelines.features import EXCLUDED_FILE, SCORE_FILE, TRAIN_FILE, UPLIFT_FILE
from pipelines.features import run as build_features
from pipelines.generate import run as generate
from pipelines.io import StageError
from pipelines.validate import run as validate
from tests.pipelines.bank import bank_config


@pytest.fixture(scope="module")
def small_bank(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("engine-bank") / "raw"
    generate(1_500, 5, raw, "2023-01-01", 16, "parquet")
    return raw


def _config(raw: Path, work: Path, engine: str, definition: str = "closure") -> Config:
    cfg = bank_config(raw, work)
    features = cfg.features.model_copy(update={"engine": engine,
                                               "duckdb": cfg.features.duckdb.model_copy(update={"threads": 2})})
    labels = cfg.labels.model_copy(update={"definition": definition,
                                           "cutoffs": cfg.labels.cutoffs.model_copy(update={"count": 3})})
    uplift = cfg.uplift.model_copy(update={"cutoff_spacing_months": 4})  # a few uplift cutoffs: a cheaper test
    return cfg.model_copy(update={"features": features, "labels": labels, "uplift": uplift})


def _rows_per_statement(cfg: Config, rows: int) -> Config:
    duckdb = cfg.features.duckdb.model_copy(update={"rows_per_statement": rows})
    return cfg.model_copy(update={"features": cfg.features.model_copy(update={"duckdb": duckdb})})


def assert_same_table(got: pd.DataFrame, expected: pd.DataFrame, name: str) -> None:
    assert list(got.columns) == list(expected.columns), name
    assert len(got) == len(expected) > 0, name
    assert got.dtypes.equals(expected.dtypes), name
    for column in got.columns:
        pd.testing.assert_series_equal(got[column], expected[column], check_exact=True, obj=f"{name}.{column}")


@pytest.mark.parametrize("definition", ["closure", "inactivity"])
def test_duckdb_engine_writes_the_pandas_engines_tables(small_bank: Path, tmp_path: Path, definition: str,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """All cutoffs in one streamed query (closure), and as on a big bank (inactivity): one query per cutoff,
    each of 3 buckets of customers (`features.duckdb.rows_per_statement`), the inputs cut into them once,
    and the scoring table handed over and written in pieces of 97 rows."""
    if definition == "inactivity":
        monkeypatch.setattr(relational, "QUERY_ROWS", 1)
        monkeypatch.setattr(features_stage, "SCORE_PIECE_ROWS", 97)
    outputs = {}
    for engine in ("pandas", "duckdb"):
        cfg = _config(small_bank, tmp_path / engine, engine, definition)
        if definition == "inactivity":
            cfg = _rows_per_statement(cfg, 600)
        validate(cfg)
        said: list[str] = []
        summary = build_features(cfg, said.append)
        assert summary["engine"] == engine
        outputs[engine] = (cfg, summary)
        if engine == "duckdb" and definition == "inactivity":  # a long bucketed run says where it is
            assert any(m.startswith("cutting the input tables into 3 buckets") for m in said), said
            for step in ("purchase histories", "features and labels"):
                assert f"{step}: bucket 3 of 3 of customers done" in said, said
    (pandas_cfg, pandas_summary), (duck_cfg, duck_summary) = outputs["pandas"], outputs["duckdb"]
    for key in ("as_of", "train", "score", "feature_count", "features"):
        assert duck_summary[key] == pandas_summary[key], key
    assert duck_summary["uplift"]["rows"] == pandas_summary["uplift"]["rows"] > 0
    assert duck_summary["uplift"]["left_out"] == pandas_summary["uplift"]["left_out"]
    pieces = pq.ParquetFile(Path(duck_cfg.paths.features_dir) / SCORE_FILE).num_row_groups
    assert pieces == (-(-duck_summary["score"]["rows"] // 97) if definition == "inactivity" else 1)
    for name in (TRAIN_FILE, SCORE_FILE, EXCLUDED_FILE, UPLIFT_FILE):
        got = pd.read_parquet(Path(duck_cfg.paths.features_dir) / name)
        expected = pd.read_parquet(Path(pandas_cfg.paths.features_dir) / name)
        if name == EXCLUDED_FILE and definition == "closure":
            assert got.empty and expected.empty
            continue
        assert_same_table(got, expected, name)


def test_training_sample_builds_rows_for_a_uniform_sample_of_customers(small_bank: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """`labels.max_training_customers`: both engines give the training and uplift rows of the same sampled
    customers, the full table's rows for them (but for the population-relative columns, the sample's own);
    the scoring table keeps everyone, and the customers left out are listed in excluded.parquet. DuckDB in
    queries of 2 cutoffs, as on a big bank: the sample's rows of every table written once for all of them,
    and in a second run into 3 buckets of customers. The pandas engine also as on a bank too large to hold
    whole (`reads_in_two_parts`: the sample's events read in batches, then the scoring cutoff's rows as
    `churn score` reads them): the very tables of the whole read."""
    from pipelines.tables import input_rows

    monkeypatch.setattr(relational, "QUERY_ROWS", 1_200)
    outputs = {}
    said: list[str] = []
    for engine, limit in (("pandas", None), ("pandas", 600), ("pandas-split", 600), ("duckdb", 600),
                          ("duckdb-buckets", 600)):
        cfg = _config(small_bank, tmp_path / f"{engine}-{limit}", engine.split("-")[0], "inactivity")
        cfg = cfg.model_copy(update={"labels": cfg.labels.model_copy(update={"max_training_customers": limit})})
        if engine == "duckdb-buckets":
            cfg = _rows_per_statement(cfg, 500)
        if engine == "pandas-split":  # every row just above the limit; each part below it
            cfg = split_cfg = cfg.model_copy(update={"features": cfg.features.model_copy(
                update={"engine": "auto", "pandas_max_rows": input_rows(cfg) - 1})})
            assert features_stage.reads_in_two_parts(cfg)
        validate(cfg)
        summary = build_features(cfg, said.append if engine == "pandas-split" else None)
        folder = Path(cfg.paths.features_dir)
        outputs[engine, limit] = summary, {name: pd.read_parquet(folder / name)
                                           for name in (TRAIN_FILE, SCORE_FILE, EXCLUDED_FILE, UPLIFT_FILE)}
    (_, full), (summary, sampled), (duck_summary, duck) = (outputs["pandas", None], outputs["pandas", 600],
                                                           outputs["duckdb", 600])
    split_summary, split = outputs["pandas-split", 600]
    assert split_summary["engine"] == "pandas" and any("features.engine auto: pandas" in m and "in two parts" in m
                                                       for m in said), said
    assert any(m.startswith("the training sample's rows loaded") for m in said), said
    for key in ("as_of", "training_sample", "train", "score", "uplift", "features", "outputs"):  # outputs: sha256
        assert split_summary[key] == summary[key], key
    assert split_summary["built_from"]["tables"] == summary["built_from"]["tables"]
    # the history starts where the whole data's does, not at the sample's first event (training cutoffs)
    from features.build import training_cutoffs
    from features.contract import TABLES
    from pipelines.tables import load_sampled_tables

    tables, sample = load_sampled_tables(cfg, whole=("customers", "contacts"))
    first = min(pd.read_parquet(small_bank / f"{name}.parquet", columns=[TABLES[name].event_time]).iloc[:, 0].min()
                for name in ("transactions", "complaints", "surveys", "contacts"))
    assert sample is not None and sample.first_event == first.normalize() and sample.kept == 600
    assert len(tables.customers) == 1_500 and len(tables.transactions) < len(pd.read_parquet(
        small_bank / "transactions.parquet", columns=["customer_id"]))
    # held events that start a year late (as a sample's could): the whole data's first day still sets the cutoffs
    times = tables.transactions["timestamp"]
    late_events = replace(tables, transactions=tables.transactions[times >= times.min() + pd.Timedelta(days=365)],
                          complaints=None, surveys=None, contacts=None)
    every = cfg.labels.model_copy(update={"cutoffs": cfg.labels.cutoffs.model_copy(update={"count": 40})})
    earliest = training_cutoffs(late_events, every, sample.first_event)[0]  # the first month start after it
    assert earliest > sample.first_event >= earliest - pd.DateOffset(months=1)
    assert training_cutoffs(late_events, every)[0] > earliest + pd.DateOffset(months=6)  # what it would be without
    # the parts must fit, or the pandas engine refuses before reading anything (not after the training rows)
    pinned = cfg.model_copy(update={"features": cfg.features.model_copy(update={
        "engine": "pandas", "pandas_max_rows": features_stage.two_part_rows(split_cfg)[0] - 1})})  # type: ignore[index]
    assert features_stage.two_part_rows(pinned) is not None and not features_stage.reads_in_two_parts(pinned)
    with pytest.raises(StageError, match="need about"):
        build_features(pinned)
    for name in (TRAIN_FILE, SCORE_FILE, EXCLUDED_FILE, UPLIFT_FILE):
        pd.testing.assert_frame_equal(split[name], sampled[name], check_exact=True, obj=name)
    assert full[TRAIN_FILE]["customer_id"].nunique() > 1_000 and summary["training_sample"]["in_sample"] == 600
    left = sampled[EXCLUDED_FILE]
    left = set(left.loc[left["reason"] == "not_in_training_sample", "customer_id"])
    assert len(left) == summary["training_sample"]["left_out"] == 1_500 - 600
    kept = full[TRAIN_FILE][~full[TRAIN_FILE]["customer_id"].isin(left)].reset_index(drop=True)
    assert 0 < len(sampled[TRAIN_FILE]) < len(full[TRAIN_FILE]) and not set(sampled[TRAIN_FILE]["customer_id"]) & left
    # the same rows; only the population-relative columns (quintile ranks, BTYD fits) are the sample's own
    relative = [i.name for i in catalogue(FeatureSettings()) if i.population_relative]
    pd.testing.assert_frame_equal(sampled[TRAIN_FILE].drop(columns=relative), kept.drop(columns=relative),
                                  check_exact=True)
    for column in relative:  # a uniform sample: about the full population's quintile edges and fitted parameters
        ours, theirs = sampled[TRAIN_FILE][column], kept[column]
        if column.startswith("rfm_"):
            assert (ours.astype("str") == theirs.astype("str")).mean() > 0.9, column
        else:
            assert ours.rank().corr(theirs.rank()) > 0.95, column
    pd.testing.assert_frame_equal(sampled[SCORE_FILE], full[SCORE_FILE], check_exact=True)
    # the uplift rows: the sample's contacted and control customers, as the churn table's rows
    uplift, uplift_full = sampled[UPLIFT_FILE], full[UPLIFT_FILE]
    assert 0 < len(uplift) < len(uplift_full) and not set(uplift["customer_id"]) & left
    assert set(uplift["customer_id"]) == set(uplift_full["customer_id"]) - left
    assert summary["uplift"]["left_out"]["contacted_not_in_training_sample"] > 0
    for key in ("training_sample", "train", "score", "uplift"):
        assert duck_summary[key] == summary[key], key
    buckets_summary, buckets = outputs["duckdb-buckets", 600]
    for key in ("training_sample", "train", "score", "uplift"):
        assert buckets_summary[key] == duck_summary[key], key
    for name in (TRAIN_FILE, SCORE_FILE, EXCLUDED_FILE, UPLIFT_FILE):
        pd.testing.assert_frame_equal(buckets[name], duck[name], check_exact=True, obj=name)
    assert sum(summary["train"]["not_in_population_per_cutoff"][summary["train"]["cutoffs"][0]].values()) < 600
    for name in (TRAIN_FILE, SCORE_FILE, EXCLUDED_FILE, UPLIFT_FILE):
        assert_same_table(duck[name], sampled[name], name)


def test_duckdb_engine_scores_the_complaint_tone_as_the_pandas_engine(small_bank: Path, tmp_path: Path) -> None:
    """`features.complaint_sentiment`: the texts scored in Python, the two tone features computed by the engine
    (in buckets of customers, so the scored complaints go through the buckets' files); complaints without a
    text (empty, blank, missing) have no tone and count in neither feature."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for path in small_bank.glob("*.parquet"):
        (raw / path.name).symlink_to(path)
    (raw / "complaints.parquet").unlink()
    complaints = pd.read_parquet(small_bank / "complaints.parquet")
    text = complaints["text"].astype("object")
    text.iloc[::5], text.iloc[1::7], text.iloc[2::9] = "", "   ", None
    complaints.assign(text=text).to_parquet(raw / "complaints.parquet", index=False)
    outputs = {}
    for engine in ("pandas", "duckdb"):
        cfg = _config(raw, tmp_path / engine, engine)
        cfg = cfg.model_copy(update={"features": cfg.features.model_copy(update={"complaint_sentiment": True})})
        cfg = _rows_per_statement(cfg, 1_000) if engine == "duckdb" else cfg
        validate(cfg)
        build_features(cfg)
        outputs[engine] = {name: pd.read_parquet(Path(cfg.paths.features_dir) / name) for name in (TRAIN_FILE, SCORE_FILE)}
    train = outputs["pandas"][TRAIN_FILE]
    assert train["negative_complaints_90d"].sum() > 0 and train["mean_complaint_sentiment_90d"].notna().sum() > 0
    assert (train["mean_complaint_sentiment_90d"].dropna() != 0).any()
    for name in (TRAIN_FILE, SCORE_FILE):
        assert_same_table(outputs["duckdb"][name], outputs["pandas"][name], name)


def test_duckdb_engine_takes_a_snapshots_value_from_a_customers_column(small_bank: Path, tmp_path: Path) -> None:
    """Customers only (a snapshot): future_value is `labels.customer_value_column` per month over the horizon,
    parsed as the pandas engine parses it (text numbers, an empty value, a customer without one)."""
    raw = tmp_path / "snapshot"
    raw.mkdir()
    customers = pd.read_parquet(small_bank / "customers.parquet")
    charges = [f"{20 + (i * 37) % 100}.{i % 100:02d}" for i in range(len(customers))]
    charges[3], charges[10] = "", " 45.5 "
    customers["monthly_charge"] = charges
    customers.to_parquet(raw / "customers.parquet", index=False)
    outputs = {}
    for engine in ("pandas", "duckdb"):
        cfg = _config(raw, tmp_path / engine, engine)
        data = cfg.data.model_copy(update={"tables": {"customers": cfg.data.tables["customers"]}})
        labels = cfg.labels.model_copy(update={"customer_value_column": "monthly_charge"})
        cfg = cfg.model_copy(update={"data": data, "labels": labels})
        validate(cfg)
        build_features(cfg)
        outputs[engine] = {name: pd.read_parquet(Path(cfg.paths.features_dir) / name) for name in (TRAIN_FILE, SCORE_FILE)}
    train = outputs["pandas"][TRAIN_FILE]
    value = train["future_value"].to_numpy()
    assert pd.isna(value).sum() == (train["customer_id"] == customers["customer_id"].iloc[3]).sum() > 0
    assert (value[~pd.isna(value)] > 0).all()
    for name in (TRAIN_FILE, SCORE_FILE):
        assert_same_table(outputs["duckdb"][name], outputs["pandas"][name], name)


def test_duckdb_engine_needs_a_validation_of_the_very_files(small_bank: Path, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = _config(small_bank, tmp_path / "work", "duckdb")
    with pytest.raises(StageError, match=r"validation.json does not exist.*run `churn validate"):
        build_features(cfg)
    validate(cfg)
    moved = tmp_path / "surveys.parquet"  # the same content elsewhere: a different file than the one checked
    moved.write_bytes((small_bank / "surveys.parquet").read_bytes())
    tables = dict(cfg.data.tables)
    tables["surveys"] = tables["surveys"].model_copy(update={"path": moved})
    elsewhere = cfg.model_copy(update={"data": cfg.data.model_copy(update={"tables": tables})})
    with pytest.raises(StageError, match=r"data\.tables\.surveys: its file changed since `churn validate`"):
        build_features(elsewhere)
    result = CliRunner().invoke(app, ["features", "--config", str(_write(elsewhere, tmp_path))])
    assert result.exit_code == EXIT_REFUSED and "run `churn validate" in result.output, result.output
    # Spark asked for where it cannot run (no pyspark, or no Java runtime): a clear refusal, no traceback,
    # and the tables an earlier run wrote stay as they were
    build_features(cfg)
    train = Path(cfg.paths.features_dir) / TRAIN_FILE
    before = train.read_bytes()
    spark = cfg.model_copy(update={"features": cfg.features.model_copy(update={"engine": "spark"})})
    monkeypatch.setenv("PATH", str(tmp_path / "no-java-here"))
    monkeypatch.delenv("JAVA_HOME", raising=False)
    result = CliRunner().invoke(app, ["features", "--config", str(_write(spark, tmp_path))])
    assert result.exit_code == EXIT_REFUSED, (result.output, result.exception)
    assert "features.engine spark needs" in result.output and "nothing was written" in result.output, result.output
    assert train.read_bytes() == before


def _write(cfg: Config, folder: Path) -> Path:
    import yaml

    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return path


def test_auto_engine_takes_pandas_while_the_rows_fit_and_duckdb_beyond(small_bank: Path, tmp_path: Path) -> None:
    """`features.engine: auto` (the default) says which engine it takes and why; the table it builds is the
    config's whichever it took (the settings record `auto`), so `churn train` accepts it."""
    from pipelines.features import check_built_from
    from pipelines.fingerprint import input_fingerprint
    from pipelines.tables import input_rows

    cfg = _config(small_bank, tmp_path, "auto")
    rows = input_rows(cfg)
    assert rows == sum(len(pd.read_parquet(small_bank / f"{name}.parquet", columns=["customer_id"]))
                       for name in cfg.data.tables)
    said: list[str] = []
    assert relational.resolve_engine(cfg, said.append).features.engine == "pandas"  # the default limit
    assert "features.pandas_max_rows sets it" in said[0]
    at_limit = cfg.model_copy(update={"features": cfg.features.model_copy(update={"pandas_max_rows": rows})})
    assert relational.resolve_engine(at_limit, said.append).features.engine == "pandas"
    beyond = cfg.model_copy(update={"features": cfg.features.model_copy(update={"pandas_max_rows": rows - 1})})
    validate(beyond)
    said.clear()
    summary = build_features(beyond, said.append)
    assert summary["engine"] == "duckdb"
    assert f"features.engine auto: duckdb (about {rows:,} input rows, above {rows - 1:,}: features.pandas_max_rows)" in said
    assert summary["built_from"]["settings"]["features.engine"] == "auto"
    train = Path(beyond.paths.features_dir) / TRAIN_FILE
    check_built_from(beyond, input_fingerprint(beyond, {"train_table": train}))  # no refusal: the config's table
    pinned = beyond.model_copy(update={"features": beyond.features.model_copy(update={"engine": "duckdb"})})
    with pytest.raises(StageError, match="features.engine is duckdb in the config but"):
        check_built_from(pinned, input_fingerprint(pinned, {"train_table": train}))


def test_the_score_stage_holds_only_the_transactions_it_reads_against_the_row_limit(small_bank: Path,
                                                                                    tmp_path: Path) -> None:
    """`churn score` reads the transactions from its features' look-back on (`load_tables(transactions_from=)`):
    `auto` and the memory check compare the rows it holds, not every row of the file, with
    `features.pandas_max_rows` (on the 10M bank 241M held of 497M: the pandas engine there scores in a third of
    DuckDB's time), and the count is the read's own; a stage holding every row still sees every row."""
    import functools

    from features.contract import TABLES
    from pipelines.score import scoring_read_from
    from pipelines.tables import check_fits_in_memory, held_rows, input_rows, load_tables, transactions_held

    cfg = _config(small_bank, tmp_path, "auto")
    read_from = functools.partial(scoring_read_from, as_of=None, cfg=cfg)
    held, total, since = transactions_held(cfg, read_from)  # type: ignore[misc]
    tables = load_tables(cfg, transactions_from=read_from)
    assert tables.earlier_transactions is not None and tables.earlier_transactions.since == since
    assert held == len(tables.transactions) < total == pq.read_metadata(small_bank / "transactions.parquet").num_rows
    everything = input_rows(cfg)
    fits = cfg.model_copy(update={"features": cfg.features.model_copy(
        update={"pandas_max_rows": everything - total + held})})
    said: list[str] = []
    holds = functools.partial(held_rows, transactions_from=read_from)
    assert relational.resolve_engine(fits, said.append, holds).features.engine == "pandas"
    assert (f"about {everything - total + held:,} input rows (the transactions dated from {since.date()} on: "
            f"{held:,} of {total:,}), within") in said[-1]
    check_fits_in_memory(fits, TABLES, read_from)  # no refusal
    assert relational.resolve_engine(fits, said.append).features.engine == "duckdb"  # every row held
    with pytest.raises(StageError, match=f"their rows \\(about {everything:,}\\) need about"):
        check_fits_in_memory(fits, TABLES)
    short = fits.model_copy(update={"features": fits.features.model_copy(
        update={"pandas_max_rows": everything - total + held - 1})})
    assert relational.resolve_engine(short, said.append, holds).features.engine == "duckdb"
    with pytest.raises(StageError, match=f"{held:,} of {total:,}\\) need about"):
        check_fits_in_memory(short, TABLES, read_from)


def test_a_command_that_would_hold_too_many_rows_in_pandas_refuses_before_reading(small_bank: Path,
                                                                                  tmp_path: Path) -> None:
    """The pandas engine pinned on inputs above `features.pandas_max_rows`, and a command that always loads
    every table (`churn backtest`): exit 4 with the figures and the fix, nothing read or written (the kernel
    would otherwise kill it for memory part way, without a word)."""
    from pipelines.tables import input_rows

    cfg = _config(small_bank, tmp_path / "work", "pandas")
    rows = input_rows(cfg)
    small = cfg.model_copy(update={"features": cfg.features.model_copy(update={"pandas_max_rows": 1_000})})
    config = _write(small, tmp_path)
    for command in ("features", "backtest"):
        result = CliRunner().invoke(app, [command, "--config", str(config)])
        assert result.exit_code == EXIT_REFUSED, (command, result.output, result.exception)
        text = " ".join(result.output.split())
        assert f"their rows (about {rows:,}) need about" in text and "above 1,000 rows (features.pandas_max_rows)" in text, text
        assert "features.engine auto or duckdb" in text and "Traceback" not in result.output
    assert not Path(small.paths.features_dir).exists() or not any(Path(small.paths.features_dir).iterdir())
