#!/usr/bin/env bash
# Serving with real processes: tmixd daemons and tmixctl trainers on ipc:// sockets in a
# temporary directory, fed a 1,000-sample IDX set cut from Debian's Fashion-MNIST.
#   test_serve.sh SCENARIO    (shard, broadcast, formats, stalled, kill_trainer, kill_daemon,
#                              bad_messages, corrupt_jpeg, startup_errors, sighup, devices, lanes,
#                              gpu_fault, shm, metrics, nodes, config, preview, churn,
#                              files_removed, disk_full, limits, access, valgrind,
#                              kill_in_save)
# Needs TMIXD, TMIXCTL, RAWREQ, MAKE_IMAGEFOLDER, MAKE_IDX, FMNIST, GOLDEN, and for formats
# NUMPY_PYTHON and CHECK_FORMATS (with PYTHONPATH reaching client/python), for devices
# CHECK_DEVICES, for access LISTENING, in the environment. The daemon mixes on the first GPU
# when there is one.
set -euo pipefail
scenario=$1
[ -d "$FMNIST" ] || { echo "SKIP: $FMNIST missing (apt-get install dataset-fashion-mnist)"; exit 77; }
what=serve.$scenario
. "$(dirname "$0")/scratch.sh"

python3 "$MAKE_IDX" "$FMNIST" "$work/idx" 1000 100
asan=$(ldd "$TMIXD" | grep -c libasan || true) # 1: tmixd is built with AddressSanitizer

# start_daemon NAME [tmixd options...]: serves $work/idx on ipc://$work/NAME.sock and waits
# until it answers; the pid is in $daemon.
start_daemon() {
  local name=$1
  shift
  start_daemon_at "ipc://$work/$name.sock" "$name" "$@"
}

# start_tcp_daemon NAME [tmixd options...]: the same on tcp://127.0.0.1:$port, a free port.
start_tcp_daemon() {
  local name=$1
  shift
  port=$(free_port)
  start_daemon_at "tcp://127.0.0.1:$port" "$name" "$@"
}

# start_daemon_at ENDPOINT NAME [tmixd options...]: start_daemon's body; tmixd is started
# through "${launch[@]}" when a scenario sets it, and has $start_tries tenths of a second
# to answer.
launch=()
start_tries=100
start_daemon_at() {
  local endpoint=$1 name=$2
  shift 2
  "${launch[@]}" "$TMIXD" serve --server.endpoint="$endpoint" --server.state_dir="$work/$name.state" \
    --dataset.path="$work/idx" --server.workers=2 "$@" >>"$work/$name.log" 2>&1 &
  daemon=$!
  pids+=("$daemon")
  wait_answer "$endpoint" "$name" "$start_tries"
}

# A TCP port free on 127.0.0.1 now.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_gpu_daemon NAME [tmixd options...]: tmixd mixing on the GPU (with the environment
# assignments of $GPU_ENV) serves $work/idx on ipc://$work/NAME.sock, its pid in $daemon;
# without a GPU the scenario is skipped (exit 77).
start_gpu_daemon() {
  local name=$1
  shift
  env ${GPU_ENV:-} "$TMIXD" serve --server.endpoint="ipc://$work/$name.sock" \
    --server.state_dir="$work/$name.state" --dataset.path="$work/idx" --server.device=cuda \
    "$@" >"$work/$name.log" 2>&1 &
  daemon=$!
  pids+=("$daemon")
  sleep 1
  if ! kill -0 "$daemon" 2>/dev/null; then
    grep -q "no GPU\|without the CUDA backend\|no NVIDIA driver\|no usable GPU" "$work/$name.log" &&
      { echo "SKIP: no GPU: $(cat "$work/$name.log")"; exit 77; }
    fail "tmixd on the GPU exited at start: $(cat "$work/$name.log")"
  fi
}

# pull NAME OUT [tmixctl pull options...]: ids of the batches, one line each, into OUT.
pull() {
  local name=$1 out=$2
  shift 2
  "$TMIXCTL" pull -e "ipc://$work/$name.sock" --print-ids --timeout 30 "$@" >"$out" ||
    fail "tmixctl pull $* exited $?"
}

# kill_victim OUT [tmixctl pull options...]: a trainer of daemon a pulls batches of 50
# slowly, ids into OUT, and is SIGKILLed after a second, holding one.
kill_victim() {
  local out=$1
  shift
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --print-ids --batches 100 --batch-size 50 \
    --hold-ms 200 "$@" >"$out" &
  local victim=$!
  pids+=("$victim")
  sleep 1
  kill -9 "$victim"
  wait "$victim" 2>/dev/null || true
  [ -s "$out" ] || fail "the victim got no batch"
}

