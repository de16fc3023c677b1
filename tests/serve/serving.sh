#!/usr/bin/env bash
# Serving: shard and broadcast groups, fairness, output formats, the CPU and the GPU, mixing
# lanes, shm delivery, nodes, preview.
#   serving.sh SCENARIO    (shard, broadcast, fair, formats, devices, gpu_fault, gpu_oom, gpu_hang,
#                           lanes, shm, nodes, preview)
# Real tmixd daemons and tmixctl trainers (daemons.sh says what the environment needs).
set -euo pipefail
. "$(dirname "$0")/daemons.sh"

# pull_formats NAME OUT BATCHES BATCH_SIZE: the same batches from daemon NAME as float32 NCHW,
# float16 NCHW and uint8 NHWC (OUT.f32/.f16/.u8.safetensors), checked to hold the same mix.
pull_formats() {
  local name=$1 out=$2 batches=$3 size=$4 f tag dtype layout
  for f in f32:float32:nchw f16:float16:nchw u8:uint8:nhwc; do
    IFS=: read -r tag dtype layout <<<"$f"
    "$TMIXCTL" pull -e "ipc://$work/$name.sock" --group "$tag" --batches "$batches" \
      --batch-size "$size" --dtype "$dtype" --layout "$layout" --out "$out.$tag.safetensors" \
      >/dev/null || fail "pull $dtype from $name"
  done
  "$NUMPY_PYTHON" "$CHECK_FORMATS" "$out".{f32,f16,u8}.safetensors ||
    fail "$name: the formats hold other batches"
}

# exits_1_within SECONDS WHAT: the daemon $daemon exits 1 within SECONDS, after WHAT.
exits_1_within() {
  local rc=0
  for _ in $(seq $(($1 * 10))); do kill -0 "$daemon" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$daemon" 2>/dev/null && fail "tmixd still runs $1 s after $2"
  wait "$daemon" || rc=$?
  [ "$rc" -eq 1 ] || fail "tmixd exited $rc after $2 (1 expected)"
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
fair)
  # 4 trainers asking as fast as they can, faster than tmixd makes batches: the oldest
  # request is answered first, so each gets about a quarter. (Answered in session order,
  # the least served trainer got 0.54 of a quarter here, and Next's p99 was 10 times its p50.)
  start_daemon a
  "$TMIXCTL" bench -e "ipc://$work/a.sock" --seconds 2 --trainers 4 --group g >"$work/bench" ||
    fail "bench: $(cat "$work/bench")"
  share=$(awk 'NR == 2 { print $NF }' "$work/bench")
  awk -v s="$share" 'BEGIN { exit !(s >= 0.75) }' ||
    fail "the least served trainer got $share of an equal share: $(cat "$work/bench")"
  stop_daemon "$daemon"
  ;;
formats)
  # The same batches as float32 NCHW, float16 NCHW and uint8 NHWC.
  start_daemon a --server.seed=3 --mix.method=cutmix
  pull_formats a "$work/cpu" 3 40
  stop_daemon "$daemon"
  ;;
