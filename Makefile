# Every target sets itself up: .venv is created and convzoo installed (with its dev extra) when missing
# or when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all verify clean docs docs-serve

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/convzoo compare

verify: $(STAMP)
	$(BIN)/convzoo verify

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -rs

test-all: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m ''

# The documentation site: strict build into site/ (a warning, a broken link or an undocumented public name fails);
# the tutorials under examples/ are executed during the build.
DOCS_STAMP := $(VENV)/.installed-docs

$(DOCS_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,docs]'
	touch $(DOCS_STAMP)

docs: $(DOCS_STAMP)
	rm -rf docs/generated  # mkdocs-gallery skips scripts whose MD5 it has seen: always re-run against this code
	NO_MKDOCS_2_WARNING=1 MPLBACKEND=Agg $(BIN)/python -m mkdocs build --strict --clean

docs-serve: $(DOCS_STAMP)
	NO_MKDOCS_2_WARNING=1 MPLBACKEND=Agg $(BIN)/python -m mkdocs serve --strict

clean:
	rm -rf $(VENV) build site docs/generated src/*.egg-info .pytest_cache .hypothesis
