# One entry point for people and CI. `make test` works on a fresh machine: it makes the venv.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv install lint types unit test test-net check bench bench-quick demo clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]' --config-settings editable_mode=strict
	touch $(STAMP)

venv: $(STAMP)

# strict editable mode links files: re-link after adding a module (cheap)
install: $(STAMP)
	$(BIN)/pip install -q --no-deps -e . --config-settings editable_mode=strict

lint: install
	$(BIN)/ruff format --check protocol crypto relay pages central app demo cli tests bench
	$(BIN)/ruff check protocol crypto relay pages central app demo cli tests bench
	$(BIN)/lint-imports

types: install
	$(BIN)/mypy -p estafet.protocol -p estafet.crypto -p estafet.pages
	$(BIN)/mypy -p estafet.relay -p estafet.central -p estafet.app -p estafet.demo -p estafet.cli

unit: install
	$(BIN)/python -m pytest -q -m "not net and not browser"

test-net: install
	$(BIN)/python -m pytest -q -m "net"

# lint, types, then every test (the netns testbed and browser test run where the platform allows)
test: lint types
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run_all.py

bench-quick: install
	$(BIN)/python bench/run_all.py --quick

demo: $(STAMP)
	$(BIN)/pip install -q --no-deps -e . --config-settings editable_mode=strict
	$(BIN)/estafet demo

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
