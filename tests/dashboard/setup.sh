#!/usr/bin/env bash
# The dashboard's browser test needs only Debian's chromium and playwright-core, not the
# whole VS Code toolchain of ../vscode/setup.sh. Same cache root (~/.cache/crlhf-e2e), same
# pinned playwright-core: if the VS Code setup already installed it, that copy is reused.
# The last stdout line is the module folder: PLAYWRIGHT=<dir>/node_modules/playwright-core
set -euo pipefail

PLAYWRIGHT_VERSION="${PLAYWRIGHT_VERSION:-1.57.0}"
ROOT="${CRLHF_E2E_CACHE_ROOT:-${XDG_CACHE_HOME:-$HOME/.cache}/crlhf-e2e}"
log() { echo "[crlhf-dashboard setup] $*" >&2; }
mkdir -p "$ROOT"

if [ ! -x /usr/bin/chromium ]; then
  log "apt-get install chromium"
  SUDO=""
  [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    -o DPkg::Lock::Timeout=300 chromium >&2
fi

for shared in "$ROOT"/cs-*-pw-"$PLAYWRIGHT_VERSION"/tools; do
  if [ -f "$shared/.done" ]; then
    echo "PLAYWRIGHT=$shared/node_modules/playwright-core"
    exit 0
  fi
done

DIR="$ROOT/playwright-core-$PLAYWRIGHT_VERSION"
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [ ! -f "$DIR/.done" ]; then
  log "npm install playwright-core@$PLAYWRIGHT_VERSION"
  export npm_config_audit=false npm_config_fund=false npm_config_update_notifier=false
  (cd "$DIR" && echo '{"private":true}' >package.json &&
    npm install --no-save --loglevel=error "playwright-core@$PLAYWRIGHT_VERSION" >&2)
  touch "$DIR/.done"
fi
echo "PLAYWRIGHT=$DIR/node_modules/playwright-core"
