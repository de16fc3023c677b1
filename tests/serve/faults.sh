#!/usr/bin/env bash
# Faults: trainers that stall or are killed, a daemon killed (mid-save too), a slow disk, a
# slow copy of a batch into its reply, bad and vanished files, churn, a full disk, memcheck.
#   faults.sh SCENARIO    (stalled, kill_trainer, kill_daemon, trainer_through_restart,
#                         kill_in_save, slow_save, slow_pack, corrupt_jpeg, churn,
#                         files_removed, disk_full, valgrind)
# Real tmixd daemons and tmixctl trainers (daemons.sh says what the environment needs).
set -euo pipefail
. "$(dirname "$0")/daemons.sh"

# slowest_status NAME COUNT: the seconds the slowest of COUNT Status requests to daemon NAME
# took, one every 0.2 s.
slowest_status() {
  python3 - "$TMIXCTL" "ipc://$work/$1.sock" "$2" <<'PY'
import subprocess, sys, time
worst = 0
for _ in range(int(sys.argv[3])):
    t = time.monotonic()
    subprocess.run([sys.argv[1], "status", "-e", sys.argv[2]], check=True,
                   stdout=subprocess.DEVNULL)
    worst = max(worst, time.monotonic() - t)
    time.sleep(0.2)
print(f"{worst:.3f}")
PY
}

case $scenario in
stalled)
  # A broadcast member that stops reading holds the others back by nothing and costs no more
  # memory than its own window: batch memory stays flat while another member pulls on.
  start_daemon a --server.prefetch=2
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --print-ids --group b --mode broadcast --batches 2 \
    --batch-size 100 --hold-ms 60000 >"$work/stalled" &
  pids+=($!)
  sleep 0.5
  peak=0
  for round in 1 2 3 4 5; do
    pull a "$work/fast$round" --group b --mode broadcast --batches 20 --batch-size 100
    mib=$("$TMIXCTL" status -e "ipc://$work/a.sock" | awk '/batch memory/ { print $3 }')
    peak=$(awk -v a="$peak" -v b="$mib" 'BEGIN { print (b > a) ? b : a }')
  done
  # Two members (the stalled one and the latest), each a held batch and 2 ahead, of 100
  # images of 28x28 float32 (0.3 MiB): at most ~2 MiB, however far the others go.
  echo "peak batch memory: $peak MiB"
  awk -v p="$peak" 'BEGIN { exit !(p <= 2.0) }' || fail "batch memory grew to $peak MiB"
  [ "$(wc -l <"$work/stalled")" -eq 1 ] || fail "the stalled member got more than its batch"
  stop_daemon "$daemon"
  ;;
kill_trainer)
  # A trainer killed holding a batch: after its lease times out the batch goes to another.
  start_daemon a --server.lease_timeout_s=1
  kill_victim "$work/victim" --group g
  sleep 1.5 # its session expires
  pull a "$work/survivor" --group g --batches 20 --batch-size 50
  covers 0 "$work/victim" "$work/survivor"
  grep -q "expired" "$work/a.log" || fail "no expiry logged"
  stop_daemon "$daemon"
  ;;
kill_daemon)
  # SIGKILL with an epoch half done; a new daemon on the same state resumes it.
  start_daemon a
  pull a "$work/before" --group g --batches 8 --batch-size 50
  sleep 1.5 # progress is saved within a second
  kill -9 "$daemon"
  wait "$daemon" 2>/dev/null || true
  start_daemon a
  grep -q "group g resumes at epoch 0" "$work/a.log" || fail "no resume logged"
  pull a "$work/after" --group g --batches 16 --batch-size 50
  covers 0 "$work/before" "$work/after"
  [ "$(awk '$2 == 0' "$work/after" | wc -l)" -lt 20 ] || fail "the whole epoch was served again"
  stop_daemon "$daemon"
  ;;
trainer_through_restart)
  # A trainer pulling when the daemon is SIGKILLed and started again on the same socket and
  # state: its request goes to the new daemon, which knows no such session; the trainer
  # says Hello again and takes the rest, and the epoch is covered.
  start_daemon a
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --print-ids --group g --batches 16 --batch-size 50 \
    --hold-ms 150 --timeout 30 >"$work/through" &
  trainer=$!
  pids+=("$trainer")
  for _ in $(seq 100); do [ -f "$work/a.state/progress.json" ] && break; sleep 0.05; done
  [ -f "$work/a.state/progress.json" ] || fail "no progress saved while the trainer pulled"
  kill -9 "$daemon" # some batches taken, and saved
  wait "$daemon" 2>/dev/null || true
  sleep 0.5 # the trainer is left asking
  start_daemon a
  wait "$trainer" || fail "the trainer exited $? across the restart"
  [ "$(wc -l <"$work/through")" -eq 16 ] || fail "the trainer got $(wc -l <"$work/through") of 16 batches"
  grep -q "group g resumes at epoch 0" "$work/a.log" || fail "no resume logged"
  grep -c "joined group g" "$work/a.log" | grep -qx 2 || fail "the trainer did not join the new daemon"
  pull a "$work/rest" --group g --batches 20 --batch-size 50
  covers 0 "$work/through" "$work/rest"
  stop_daemon "$daemon"
  ;;
