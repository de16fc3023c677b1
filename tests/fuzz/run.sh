#!/usr/bin/env bash
# run.sh BUILD_DIR SECONDS [TARGET...]: runs each libFuzzer target of BUILD_DIR (configured
# with CC=clang -Dfuzz=true -Db_sanitize=address,undefined) for SECONDS, a target per core at
# a time, starting from a copy of its committed seed corpus (tests/fuzz/corpus/TARGET), and
# prints a table: executions, executions per second, corpus size. A crash, leak, sanitizer report or timeout stops that
# target; its input is kept in BUILD_DIR/fuzz-findings/ and the script exits 1 at the end.
set -uo pipefail
build=$1
seconds=$2
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(protocol decode idx cifar safetensors config)
findings=$build/fuzz-findings
mkdir -p "$findings"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# One target: its table row into $work/$t.row, a finding into $findings.
fuzz_one() {
  local t=$1 bin=$build/tests/fuzz/fuzz_$1 log=$work/$1.log rc runs result=ok
  mkdir -p "$work/$t"
  cp "$here/corpus/$t"/* "$work/$t/"
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$findings/$t-" "$work/$t" >"$log" 2>&1
  rc=$?
  runs=$(awk '/stat::number_of_executed_units/ { print $2 }' "$log")
  if [ $rc -ne 0 ]; then
    result="FOUND (exit $rc): $(grep -m1 -E 'ERROR|SUMMARY|runtime error|Timeout' "$log")"
    cp "$log" "$findings/$t.log"
  fi
  printf '%-12s %12s %10s %8s  %s\n' "$t" "${runs:-?}" "$(( ${runs:-0} / seconds ))" \
    "$(ls "$work/$t" | wc -l)" "$result" >"$work/$t.row"
}

# A target per core at a time (each is one process on one core), rows in the given order.
for t in "${targets[@]}"; do
  [ -x "$build/tests/fuzz/fuzz_$t" ] || { echo "run.sh: $build/tests/fuzz/fuzz_$t is not built" >&2; exit 2; }
done
printf '%-12s %12s %10s %8s  %s\n' target executions exec/s corpus result
for t in "${targets[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$(nproc)" ]; do wait -n; done
  fuzz_one "$t" &
done
wait
failed=0
for t in "${targets[@]}"; do
  cat "$work/$t.row"
  grep -q ' ok$' "$work/$t.row" || failed=1
done
exit $failed