devices)
  # The same batches mixed on the CPU and on the GPU (skipped without a GPU; with the fake
  # CUDA plugin of tests/fakecuda, the GPU paths on the CPU's ops): mixup, then TransformMix
  # with the fixture teacher and module on the GPU's two lanes. 12 batches, so that each lane
  # replays its CUDA graph several times with other batches' inputs.
  tm=(--mix.method=transformmix --teacher.path="$GOLDEN/transformmix/teacher.safetensors"
      --mix.module="$GOLDEN/transformmix/module.safetensors")
  start_daemon c --server.seed=5 --server.device=cpu
  "$TMIXCTL" pull -e "ipc://$work/c.sock" --group g --batches 12 --batch-size 50 \
    --out "$work/cpu.safetensors" >/dev/null || fail "pull from the CPU daemon"
  stop_daemon "$daemon"
  start_daemon ct --server.seed=5 --server.device=cpu "${tm[@]}"
  "$TMIXCTL" pull -e "ipc://$work/ct.sock" --group g --batches 12 --batch-size 50 \
    --out "$work/cpu_tm.safetensors" >/dev/null || fail "pull from the CPU daemon"
  stop_daemon "$daemon"
  start_gpu_daemon g --server.seed=5
  pull_formats g "$work/gpu" 12 50 # the GPU encodes float16 and uint8 itself
  grep -q "cuda:0" "$work/g.log" || fail "the GPU daemon does not say it mixes on cuda:0"
  "$NUMPY_PYTHON" "$CHECK_DEVICES" "$work/cpu.safetensors" "$work/gpu.f32.safetensors" ||
    fail "the CPU and the GPU made other batches"
  stop_daemon "$daemon"
  port=$(free_port)
  start_daemon gt --server.seed=5 --server.device=cuda --server.metrics_port="$port" "${tm[@]}"
  grep -q "2 mixing lanes" "$work/gt.log" || fail "the GPU daemon does not mix on 2 lanes"
  "$TMIXCTL" pull -e "ipc://$work/gt.sock" --group g --batches 12 --batch-size 50 \
    --out "$work/gpu_tm.safetensors" >/dev/null || fail "pull TransformMix from the GPU daemon"
  # Each lane runs its first batch of 50 op by op and replays the rest as a graph.
  graphs=$(python3 -c 'import sys, urllib.request
for line in urllib.request.urlopen(sys.argv[1], timeout=10).read().decode().splitlines():
    if line.startswith("tmix_graph_batches_total "): print(int(line.split()[1]))' \
    "http://127.0.0.1:$port/metrics")
  [ "${graphs:-0}" -ge 10 ] || fail "$graphs TransformMix batches by graph launch, expected >= 10"
  "$NUMPY_PYTHON" "$CHECK_DEVICES" "$work/cpu_tm.safetensors" "$work/gpu_tm.safetensors" \
    --norm 1e-4 || fail "the CPU and the GPU made other TransformMix batches"
  stop_daemon "$daemon"
  ;;
gpu_fault)
  # A fault in a GPU kernel mid-run (TMIX_CUDA_FAULT_AFTER makes the CUDA plugin trap after
  # the warm-up and a few batches; the fake one fails its calls from then on): the batch
  # fails, tmixd saves its progress and exits 1 within seconds, never hangs; started again on
  # the same state, it serves on. Skipped without a GPU.
  GPU_ENV=TMIX_CUDA_FAULT_AFTER=6 start_gpu_daemon f --server.workers=2
  "$TMIXCTL" pull -e "ipc://$work/f.sock" --group g --batches 40 --batch-size 25 --timeout 5 \
    >"$work/f.pull" 2>&1 || true
  exits_1_within 10 "a GPU fault"
  grep -q "the GPU cannot be trusted after this" "$work/f.log" || fail "no line about the fault"
  grep -q "stopped after a GPU fault" "$work/f.log" || fail "no last line naming the fault"
  [ -f "$work/f.state/progress.json" ] || fail "no progress saved"
  start_daemon f --server.device=cuda
  pull f "$work/after" --group g --batches 2 --batch-size 25
  stop_daemon "$daemon"
  ;;
gpu_oom)
  # Too little device memory for the first batch: tmixd names what it was allocating, how
  # much and on which GPU, and exits 1 at start. A real GPU cannot be shrunk: this runs on
  # the CUDA emulator (TMIX_EMU_MEMORY_BYTES) only.
  case ${TMIX_CUDA_PLUGIN:-} in
  *cudaemu*) ;;
  *) echo "SKIP: needs the CUDA emulator's memory limit"; exit 77 ;;
  esac
  rc=0
  TMIX_EMU_MEMORY_BYTES=1000000 timeout 60 "$TMIXD" serve --server.endpoint="ipc://$work/m.sock" \
    --server.state_dir="$work/m.state" --dataset.path="$work/idx" --server.device=cuda \
    >"$work/m.log" 2>&1 || rc=$?
  [ "$rc" -eq 1 ] || fail "tmixd exited $rc with 1 MB of device memory (1 expected)"
  grep -Eq "tensor_alloc: [0-9]+ bytes for \([0-9,]+\) on cuda:0: out of memory" "$work/m.log" ||
    fail "no line naming the allocation: $(cat "$work/m.log")"
  ;;