kill_in_save)
  # SIGKILL in the middle of a progress save (TMIXD_FAULT_KILL_IN_SAVE: after the new file is
  # written, before it replaces the old): the old progress stays whole, and the next daemon
  # resumes from it and covers the epoch.
  start_daemon a
  pull a "$work/t1" --group g --batches 4 --batch-size 50
  stop_daemon "$daemon" # saves: 4 batches done
  TMIXD_FAULT_KILL_IN_SAVE=1 start_daemon a
  victim=$daemon
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --print-ids --group g --batches 3 --batch-size 50 \
    --timeout 5 >"$work/t2" 2>/dev/null || true
  set +e
  wait "$victim"
  rc=$?
  set -e
  [ $rc -eq 137 ] || fail "the daemon saving ended with $rc, not SIGKILL"
  [ -f "$work/a.state/progress.json.tmp" ] || fail "no half-done save left behind"
  "$NUMPY_PYTHON" -c 'import json, sys; g = json.load(open(sys.argv[1]))["groups"][0]
assert g["done_through"] == 4, g' "$work/a.state/progress.json" || fail "the old progress was not kept"
  start_daemon a
  grep -q "group g resumes at epoch 0 batch 4" "$work/a.log" || fail "no resume from batch 4"
  pull a "$work/t3" --group g --batches 16 --batch-size 50
  covers 0 "$work/t1" "$work/t2" "$work/t3"
  stop_daemon "$daemon"
  ;;
slow_save)
  # Progress saves of 2 s each (TMIXD_FAULT_SLOW_SAVE_MS: a busy disk) run beside the loop:
  # while a trainer pulls, every Status is answered at once; a save longer than
  # stall_timeout_s is said (once) and its end too. A stop during a save saves once more
  # after it, with every batch acknowledged since that save began.
  TMIXD_FAULT_SLOW_SAVE_MS=2000 start_daemon a --server.stall_timeout_s=1
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --print-ids --group g --batches 20 --batch-size 50 \
    --hold-ms 150 >"$work/t1" &
  pids+=($!)
  worst=$(slowest_status a 15) # 3 s and more: a save starts within 1 s of the first batch
  echo "slowest Status while saving: $worst s"
  awk -v w="$worst" 'BEGIN { exit !(w < 1.0) }' || fail "a Status took $worst s: the loop waited for a save"
  wait "${pids[-1]}" || fail "the trainer exited $?"
  for _ in $(seq 100); do [ -f "$work/a.state/progress.json.tmp" ] && break; sleep 0.05; done
  [ -f "$work/a.state/progress.json.tmp" ] || fail "no save began after the trainer's 20 batches"
  pull a "$work/t2" --group g --batches 5 --batch-size 50 # during that save
  [ -f "$work/a.state/progress.json.tmp" ] || echo "note: the save ended before the 5 batches did"
  stop_daemon "$daemon"
  grep -q "a progress save has run more than \[server\] stall_timeout_s = 1" "$work/a.log" ||
    fail "no line about a save that takes long"
  grep -q "progress saved again" "$work/a.log" || fail "no line about the save that ended"
  [ ! -e "$work/a.state/progress.json.tmp" ] || fail "a save was left half done"
  "$NUMPY_PYTHON" -c 'import json, sys; g = json.load(open(sys.argv[1]))["groups"][0]
assert g["done_through"] == 25, g' "$work/a.state/progress.json" || fail "the last save missed batches"
  ;;
slow_pack)
  # Inline batches of 128 float32 images of 224x224 (25.7 MB), each copied into its reply in
  # 1.5 s (TMIXD_FAULT_SLOW_PACK_MS): the copy runs beside the loop, so every Status is
  # answered at once meanwhile, and the batches arrive whole: the bytes a daemon without the
  # delay gives by shm. A stop during a copy sends the batch when the copy ends, and ends
  # cleanly.
  big=(--augment.size=224 --mix.method=mixup)
  take=(--group g --batches 3 --batch-size 128 --dtype float32)
  start_daemon ref "${big[@]}"
  "$TMIXCTL" pull -e "ipc://$work/ref.sock" "${take[@]}" --delivery shm --out "$work/shm.st" ||
    fail "the shm pull exited $?"
  stop_daemon "$daemon"
  TMIXD_FAULT_SLOW_PACK_MS=1500 start_daemon a "${big[@]}"
  "$TMIXCTL" pull -e "ipc://$work/a.sock" "${take[@]}" --delivery inline --out "$work/inline.st" &
  pids+=($!)
  worst=$(slowest_status a 15)
  echo "slowest Status while packing: $worst s"
  awk -v w="$worst" 'BEGIN { exit !(w < 1.0) }' ||
    fail "a Status took $worst s: the loop waited for a batch's copy"
  wait "${pids[-1]}" || fail "the inline pull exited $?"
  "$NUMPY_PYTHON" - "$work/shm.st" "$work/inline.st" <<'PY' || fail "inline and shm batches differ"
