# Two entry points: `make run` and `make test`. Both create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test bench clean venv

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# Foreground: the bundled SMSC simulator (until the gateway daemon lands, the simulator alone).
run: $(STAMP)
	$(BIN)/smsc-simulator --config config/simulator.toml

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/codec_bench.py
	$(BIN)/python bench/session_bench.py

clean:
	rm -rf $(VENV) build *.egg-info
