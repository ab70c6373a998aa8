#!/usr/bin/env bash
# Install the training dependencies (torch, TRL, transformers, ...) into the main venv.
#
# Idempotent: a stamp file in the venv holds the hash of the requirement set.
# torch is pinned to 2.13.0 on purpose: that CPU wheel is on this machine's disk,
# and an unpinned torch would pull several GB of CUDA wheels.
#
# Usage: scripts/setup_train.sh            # uses ./.venv, or $VENV
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
REQS=("torch==2.13.0" "trl==1.16.0" "transformers==5.23.0" "accelerate==1.15.0" "tokenizers" "datasets==5.2.0")

want="$(printf '%s\n' "${REQS[@]}" | sha256sum | cut -c1-16)"
stamp="$VENV/.rowgym-train-stamp"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    echo "train deps up to date in $VENV" >&2
    exit 0
fi

"$VENV/bin/pip" install --quiet "${REQS[@]}"
"$VENV/bin/python" -c "import torch, trl, transformers; print('torch', torch.__version__, 'trl', trl.__version__, 'transformers', transformers.__version__)" >&2
echo "$want" >"$stamp"