import sys
import numpy as np
from tmix.safetensors import load
(shm, _), (inline, _) = load(sys.argv[1]), load(sys.argv[2])
assert shm["images"].shape == (384, 1, 224, 224), shm["images"].shape
for name in shm:
    assert np.array_equal(shm[name], inline[name]), name
PY
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --print-ids --group h --batches 1 --delivery inline \
    --timeout 10 >"$work/last" &
  pids+=($!)
  sleep 0.7 # the copy of its batch runs
  stop_daemon "$daemon"
  wait "${pids[-1]}" || fail "the trainer whose batch was being copied at the stop exited $?"
  [ "$(wc -l <"$work/last")" -eq 1 ] || fail "the batch being copied at the stop did not come"
  grep -q "SIGTERM: draining" "$work/a.log" || fail "no drain logged"
  ;;
corrupt_jpeg)
  "$MAKE_IMAGEFOLDER" "$work/jpegs" 3 10 48 40 --corrupt
  "$TMIXD" serve --server.endpoint="ipc://$work/a.sock" --server.state_dir="$work/a.state" \
    --dataset.format=imagefolder --dataset.path="$work/jpegs" --augment.size=32 \
    --augment.crop=random-resized >"$work/a.log" 2>&1 &
  daemon=$!
  pids+=("$daemon")
  sleep 0.5
  pull a "$work/t" --group g --batches 8 --batch-size 8 # 32 samples: 2 epochs
  exactly_ids=$(awk '$2 == 0 { for (i = 6; i <= NF; i++) print $i }' "$work/t" | sort -n)
  [ "$exactly_ids" = "$(seq 0 31)" ] || fail "epoch 0 does not cover the 32 samples"
  grep -q "img_corrupt.jpg" "$work/a.log" || fail "the truncated JPEG is not logged"
  grep -q "not_an_image.jpg" "$work/a.log" || fail "the text file is not logged"
  "$TMIXCTL" status -e "ipc://$work/a.sock" | grep -Eq "bad samples +[1-9]" || fail "not counted"
  stop_daemon "$daemon"
  ;;
churn)
  # 200 trainers come and go (each a process: Hello, a batch, Bye; inline and shm, shard and
  # broadcast, 8 groups): afterwards the daemon holds the descriptors it held once every
  # group had its ring (the first 24), its memory has not grown by more than 8 MiB, and no
  # session is left.
  start_daemon a --server.prefetch=2
  rss_kib() { awk '/^VmRSS/ { print $2 }' "/proc/$daemon/status"; }
  churn() { # churn FROM TO
    for i in $(seq "$1" "$2"); do
      local delivery=inline mode=shard
      [ $((i % 2)) -eq 0 ] && delivery=shm
      [ $((i % 3)) -eq 0 ] && mode=broadcast
      "$TMIXCTL" pull -e "ipc://$work/a.sock" --group "c$((i % 4))-$mode" --mode $mode \
        --delivery $delivery --batches 1 --batch-size 20 >/dev/null ||
        fail "trainer $i exited $?"
    done
  }
  churn 1 24
  fds=$(ls "/proc/$daemon/fd" | wc -l)
  rss=$(rss_kib)
  churn 25 200
  [ "$(ls "/proc/$daemon/fd" | wc -l)" -eq "$fds" ] ||
    fail "descriptors: $fds after 24 trainers, $(ls "/proc/$daemon/fd" | wc -l) after 200"
  # (Under ASan freed memory waits in its quarantine, so RSS grows; ASan reports leaks.)
  [ "$asan" = 1 ] || [ "$(rss_kib)" -le $((rss + 8192)) ] || fail "RSS grew from $rss to $(rss_kib) KiB"
  "$TMIXCTL" status -e "ipc://$work/a.sock" | grep -Eq "^  trainers +0$" || fail "sessions left"
  echo "churn: $fds descriptors, RSS $rss -> $(rss_kib) KiB over 176 trainers"
  stop_daemon "$daemon"
  ;;
