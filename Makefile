# Every target sets itself up: .venv is created and convzoo installed (with its dev extra) when missing
# or when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The docs site (built by `make docs`, and by `make test` when a source is newer than it).
SITE := site/index.html
SITE_SOURCES := mkdocs.yml $(shell find src examples docs benchmarks/results -type f -not -path 'docs/generated/*' \
                  -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: run test test-all verify clean docs docs-serve

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/convzoo compare

verify: $(STAMP)
	$(BIN)/convzoo verify

# `make test` builds the docs site first when a source changed (its browser test reads site/); DOCS=0 leaves it out.
test: $(STAMP) $(if $(filter 0,$(DOCS)),,$(SITE))
	$(BIN)/python -m pytest -n 2 -q -rs

test-all: $(STAMP) $(if $(filter 0,$(DOCS)),,$(SITE))
	$(BIN)/python -m pytest -n 2 -q -m ''

# The documentation site: strict build into site/ (a warning, a broken link or an undocumented public name fails);
# the tutorials under examples/ are executed during the build. The docs extra is part of dev.

define build_site
	rm -rf docs/generated  # mkdocs-gallery skips scripts whose MD5 it has seen: always re-run against this code
	NO_MKDOCS_2_WARNING=1 MPLBACKEND=Agg $(BIN)/python -m mkdocs build --strict --clean
endef

$(SITE): $(STAMP) $(SITE_SOURCES)
	$(build_site)

docs: $(STAMP)
	$(build_site)

docs-serve: $(STAMP)
	NO_MKDOCS_2_WARNING=1 MPLBACKEND=Agg $(BIN)/python -m mkdocs serve --strict

clean:
	rm -rf $(VENV) build site docs/generated src/*.egg-info .pytest_cache .hypothesis
