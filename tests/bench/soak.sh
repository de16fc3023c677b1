#!/usr/bin/env bash
# Soak: TRAINERS trainers for SECONDS against one tmixd on Fashion-MNIST (mixup, 28x28, batch
# 128): four shard groups, each trainer a loop of `tmixctl pull` processes (50 batches each,
# then Bye, then again: trainers come and go all the time), half inline, half shm.
#   tests/bench/soak.sh [BUILD_DIR] [SECONDS] [TRAINERS]    (default: build, 600, 32)
# Prints the daemon's RSS every tenth of the run, then per group: batches, images/s, epochs
# complete, samples lost in them and duplicated in any epoch (both must be 0), and the p50 and
# p99 of Next to batch from tmixctl status. Not a test: the numbers depend on the machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
seconds=${2:-600}
trainers=${3:-32}
tmixd=$build/daemon/tmixd
tmixctl=$build/client/tmixctl
work=$(mktemp -d "${TMPDIR:-/tmp}/tmix-soak.XXXXXX")
pids=()
trap 'kill -9 "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
e=ipc://$work/d.sock
"$tmixd" serve --server.endpoint="$e" --server.state_dir="$work/state" \
  --dataset.path=/usr/share/datasets/fashion-mnist --server.log_level=warn 2>"$work/tmixd.log" &
daemon=$!
pids+=("$daemon")
for _ in $(seq 100); do "$tmixctl" status -e "$e" --timeout 0.2 >/dev/null 2>&1 && break; sleep 0.1; done

end=$(($(date +%s) + seconds))
trainer() { # trainer K: pulls until the end, each process 50 batches
  local k=$1 delivery=inline
  [ $((k % 2)) -eq 0 ] && delivery=shm
  while [ "$(date +%s)" -lt "$end" ]; do
    "$tmixctl" pull -e "$e" --group "soak$((k % 4))" --batches 50 --batch-size 128 \
      --delivery $delivery --print-ids >>"$work/ids.$((k % 4))" ||
      { echo "trainer $k: tmixctl exited $?" >&2; return 1; }
  done
}
for k in $(seq 1 "$trainers"); do
  trainer "$k" &
  pids+=($!)
done
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "$trainers trainers for $seconds s, Fashion-MNIST, mixup, batch 128, 4 shard groups"
printf "%8s %10s\n" "seconds" "RSS MiB"
start=$(date +%s)
for i in $(seq 1 10); do
  sleep $((seconds / 10))
  printf "%8d %10.1f\n" $(($(date +%s) - start)) \
    "$(awk '/^VmRSS/ { print $2 / 1024 }' "/proc/$daemon/status")"
done
failed=0
for p in "${pids[@]:1}"; do wait "$p" || failed=1; done
status=$("$tmixctl" status -e "$e")
kill -TERM "$daemon"
wait "$daemon" || failed=1
printf "\n%-8s %9s %10s %8s %6s %11s\n" group batches images/s epochs lost duplicated
for g in 0 1 2 3; do
  # Epoch by epoch (a stable sort keeps each epoch's lines together), so that only one
  # epoch's ids are held at a time: no id twice in any epoch; an epoch is complete once 60000
  # ids of it came, and then none may be missing.
  sort -s -n -k2,2 "$work/ids.$g" | awk -v g="soak$g" -v s="$seconds" '
    function close_epoch() {
      if (n >= 60000) { complete++; lost += 60000 - distinct }
      dup += d
      delete seen; n = 0; distinct = 0; d = 0
    }
    $2 != epoch { close_epoch(); epoch = $2 }
    { batches++; images += NF - 5; n += NF - 5
      for (i = 6; i <= NF; i++) if (seen[$i]++) d++; else distinct++ }
    END { close_epoch()
      printf "%-8s %9d %10.0f %8d %6d %11d\n", g, batches, images / s, complete, lost, dup
      exit lost + dup > 0 }' || failed=1
done
echo
echo "$status" | grep -E "per batch|batch memory"
[ $failed -eq 0 ] || { echo "soak: a trainer or the daemon failed, or samples were lost" >&2; exit 1; }