# covers EPOCH FILES...: the ids of that epoch in FILES include every sample 0..999.
covers() {
  local epoch=$1
  shift
  local missing
  missing=$(comm -23 <(seq 0 999 | sort) \
    <(cat "$@" | awk -v e="$epoch" '$2 == e { for (i = 6; i <= NF; i++) print $i }' | sort -u) | wc -l)
  [ "$missing" -eq 0 ] || fail "epoch $epoch misses $missing samples"
}

# exactly_once EPOCH FILES...: every sample exactly once in that epoch.
exactly_once() {
  local epoch=$1
  shift
  local ids
  ids=$(cat "$@" | awk -v e="$epoch" '$2 == e { for (i = 6; i <= NF; i++) print $i }' | sort -n)
  [ "$ids" = "$(seq 0 999)" ] || fail "epoch $epoch does not hold every sample exactly once"
}

case $scenario in
shard)
  # 4 trainers, one group, 2 epochs of 20 batches: every sample exactly once per epoch.
  start_daemon a --server.seed=7
  for i in 1 2 3 4; do
    pull a "$work/t$i" --group g --mode shard --batches 10 --batch-size 50 &
    pids+=($!)
  done
  for i in 1 2 3 4; do wait "${pids[-$i]}" || fail "trainer exited $?"; done
  [ "$(cat "$work"/t? | wc -l)" -eq 40 ] || fail "40 batches expected"
  exactly_once 0 "$work"/t?
  exactly_once 1 "$work"/t?
  [ "$(cat "$work"/t? | awk '{print $2, $4}' | sort -u | wc -l)" -eq 40 ] || fail "a batch twice"
  stop_daemon "$daemon"
  # The same seed makes the same batches: one trainer now pulls all 40. (mixup has no
  # convolution, so their precision changes nothing; on the CPU the log says it is fp32.)
  start_daemon b --server.seed=7 --mix.precision=bf16
  pull b "$work/again" --group g --mode shard --batches 40 --batch-size 50
  diff <(sort "$work"/t?) <(sort "$work/again") >/dev/null || fail "another run, other batches"
  grep -q ": cpu .*(fp32: bf16 needs a GPU)\|: cuda" "$work/b.log" || fail "no word on bf16"
  stop_daemon "$daemon"
  ;;
broadcast)
  start_daemon a
  for i in 1 2 3; do
    pull a "$work/t$i" --group sweep --mode broadcast --batches 12 --batch-size 64 &
    pids+=($!)
  done
  for i in 1 2 3; do wait "${pids[-$i]}" || fail "trainer exited $?"; done
  [ "$(wc -l <"$work/t1")" -eq 12 ] || fail "12 batches expected"
  cmp -s "$work/t1" "$work/t2" && cmp -s "$work/t1" "$work/t3" || fail "streams differ"
  stop_daemon "$daemon"
  ;;
formats)
  # The same batches as float32 NCHW, float16 NCHW and uint8 NHWC.
  start_daemon a --server.seed=3 --mix.method=cutmix
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --group f32 --batches 3 --batch-size 40 \
    --out "$work/f32.safetensors" >/dev/null || fail "pull float32"
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --group f16 --batches 3 --batch-size 40 \
    --dtype float16 --out "$work/f16.safetensors" >/dev/null || fail "pull float16"
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --group u8 --batches 3 --batch-size 40 \
    --dtype uint8 --layout nhwc --out "$work/u8.safetensors" >/dev/null || fail "pull uint8"
  "$NUMPY_PYTHON" "$CHECK_FORMATS" "$work/f32.safetensors" "$work/f16.safetensors" \
    "$work/u8.safetensors" || fail "formats differ"
  stop_daemon "$daemon"
  ;;
