#!/usr/bin/env bash
# Stop the policy server(s) started by scripts/policy_up.sh (all of them, or PORT=N only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
exec "$PY" -m rowgym.agents.serving down ${PORT:+--port "$PORT"}
