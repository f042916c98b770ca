# Timed stages for setup and test scripts: `stage NAME command...` runs the command, prints how
# long it took, and remembers the result; `stage_summary` prints the table and returns non-zero
# if any stage failed. Sourced, not executed.
STAGE_LOG=()
STAGE_FAILED=0

stage() {
  local name=$1; shift
  local start end rc
  start=$(date +%s)
  echo "=== [$name] $(date -u +%H:%M:%S) $*"
  "$@"; rc=$?
  end=$(date +%s)
  STAGE_LOG+=("$(printf '%-48s %5ss  %s' "$name" "$((end - start))" "$([ $rc -eq 0 ] && echo ok || echo "FAILED ($rc)")")")
  echo "=== [$name] took $((end - start))s (exit $rc)"
  [ $rc -eq 0 ] || STAGE_FAILED=1
  return $rc
}

stage_summary() {
  echo
  echo "=== stage timings"
  printf '%s\n' "${STAGE_LOG[@]}"
  return $STAGE_FAILED
}
