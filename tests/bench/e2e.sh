#!/usr/bin/env bash
# End-to-end delivery: the images/s that 1, 4 and 8 trainers get from tmixd, for inline, shm
# and cuda delivery, with 32x32 and 224x224 outputs (random-resized crop + flip) from a
# generated ImageNet-like ImageFolder (500x375 textured JPEGs, quality 90, about 95 KB each);
# then, in the same run, the peer (tests/bench/peer_loader.py: a PyTorch DataLoader with the
# same mixing in the trainer) and the ratio tmixd / peer per size.
#   tests/bench/e2e.sh [BUILD_DIR] [SECONDS] [--quick] [-c FILE]
#                      [--method M --teacher FILE --module FILE] [--section.key=value ...]
# BUILD_DIR (default build) holds tmixd, tmixctl, libtmix and make_imagefolder, unless TMIXD,
# TMIXCTL, TMIX_LIBRARY and MAKE_IMAGEFOLDER name them (a bundle). SECONDS per row (default 10). --quick: 320
# images instead of 1280. The method is the daemon's configured one (mixup by default, which
# runs on any CPU); -c FILE and the other options are tmixd's and reach the peer too (it reads
# `tmixd serve --print-config`). Without -c, tmixd gets 4 GiB of batch memory
# (--server.max_memory_mb=4096): a 224x224 batch is 77 MB, and the default 1 GiB would leave
# workers idle on a 16-core box. PYTHON (default python3) runs the peer, with numpy, torch,
# torchvision and PIL.
# Each trainer is a separate `tmixctl bench --touch` process, as real trainers are (for cuda
# delivery, where PyTorch sees a GPU, a tests/bench/torch_trainer.py process); a row adds
# their images/s, takes the worst p50 and p99 of tmix_next, and the means per batch of the
# trainer's time (tmix_next + reading every byte) and of a memcpy of the batch's images; share
# = trainer ms / memcpy ms. A second table gives what receiving a batch costs a trainer when
# the daemon is ahead: one trainer spending twice the batch time of the first table on each
# batch (`tmixctl bench --step-ms`), the median tmix_next beside a memcpy of the images.
# Not a test: numbers depend on the machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/build
seconds=10
per_class=128
tmixd_opts=()
positional=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) per_class=32 ;;
    -c | --config) tmixd_opts+=(-c "$(realpath "$2")"); shift ;;
    --method) tmixd_opts+=(--mix.method="$2"); shift ;;
    --teacher) tmixd_opts+=(--teacher.path="$(realpath "$2")"); shift ;;
    --module) tmixd_opts+=(--mix.module="$(realpath "$2")"); shift ;;
    --*.*=*) tmixd_opts+=("$1") ;;
    -*) echo "e2e.sh: unknown option '$1'" >&2; exit 2 ;;
    *)
      case $positional in
        0) build=$1 ;;
        1) seconds=$1 ;;
        *) echo "e2e.sh: unexpected argument '$1'" >&2; exit 2 ;;
      esac
      positional=$((positional + 1)) ;;
  esac
  shift
done
has_config=$(for o in "${tmixd_opts[@]}"; do [ "$o" = -c ] && echo yes; done)
[ -n "$has_config" ] || tmixd_opts=(--server.max_memory_mb=4096 "${tmixd_opts[@]}")
tmixd=${TMIXD:-$build/daemon/tmixd}
tmixctl=${TMIXCTL:-$build/client/tmixctl}
make_imagefolder=${MAKE_IMAGEFOLDER:-$build/tests/serve/make_imagefolder}
export TMIX_LIBRARY=${TMIX_LIBRARY:-$build/client/libtmix.so.0}
python=${PYTHON:-python3}
work=$(mktemp -d "${TMPDIR:-/tmp}/tmix-e2e.XXXXXX")
sock=ipc://$work/e2e.sock
pid=
trap '[ -z "$pid" ] || kill -9 $pid 2>/dev/null || true; rm -rf "$work"' EXIT

