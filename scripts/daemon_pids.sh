# Sourced by env_up.sh, env_down.sh (and their test): pid-file helpers for the daemons env-up starts.
# Pids are reused, so a pid file is trusted only while its pid is a live process of the daemon's name.

# daemon_pid FILE NAME: print the pid in FILE and succeed if it is a live process called NAME.
daemon_pid() {
  local pid
  pid=$(tr -dc 0-9 < "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ] && echo "$pid"
}

# clear_stale_pid FILE NAME: remove FILE unless daemon_pid accepts it (needs the caller's log and as_root).
clear_stale_pid() {
  [ -e "$1" ] || return 0
  daemon_pid "$1" "$2" >/dev/null && return 0
  log "removing stale pid file $1 (pid $(tr -dc 0-9 < "$1" 2>/dev/null || true) is not $2)"
  as_root rm -f "$1"
}
