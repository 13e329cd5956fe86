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

.PHONY: install setup-system setup-e2e test check lint format demo store bench clean

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

# `make check` installs everything the unit and integration tests need, but not what takes
# minutes: no llama.cpp build (the lsp extra without llama-cpp-python; the llamacpp tests
# skip without it) and no editors or browsers. A full install (`make install`) serves too.
CHECK_STAMP := $(VENV)/.installed-check
LSP_NO_LLAMA := $(VENV)/lsp-without-llama-cpp.txt
LSP_DEPS_PY := import tomllib; extras = tomllib.load(open("pyproject.toml", "rb"))["project"]["optional-dependencies"]; print("\n".join(r for r in extras["lsp"] if not r.startswith("llama-cpp-python")))
$(CHECK_STAMP): $(BIN)/python pyproject.toml
	@if [ -f $(STAMP) ] && [ $(STAMP) -nt pyproject.toml ]; then \
		echo "make check: the full install ($(STAMP)) is current"; \
	else \
		$(BIN)/pip install -q "$(TORCH)" && \
		$(BIN)/pip install -q -e ".[store,train,dev,demo]" && \
		$(BIN)/python -c '$(LSP_DEPS_PY)' > $(LSP_NO_LLAMA) && \
		$(BIN)/pip install -q -r $(LSP_NO_LLAMA); \
	fi
	touch $@

define LINT
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
endef

lint: install
	$(LINT)

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

# The editors and browser of the e2e tests (code-server, Node 24, playwright-core, chromium),
# cached under ~/.cache/crlhf-e2e, and llama.cpp's llama-server built from the sources of
# $(LLAMA_CPP) with its wheel's flags (~22 min once), cached under ~/.cache/crlhf/llama-server;
# re-runs take a second.
setup-e2e: setup-system $(BIN)/python
	bash tests/vscode/setup.sh >/dev/null
	bash tests/dashboard/setup.sh >/dev/null
	PIP="$(BIN)/pip" LLAMA_CPP="$(LLAMA_CPP)" LLAMA_BUILD="$(LLAMA_BUILD)" NO_AMX="$(NO_AMX)" \
		bash tests/llama_server/setup.sh >/dev/null

# Everything: e2e (VS Code, Neovim, the browser) and slow tests included; what .ci/run calls.
test: setup-system setup-e2e install lint
	$(BIN)/python -m pytest -q -ra

# Lint, the import contracts and every test but e2e and slow: minutes, no apt-get.
# Most tests wait on a process (a store, a language server), so CHECK_WORKERS pytest-xdist
# workers overlap the waits even on 2 cores; one file stays on one worker (its module
# fixtures are built once). CHECK_WORKERS=0 runs them in this process, as make test does.
# PYTEST_ARGS adds to pytest's (e.g. PYTEST_ARGS="--durations=20" or PYTEST_ARGS="-k store").
CHECK_WORKERS ?= 4
check: $(CHECK_STAMP)
	@command -v bwrap >/dev/null || { echo "make check: bubblewrap (bwrap) is missing, the sandbox tests need it: run make setup-system once"; exit 2; }
	$(LINT)
	$(BIN)/python -m pytest -q -ra -m "not e2e and not slow" -n $(CHECK_WORKERS) --dist loadfile $(PYTEST_ARGS)

# make demo DEMO_ARGS="--full" (or --model ID, --work-dir DIR, --device cuda; crlhf demo --help)
demo: install
	$(BIN)/crlhf demo $(DEMO_ARGS)

bench: install
	$(BIN)/python bench/store_ingest.py

clean:
	rm -rf $(VENV) build *.egg-info