devices)
  # The same batches mixed on the CPU and on the GPU (skipped without a GPU): mixup, then
  # TransformMix with the fixture teacher and module on the GPU's two lanes.
  tm=(--mix.method=transformmix --teacher.path="$GOLDEN/transformmix/teacher.safetensors"
      --mix.module="$GOLDEN/transformmix/module.safetensors")
  start_daemon c --server.seed=5 --server.device=cpu
  "$TMIXCTL" pull -e "ipc://$work/c.sock" --group g --batches 4 --batch-size 50 \
    --out "$work/cpu.safetensors" >/dev/null || fail "pull from the CPU daemon"
  stop_daemon "$daemon"
  start_daemon ct --server.seed=5 --server.device=cpu "${tm[@]}"
  "$TMIXCTL" pull -e "ipc://$work/ct.sock" --group g --batches 4 --batch-size 50 \
    --out "$work/cpu_tm.safetensors" >/dev/null || fail "pull from the CPU daemon"
  stop_daemon "$daemon"
  start_gpu_daemon g --server.seed=5
  "$TMIXCTL" pull -e "ipc://$work/g.sock" --group g --batches 4 --batch-size 50 \
    --out "$work/gpu.safetensors" >/dev/null || fail "pull from the GPU daemon"
  grep -q "cuda:0" "$work/g.log" || fail "the GPU daemon does not say it mixes on cuda:0"
  "$NUMPY_PYTHON" "$CHECK_DEVICES" "$work/cpu.safetensors" "$work/gpu.safetensors" ||
    fail "the CPU and the GPU made other batches"
  stop_daemon "$daemon"
  start_daemon gt --server.seed=5 --server.device=cuda "${tm[@]}"
  grep -q "2 mixing lanes" "$work/gt.log" || fail "the GPU daemon does not mix on 2 lanes"
  "$TMIXCTL" pull -e "ipc://$work/gt.sock" --group g --batches 4 --batch-size 50 \
    --out "$work/gpu_tm.safetensors" >/dev/null || fail "pull TransformMix from the GPU daemon"
  "$NUMPY_PYTHON" "$CHECK_DEVICES" "$work/cpu_tm.safetensors" "$work/gpu_tm.safetensors" \
    --norm 1e-4 || fail "the CPU and the GPU made other TransformMix batches"
  stop_daemon "$daemon"
  ;;
gpu_fault)
  # A fault in a GPU kernel mid-run (TMIX_CUDA_FAULT_AFTER makes the CUDA plugin trap after
  # the warm-up and a few batches): the batch fails, tmixd saves its progress and exits 1
  # within seconds, never hangs; started again on the same state, it serves on. Skipped
  # without a GPU.
  GPU_ENV=TMIX_CUDA_FAULT_AFTER=6 start_gpu_daemon f --server.workers=2
  set +e
  "$TMIXCTL" pull -e "ipc://$work/f.sock" --group g --batches 40 --batch-size 25 --timeout 5 \
    >"$work/f.pull" 2>&1
  for _ in $(seq 100); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$daemon" 2>/dev/null && fail "tmixd still runs 10 s after a GPU fault"
  wait "$daemon"
  rc=$?
  set -e
  [ "$rc" -eq 1 ] || fail "tmixd exited $rc after a GPU fault (1 expected)"
  grep -q "the GPU cannot be trusted after this" "$work/f.log" || fail "no line about the fault"
  grep -q "stopped after a GPU fault" "$work/f.log" || fail "no last line naming the fault"
  [ -f "$work/f.state/progress.json" ] || fail "no progress saved"
  start_daemon f --server.device=cuda
  pull f "$work/after" --group g --batches 2 --batch-size 25
  stop_daemon "$daemon"
  ;;
