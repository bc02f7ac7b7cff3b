# Keel: every target sets up what it needs (.venv, node_modules) and is idempotent.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
BUF := node_modules/.bin/buf
PYTEST := $(PY) -m pytest
TYPED := services clients/python/keel tools tests

.PHONY: help run test check lint format protos ts bench unit integration e2e load faults fuzz clean soak fuzz-slow

help:
	@echo "make run     set up and start the suite (keel up) with a demo model"
	@echo "make test    set up and run every tier: lint, types, buf, unit, integration, e2e, load, faults, fuzz"
	@echo "make check   the quick loop: lint + unit + integration"
	@echo "make lint    ruff, ruff format --check, mypy --strict, stale stubs, buf lint/format/breaking"
	@echo "make protos  regenerate the Python and TypeScript stubs (clients/) from protos/"
	@echo "make bench   print benchmark figures and ratios"
	@echo "make soak    the CI load test for 30 minutes; make fuzz-slow: 10,000 fuzz examples per service"

$(VENV)/.installed: pyproject.toml setup.py services/monitor/_kernels.c services/inference/_trees.c clients/python/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e 'clients/python[ml]' -e '.[dev]'
	touch $@

# tritonclient pins protobuf < 7 and registers the same `inference.*` proto names as Keel's
# stubs: it gets a venv of its own and runs as a subprocess (tests/compat).
COMPAT := .venv-compat
$(COMPAT)/.installed: Makefile
	test -x $(COMPAT)/bin/python || $(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT)/bin/python -m pip install --quiet 'tritonclient[grpc]==2.73.0'
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

venv: $(VENV)/.installed
tools-js: node_modules/.installed

# The TypeScript stubs and the Node interop program, compiled (and type-checked) once;
# dist/ is rebuilt whole so that a deleted source leaves nothing behind.
TS := clients/typescript
$(TS)/dist/.built: node_modules/.installed $(TS)/tsconfig.json $(TS)/package.json \
		$(shell find $(TS)/src $(TS)/test -name '*.ts' 2>/dev/null)
	rm -rf $(TS)/dist
	node_modules/.bin/tsc -p $(TS)
	touch $@

ts: $(TS)/dist/.built

protos: $(VENV)/.installed node_modules/.installed
	$(PY) tools/protos.py

lint: $(VENV)/.installed node_modules/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(PY) tools/protos.py --check
	$(BUF) lint
	$(BUF) format -d --exit-code
	BUF=$(BUF) tools/buf_breaking.sh

format: $(VENV)/.installed node_modules/.installed
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .
	$(BUF) format -w

TEST_SETUP := $(VENV)/.installed node_modules/.installed $(COMPAT)/.installed $(TS)/dist/.built

unit integration e2e load faults fuzz: $(TEST_SETUP)
	$(PYTEST) -m $@

check: lint $(TEST_SETUP)
	$(PYTEST) -m "unit or integration"

test: lint $(TEST_SETUP)
	$(PYTEST)

run: $(VENV)/.installed
	$(BIN)/keel up --demo

# MLServer, the peer the inference benchmark compares with, pins protobuf < 7: its own venv.
# Evidently, the monitor benchmark's peer, shares it (run as a subprocess); it needs pandas < 3
# (0.7.23's metadata allows 3.x, which it cannot import).
BENCH_VENV := .bench
$(BENCH_VENV)/.installed: Makefile
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/python -m pip install --quiet mlserver==1.7.1 uvloop==0.21.0 \
		xgboost-cpu==3.2.0 scikit-learn==1.9.1 evidently==0.7.23 pandas==2.3.3
	$(BENCH_VENV)/bin/python -m pip install --quiet --no-deps mlserver-xgboost==1.7.1
	touch $@

bench: $(VENV)/.installed $(BENCH_VENV)/.installed
	$(PY) -m bench

# The fuzz tier at 10,000 examples per service (make test runs 500), with a fresh seed.
fuzz-slow: $(TEST_SETUP)
	KEEL_FUZZ_EXAMPLES=$${KEEL_FUZZ_EXAMPLES:-10000} KEEL_FUZZ_SEED=$${KEEL_FUZZ_SEED:-random} \
		$(PYTEST) -m fuzz tests/fuzz

# The CI load test's scenario (tests/load/test_ci_load.py) for 30 minutes (KEEL_LOAD_DURATION_S
# overrides), on the PostgreSQL .ci/run uses unless KEEL_TEST_DATABASE_URL says otherwise.
soak: $(VENV)/.installed
	KEEL_LOAD_DURATION_S=$${KEEL_LOAD_DURATION_S:-1800} \
	KEEL_TEST_DATABASE_URL=$${KEEL_TEST_DATABASE_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test} \
		$(PYTEST) -m load tests/load/test_ci_load.py

clean:
	rm -rf $(VENV) $(COMPAT) $(BENCH_VENV) node_modules $(TS)/dist .mypy_cache .ruff_cache .pytest_cache .hypothesis
