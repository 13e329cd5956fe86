# Every target sets itself up: a .venv with torch's CPU build first (a bare `torch`
# would pull a multi-GB CUDA build), then the project with all its extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0

.PHONY: install test lint format demo store bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e ".[store,lsp,train,dev,model,demo]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install lint
	$(BIN)/python -m pytest -q -ra

# make demo DEMO_ARGS="--full" (or --model ID, --work-dir DIR, --device cuda; crlhf demo --help)
demo: install
	$(BIN)/crlhf demo $(DEMO_ARGS)

bench: install
	$(BIN)/python bench/store_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info
