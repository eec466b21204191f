# Single entry point for set-up, the main job and the tests.
# `make demo` and `make test` are the README's two commands; both set up first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.qcfs-lava-installed

.PHONY: setup demo test lint bench clean-venv

setup: $(STAMP)

# Idempotent: the stamp is rebuilt only when the project's requirements change.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	# lava-nc 0.10.0 / lava-dl 0.6.0 declare python<3.11 and pin an old torch;
	# their real runtime needs are in pyproject.toml.
	$(BIN)/python -m pip install -q --no-deps --ignore-requires-python lava-nc==0.10.0 lava-dl==0.6.0
	$(BIN)/python -m pip install -q -e ".[dev,nir]"
	# sinabs 3.1.3 declares nir<=1.0.4 (and samna); its NIR import runs on nir 1.0.8.
	$(BIN)/python -m pip install -q --no-deps sinabs==3.1.3
	touch $(STAMP)

demo: setup
	$(BIN)/qcfs-lava demo

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .

# Speed benchmarks (results in benchmarks/results/; quoted in docs/speed.md).
bench: setup
	# spikingjelly 2.0.0 declares torchaudio and tensorboard, which the benchmark does not use
	$(BIN)/python -m pip install -q --no-deps spikingjelly==2.0.0
	$(BIN)/python benchmarks/bench_emulator.py
	$(BIN)/python benchmarks/bench_lava.py
	# not a speed benchmark: damaged-file counts for docs/failure-modes.md
	$(BIN)/python benchmarks/bench_fuzz.py

clean-venv:
	rm -rf $(VENV)
