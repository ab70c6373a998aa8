#!/usr/bin/env bash
# Undo scripts/env_up.sh: remove rowgym sandbox containers and stop dockerd only if
# env_up.sh started it. The image and the cached rootfs are kept (rebuilding costs ~30 s);
# pass --purge to delete them too.
set -uo pipefail

cd "$(dirname "$0")/.."
CACHE="${ROWGYM_CACHE:-$HOME/.cache/rowgym}"
STATE_DIR="$CACHE/run"
log() { echo "[env-down] $*"; }
source scripts/daemon_pids.sh

if [ -d scripts/env_down.d ]; then
  for f in scripts/env_down.d/*.sh; do
    [ -e "$f" ] || continue
    log "running $f"
    bash "$f"
  done
fi

if timeout 5 docker info >/dev/null 2>&1; then
  ids=$(docker ps -aq --filter label=org.rowgym.sandbox)
  if [ -n "$ids" ]; then
    log "removing $(echo "$ids" | wc -l) sandbox container(s)"
    docker rm -f $ids >/dev/null
  fi
  if [ "${1:-}" = "--purge" ]; then
    docker image ls -q rowgym-sandbox | sort -u | xargs -r docker rmi -f >/dev/null
    rm -rf "$CACHE/sandbox"
    log "purged images and rootfs cache"
  fi
fi

pidfile="$STATE_DIR/dockerd.pid"
if [ -f "$pidfile" ]; then
  # Only stop it if that pid is still a dockerd (pids are reused).
  if pid=$(daemon_pid "$pidfile" dockerd); then
    log "stopping dockerd (pid $pid, started by env-up)"
    kill "$pid"
    for _ in $(seq 1 40); do [ -e "/proc/$pid" ] || break; sleep 0.25; done
    [ -e "/proc/$pid" ] && { log "dockerd still alive; sending KILL"; kill -9 "$pid"; }
  else
    log "dockerd pid $(cat "$pidfile") is gone"
  fi
  rm -f "$pidfile"
else
  log "dockerd was not started by env-up; leaving it alone"
fi
log "done"