gpu_hang)
  # A GPU kernel that never ends mid-run (TMIX_CUDA_HANG_AFTER: the CUDA plugin's preprocess
  # then launches one that loops forever; the fake one blocks): with [server]
  # stall_timeout_s = 3, tmixd says so, saves its progress and exits 1 within seconds, never
  # hangs; started again on the same state, it resumes the epoch and loses no sample.
  # Then a drain (SIGTERM) during such a hang. (After 12: the warm-up and the two workers'
  # preprocessing ahead take most launches, and with 8 the trainer had 2 batches before the
  # hang; under load its first acknowledgement could then come after the hang, and the
  # restart rightly served the whole epoch again. With 12 it has 8.)
  GPU_ENV=TMIX_CUDA_HANG_AFTER=12 start_gpu_daemon h --server.workers=2 \
    --server.stall_timeout_s=3
  "$TMIXCTL" pull -e "ipc://$work/h.sock" --print-ids --group g --batches 40 --batch-size 25 \
    --timeout 6 >"$work/before" 2>"$work/h.pull" || true
  exits_1_within 10 "a GPU hang"
  grep "more than \[server\] stall_timeout_s = 3: a GPU or a data read hangs" "$work/h.log" ||
    fail "no line about the hang: $(tail -3 "$work/h.log")"
  [ -s "$work/before" ] || fail "no batch before the hang"
  [ -f "$work/h.state/progress.json" ] || fail "no progress saved"
  start_daemon h --server.device=cuda
  pull h "$work/after" --group g --batches 40 --batch-size 25
  covers 0 "$work/before" "$work/after"
  [ "$(awk '$2 == 0' "$work/after" | wc -l)" -lt 40 ] || fail "the whole epoch was served again"
  stop_daemon "$daemon"
  # SIGTERM while a batch hangs: the drain waits stall_timeout_s for it, says so, exits 1.
  GPU_ENV=TMIX_CUDA_HANG_AFTER=6 start_gpu_daemon d --server.workers=2 \
    --server.stall_timeout_s=5
  "$TMIXCTL" pull -e "ipc://$work/d.sock" --group g --batches 40 --batch-size 25 \
    --timeout 20 >/dev/null 2>&1 &
  served() { "$TMIXCTL" status -e "ipc://$work/d.sock" | awk '$1 == "batches" { print $3 }'; }
  for _ in $(seq 30); do [ "$(served)" -ge 3 ] && break; sleep 0.1; done
  kill -TERM "$daemon" # the batch that hangs is being made
  exits_1_within 10 "SIGTERM during a GPU hang"
  grep "draining: a batch still runs after \[server\] stall_timeout_s = 5" "$work/d.log" ||
    fail "no line about the drain: $(tail -3 "$work/d.log")"
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
  # Seen while it holds them: its session lasts 1 s after its last request (the lease).
  held=
  for _ in $(seq 40); do
    "$TMIXCTL" status -e "$e" | grep -Eq '^b +broadcast +- +1 .* [1-9][0-9]*/[0-9]+$' &&
      held=yes && break
    sleep 0.05
  done
  [ -n "$held" ] || fail "the held broadcast batches hold no slot: $("$TMIXCTL" status -e "$e")"
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
  # Refusals: CUDA IPC from a daemon on the CPU (on a GPU box it mixes on the GPU), and shm
  # over tcp://.
  if "$TMIXCTL" status -e "$e" | grep -Eq '^ *backend +cpu'; then
    "$RAWREQ" "$e" delivery 3 |
      grep -q "^error NOT_SUPPORTED: cuda delivery needs tmixd on a GPU" || fail "cuda delivery"
  fi
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
*)
  echo "unknown scenario $scenario" >&2
  exit 2
  ;;
esac
echo "PASS serve.$scenario"
