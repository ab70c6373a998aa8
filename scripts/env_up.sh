#!/usr/bin/env bash
# Bring up what rowgym's sandboxes need: Docker (installed and started if absent),
# debootstrap and bubblewrap, and the sandbox image built from a cached rootfs.
# Idempotent: a second run only checks and prints. Stop with scripts/env_down.sh,
# which stops only what this script started (recorded in $STATE_DIR).
set -euo pipefail

cd "$(dirname "$0")/.."
CACHE="${ROWGYM_CACHE:-$HOME/.cache/rowgym}"
STATE_DIR="$CACHE/run"
DOCKERD_LOG="${ROWGYM_DOCKERD_LOG:-/var/log/dockerd.log}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
mkdir -p "$STATE_DIR"
log() { echo "[env-up] $*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
source scripts/daemon_pids.sh

# 1. Packages. apt-get update only when something is actually missing.
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v bwrap >/dev/null || missing+=(bubblewrap)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} ..."
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
log "packages: dockerd, debootstrap, bwrap present"

# 2. Docker daemon: start it only if the socket does not answer.
docker_ok() { timeout 5 docker info >/dev/null 2>&1; }
if docker_ok; then
  log "docker daemon already answering"
else
  # A daemon killed without cleanup leaves its pid files behind. If that pid now belongs to
  # another process, dockerd takes it for its containerd ("containerd is still running") and
  # waits for a socket that never comes: drop pid files whose process is not the named daemon.
  clear_stale_pid /var/run/docker/containerd/containerd.pid containerd
  clear_stale_pid /var/run/docker.pid dockerd
  log "starting dockerd (log: $DOCKERD_LOG) ..."
  # setsid + nohup: the daemon must outlive this shell (make runs each recipe in its own).
  # dockerd writes its own pid file; we copy it so env-down knows we started it.
  as_root setsid nohup dockerd --pidfile /var/run/docker.pid >"$DOCKERD_LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 60); do docker_ok && break; sleep 0.5; done
  if ! docker_ok; then
    log "dockerd did not come up in 30 s; last lines of $DOCKERD_LOG:"
    tail -n 20 "$DOCKERD_LOG" || true
    exit 1
  fi
  cat /var/run/docker.pid > "$STATE_DIR/dockerd.pid"
  log "dockerd up (pid $(cat "$STATE_DIR/dockerd.pid"))"
fi

# 2b. Leftovers of killed runs: containers and temp dirs whose owner process is dead
# (and the work-dir quotas mounted in them).
"$PY" -m rowgym.sandboxes.cleanup || log "cleanup failed (continuing)"

# 3. Rootfs (cached by recipe hash) and the docker image (skipped when current).
"$PY" -m rowgym.sandboxes.image build

# 4. Other components may drop their own bring-up steps here (e.g. the shop server).
if [ -d scripts/env_up.d ]; then
  for f in scripts/env_up.d/*.sh; do
    [ -e "$f" ] || continue
    log "running $f"
    bash "$f"
  done
fi
log "done"
