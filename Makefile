# mediscope: `make demo` and `make test` work on a fresh clone (they create .venv).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip --disable-pip-version-check
# pip's "location is ignored" notices about unreachable find-links say nothing useful.
QUIET_PIP := 2>&1 | { grep -v "is ignored: it is neither a file nor a directory" || true; }

.PHONY: demo test test-fast docs lint format bench install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	@echo "installing mediscope into $(VENV) (the first time takes a few minutes)"
	@set -o pipefail; $(PIP) install -q -e ".[train,lite0,serve]" $(QUIET_PIP)
	@$(PY) -c "import mediscope.cli.main" && touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	@echo "installing mediscope with the dev extras into $(VENV)"
	@set -o pipefail; $(PIP) install -q -e ".[dev]" $(QUIET_PIP)
	@$(PY) -c "import mediscope.cli.main, pytest" && touch $@ $(VENV)/.installed

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/mediscope demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder

test-fast: $(VENV)/.installed-dev
	$(PY) -m pytest -n auto --dist loadfile --no-loadscope-reorder -m "not slow"

# The documentation site (docs/, mkdocs.yml) into site/; strict: a broken link or page fails.
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy src

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(VENV)/.installed-dev
	$(PY) benchmarks/overhead.py
	$(PY) benchmarks/npz_memmap.py
	$(PY) benchmarks/sliced_inference.py
	$(PY) benchmarks/detection_training.py
	$(PY) benchmarks/step_cost.py
	$(PY) benchmarks/inference.py
	$(PY) benchmarks/serve_load.py
	$(PY) benchmarks/wsi.py
	$(PY) benchmarks/dataloader.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache site