lanes)
  # TransformMix on the CPU with one mixing lane, and with three fed by three workers at
  # once (each lane's teacher shares the weights, not the activations): the same bytes.
  for l in 1 3; do
    start_daemon "l$l" --server.seed=9 --server.workers=3 --server.device=cpu \
      --mix.method=transformmix --teacher.path="$GOLDEN/transformmix/teacher.safetensors" \
      --mix.module="$GOLDEN/transformmix/module.safetensors" --mix.lanes=$l
    grep -q "method transformmix, 3 workers, $l mixing lane" "$work/l$l.log" ||
      fail "the daemon does not say it mixes on $l lane(s)"
    "$TMIXCTL" pull -e "ipc://$work/l$l.sock" --group g --batches 6 --batch-size 40 \
      --out "$work/l$l.safetensors" >/dev/null || fail "pull with $l lane(s)"
    stop_daemon "$daemon"
  done
  cmp -s "$work/l1.safetensors" "$work/l3.safetensors" || fail "3 lanes made other batches than 1"
  ;;
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
sighup)
  # SIGHUP reopens the log file, so that logrotate can move it away.
  start_daemon a --server.log_file="$work/tmixd.log"
  mv "$work/tmixd.log" "$work/tmixd.log.1"
  kill -HUP "$daemon"
  for _ in $(seq 50); do [ -s "$work/tmixd.log" ] && break; sleep 0.1; done
  grep -q "SIGHUP: log reopened" "$work/tmixd.log" || fail "no new log after SIGHUP"
  grep -q "serving" "$work/tmixd.log.1" || fail "the old log lost its lines"
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
shm)
  # Shared-memory delivery: the same bytes as inline, a ring only this user's group can read,
  # slots that come back from a killed trainer, no descriptor leak, nothing left in /dev/shm.
  start_daemon a --server.lease_timeout_s=1 --server.seed=3
  e="ipc://$work/a.sock"
  "$TMIXCTL" pull -e "$e" --group bi --mode broadcast --batches 3 --batch-size 50 \
    --out "$work/inline.st" >/dev/null || fail "inline pull"
  "$TMIXCTL" pull -e "$e" --group bs --mode broadcast --batches 3 --batch-size 50 \
    --delivery shm --out "$work/shm.st" >"$work/shm.out" || fail "shm pull"
  # byte 110 on: past the header's group name, the only difference
  cmp -s -i 110 "$work/inline.st" "$work/shm.st" || fail "shm batches differ from inline ones"
  ring=$(sed -n 's|^delivery shm: /\([^,]*\),.*|\1|p' "$work/shm.out")
  [ -n "$ring" ] && [ -f "/dev/shm/$ring" ] || fail "no ring named in: $(cat "$work/shm.out")"
  [ "$(stat -c '%a %u' "/dev/shm/$ring")" = "660 $(id -u)" ] ||
    fail "ring mode and owner: $(stat -c '%a %u' "/dev/shm/$ring")"
  # A shard trainer killed holding a slot: its batch goes to the others, the epoch is whole.
  kill_victim "$work/victim" --group s --delivery shm
  sleep 1.5 # its session expires
  pull a "$work/s1" --group s --batches 20 --batch-size 50 --delivery shm
  covers 0 "$work/victim" "$work/s1"
  # A broadcast trainer killed holding slots: once its lease ends, every slot is free.
  "$TMIXCTL" pull -e "$e" --print-ids --group b --mode broadcast --batches 100 \
    --batch-size 50 --delivery shm --hold-ms 60000 >/dev/null &
  victim=$!
  pids+=("$victim")
  sleep 1
  "$TMIXCTL" status -e "$e" | grep -Eq '^b +broadcast +- +1 .* [1-9][0-9]*/[0-9]+$' ||
    fail "the held broadcast batches hold no slot: $("$TMIXCTL" status -e "$e")"
  kill -9 "$victim"
  wait "$victim" 2>/dev/null || true
  sleep 1.5
  "$TMIXCTL" status -e "$e" | grep -Eq '^b +broadcast +- +0 .* 0/[0-9]+$' ||
    fail "slots of the killed trainer not given back: $("$TMIXCTL" status -e "$e")"
  # 30 trainers come and go: the daemon's descriptors stay as they were once each group has
  # its ring (one descriptor each, kept to reserve slots).
  for i in 0 1 2; do
    "$TMIXCTL" pull -e "$e" --group "c$i" --batches 1 --batch-size 50 --delivery shm >/dev/null
  done
  fds=$(ls "/proc/$daemon/fd" | wc -l)
  for i in $(seq 30); do
    "$TMIXCTL" pull -e "$e" --group "c$((i % 3))" --batches 1 --batch-size 50 --delivery shm \
      >/dev/null || fail "pull $i"
  done
  [ "$(ls "/proc/$daemon/fd" | wc -l)" -eq "$fds" ] ||
    fail "descriptors: $fds before, $(ls "/proc/$daemon/fd" | wc -l) after 30 trainers"
  # Refusals: CUDA IPC from a daemon on the CPU, and shm over tcp://.
  "$RAWREQ" "$e" delivery 3 | grep -q "^error NOT_SUPPORTED: cuda delivery needs tmixd on a GPU" ||
    fail "cuda delivery"
  "$RAWREQ" "$e" delivery 9 | grep -q "^error BAD_REQUEST: .*delivery 9" || fail "delivery 9"
  rings=$(ls /dev/shm | grep -c "^tmix-$(id -u)-$daemon-") || true
  [ "$rings" -eq 6 ] || fail "$rings rings for 6 shm groups (bs s b c0 c1 c2)"
  stop_daemon "$daemon"
  ! ls /dev/shm | grep -q "^tmix-$(id -u)-$daemon-" || fail "rings left after SIGTERM"
  # SIGKILL leaves the rings; the next daemon removes them.
  start_daemon a
  pull a "$work/k" --group k --batches 1 --delivery shm
  old=$daemon
  kill -9 "$old"
  wait "$old" 2>/dev/null || true
  ls /dev/shm | grep -q "^tmix-$(id -u)-$old-" || fail "SIGKILL left no ring (test is wrong)"
  start_daemon a
  ! ls /dev/shm | grep -q "^tmix-$(id -u)-$old-" || fail "the rings of a killed daemon stay"
  grep -q "removed /tmix-$(id -u)-$old-" "$work/a.log" || fail "no removal logged"
  stop_daemon "$daemon"
  start_tcp_daemon t
  out=$("$TMIXCTL" pull -e "tcp://127.0.0.1:$port" --batches 1 --delivery shm 2>&1) &&
    fail "shm over tcp was served"
  grep -q "NOT_SUPPORTED: shm delivery needs an ipc:// endpoint" <<<"$out" || fail "shm over tcp: $out"
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
bad_messages)
  start_daemon a --server.max_request_bytes=4096
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --print-ids --group g --batches 10 --batch-size 50 \
    --hold-ms 100 >"$work/bystander" &
  bystander=$!
  pids+=("$bystander")
  e="ipc://$work/a.sock"
  "$RAWREQ" "$e" garbage | grep -q "^error BAD_REQUEST: request of 64 bytes" || fail garbage
  "$RAWREQ" "$e" oversized 100000 | grep -q "^error TOO_LARGE: .*limit is 4096" || fail oversized
  "$RAWREQ" "$e" version 2 | grep -q "^error VERSION_MISMATCH: protocol version 2" || fail version
  "$RAWREQ" "$e" reply | grep -q "^error BAD_REQUEST: .*not a request" || fail reply
  "$RAWREQ" "$e" next 12345 | grep -q "^error UNKNOWN_SESSION" || fail "unknown session"
  "$RAWREQ" "$e" version 1 | grep -q "^ok status" || fail "status after bad messages"
  wait "$bystander" || fail "the other trainer failed ($?)"
  [ "$(wc -l <"$work/bystander")" -eq 10 ] || fail "the other trainer lost batches"
  stop_daemon "$daemon"
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
access)
  # Who can reach tmixd: over ipc:// it listens on no TCP port at all; over tcp:// only on
  # the configured address, with the metrics on loopback; a group name is only a name.
  start_daemon a
  [ -z "$(python3 "$LISTENING" "$daemon")" ] ||
    fail "an ipc:// daemon listens on TCP: $(python3 "$LISTENING" "$daemon")"
  # Names the client library would refuse are sent raw, as a hostile client would.
  long=$(printf 'x%.0s' $(seq 65))
  for bad in ../escape a/b "$long" "tab$(printf '\t')name"; do
    "$RAWREQ" "ipc://$work/a.sock" group "$bad" >"$work/bad.txt"
    grep -qF "error BAD_REQUEST: group name '$bad' must be 1 to 64 of [A-Za-z0-9._-]" "$work/bad.txt" ||
      fail "group '$bad': $(cat "$work/bad.txt")"
  done
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --group ../escape --batches 1 2>"$work/bad.txt" &&
    fail "tmixctl sent group ../escape"
  grep -qF "group '../escape': expected 1 to 64 of" "$work/bad.txt" || fail "tmixctl: $(cat "$work/bad.txt")"
  [ -z "$(find "$work" -name '*escape*')" ] || fail "a group name made a file"
  pull a "$work/after" --group g --batches 2 --batch-size 10
  stop_daemon "$daemon"
  mport=$(free_port)
  start_tcp_daemon b --server.metrics_port="$mport"
  [ "$(python3 "$LISTENING" "$daemon")" = "$(printf '127.0.0.1:%s\n' "$port" "$mport" | sort)" ] ||
    fail "tcp://127.0.0.1:$port listens on: $(python3 "$LISTENING" "$daemon")"
  stop_daemon "$daemon"
  ;;
