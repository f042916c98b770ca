# Daemons of scripts/kube-local and scripts/kube-node: started in their own session, tracked by
# PID files under $STATE/run, logging to $STATE/log/<name>.log. Sourced, not executed; the sourcing
# script defines STATE, DAEMONS and log.

alive() { [ -f "$STATE/run/$1.pid" ] && kill -0 "$(cat "$STATE/run/$1.pid")" 2>/dev/null; }

all_alive() {
  local name
  for name in "${DAEMONS[@]}"; do alive "$name" || return 1; done
}

# Starts a daemon in its own session with every inherited descriptor above stderr closed: in
# particular the heavy lock's, which would otherwise stay held for as long as the daemon lives.
start_daemon() {
  local name=$1; shift
  alive "$name" && return 0
  mkdir -p "$STATE/run" "$STATE/log"
  (
    for fd in /proc/self/fd/*; do
      fd=${fd##*/}
      [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null
    done
    exec setsid "$@" </dev/null >>"$STATE/log/$name.log" 2>&1
  ) &
  echo $! > "$STATE/run/$name.pid"
}

# stop_daemon NAME [TENTHS]: SIGTERM, then SIGKILL after TENTHS tenths of a second (default 50).
stop_daemon() {
  local name=$1 tenths=${2:-50} pid i
  [ -f "$STATE/run/$name.pid" ] || return 0
  pid=$(cat "$STATE/run/$name.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for i in $(seq 1 "$tenths"); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$STATE/run/$name.pid"
}

wait_for() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || { log "timed out after ${timeout}s waiting for $what"; return 1; }
    sleep 0.5
  done
}

# fail_up MESSAGE [LINES]: log it with the last LINES (default 15) of every daemon's log, exit 1.
fail_up() {
  log "$1"
  local f
  for f in "$STATE"/log/*.log; do
    [ -f "$f" ] || continue
    echo "----- last lines of $f" >&2
    tail -n "${2:-15}" "$f" >&2
  done
  exit 1
}
