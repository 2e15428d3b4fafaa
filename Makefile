# monGARS on Kubeflow. `make run` and `make test` set up everything they need.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.stamp-install
RUN_ID ?= demo
RUN_ARGS ?=

# llama-cpp-python builds from source; these flags keep the build portable and quick.
export CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DGGML_NATIVE=OFF
export OMP_NUM_THREADS ?= 1
export TOKENIZERS_PARALLELISM ?= false
# OpenMP threads sleep when idle: tasks and tests share the cores (monGARS/deploy/local_run.py).
export OMP_WAIT_POLICY ?= PASSIVE
TEST_ENV := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PYTEST_ARGS ?=
# Test workers (pytest-xdist), one file per worker at a time: tests/conftest.py says why.
TEST_WORKERS ?= auto

.PHONY: setup run test test-unit mutation lint format compile check-compiled bench clean help

help:
	@echo "make run        run the whole pipeline locally on the tiny model (RUN_ID=$(RUN_ID))"
	@echo "make test       run the whole test suite"
	@echo "make mutation   mutation testing of the critical modules (MODULES=split,images ... to pick)"
	@echo "make compile    regenerate pipelines/mongars.yaml"
	@echo "make lint       ruff check + format check"
	@echo "make images     build the container images (needs Docker; see docs/cluster.md)"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(PY) -m monGARS.cli run --run-id $(RUN_ID) $(RUN_ARGS)

test: setup
	$(TEST_ENV) $(PY) -m pytest -n $(TEST_WORKERS) --maxprocesses 4 --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

test-unit: setup
	$(TEST_ENV) $(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Mutation testing (cosmic-ray), one module at a time with only its own tests: about two hours on
# 2 cores, so not part of `make test` or CI; docs/testing.md has the figures and how to read them.
MODULES ?=
mutation: setup
	$(TEST_ENV) $(PY) tests/mutation.py $(subst $(comma), ,$(MODULES))

comma := ,

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

compile: setup
	$(PY) -m monGARS.cli compile

check-compiled: setup
	$(PY) -m monGARS.cli compile --check

clean:
	rm -rf runs .pytest_cache .ruff_cache

-include images/images.mk
