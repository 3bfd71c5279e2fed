# Two commands matter: `make run` (main job on the committed sample) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
# Run history and dynamic partitions persist between commands in the project folder.
export DAGSTER_HOME := $(CURDIR)/.dagster_home
PYTEST_ARGS ?= --durations=20

.PHONY: install dagster-home browser run test test-fast fuzz validate dev serve clean-data sample

install: $(VENV)/.installed

# pyproject pins torch to ">=2.4,<2.14" (the CPU wheel) and the Dagster family to one release.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $@

dagster-home:
	mkdir -p $(DAGSTER_HOME)
	test -f $(DAGSTER_HOME)/dagster.yaml || cp deploy/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

## Run the main job on the committed sample data (data/raw) from the command line.
run: install dagster-home
	$(BIN)/dagster job execute -m spotify_assets.definitions -j full_pipeline -c deploy/run_logging.yaml \
		--tags "$$($(PY) -m spotify_assets.mpd_partitions)"
	@$(PY) -m spotify_assets.run_summary

## Debian's Chromium drives the UI test (Playwright never downloads a browser here).
browser:
	test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; }

## Install everything and run the whole test suite (what CI runs), then the fuzzers with a fixed budget.
test: install dagster-home browser validate
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest collected no tests"; rc=0; fi; exit $$rc
	$(MAKE) fuzz FUZZ_EXAMPLES=$(CI_FUZZ_EXAMPLES)

## Property-based fuzzing of the loaders, the song keys and the HTTP endpoints with FUZZ_EXAMPLES examples per target.
FUZZ_EXAMPLES ?= 2000
CI_FUZZ_EXAMPLES ?= 300
fuzz: install
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(PY) -m pytest -m fuzz -q spotify_assets_tests/test_fuzz.py spotify_assets_tests/test_fuzz_http.py

## The quick loop: skip tests marked slow (and the long fuzz budget: a -m here replaces addopts' "not fuzz").
test-fast: install dagster-home
	$(PY) -m pytest -m "not slow and not fuzz" $(PYTEST_ARGS)

validate: install dagster-home
	$(BIN)/dagster definitions validate -m spotify_assets.definitions

## The UI (webserver + daemon) on http://127.0.0.1:3000
dev: install dagster-home
	$(BIN)/dagster dev -m spotify_assets.definitions --host 127.0.0.1 --port 3000

## The recommendation API on http://127.0.0.1:8000 (after `make run`); OpenAPI at /docs.
serve: install
	$(PY) -m spotify_assets.serving serve --host 127.0.0.1 --port 8000

## Regenerate the committed sample inputs (deterministic).
sample: install
	$(PY) -m spotify_assets.synth --scale sample --seed 0 --out data/raw --gzip

clean-data:
	rm -rf data/warehouse data/artifacts
