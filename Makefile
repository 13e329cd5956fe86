# Every target sets itself up: a .venv with torch's CPU build first (a bare `torch`
# would pull a multi-GB CUDA build), then the project with all its extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0
# llama-cpp-python ships as source only: pip compiles llama.cpp (~5-10 min on 2 cores).
# Build its wheel once into a cache outside the repo; later venvs install it in seconds.
WHEELHOUSE ?= $(HOME)/.cache/crlhf/wheels
LLAMA_CPP ?= llama-cpp-python==0.3.36

.PHONY: install test lint format demo store bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	mkdir -p "$(WHEELHOUSE)"
	ls "$(WHEELHOUSE)"/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		$(BIN)/pip wheel -q --no-deps -w "$(WHEELHOUSE)" "$(LLAMA_CPP)"
	$(BIN)/pip install -q --find-links "$(WHEELHOUSE)" -e ".[store,lsp,train,dev,model,demo]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install lint
	@command -v nvim >/dev/null || (apt-get update -q && apt-get install -y -q neovim)  # the Neovim LSP test
	$(BIN)/python -m pytest -q -ra

# make demo DEMO_ARGS="--full" (or --model ID, --work-dir DIR, --device cuda; crlhf demo --help)
demo: install
	$(BIN)/crlhf demo $(DEMO_ARGS)

bench: install
	$(BIN)/python bench/store_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info
