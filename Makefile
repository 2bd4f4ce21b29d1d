# Every target sets itself up: .venv is created and convzoo installed (with its dev extra) when missing
# or when pyproject.toml changed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all verify clean

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

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .hypothesis