classes=10
"$make_imagefolder" "$work/jpeg" $classes $per_class 500 375 --texture

# tmixd's options for output SIZE: the data set, the crop, then the caller's.
daemon_opts() {
  echo --dataset.format=imagefolder --dataset.path="$work/jpeg" --augment.size="$1" \
    --augment.crop=random-resized
}

start_daemon() { # SIZE: starts tmixd, waits until it answers
  # shellcheck disable=SC2046
  "$tmixd" serve --server.endpoint="$sock" --server.state_dir="$work/state" \
    --server.log_level=warn $(daemon_opts "$1") "${tmixd_opts[@]}" 2>"$work/tmixd.log" &
  pid=$!
  for _ in $(seq 600); do
    "$tmixctl" status -e "$sock" --timeout 0.2 >/dev/null 2>&1 && return 0
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  echo "e2e.sh: tmixd did not start: $(tail -1 "$work/tmixd.log")" >&2
  exit 1
}

stop_daemon() {
  kill -TERM $pid
  wait $pid || true
  pid=
  rm -rf "$work/state"
}

# One table row from `tmixctl bench --touch` outputs (line 2 of each file): images/s added,
# the worst p50 and p99, trainer ms weighted by batches, memcpy ms averaged.
row() { # SIZE DELIVERY TRAINERS FILES...
  local size=$1 delivery=$2 k=$3
  shift 3
  awk -v s="$size" -v d="$delivery" -v k="$k" '
    FNR == 2 { b += $2; ips += $4; p50 = $5 > p50 ? $5 : p50; p99 = $6 > p99 ? $6 : p99
               busy += $8 * $2; copy += $9; n++ }
    END { t = b ? busy / b : 0; c = n ? copy / n : 0
          share = c ? sprintf("%.0f%%", 100 * t / c) : "n/a"
          printf "%-8s %-8s %8d %10.1f %9.2f %9.2f %11.3f %10.3f %8s\n",
                 s, d, k, ips, p50, p99, t, c, share }' "$@"
}

bench() { # SIZE DELIVERY TRAINERS [STEP_MS]: K tmixctl processes against a fresh daemon
  local size=$1 delivery=$2 k=$3 step=${4:-0} i rc failed=
  start_daemon "$size"
  [ -n "${daemon_line:-}" ] ||
    daemon_line=$("$tmixctl" status -e "$sock" | awk '$1 == "backend" || $1 == "method" {
      printf "%s%s %s", sep, $1, $2; sep = ", " }')
  local pids=()
  for i in $(seq "$k"); do
    if [ "$delivery" = cuda ]; then
      PYTHONPATH=$root/client/python "$python" "$root/tests/bench/torch_trainer.py" "$sock" \
        --seconds "$seconds" --delivery cuda --device cuda:0 --step-ms "$step" \
        >"$work/out.$i" 2>"$work/err.$i" &
    else
      "$tmixctl" bench -e "$sock" --seconds "$seconds" --group e2e --delivery "$delivery" \
        --touch --step-ms "$step" >"$work/out.$i" 2>"$work/err.$i" &
    fi
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    rc=0
    wait "${pids[$i]}" || rc=$?
    [ $rc -eq 0 ] || failed="tmixctl exited $rc: $(head -1 "$work/err.$((i + 1))")"
  done
  stop_daemon
  if [ -n "$failed" ]; then
    printf "%-8s %-8s %8d  failed: %s\n" "${size}x$size" "$delivery" "$k" "$failed"
  else
    row "${size}x$size" "$delivery" "$k" $(seq -f "$work/out.%g" "$k")
  fi
}

# Whether a PyTorch trainer here can take cuda delivery (tmixctl reads host memory only).
torch_gpu() {
  "$python" -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null
}

gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 || true)
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
  "GPU: ${gpu:-none}; load $(cut -d' ' -f1-3 /proc/loadavg)"
