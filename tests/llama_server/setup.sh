#!/usr/bin/env bash
# Builds llama.cpp's llama-server for tests/lsp/test_llama_server.py from the llama.cpp that
# the pinned llama-cpp-python vendors (its PyPI sdist: the same sources as the llamacpp
# backend; Debian 12 packages no llama.cpp), with the Makefile's flags: no AMX on x86 (its
# matmul segfaults on Q4_K_M, see the Makefile). The binary is cached outside the repo,
# keyed by version and flags, so only the first run compiles (~22 min on 2 busy cores,
# under nice). Re-runs find it and return at once. Safe to run concurrently (flock).
# The last stdout line is the binary: LLAMA_SERVER=<path>
set -euo pipefail

LLAMA_CPP="${LLAMA_CPP:-llama-cpp-python==0.3.36}"
VERSION="${LLAMA_CPP##*==}"
if [ "$(uname -m)" = x86_64 ]; then
  NO_AMX="${NO_AMX--mno-amx-tile -mno-amx-int8 -mno-amx-bf16}"
  LLAMA_BUILD="${LLAMA_BUILD:-no-amx}"
else
  NO_AMX="${NO_AMX-}"
  LLAMA_BUILD="${LLAMA_BUILD:-native}"
fi
ROOT="${CRLHF_LLAMA_SERVER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/crlhf/llama-server}"
DIR="$ROOT/$VERSION-$LLAMA_BUILD"
BIN="$DIR/llama-server"
log() { echo "[crlhf llama-server setup] $*" >&2; }
mkdir -p "$DIR"

exec 9>"$DIR/.lock"
flock 9
if [ ! -x "$BIN" ]; then
  WORK="$(mktemp -d)"
  trap 'rm -rf "$WORK"' EXIT
  log "pip download $LLAMA_CPP (sdist)"
  # The venv's pip (the Makefile's PIP): Debian's python3 may have none.
  ${PIP:-python3 -m pip} download -q --no-binary :all: --no-deps \
    -d "$WORK" "$LLAMA_CPP" >&2
  tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
  SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
  log "cmake --build llama-server (flags: $LLAMA_BUILD; ~22 min on 2 cores)"
  # Static, so the cached binary needs no .so beside it. No web UI (npm or a download from
  # Hugging Face) and no OpenSSL: the tests speak plain HTTP to 127.0.0.1.
  nice -n 19 cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=ON \
    -DCMAKE_C_FLAGS="$NO_AMX" -DCMAKE_CXX_FLAGS="$NO_AMX" \
    -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >&2
  nice -n 19 cmake --build "$WORK/build" --target llama-server -j "${JOBS:-2}" >&2
  # Copy then rename: a concurrent reader never sees a half-written binary.
  cp "$WORK/build/bin/llama-server" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
fi
echo "LLAMA_SERVER=$BIN"