files_removed)
  # Image files removed while the daemon serves them: each is logged once by name, counted,
  # replaced, and the epochs go on covering every sample id.
  "$MAKE_IMAGEFOLDER" "$work/jpegs" 3 10 48 40
  start_daemon_at "ipc://$work/a.sock" a --dataset.format=imagefolder --dataset.path="$work/jpegs" \
    --augment.size=32 --server.prefetch=1
  pull a "$work/t0" --group g --batches 2 --batch-size 6
  gone=$(find "$work/jpegs/train" -name '*.jpg' | sort | sed -n '3p;17p;29p')
  rm $gone
  pull a "$work/t1" --group g --batches 8 --batch-size 6 # the rest of epoch 0, and epoch 1
  for e in 0 1; do
    ids=$(cat "$work/t0" "$work/t1" | awk -v e=$e '$2 == e { for (i = 6; i <= NF; i++) print $i }' | sort -n)
    [ "$ids" = "$(seq 0 29)" ] || fail "epoch $e does not cover the 30 samples"
  done
  for f in $gone; do
    [ "$(grep -c "$(basename "$f")" "$work/a.log")" -eq 1 ] || fail "$f not logged exactly once"
  done
  "$TMIXCTL" status -e "ipc://$work/a.sock" | grep -Eq "bad samples +[1-3]$" || fail "not counted"
  stop_daemon "$daemon"
  ;;
disk_full)
  # The state directory on a 64 KiB tmpfs in a mount namespace of the daemon's own (skipped
  # where one cannot be made): a full disk fails the progress save, said once; the file saved
  # before stays whole; serving goes on; with room again the progress is saved again.
  unshare -m --propagation private mount -t tmpfs -o size=64k tmpfs "$work" 2>/dev/null ||
    { echo "SKIP: no mount namespace with a tmpfs here"; exit 77; }
  mkdir "$work/a.state"
  launch=(unshare -m --propagation private sh -c 'mount -t tmpfs -o size=64k tmpfs "$0" && exec "$@"'
          "$work/a.state")
  start_daemon a
  launch=()
  state=/proc/$daemon/root$work/a.state # the daemon's view, its tmpfs
  through() { "$NUMPY_PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["groups"][0]["done_through"])' "$state/progress.json"; }
  pull a "$work/t1" --group g --batches 5 --batch-size 50
  sleep 1.5
  [ "$(through)" = 5 ] || fail "progress after 5 batches: $(through)"
  dd if=/dev/zero of="$state/filler" bs=4k 2>/dev/null || true # until the tmpfs is full
  pull a "$work/t2" --group g --batches 5 --batch-size 50
  sleep 3
  [ "$(grep -c 'progress not saved' "$work/a.log")" -eq 1 ] || fail "the failing save not said once"
  grep -q "progress not saved .*No space left on device" "$work/a.log" || fail "no ENOSPC said"
  [ "$(through)" = 5 ] || fail "the saved progress changed under a full disk: $(through)"
  rm "$state/filler"
  sleep 1.5
  grep -q "progress saved again" "$work/a.log" || fail "not saved again once there is room"
  [ "$(through)" = 10 ] || fail "progress after 10 batches: $(through)"
  stop_daemon "$daemon"
  ;;
valgrind)
  # tmixd under valgrind memcheck serving a shm and an inline trainer, then draining: no
  # error and nothing definitely lost. Mixup: the serving machinery (loop, sockets, groups,
  # rings, workers) is what this checks; the numeric ops run under ASan in the unit suite
  # (TransformMix on the CPU under memcheck takes minutes a batch). On the CPU backend: the
  # dlopen of the CUDA plugin trips memcheck's known false report in ld.so (strncmp reading
  # past an rpath string in is_dst), which is not tmix's code.
  command -v valgrind >/dev/null || { echo "SKIP: no valgrind"; exit 77; }
  [ "$asan" = 0 ] || { echo "SKIP: tmixd is built with ASan, which memcheck cannot run"; exit 77; }
  launch=(valgrind --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite
          --log-file="$work/memcheck.txt")
  start_tries=1200
  start_daemon a --mix.method=mixup --output.batch_size=20 --server.device=cpu
  launch=()
  pull a "$work/t1" --group g --batches 3 --batch-size 20 --delivery shm
  pull a "$work/t2" --group h --mode broadcast --batches 2 --batch-size 20
  stop_daemon "$daemon"
  grep -q "ERROR SUMMARY: 0 errors" "$work/memcheck.txt" || fail "memcheck: $(grep -A5 'ERROR SUMMARY' "$work/memcheck.txt")"
  grep -Eq "definitely lost: 0 bytes|no leaks are possible" "$work/memcheck.txt" || fail "memcheck found a leak"
  grep -E "ERROR SUMMARY|definitely lost|in use at exit" "$work/memcheck.txt" | sed 's/^==[0-9]*== */memcheck: /'
  ;;
*)
  echo "unknown scenario $scenario" >&2
  exit 2
  ;;
esac
echo "PASS serve.$scenario"
