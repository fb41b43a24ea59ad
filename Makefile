# Two commands on a fresh machine (only Python 3.11 and make needed):
#   make demo   set up .venv, generate demo data, run every pipeline stage
#   make test   set up .venv, run the whole test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
CONFIG ?= configs/default.yaml
DEMO_CUSTOMERS ?= 20000
DEMO_SEED ?= 42
PYTEST_ARGS ?=

.PHONY: install demo test bench lock clean

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip uv
	$(BIN)/uv pip install --python $(BIN)/python --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/churn generate --customers $(DEMO_CUSTOMERS) --seed $(DEMO_SEED) --out data/raw/demo
	$(BIN)/churn validate --config $(CONFIG)
	@echo
	@echo "Demo finished. Outputs:"
	@echo "  inputs (generated):     data/raw/demo/  (ground truth in data/raw/demo/_truth/)"
	@echo "  validation report:      reports/validation.json"

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install
	$(BIN)/python benchmarks/bench_generate.py

# Re-pin every dependency after changing pyproject.toml.
lock:
	$(BIN)/uv pip compile pyproject.toml --extra dev --python-version 3.11 --quiet -o requirements.lock

clean:
	rm -rf $(VENV) data/features data/outputs reports mlflow.db mlartifacts .pytest_cache
