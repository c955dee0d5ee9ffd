#!/usr/bin/env bash
# Run the whole test suite several times in a row beside CPU-bound processes, as CI's shared
# machines do to it. Exit 0 only when every run passed.
#
#   scripts/test_under_load.sh [RUNS] [HOGS]      # defaults: 3 runs beside 2 hogs
#   ROS_DISTRO=kilted scripts/test_under_load.sh  # the same for the second distribution
#
# Each hog is a busy loop at normal priority; they start before the first run and are
# killed when the script ends, however it ends. Logs go to runs/test-under-load-<time>/.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-3}"
HOGS="${2:-2}"
LOG_DIR="runs/test-under-load-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$LOG_DIR"
MAKE_ARGS=()
if [ -n "${ROS_DISTRO:-}" ]; then
  MAKE_ARGS+=("ROS_DISTRO=$ROS_DISTRO")
fi

make setup "${MAKE_ARGS[@]}" >"$LOG_DIR/setup.log" 2>&1 || {
  echo "make setup failed: see $LOG_DIR/setup.log" >&2
  exit 2
}

HOG_PIDS=()
stop_hogs() {
  for pid in "${HOG_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
}
trap stop_hogs EXIT INT TERM
for _ in $(seq "$HOGS"); do
  (while :; do :; done) &
  HOG_PIDS+=("$!")
done
echo "$HOGS CPU hog(s) running (pids ${HOG_PIDS[*]}) on $(nproc) core(s); logs in $LOG_DIR"

failed=0
for run in $(seq "$RUNS"); do
  start=$(date +%s)
  if make test "${MAKE_ARGS[@]}" >"$LOG_DIR/run-$run.log" 2>&1; then
    outcome=passed
  else
    outcome=FAILED
    failed=$((failed + 1))
  fi
  summary="$(grep -E '^(=+ )?[0-9]+ (passed|failed)' "$LOG_DIR/run-$run.log" | tail -1 || true)"
  load="$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo '?')"
  echo "run $run/$RUNS: $outcome in $(( $(date +%s) - start )) s, load $load: ${summary:-no summary}"
done
if [ "$failed" -gt 0 ]; then
  echo "$failed of $RUNS run(s) failed: see $LOG_DIR/run-*.log" >&2
  exit 1
fi
echo "all $RUNS runs passed beside $HOGS CPU hog(s)"
