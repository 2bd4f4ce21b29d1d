# Every target sets itself up: .venv is created and convzoo installed (with its dev extra) when missing
# or when pyproject.toml changed. --no-compile: Python compiles a module when it is first imported and caches it,
# instead of pip byte-compiling every file of every package (121 → 81 s for the whole install on a 2-core machine).
# Where Python writes no bytecode (PYTHONDONTWRITEBYTECODE, as in some CI images) nothing would be cached, and every
# process would compile torch's sources again (+2.5 s per `import torch` measured): there pip byte-compiles.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PIP_COMPILE := $(shell $(PYTHON) -c 'import sys; print("--compile" if sys.dont_write_bytecode else "--no-compile")')
# The docs site (built by `make docs`, and by `make test` when a source is newer than it).
SITE := site/index.html
SITE_SOURCES := mkdocs.yml $(shell find src examples docs benchmarks/results -type f -not -path 'docs/generated/*' \
                  -not -path '*/__pycache__/*' 2>/dev/null)

.PHONY: run test test-all verify clean docs docs-serve

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(PIP_COMPILE) -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/convzoo compare

verify: $(STAMP)
	$(BIN)/convzoo verify

# `make test` builds the docs site when a source changed (DOCS=0 leaves it out), beside the tests: the build runs on
# one core, so it goes in the background while pytest starts, and the site's browser test (tests/test_docs.py) waits
# for it through CONVZOO_SITE_BUILD (the status file SITE_BUILD.rc, the log SITE_BUILD.log). A failed build fails
# `make test` with its log, whatever the tests did. Both compile convzoo's kernels into one temporary numba cache
# (each kernel once per run, by whichever needs it first; tests/conftest.py keeps a NUMBA_CACHE_DIR it is given).
# The workers steal queued tests from each other (worksteal): the one running the browser test may wait for the site.
# The build runs on one torch thread (OMP_NUM_THREADS=1) beside the workers' one each: a second OpenMP thread per
# process on two cores spins waiting for a descheduled one and takes the time from the tests.
SITE_BUILD := .site-build
define test_with_site
	@rm -f $(SITE_BUILD).rc; export NUMBA_CACHE_DIR="$${NUMBA_CACHE_DIR:-$$(mktemp -d)}"; \
	( OMP_NUM_THREADS=1 $(MAKE) --no-print-directory $(SITE) > $(SITE_BUILD).log 2>&1; echo $$? > $(SITE_BUILD).tmp; \
	  mv $(SITE_BUILD).tmp $(SITE_BUILD).rc ) & \
	CONVZOO_SITE_BUILD=$(CURDIR)/$(SITE_BUILD) $(BIN)/python -m pytest -n 2 --dist worksteal -q $(1); tests=$$?; \
	while [ ! -f $(SITE_BUILD).rc ]; do sleep 1; done; \
	if [ "$$(cat $(SITE_BUILD).rc)" != 0 ]; then \
	  cat $(SITE_BUILD).log; echo "make: the docs build failed" >&2; exit 1; fi; \
	exit $$tests
endef

test: $(STAMP)
ifeq ($(DOCS),0)
	$(BIN)/python -m pytest -n 2 --dist worksteal -q -rs
else
	$(call test_with_site,-rs)
endif

test-all: $(STAMP)
ifeq ($(DOCS),0)
	$(BIN)/python -m pytest -n 2 --dist worksteal -q -m ''
else
	$(call test_with_site,-m '')
endif

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

# `make docs-serve` starts from the same fresh build as `make docs` (every example rerun against this code), then
# serves it with live reload. A reload reruns only the examples whose own script changed (mkdocs-gallery's MD5
# covers the script, not src/): after editing src/, restart it, or run `make docs`, for their outputs to follow.
docs-serve: $(STAMP)
	rm -rf docs/generated
	NO_MKDOCS_2_WARNING=1 MPLBACKEND=Agg $(BIN)/python -m mkdocs serve --strict

clean:
	rm -rf $(VENV) build site docs/generated src/*.egg-info .pytest_cache .hypothesis
