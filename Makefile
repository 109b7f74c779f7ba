# nsbi: the two entry points.
#   make run    set up .venv and run the whole workflow on the built-in demo (config/config.yaml)
#   make test   set up .venv and run the test suite
#   make lint   ruff (lint + format), snakefmt and snakemake --lint (run by .ci/run before the tests)
# Both are idempotent: the environment is rebuilt only when pyproject.toml changes, and
# Snakemake reruns only what is out of date.
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= all
# CPU build on machines without a GPU (a local wheel is used when pip finds one);
# on a CUDA machine use e.g.  make run TORCH="torch"  (default PyPI build with CUDA).
TORCH  ?= torch==2.13.*
EXTRAS ?= test
BIN     = $(VENV)/bin

.PHONY: run test lint setup dryrun report clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES)

dryrun: setup
	$(BIN)/snakemake -n

report: setup
	$(BIN)/snakemake --report report.html

# unit tests on one worker, the end-to-end group (one shared test-config run, reruns, SLURM)
# on the other; the 15 slowest tests are printed at the end
test: setup
	$(BIN)/python -m pytest -q -n 2 --durations=15

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check Snakefile rules/
	out="$$($(BIN)/snakemake --lint --directory "$$(mktemp -d)" 2>&1)"; echo "$$out"; \
	  echo "$$out" | grep -q "Congratulations, your workflow is in a good condition"

clean:
	rm -rf results .snakemake report.html
