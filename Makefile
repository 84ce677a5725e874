# Two commands for a newcomer: `make demo` and `make test`. Each does its own set-up (venv + install).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: install demo test test-slow test-all lint bench clean deploy-local

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[optuna,flow,test,dask]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lcmodel demo

# two workers (pytest-xdist), each file's tests on one worker so its module fixtures (a whole flow run) run once;
# TEST_WORKERS=0 runs them in this process
TEST_WORKERS ?= 2
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

# the tests marked slow only (CI runs them after `make test`)
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

test-all: $(STAMP)
	$(PY) -m pytest -q -m "slow or not slow"

# a trial of the Prefect deployments (server on 127.0.0.1, pool, deploy, worker, one run each); Ctrl-C stops it
deploy-local: $(STAMP)
	VENV=$(VENV) bash deployments/deploy_local.sh

lint: $(STAMP)
	$(PY) -m pip install --quiet ruff mypy
	$(PY) -m ruff check lcmodel flows tests benchmarks
	$(PY) -m mypy lcmodel flows

# speed and memory against the notebook's method (see benchmarks/); data outside the repository
BENCH_DATA ?= ../bench-data
bench: $(STAMP)
	$(PY) benchmarks/bench_sampling.py
	$(PY) benchmarks/bench_extract.py --data $(BENCH_DATA)
	$(PY) benchmarks/bench_pipeline.py --data $(BENCH_DATA)/e2048
	bash benchmarks/setup_pyspatialml.sh .venv-pyspatialml
	$(PY) benchmarks/bench_predict.py --data $(BENCH_DATA)/e2048

clean:
	rm -rf $(VENV) demo .pytest_cache