limits)
  # Access and limits: the socket 0660 in a directory tmixd makes 0750; [server] max_trainers
  # and max_batch_size refused with the reason, and a trainer let in once one leaves.
  start_daemon_at "ipc://$work/run/tmix/d.sock" a --server.max_trainers=2 --server.max_batch_size=100
  [ "$(stat -c %a "$work/run/tmix/d.sock")" = 660 ] || fail "socket mode $(stat -c %a "$work/run/tmix/d.sock")"
  [ "$(stat -c %a "$work/run/tmix")" = 750 ] || fail "directory mode $(stat -c %a "$work/run/tmix")"
  e=ipc://$work/run/tmix/d.sock
  for i in 1 2; do
    "$TMIXCTL" pull -e "$e" --group "h$i" --batches 1 --hold-ms 3000 >/dev/null &
    pids+=($!)
  done
  for _ in $(seq 50); do
    "$TMIXCTL" status -e "$e" | grep -Eq "^  trainers +2$" && break
    sleep 0.1
  done
  set +e
  "$TMIXCTL" pull -e "$e" --group third --batches 1 >/dev/null 2>"$work/busy.txt"
  rc=$?
  set -e
  [ $rc -eq 1 ] && grep -q "BUSY: 2 trainers are connected (\[server\] max_trainers)" "$work/busy.txt" ||
    fail "a third trainer: exit $rc, $(cat "$work/busy.txt")"
  wait "${pids[-1]}" "${pids[-2]}" || fail "a holding trainer failed"
  set +e
  "$TMIXCTL" pull -e "$e" --group big --batches 1 --batch-size 101 >/dev/null 2>"$work/big.txt"
  big=$?
  set -e
  [ $big -eq 1 ] && grep -q "batch size 101 is above the limit of 100 (\[server\] max_batch_size)" \
    "$work/big.txt" || fail "batch size 101: exit $big, $(cat "$work/big.txt")"
  "$TMIXCTL" pull -e "$e" --group third --batches 1 --batch-size 100 >/dev/null ||
    fail "no room once the holders left"
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
startup_errors)
  # expect_one_line PATTERN ARGS...: tmixd ARGS exits non-zero with one stderr line matching.
  expect_one_line() {
    local pattern=$1
    shift
    set +e
    "$TMIXD" "$@" >/dev/null 2>"$work/err"
    local rc=$?
    set -e
    # ASan warns of an allocation it fails, before tmixd says what it could not make.
    sed -i '/^==[0-9]*==WARNING: AddressSanitizer failed to allocate/d' "$work/err"
    [ "$rc" -ne 0 ] || fail "tmixd $* exited 0"
    [ "$(wc -l <"$work/err")" -eq 1 ] || fail "tmixd $* said: $(cat "$work/err")"
    grep -q -- "$pattern" "$work/err" || fail "tmixd $* said: $(cat "$work/err")"
  }
  expect_one_line "$work/nothing" serve --dataset.path="$work/nothing" \
    --server.endpoint="ipc://$work/x.sock"
  expect_one_line "$work/missing.conf" serve -c "$work/missing.conf"
  echo "[mix]" >"$work/bad.conf"
  echo "alpha = abc" >>"$work/bad.conf"
  expect_one_line "bad.conf:2" -c "$work/bad.conf"
  # A batch that cannot be made at all (here 4 TB of pixels) stops tmixd before it serves.
  expect_one_line "a first batch of 65536 on cpu" serve --dataset.path="$FMNIST" \
    --server.endpoint="ipc://$work/x.sock" --server.device=cpu --augment.size=4096 \
    --output.batch_size=65536
  # zoo:FILE is looked up in $TMIX_ZOO_DIR; a file that is not there is named with the place.
  TMIX_ZOO_DIR="$work/zoo" expect_one_line "zoo:teacher.safetensors: no $work/zoo/teacher.safetensors" \
    serve --dataset.path="$work/idx" --server.endpoint="ipc://$work/x.sock" \
    --mix.method=softmax-cam --teacher.path=zoo:teacher.safetensors
  mkdir "$work/zoo"
  cp "$GOLDEN/transformmix/teacher.safetensors" "$work/zoo/"
  TMIX_ZOO_DIR="$work/zoo" start_daemon z --mix.method=softmax-cam \
    --teacher.path=zoo:teacher.safetensors
  "$TMIXCTL" pull -e "ipc://$work/z.sock" --group g --batches 1 --batch-size 10 >"$work/z.pull" ||
    fail "pull from a daemon with a zoo: teacher"
  grep -q "method softmax-cam" "$work/z.pull" || fail "the zoo: teacher was not used"
  stop_daemon "$daemon"
  start_daemon a
  expect_one_line "in use" serve --server.endpoint="ipc://$work/a.sock" \
    --server.state_dir="$work/b.state" --dataset.path="$work/idx"
  "$TMIXCTL" status -e "ipc://$work/a.sock" >/dev/null || fail "the first daemon was disturbed"
  stop_daemon "$daemon"
  ;;
