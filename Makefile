# adlib: the two commands of the README.
#   make report   set up (if needed) and run every notebook headless -> reports/$(PROFILE)/index.html
#   make test     set up (if needed) and run the test suite (unit tests + every notebook, smoke profile),
#                 with outbound network blocked for pytest and every notebook kernel (tests/offline)
# Both create a virtual environment in .venv when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= cpu
PARAMS ?=
STAMP := $(VENV)/.adlib-installed

.PHONY: install report test lint clean-results help

help:
	@echo "make report   # run all notebooks (PROFILE=$(PROFILE)) -> reports/$(PROFILE)/index.html"
	@echo "make test     # unit tests + smoke run of every notebook"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

report: $(STAMP)
	$(PY) -m adlib.report --profile $(PROFILE) $(if $(PARAMS),--params $(PARAMS),)

test: $(STAMP)
	@ADLIB_PROFILE=smoke MPLBACKEND=Agg ADLIB_BLOCK_NETWORK=1 PYTHONPATH=$(CURDIR)/tests/offline \
	  $(PY) -m pytest tests notebooks --nbmake --nbmake-timeout=900 \
	  -p no:cacheprovider --durations=15; rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "pytest collected no tests: treated as a failure" >&2; fi; exit $$rc

lint: $(STAMP)
	$(PY) -m ruff check adlib tests

clean-results:
	rm -rf notebooks/results reports
