# Two commands on a fresh machine: `make demo` and `make test`. Each creates .venv and installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# CPU build from this machine's disk; on a GPU box install your CUDA build of torch into .venv first
# (or run `make TORCH=torch==2.14.1 demo`) and it is kept.
TORCH ?= torch==2.13.0

export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM := false
# OpenMP spin-waiting makes CPU training 4-10x slower whenever anything else runs on the machine.
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo test ui bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/aya materialize --summary
	@echo
	@echo "Browse the assets and their lineage:  make ui   (then open http://127.0.0.1:3000)"
	@echo "Query every artifact with SQL:        $(BIN)/aya sql \"select language, count(*) from prompts group by 1\""

# The UI test drives headless Chromium: Debian's chromium, installed once where we can (root with apt-get, as in CI);
# elsewhere the test skips and says why. `rm $(CHROMIUM_STAMP)` to try again.
CHROMIUM_STAMP := $(VENV)/.chromium

$(CHROMIUM_STAMP): | $(STAMP)
	@if command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing chromium for the UI test (apt-get)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null \
	    || echo "apt-get could not install chromium: the UI test will skip"; \
	else \
	  echo "no chromium, and no root apt-get to install it: the UI test will skip"; \
	fi
	touch $@

test: $(STAMP) $(CHROMIUM_STAMP)
	$(BIN)/python -m pytest -q

ui: $(STAMP)
	$(BIN)/aya ui

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf data/warehouse data/models data/shards data/dagster data/reports data/aya.duckdb data/aya.duckdb.wal