preview)
  # tmixctl preview: with the shipped teacher and module (transformmix) and with mixup, the
  # picture's grid, heat maps, blends and labels (check_preview.py); each call another batch.
  start_daemon a --mix.method=transformmix --teacher.path=zoo:fashion_mnist_resnet20.safetensors \
    --mix.module=zoo:fashion_mnist_transformmix.safetensors
  "$TMIXCTL" preview -e "ipc://$work/a.sock" -o "$work/tm.png" --n 5 >"$work/tm.txt" ||
    fail "tmixctl preview"
  grep -q "5 mixed samples of transformmix, n = 2" "$work/tm.txt" || fail "preview said: $(cat "$work/tm.txt")"
  "$NUMPY_PYTHON" "$CHECK_PREVIEW" "$work/tm.png" 5 2 1 || fail "check_preview.py transformmix"
  "$TMIXCTL" preview -e "ipc://$work/a.sock" -o "$work/tm2.png" --n 5 >/dev/null
  ! cmp -s "$work/tm.png" "$work/tm2.png" || fail "two previews, one batch"
  set +e
  "$TMIXCTL" preview -e "ipc://$work/a.sock" -o "$work/x.png" --n 33 2>"$work/n33.txt"
  [ $? -eq 2 ] || fail "--n 33 accepted"
  "$TMIXCTL" preview -e "ipc://$work/a.sock" -o "$work/nodir/x.png" --n 2 2>"$work/nodir.txt"
  [ $? -eq 1 ] && grep -q "nodir/x.png" "$work/nodir.txt" || fail "unwritable PNG: $(cat "$work/nodir.txt")"
  set -e
  stop_daemon "$daemon"
  start_daemon b --mix.method=mixup
  "$TMIXCTL" preview -e "ipc://$work/b.sock" -o "$work/mixup.png" --n 3 >/dev/null ||
    fail "tmixctl preview of mixup"
  "$NUMPY_PYTHON" "$CHECK_PREVIEW" "$work/mixup.png" 3 2 0 || fail "check_preview.py mixup"
  stop_daemon "$daemon"
  ;;
