# Sourced by the scripts of real daemons (test_serve.sh, test_systemd.sh) after `set -euo
# pipefail` and with $what naming the case: $work, a temp dir removed at exit, where every
# process whose pid is added to $pids is killed; fail MESSAGE says what failed with the tail
# of each *.log and *.txt in $work, and exits 1.
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
