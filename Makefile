# Two commands on a fresh machine (only Python 3.11 and make needed):
#   make demo   set up .venv, generate demo data, run every pipeline stage
#   make test   set up .venv, run the whole test suite
#   make test-spark   add Spark (Java 17, pyspark) and PostgreSQL, run the cross-engine tests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= configs/default.yaml
DEMO_CUSTOMERS ?= 50000
DEMO_SEED ?= 42
PYTEST_ARGS ?=
TEST_WORKERS ?= 2

.PHONY: bench-10m install demo test test-spark bench lock clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/churn generate --config $(CONFIG) --customers $(DEMO_CUSTOMERS) --seed $(DEMO_SEED)
	$(BIN)/churn validate --config $(CONFIG)
	$(BIN)/churn features --config $(CONFIG)
	$(BIN)/churn train    --config $(CONFIG)
	$(BIN)/churn score    --config $(CONFIG)
	$(BIN)/churn rules    --config $(CONFIG)
	$(BIN)/churn complaints --config $(CONFIG)
	$(BIN)/churn effects  --config $(CONFIG)
	$(BIN)/churn backtest --config $(CONFIG)
	$(BIN)/churn report   --config $(CONFIG)
	@echo
	@echo "Demo finished. Outputs:"
	@echo "  inputs (generated):   data/raw/demo/  (ground truth apart in data/raw/demo/_truth/)"
	@echo "  feature tables:       data/features/train.parquet, data/features/score.parquet"
	@echo "  model metrics, plots: reports/train_metrics.json, reports/plots/"
	@echo "  retention list:       data/outputs/retention_list.csv  (all scores: data/outputs/scores.parquet)"
	@echo "  complaint rules:      data/outputs/complaint_chains.csv, data/outputs/churn_rules.csv, data/outputs/complaint_chains.png"
	@echo "  complaint operations: data/outputs/complaint_forecast.csv, staffing_plan.csv, satisfaction_by_unit.csv, complaint_heatmaps.png (summary: reports/complaints_summary.json)"
	@echo "  report:               reports/html/index.html"
	@echo "  MLflow runs, models:  mlflow.db (browse: .venv/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db)"

# Two pytest-xdist workers (TEST_WORKERS=0 runs in one process); tests/conftest.py keeps each module,
# and the modules sharing a costly session fixture, on one worker and hands out the slowest first;
# the 15 slowest tests are listed at the end (CI must stay under 30 minutes on 2 cores).
test: install
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=15 $(PYTEST_ARGS)

# The cross-engine tests (pytest -m spark; `make test` leaves them out): the relational features on
# DuckDB, a local Spark (local[2]) and a PostgreSQL server on 127.0.0.1 give identical tables.
# Installs the `spark` extra (pyspark, Ibis's pyspark and postgres backends) into .venv, and with
# apt-get (as root) a Java 17 runtime and the PostgreSQL server where they are missing.
SPARK_STAMP := $(VENV)/.spark-stamp
SPARK_BUILD_IN_MEMORY_BELOW_KB ?= 4000000
$(SPARK_STAMP): $(STAMP)
	command -v java >/dev/null || test -n "$$JAVA_HOME" || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openjdk-17-jre-headless >/dev/null; }
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@# pyspark comes as a source archive (434 MB) that uv builds into a wheel: 2.25 GB more on this disk, most of
	@# it kept in uv's cache. With under 4 GB free it is built in memory (/dev/shm, when that has 3 GB) and only
	@# the installed package stays (0.47 GB). SPARK_BUILD_IN_MEMORY_BELOW_KB moves that threshold (set it high
	@# to try the in-memory path).
	free=$$(df -Pk . | awk 'NR==2 {print $$4}'); shm=$$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $$4}'); \
	scratch=; if [ "$${free:-0}" -lt $(SPARK_BUILD_IN_MEMORY_BELOW_KB) ] && [ "$${shm:-0}" -gt 3000000 ]; then \
		scratch=$$(mktemp -d /dev/shm/churn-spark-build.XXXXXX); \
		echo "$$((free / 1024)) MB free on this disk: pyspark is built in $$scratch (memory), then installed"; fi; \
	if [ -n "$$scratch" ]; then export UV_CACHE_DIR=$$scratch/cache TMPDIR=$$scratch; fi; \
	$(BIN)/uv pip install --python $(BIN)/python --quiet --compile-bytecode -c requirements.lock -e '.[dev,spark]'; \
	status=$$?; if [ -n "$$scratch" ]; then rm -rf "$$scratch"; fi; exit $$status
	touch $(SPARK_STAMP)

test-spark: $(SPARK_STAMP)
	$(BIN)/python -m pytest -m spark $(PYTEST_ARGS)

# Benchmarks on a generated 1M-customer bank (tens of minutes); figures go to benchmarks/results/.
BENCH_DATA ?= /tmp/bench-data/1m
bench: install
	$(BIN)/python benchmarks/bench_generate.py --customers 1000000 --months 30 --out $(BENCH_DATA)
	$(BIN)/python benchmarks/bench_features.py --data $(BENCH_DATA)
	$(BIN)/python benchmarks/bench_relational.py --data $(BENCH_DATA) --count 1 --repeats 1 --memory-limit 4GB
	$(BIN)/python benchmarks/bench_reference.py --data $(BENCH_DATA) --cutoff 2025-07-01 --repeats 2
	$(BIN)/python benchmarks/bench_train.py --data $(BENCH_DATA)
	$(BIN)/python benchmarks/bench_score.py --data $(BENCH_DATA)
	$(BIN)/python benchmarks/bench_rules.py --data $(BENCH_DATA)
	$(BIN)/python benchmarks/bench_complaints.py --data $(BENCH_DATA)
	$(BIN)/python benchmarks/bench_realdata.py
	$(BIN)/python benchmarks/bench_hardening.py

# The 10M-customer bank (about 35 minutes, 9 GB of disk, 16 GB of memory at its peak): generation, `churn features`
# and `churn score` against the 1M bank of `make bench` (its champions); the limit lets `auto` take pandas at 10M.
BENCH_DATA_10M ?= /tmp/bench-data/10m
bench-10m: install
	$(BIN)/python benchmarks/bench_generate.py --customers 1000000 10000000 --months 30 --out $(BENCH_DATA) $(BENCH_DATA_10M)
	$(BIN)/python benchmarks/bench_scale.py --data $(BENCH_DATA) $(BENCH_DATA_10M) --models $(BENCH_DATA)-train \
		--pandas-max-rows 250000000

# Re-pin every dependency after changing pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra spark --python-version 3.11 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) data/features data/outputs reports mlflow.db mlartifacts .pytest_cache