config)
  # tmixctl config: every setting read back as the daemon runs with it; the reloadable ones
  # changed and in effect at once; fixed keys, bad values and unknown keys refused with the
  # reason; and over tcp:// settings are read, never changed.
  start_daemon a --server.lease_timeout_s=30
  cfg() { "$TMIXCTL" config "$@" -e "ipc://$work/a.sock"; }
  cfg get >"$work/all.txt" || fail "config get"
  [ "$(wc -l <"$work/all.txt")" -eq "$("$TMIXD" serve --print-config | grep -c '^[a-z_]* =')" ] ||
    fail "config get lists $(wc -l <"$work/all.txt") settings"
  grep -qx "server.workers = 2" "$work/all.txt" || fail "server.workers is not 2"
  [ "$(grep -c '# reloadable$' "$work/all.txt")" -eq 2 ] || fail "not 2 reloadable settings"
  [ "$(cfg get server.lease_timeout_s)" = 30 ] || fail "lease_timeout_s is not 30"
  # A shorter lease takes a held batch back at once: the log says after how long.
  cfg set server.lease_timeout_s 0.5 >/dev/null || fail "config set lease_timeout_s"
  [ "$(cfg get server.lease_timeout_s)" = 0.5 ] || fail "lease_timeout_s is not 0.5"
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --group held --batches 1 --hold-ms 2500 >/dev/null ||
    fail "the holding trainer"
  grep -q "group held expired after 0.5 s" "$work/a.log" || fail "no expiry after 0.5 s"
  # log_level error hides a trainer's arrival; info shows the next one.
  cfg set server.log_level error >/dev/null || fail "config set log_level"
  pull a "$work/quiet" --group quiet --batches 1
  ! grep -q "joined group quiet" "$work/a.log" || fail "an info line at log_level error"
  cfg set server.log_level info >/dev/null
  pull a "$work/loud" --group loud --batches 1
  grep -q "joined group loud" "$work/a.log" || fail "no info line at log_level info"
  grep -q "config: server.log_level = info (tmixctl config set)" "$work/a.log" || fail "set not logged"
  expect_refusal() { # PATTERN ARGS...: tmixctl config ARGS exits 1 saying PATTERN
    local pattern=$1
    shift
    set +e
    "$TMIXCTL" config "$@" >/dev/null 2>"$work/refused.txt"
    local rc=$?
    set -e
    [ "$rc" -eq 1 ] && grep -q -- "$pattern" "$work/refused.txt" ||
      fail "tmixctl config $* exited $rc: $(cat "$work/refused.txt")"
  }
  expect_refusal "config set server.endpoint: fixed while tmixd runs" \
    set server.endpoint ipc:///tmp/x -e "ipc://$work/a.sock"
  expect_refusal "\[server\] lease_timeout_s = 'abc': not a number" \
    set server.lease_timeout_s abc -e "ipc://$work/a.sock"
  expect_refusal "\[server\] lease_timeout_s = '0': out of range" \
    set server.lease_timeout_s 0 -e "ipc://$work/a.sock"
  expect_refusal "no setting 'mix.nope'" get mix.nope -e "ipc://$work/a.sock"
  [ "$(cfg get server.lease_timeout_s)" = 0.5 ] || fail "a refused set changed the value"
  stop_daemon "$daemon"
  start_tcp_daemon b
  [ "$("$TMIXCTL" config get server.log_level -e "tcp://127.0.0.1:$port")" = info ] ||
    fail "config get over tcp://"
  expect_refusal "config set: only over the ipc:// endpoint" \
    set server.log_level debug -e "tcp://127.0.0.1:$port"
  stop_daemon "$daemon"
  ;;
nodes)
  # Two daemons with one seed, as on two machines: the trainers of node 0 of 2 and of node 1
  # of 2 share out every epoch, disjoint and whole; three nodes split 1000 unevenly.
  start_daemon a --server.seed=5
  a=$daemon
  start_daemon b --server.seed=5
  b=$daemon
  pull a "$work/n0" --group g --node-rank 0 --node-count 2 --batches 20 --batch-size 50
  pull b "$work/n1" --group g --node-rank 1 --node-count 2 --batches 20 --batch-size 50
  for e in 0 1; do
    [ "$(awk -v e=$e '$2 == e' "$work/n0" | wc -l)" -eq 10 ] || fail "node 0: not 10 batches in epoch $e"
    exactly_once "$e" "$work/n0" "$work/n1"
  done
  [ "$(awk '$2 == 0' "$work/n0" | md5sum)" != "$(awk '$2 == 1' "$work/n0" | md5sum)" ] ||
    fail "node 0 got the same part in both epochs"
  pull a "$work/t0" --group h --node-rank 0 --node-count 3 --batches 7 --batch-size 50
  pull b "$work/t1" --group h --node-rank 1 --node-count 3 --batches 7 --batch-size 50
  pull a "$work/t2" --group h2 --node-rank 2 --node-count 3 --batches 7 --batch-size 50
  exactly_once 0 "$work/t0" "$work/t1" "$work/t2"
  [ "$(awk '{ n += NF - 5 } END { print n }' "$work/t2")" -eq 334 ] || fail "node 2 of 3: not 334 samples"
  # The group's node is part of it, and saved with its progress.
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --group g --node-rank 0 --node-count 3 --batches 1 \
    >/dev/null 2>"$work/mismatch.txt" && fail "group g of node 0 of 2 took node 0 of 3"
  grep -q "node 0 of 2; this hello asks for .*node 0 of 3" "$work/mismatch.txt" ||
    fail "the mismatch said: $(cat "$work/mismatch.txt")"
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --group big --node-rank 0 --node-count 1001 --batches 1 \
    >/dev/null 2>"$work/big.txt" && fail "1001 nodes for 1000 samples"
  grep -q "node 0 of 1001: .*at most the 1000 samples" "$work/big.txt" ||
    fail "1001 nodes said: $(cat "$work/big.txt")"
  "$TMIXCTL" pull -e "ipc://$work/a.sock" --node-rank 2 --node-count 2 --batches 1 \
    >/dev/null 2>"$work/rank.txt" && fail "node 2 of 2 accepted"
  grep -q "node 2 of 2: the rank must be below the count" "$work/rank.txt" ||
    fail "node 2 of 2 said: $(cat "$work/rank.txt")"
  stop_daemon "$a"
  start_daemon a --server.seed=5
  pull a "$work/again" --group g --node-rank 0 --node-count 2 --batches 1 --batch-size 50
  grep -q "^epoch 2 batch 0 " "$work/again" || fail "node 0's group did not resume at epoch 2: $(cat "$work/again")"
  stop_daemon "$daemon"
  stop_daemon "$b"
  ;;
metrics)
  # The Prometheus endpoint, scraped while real trainers pull (check_metrics.py); a second
  # daemon asking for the same port stops with one line naming it.
  port=$(free_port)
  start_daemon a --server.metrics_port="$port"
  grep -q "metrics at http://127.0.0.1:$port/metrics" "$work/a.log" || fail "no log line for the metrics"
  python3 "$CHECK_METRICS" "$TMIXCTL" "ipc://$work/a.sock" "$port" || fail "check_metrics.py"
  set +e
  "$TMIXD" serve --server.endpoint="ipc://$work/b.sock" --server.state_dir="$work/b.state" \
    --dataset.path="$work/idx" --server.metrics_port="$port" >/dev/null 2>"$work/b.err"
  rc=$?
  set -e
  [ "$rc" -ne 0 ] || fail "a second daemon on metrics port $port started"
  grep -q "metrics_port $port: 127.0.0.1:$port: Address already in use" "$work/b.err" ||
    fail "the second daemon said: $(cat "$work/b.err")"
  stop_daemon "$daemon"
  ;;
*)
  echo "unknown scenario $scenario" >&2
  exit 2
  ;;
esac
echo "PASS serve.$scenario"
