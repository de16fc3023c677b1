#!/usr/bin/env bash
# How long tmixd's event loop takes to answer while it serves. A Status request, answered
# on the loop, every 10 ms for SECONDS, while one `tmixctl pull` trainer takes mixup batches
# of Fashion-MNIST (so the progress changes, and is saved, every second):
# - quiet: 28x28 batches by shared memory;
# - disk writer beside: the same, with a trainer saving a checkpoint beside the state
#   directory (`dd ... conv=fsync` of 1 GB, again and again), which slows the progress
#   file's fsyncs;
# - inline 224x224: batches of 128 float32 224x224 images (25.7 MB) inside their messages,
#   as a trainer over tcp:// takes them.
#   tests/bench/loop_latency.sh [BUILD_DIR] [SECONDS]     (default: build, 20)
# The state directory is made under STATE_PARENT (default: the current directory, which
# should be on the disk to measure: /tmp may be a tmpfs). Prints a row per case.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
seconds=${2:-20}
work=$(mktemp -d "${STATE_PARENT:-$PWD}/tmix-loop.XXXXXX")
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
export TMIX_LIBRARY=$build/client/libtmix.so.0 PYTHONPATH=$root/client/python
python=${PYTHON:-python3}
sock=ipc://$work/l.sock

case_row() { # NAME dd|- DAEMON_ARGS TRAINER_ARGS
  # shellcheck disable=SC2086 # the arguments are word lists
  "$build/daemon/tmixd" serve --server.endpoint="$sock" --server.state_dir="$work/state" \
    --server.log_level=warn --dataset.path=/usr/share/datasets/fashion-mnist \
    --mix.method=mixup $3 2>"$work/tmixd.log" &
  local daemon=$! writer='' trainer
  pids=("$daemon")
  for _ in $(seq 100); do
    "$build/client/tmixctl" status -e "$sock" --timeout 0.2 >/dev/null 2>&1 && break
    sleep 0.1
  done
  if [ "$2" = dd ]; then
    (while :; do dd if=/dev/zero of="$work/dd" bs=1M count=1000 conv=fsync 2>/dev/null
       rm -f "$work/dd"; done) &
    writer=$!
    pids+=("$writer")
  fi
  # shellcheck disable=SC2086
  "$build/client/tmixctl" pull -e "$sock" --batches 1000000 --hold-ms 5 $4 >/dev/null 2>&1 &
  trainer=$!
  pids+=("$trainer")
  sleep 1
  "$python" - "$sock" "$seconds" "$1" <<'PY'
import sys, time
import tmix
endpoint, seconds, name = sys.argv[1], float(sys.argv[2]), sys.argv[3]
ms = []
end = time.monotonic() + seconds
while time.monotonic() < end:
    t = time.monotonic()
    tmix.status(endpoint)
    ms.append((time.monotonic() - t) * 1e3)
    time.sleep(0.01)
ms.sort()
at = lambda q: ms[min(len(ms) - 1, int(len(ms) * q))]
print(f"{name:<22} {len(ms):>8} {at(0.5):>9.2f} {at(0.99):>9.2f} {at(0.999):>10.2f} {ms[-1]:>9.2f}")
PY
  kill $trainer ${writer:-} 2>/dev/null || true
  kill -TERM $daemon
  wait $daemon || true
  wait 2>/dev/null || true
  rm -rf "$work/state" "$work/dd"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs);" \
  "state on $(df --output=source "$work" | tail -1); $seconds s per row"
printf "%-22s %8s %9s %9s %10s %9s\n" case requests "p50 ms" "p99 ms" "p99.9 ms" "max ms"
case_row quiet - "" "--delivery shm"
case_row "disk writer beside" dd "" "--delivery shm"
case_row "inline 224x224" - "--augment.size=224" "--delivery inline --dtype float32"
