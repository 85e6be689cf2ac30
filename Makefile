# The README's two commands: `make demo` (the notebook collection on the demo corpus) and
# `make test` (the test suite). Both create .venv on first use and reuse it afterwards.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
KERNEL := primate-calls
STAMP  := $(VENV)/.installed-stamp

# The demo corpus reads its recordings from a mirror folder when one sits beside the clone
# (as in CI); otherwise it downloads them. An explicit PRIMATE_DEMO_MIRROR wins.
ifneq ($(wildcard ../shared/mirror/SHA256SUMS),)
PRIMATE_DEMO_MIRROR ?= $(abspath ../shared/mirror)
endif
export PRIMATE_DEMO_MIRROR
# Deliberate thread counts (2-core machines collapse under oversubscription).
export OMP_NUM_THREADS ?= 2
export MKL_NUM_THREADS ?= 2
export OPENBLAS_NUM_THREADS ?= 2
export MPLBACKEND ?= Agg

.PHONY: setup demo paper test test-fast lint format strip lab clean-runs

setup: $(STAMP)

# A new environment takes about 6 GB (torch 2.11 with its CUDA libraries is 5.5 GB of it): say so
# in one line before pip runs out of space half-way.
SETUP_FREE_GB ?= 8
$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -c "import shutil, sys; free = shutil.disk_usage('.').free / 1e9; \
	sys.exit(0 if free >= $(SETUP_FREE_GB) else f'make setup: only {free:.1f} GB free on the disk of $(CURDIR); \
	the environment needs about $(SETUP_FREE_GB) GB (torch with its CUDA libraries is 5.5 GB): free some space, \
	or lower the check with SETUP_FREE_GB=N if you know it fits')"
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m ipykernel install --sys-prefix --name $(KERNEL) --display-name "Python (primate-calls)"
	touch $(STAMP)

demo: setup
	$(PY) -m helpers notebooks --corpus demo --data-dir data --profile demo

# The paper's experiments on the real corpus (a folder in the challenge layout); needs a GPU.
paper: setup
	@test -n "$(DATA)" || { echo "usage: make paper DATA=<corpus folder in the challenge layout>"; exit 2; }
	$(PY) -m helpers validate "$(DATA)"
	$(PY) -m helpers notebooks --corpus "$(abspath $(DATA))" --data-dir data --profile paper

# The whole suite: what CI runs (.ci/run). Two pytest-xdist workers, one test file each at a time
# (a file's fixtures, and the real SLURM of tests/test_cluster.py, stay in one process), one thread
# each (tests/conftest.py): 10 min 21 s against 16 min 11 s serially, side by side on 2 cores (measured).
# TEST_WORKERS=0: serial.
TEST_WORKERS ?= 2
test: setup lint
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# The inner loop: lint, then unit tests only (notebook executions, training runs and subprocess
# tests are marked slow), about a minute on 2 cores.
test-fast: setup lint
	$(PY) -m pytest -m "not slow" -q

# ruff, configured in pyproject.toml: lint, and the formatting checked (`make format` applies it).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff format .

# Notebooks are committed without outputs (tests/test_notebook_sources.py checks it).
strip: setup
	$(VENV)/bin/jupyter nbconvert --clear-output --inplace notebooks/[0-9]*.ipynb

lab: setup
	$(VENV)/bin/jupyter lab notebooks

clean-runs:
	rm -rf runs/notebooks
