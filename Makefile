# Quick start: `make demo` trains on scikit-learn's digits; `make test` runs
# the whole suite. Both create .venv and install torchyard into it first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.torchyard-installed

.PHONY: demo test lint bench docs clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/torchyard run examples/digits.yaml

test: $(STAMP)
	$(PY) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check framework plugins tests benchmarks
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(PY) benchmarks/loop_overhead.py
	$(PY) benchmarks/list_startup.py
	$(PY) benchmarks/image_training.py

clean:
	rm -rf $(VENV) runs .pytest_cache

docs: $(STAMP)
	$(PY) -m torchyard.reference > docs/components.md
