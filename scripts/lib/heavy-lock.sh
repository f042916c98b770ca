# The machine-wide lock that heavy steps (Go builds, clusters, benchmarks) take, so that two never
# share the 2 cores. Sourced, not executed; `log` must be defined by the sourcing script.
LOCK=${FC_HEAVY_LOCK:-/tmp/fc-heavy.lock}

# True when this process or one of its ancestors holds the lock (`flock $LOCK scripts/setup all`,
# or `flock $LOCK pytest ...` whose fixture runs us): taking it again through a new descriptor
# would wait for ourselves forever.
lock_held_by_ancestor() {
  local pid=$$ fd
  while [ "${pid:-0}" -gt 1 ]; do
    for fd in /proc/"$pid"/fd/*; do
      [ "$(readlink "$fd" 2>/dev/null)" = "$LOCK" ] && return 0
    done
    pid=$(awk '/^PPid:/ {print $2}' /proc/"$pid"/status 2>/dev/null)
  done
  return 1
}

# Runs "$@" holding the lock (directly when an ancestor already holds it).
with_heavy_lock() {
  if lock_held_by_ancestor; then "$@"; return; fi
  log "waiting for $LOCK"
  flock "$LOCK" "$@"
}
