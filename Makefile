# Every target sets itself up: a .venv with torch's CPU build first (a bare `torch`
# would pull a multi-GB CUDA build), then the project with all its extras.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TORCH ?= torch==2.13.0
# llama-cpp-python ships as source only: pip compiles llama.cpp (~5-10 min on 2 cores).
# Build its wheel once into a cache outside the repo; later venvs install it in seconds.
# llama.cpp builds for the CPU it compiles on (-march=native), AMX included where the CPU
# has it; its AMX matmul segfaults on the default model's Q4_K_M weights (seen on a Xeon
# with amx_int8, llama-cpp-python 0.3.36), so x86 builds leave AMX out: AVX-512/AVX2 and
# the repacked Q4_K kernels still apply. The cache folder is named after the flags.
LLAMA_CPP ?= llama-cpp-python==0.3.36
ifeq ($(shell uname -m),x86_64)
NO_AMX := -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
LLAMA_CMAKE_ARGS ?= -DCMAKE_C_FLAGS='$(NO_AMX)' -DCMAKE_CXX_FLAGS='$(NO_AMX)'
LLAMA_BUILD ?= no-amx
else
LLAMA_CMAKE_ARGS ?=
LLAMA_BUILD ?= native
endif
WHEELHOUSE ?= $(HOME)/.cache/crlhf/wheels/$(LLAMA_BUILD)

.PHONY: install setup-system test lint format demo store bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH)"
	mkdir -p "$(WHEELHOUSE)"
	ls "$(WHEELHOUSE)"/llama_cpp_python-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel -q --no-deps --no-cache-dir \
			-w "$(WHEELHOUSE)" "$(LLAMA_CPP)"
	$(BIN)/pip install -q --find-links "$(WHEELHOUSE)" -e ".[store,lsp,train,dev,model,demo]"
	touch $(STAMP)

install: $(STAMP)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# System packages, apt-get installed only where missing (CI runs `make test` as root on a
# fresh Debian): bubblewrap jails the generated programs (crlhf_trainer/sandbox.py), without
# it evaluation refuses to run them; Neovim drives the Neovim LSP test.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
setup-system:
	@missing=""; \
	command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v nvim >/dev/null || missing="$$missing neovim"; \
	if [ -n "$$missing" ]; then \
		$(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q $$missing; \
	fi

test: setup-system install lint
	$(BIN)/python -m pytest -q -ra

# make demo DEMO_ARGS="--full" (or --model ID, --work-dir DIR, --device cuda; crlhf demo --help)
demo: install
	$(BIN)/crlhf demo $(DEMO_ARGS)

bench: install
	$(BIN)/python bench/store_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info
