#!/usr/bin/env bash
# Where tmixd's CPU goes: `perf record` of a tmixd serving one `tmixctl bench --touch` trainer
# random-resized crops of a generated ImageFolder (1280 textured 500x375 JPEGs, quality 90),
# then perf's table by library and by function.
#   tests/bench/profile.sh [BUILD_DIR] [SIZE] [DELIVERY] [--section.key=value ...]
# BUILD_DIR (default build), SIZE the output side (default 224), DELIVERY inline or shm
# (default shm); the options are tmixd's (e.g. --mix.method=cutmix). Needs perf. Not a test.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build}
size=${2:-224}
delivery=${3:-shm}
shift $(($# < 3 ? $# : 3))
work=$(mktemp -d "${TMPDIR:-/tmp}/tmix-profile.XXXXXX")
pid=
trap '[ -z "$pid" ] || kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT
"$build/tests/serve/make_imagefolder" "$work/jpeg" 10 128 500 375 --texture >/dev/null
"$build/daemon/tmixd" serve --server.endpoint="ipc://$work/s.sock" \
  --server.state_dir="$work/state" --server.log_level=warn --dataset.format=imagefolder \
  --dataset.path="$work/jpeg" --augment.size="$size" --augment.crop=random-resized \
  --server.max_memory_mb=4096 "$@" 2>"$work/tmixd.log" &
pid=$!
for _ in $(seq 100); do
  "$build/client/tmixctl" status -e "ipc://$work/s.sock" --timeout 0.2 >/dev/null 2>&1 && break
  sleep 0.1
done
"$build/client/tmixctl" bench -e "ipc://$work/s.sock" --group profile --seconds 14 --touch \
  --delivery "$delivery" >"$work/bench.txt" &
trainer=$!
sleep 3 # past the start: the daemon is busy
perf record -F 999 -g -p "$pid" -o "$work/perf.data" -- sleep 8 >/dev/null 2>&1
wait "$trainer"
kill "$pid"
wait "$pid" || true
pid=
echo "tmixd serving ${size}x${size} random-resized crops, $delivery, one trainer: $(nproc) cores"
cat "$work/bench.txt"
perf report -i "$work/perf.data" --no-children --sort dso 2>/dev/null | grep '%' |
  grep -v '^#\|^ *|\|--' | head -6
perf report -i "$work/perf.data" --no-children --sort symbol -g none 2>/dev/null | grep '%' |
  grep -v '^#\|0x0000' | head -16
