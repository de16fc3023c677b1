#!/usr/bin/env bash
# Serving throughput: `tmixctl bench` against a real tmixd for 1 and 4 trainers, inline and
# shm delivery, on Debian's Fashion-MNIST (28x28 gray) and on a generated ImageFolder of 64x64
# JPEGs, with mixup.
#   tests/bench/serve.sh [BUILD_DIR] [SECONDS]     (default: build, 10)
# Prints one table row per (data set, trainers). Not a test: numbers depend on the machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
seconds=${2:-10}
tmixd=$build/daemon/tmixd
tmixctl=$build/client/tmixctl
work=$(mktemp -d "${TMPDIR:-/tmp}/tmix-bench.XXXXXX")
pid=
trap '[ -z "$pid" ] || kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT

"$build/tests/serve/make_imagefolder" "$work/jpeg64" 10 500 64 64

run() { # NAME DELIVERY TRAINERS tmixd-options...
  local name=$1 delivery=$2 trainers=$3
  shift 3
  "$tmixd" serve --server.endpoint="ipc://$work/b.sock" --server.state_dir="$work/state" \
    --server.log_level=warn "$@" 2>"$work/tmixd.log" &
  pid=$!
  for _ in $(seq 100); do
    "$tmixctl" status -e "ipc://$work/b.sock" --timeout 0.2 >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$tmixctl" bench -e "ipc://$work/b.sock" --seconds "$seconds" --trainers "$trainers" \
    --group "bench$trainers" --delivery "$delivery" |
    awk -v n="$name" -v d="$delivery" 'NR == 2 { printf "%-24s %-8s %s\n", n, d, $0 }'
  kill -TERM $pid
  wait $pid
  pid=
  rm -rf "$work/state"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "mixup, batch 128, float32 NCHW, over ipc://, $seconds s per row"
printf "%-24s %-8s %8s %10s %12s %12s %9s %9s %11s\n" "data set" delivery trainers batches \
  images images/s "p50 ms" "p99 ms" "least share"
for d in inline shm; do
  for t in 1 4; do
    run "fashion-mnist 28x28" $d $t
  done
done
for d in inline shm; do
  for t in 1 4; do
    run "jpeg imagefolder 64x64" $d $t --dataset.format=imagefolder \
      --dataset.path="$work/jpeg64" --augment.size=64 --augment.crop=random-resized
  done
done