table=$work/table
header=$(printf "%-8s %-8s %8s %10s %9s %9s %11s %10s %8s" size delivery trainers images/s \
  "p50 ms" "p99 ms" "trainer ms" "memcpy ms" share)
for size in 32 224; do
  for delivery in inline shm cuda; do
    for k in 1 4 8; do
      if [ $delivery = cuda ] && ! torch_gpu; then
        printf "%-8s %-8s %8d  n/a (no GPU for PyTorch)\n" "${size}x$size" cuda "$k"
      else
        bench $size $delivery $k
      fi
    done
  done
done >"$table"
# shellcheck disable=SC2046
"$tmixd" serve --print-config $(daemon_opts 224) "${tmixd_opts[@]}" >"$work/config"
echo "tmixd: $daemon_line, batch $(awk '/^\[output\]/ { o = 1 } o && $1 == "batch_size" {
  print $3; exit }' "$work/config"), float32 NCHW over ipc://; trainers: separate" \
  "\`tmixctl bench --touch\` processes; $seconds s per row;" \
  "$((classes * per_class)) JPEGs 500x375 q90"
echo "$header"
cat "$table"

# The cost of a ready batch: one trainer, a step of twice the batch time measured above.
echo
printf "%-8s %-8s %9s %14s %10s %8s\n" size delivery "step ms" "next p50 ms" "memcpy ms" share
for size in 32 224; do
  for delivery in inline shm cuda; do
    ips=$(awk -v s="${size}x$size" -v d=$delivery '$1 == s && $2 == d && $3 == 1 { print $4 }' \
      "$table")
    case $ips in '' | *[!0-9.]* | 0 | 0.0*) continue ;; esac # none: no step to time
    step=$(awk -v ips="$ips" 'BEGIN { printf "%.1f", 2 * 128 * 1000 / ips }')
    bench $size $delivery 1 "$step" | awk -v step="$step" '$4 ~ /^[0-9.]+$/ {
      share = $8 > 0 ? sprintf("%.1f%%", 100 * $5 / $8) : "n/a"
      printf "%-8s %-8s %9s %14s %10s %8s\n", $1, $2, step, $5, $8, share }'
  done
done

# The peer: one trainer, a DataLoader with a worker per core, per output size.
for size in 32 224; do
  # shellcheck disable=SC2046
  "$tmixd" serve --print-config $(daemon_opts $size) "${tmixd_opts[@]}" >"$work/peer.conf"
  if PYTHONPATH=$root/client/python "$python" "$root/tests/bench/peer_loader.py" \
    "$work/peer.conf" --seconds "$seconds" >"$work/peer.$size" 2>"$work/peer.err"; then
    row "${size}x$size" peer 1 "$work/peer.$size"
  else
    printf "%-8s %-8s %8d  failed: %s\n" "${size}x$size" peer 1 "$(tail -1 "$work/peer.err")"
    rm -f "$work/peer.$size"
  fi
done | tee "$work/peer"

# Summaries: tmixd / peer at one trainer, and what 8 trainers get of one trainer's total.
awk '$4 ~ /^[0-9.]+$/ { ips[$1 " " $2 " " $3] = $4 }
  function ratio(a, b, fmt) { return a > 0 && b > 0 ? sprintf(fmt, a / b) : "n/a" }
  END {
    split("32x32 224x224", sizes, " ")
    for (i = 1; i <= 2; i++) {
      s = sizes[i]
      peer = ips[s " peer 1"]
      printf "%s: tmixd/peer at 1 trainer: inline %s, shm %s; 8 trainers/1: inline %s, shm %s\n",
        s, ratio(ips[s " inline 1"], peer, "%.2fx"), ratio(ips[s " shm 1"], peer, "%.2fx"),
        ratio(100 * ips[s " inline 8"], ips[s " inline 1"], "%.0f%%"),
        ratio(100 * ips[s " shm 8"], ips[s " shm 1"], "%.0f%%")
    }
  }' "$table" "$work/peer"
