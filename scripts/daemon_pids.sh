# Sourced by env_up.sh (and its test): pid-file helpers for the daemons it starts.
# Needs log and as_root from the caller.
# clear_stale_pid FILE NAME: remove FILE unless it holds the pid of a live process called NAME.
clear_stale_pid() {
  local pid
  [ -e "$1" ] || return 0
  pid=$(tr -dc 0-9 < "$1" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]; then return 0; fi
  log "removing stale pid file $1 (pid ${pid:-none} is not $2)"
  as_root rm -f "$1"
}
