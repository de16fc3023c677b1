# Sourced by the scripts of real daemons (daemons.sh, test_systemd.sh) after `set -euo
# pipefail` and with $what naming the case: $work, a temp dir removed at exit, where every
# process whose pid is added to $pids is killed; fail MESSAGE says what failed with the tail
# of each *.log and *.txt in $work, and exits 1; wait_answer and stop_daemon below.
work=$(mktemp -d "${TMPDIR:-/tmp}/tmix-$what.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() {
  echo "FAIL $what: $*" >&2
  for f in "$work"/*.log "$work"/*.txt; do
    [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }
  done >&2
  exit 1
}

# wait_answer ENDPOINT NAME [TENTHS]: waits up to TENTHS tenths of a second (default 100) for
# the tmixd whose pid is $daemon to answer on ENDPOINT; fails if it exits or stays silent.
wait_answer() {
  local endpoint=$1 name=$2
  for _ in $(seq "${3:-100}"); do
    "$TMIXCTL" status -e "$endpoint" --timeout 0.2 >/dev/null 2>&1 && return 0
    kill -0 "$daemon" 2>/dev/null || fail "tmixd $name exited at start"
    sleep 0.1
  done
  fail "tmixd $name does not answer"
}

stop_daemon() { # PID: SIGTERM, and the daemon must exit 0
  kill -TERM "$1"
  wait "$1" || fail "tmixd exited $? after SIGTERM"
}
