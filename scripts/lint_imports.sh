#!/usr/bin/env bash
# Check the layering of rowgym's packages with import-linter (contracts in .importlinter).
# The top-level folders are mapped into the `rowgym` package only at install time, so the
# import graph is built from a copy laid out as Python sees it: .cache/lint/rowgym/{envs,agents,...}.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
OUT=.cache/lint
rm -rf "$OUT" && mkdir -p "$OUT"
cp -r rowgym "$OUT/rowgym"
for d in envs agents rollouts rewards trainers sandboxes evals; do cp -r "$d" "$OUT/rowgym/$d"; done
find "$OUT" -name __pycache__ -prune -exec rm -rf {} +
# run from inside the copy: the current directory comes first on sys.path, before the real tree
ROOT="$PWD"
cd "$OUT" && "$ROOT/$PY" -c "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())" --config "$ROOT/.importlinter" "$@"
