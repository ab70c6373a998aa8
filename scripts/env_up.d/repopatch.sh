#!/usr/bin/env bash
# Repo-patch: download the synthesizer's sdists (pip, cached under $ROWGYM_CACHE/repopatch/sdists)
# and build/validate the synthesized task cache. ROWGYM_SYNTH_TASKS bounds the build
# (default 24 here, about a minute; unset ROWGYM_SYNTH_ENVUP_TASKS=all builds every candidate).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
N="${ROWGYM_SYNTH_ENVUP_TASKS:-${ROWGYM_SYNTH_TASKS:-24}}"
if [ "$N" = "all" ]; then
  "$PY" -m rowgym.envs.repopatch.synth.build
else
  "$PY" -m rowgym.envs.repopatch.synth.build --tasks "$N"
fi
