#!/usr/bin/env bash
# Create the project venv (./.venv) and install rowgym with every extra it needs, plus
# Debian's Chromium for the browser environment. Idempotent and quick when done before:
# a stamp holds the hash of pyproject.toml + setup.py, so pip runs only when they change.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { echo "[bootstrap] $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Chromium comes from Debian: Playwright's own browser download cannot work on these machines.
# The headless shell (same build, no desktop layer) is what the shop env runs headless: far cheaper per episode.
if ! command -v chromium >/dev/null || [ ! -x /usr/lib/chromium/chromium-headless-shell ]; then
  log "installing chromium and chromium-headless-shell (Debian) ..."
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-headless-shell >/dev/null
fi

PY_BASE="${PYTHON:-python3.11}"
command -v "$PY_BASE" >/dev/null || PY_BASE=python3
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $PY_BASE"
  "$PY_BASE" -m venv .venv
  .venv/bin/pip install -q --upgrade pip "setuptools>=77" wheel
fi
want="$(cat pyproject.toml setup.py | sha256sum | cut -c1-16)"
stamp=.venv/.rowgym-stamp
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing rowgym[all] into .venv (torch is pinned to the CPU build) ..."
  .venv/bin/pip install -q -e ".[all]"
  echo "$want" > "$stamp"
fi
log "ready: $(.venv/bin/python -c 'import rowgym; print("rowgym", rowgym.__version__)')"
