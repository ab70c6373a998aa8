#!/usr/bin/env bash
# Start the policy server (vLLM, OpenAI-compatible, tool calling on) in the background.
#
#   scripts/policy_up.sh                 # tiny model, port 8000
#   MODEL=/path/to/model PORT=8001 scripts/policy_up.sh
#
# Creates the vLLM venv if needed, builds the tiny model if no MODEL is given, then
# starts the server detached and records it in ${ROWGYM_CACHE:-~/.cache/rowgym}/run/.
# Prints the server's pidfile JSON (pid, base_url, served_model_name, log).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
PORT="${PORT:-8000}"

"$ROOT/scripts/setup_vllm.sh" >/dev/null
if [[ -z "${MODEL:-}" ]]; then
    # The builder needs the train extra (torch, tokenizers, trl).
    "$ROOT/scripts/setup_train.sh"
    MODEL="$("$PY" -m rowgym.trainers.tiny_model)"
fi
exec "$PY" -m rowgym.agents.serving up --model "$MODEL" --port "$PORT" ${SERVED_NAME:+--served-model-name "$SERVED_NAME"}
