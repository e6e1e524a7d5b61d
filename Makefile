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

# Foreground: the bundled SMSC simulator (background, stopped with us) and the gateway on
# the embedded SQLite store under ./state. Ctrl-C stops both.
run: $(STAMP)
	mkdir -p state
	$(BIN)/smsc-simulator --config config/simulator.toml --log-format json > state/simulator.log 2>&1 & \
	SIM=$$!; trap 'kill $$SIM 2>/dev/null; wait $$SIM 2>/dev/null' EXIT INT TERM; \
	sleep 1; $(BIN)/smpp-gateway run --config config/gateway.toml

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/codec_bench.py
	$(BIN)/python bench/receipt_bench.py
	$(BIN)/python bench/session_bench.py
	$(BIN)/python bench/simulator_bench.py
	$(BIN)/python bench/throttle_bench.py
	$(BIN)/python bench/store_bench.py
	$(BIN)/python bench/gateway_bench.py
	-$(BIN)/python bench/instructions_bench.py  # needs valgrind

clean:
	rm -rf $(VENV) build *.egg-info
