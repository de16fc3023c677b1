#!/usr/bin/env bash
# The training commands as real processes on a 1,000-sample IDX set cut from Debian's
# Fashion-MNIST: `tmixd search` with the fixture teacher (cifar_resnet20) of
# tests/golden/transformmix, and `tmixd train-teacher`.
#   test_training.sh resume search|train-teacher   SIGKILL and SIGTERM, then --resume: the
#                                                  same losses and the same file as one run
#   test_training.sh bad_inputs search|train-teacher
#   test_training.sh disk_full search|train-teacher  the checkpoint's disk fills: an error,
#                                                  the last checkpoint kept, then --resume
#   test_training.sh learns                        train-teacher learns; serve uses its teacher
#   test_training.sh eval                          tmixd eval's table with the fixture models
#   test_training.sh search_learns                 a short search with the shipped teacher
#                                                  lowers TransformMix's held-out loss
# Needs TMIXD, TMIXCTL, MAKE_IDX, MAKE_IMAGEFOLDER, FMNIST, GOLDEN and ZOO in the environment.
set -euo pipefail
scenario=$1
cmd=${2:-train-teacher}
if [ "$scenario" = disk_full ] && [ -z "${TMIX_MOUNT_NS:-}" ]; then
  # Its tmpfs is mounted in a mount namespace of this script's own (skipped where there is
  # none to be made), so that every process of the test sees it and nothing outside does.
  unshare -m --propagation private true 2>/dev/null || { echo "SKIP: no mount namespace here"; exit 77; }
  TMIX_MOUNT_NS=1 exec unshare -m --propagation private "$0" "$@"
fi
[ -d "$FMNIST" ] || { echo "SKIP: $FMNIST missing (apt-get install dataset-fashion-mnist)"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/tmix-training.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  umount "$work/disk" 2>/dev/null || true # disk_full's tmpfs
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL $scenario $cmd: $*" >&2; for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done >&2; exit 1; }

python3 "$MAKE_IDX" "$FMNIST" "$work/idx" 1000 100
# run NAME [options...]: a 24-step run of $cmd writing $work/NAME.*, its log in NAME.log.
# start: the same in the background, its pid in $pid.
run_args() {
  local name=$1
  shift
  if [ "$cmd" = search ]; then
    args=(search --server.device=cpu --dataset.path="$work/idx" --mix.method=transformmix
      --teacher.path="$GOLDEN/transformmix/teacher.safetensors" --search.batch_size=40
      --search.steps=24 --search.checkpoint_every=4 --search.momentum=0.9 --search.seed=3
      --search.out="$work/$name.safetensors" "$@")
  else
    args=(train-teacher --server.device=cpu --dataset.path="$work/idx" --augment.size=32
      --augment.crop=pad --augment.pad=4 --train.batch_size=20 --train.steps=24
      --train.checkpoint_every=4 --train.seed=3 --train.out="$work/$name.safetensors" "$@")
  fi
}
run() { run_args "$@"; "$TMIXD" "${args[@]}" >>"$work/$1.log" 2>&1; }
start() { run_args "$@"; "$TMIXD" "${args[@]}" >>"$work/$1.log" 2>&1 & pid=$!; }
wait_lines() { # FILE N: until FILE has N lines (or 30 s)
  for _ in $(seq 600); do
    [ "$(cat "$1" 2>/dev/null | wc -l)" -ge "$2" ] && return 0
    sleep 0.05
  done
}
losses() { sed 's/, "images_per_s".*//' "$1"; } # what must repeat: step, epoch, loss, lr, tau

case $scenario in
resume)
  run straight || fail "the uninterrupted run exited $?"
  [ "$(wc -l <"$work/straight.safetensors.metrics.jsonl")" -eq 24 ] || fail "24 metrics lines expected"
  grep -q "done: 24 steps" "$work/straight.log" || fail "no end line"
  # SIGKILL after step 10 (the checkpoint of step 8 is on disk), then --resume.
  start killed
  wait_lines "$work/killed.safetensors.metrics.jsonl" 10
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  ps -C tmixd -o args= | grep -q "$work" && fail "still running after SIGKILL"
  [ -f "$work/killed.safetensors.ckpt" ] || fail "no checkpoint after 10 steps"
  [ ! -f "$work/killed.safetensors" ] || fail "a module file before the end"
  if run killed; then fail "a second start without --resume ran (it must refuse)"; fi
  grep -q "exists: --resume continues" "$work/killed.log" || fail "a second start did not refuse"
  run killed --resume || fail "--resume exited $?"
  grep -q "resuming .* at step" "$work/killed.log" || fail "no resume line"
  diff <(losses "$work/straight.safetensors.metrics.jsonl") \
    <(losses "$work/killed.safetensors.metrics.jsonl") >/dev/null ||
    fail "the resumed run did not repeat the losses of the uninterrupted one"
  cmp -s "$work/straight.safetensors" "$work/killed.safetensors" || fail "other module files"
  # SIGTERM: a checkpoint, exit 0, and --resume finishes the same module.
  start termed
  wait_lines "$work/termed.safetensors.metrics.jsonl" 5
  kill -TERM "$pid"
  wait "$pid" || fail "SIGTERM: exit $?"
  pid=
  grep -q "Terminated at step .*--resume continues" "$work/termed.log" || fail "no SIGTERM line"
  run termed --resume || fail "--resume after SIGTERM exited $?"
  cmp -s "$work/straight.safetensors" "$work/termed.safetensors" || fail "SIGTERM: other module"
  ;;
disk_full)
  # The checkpoint on a tmpfs that fills mid-run: the run stops with an error naming the
  # checkpoint and ENOSPC, the checkpoint saved before stays whole and alone, and once there
  # is room --resume goes on from it to the end (that a resumed run repeats an uninterrupted
  # one is the resume scenario's).
  section=search
  [ "$cmd" = search ] || section=train
  mkdir "$work/disk"
  mount -t tmpfs -o size=16m tmpfs "$work/disk"
  ckpt=$work/disk/full.ckpt
  start full --$section.checkpoint="$ckpt"
  for _ in $(seq 3000); do [ -f "$ckpt" ] && break; sleep 0.01; done # then stop it at once
  [ -f "$ckpt" ] || fail "no first checkpoint"
  kill -STOP "$pid"
  dd if=/dev/zero of="$work/disk/filler" bs=64k 2>/dev/null || true # until the tmpfs is full
  cp "$ckpt" "$work/saved.ckpt"
  kill -CONT "$pid"
  set +e
  wait "$pid"
  rc=$?
  set -e
  pid=
  [ "$rc" -eq 1 ] || fail "a run whose checkpoint cannot be written exited $rc"
  grep -q "checkpoint $ckpt: .*No space left on device" "$work/full.log" ||
    fail "no ENOSPC named: $(tail -3 "$work/full.log")"
  cmp -s "$ckpt" "$work/saved.ckpt" || fail "the checkpoint saved before changed"
  [ "$(ls "$work/disk")" = "$(printf 'filler\nfull.ckpt')" ] || fail "left on the disk: $(ls "$work/disk")"
  rm "$work/disk/filler"
  run full --$section.checkpoint="$ckpt" --resume || fail "--resume with room again exited $?"
  grep -Eq "resuming .* at step (4|8)" "$work/full.log" || fail "not resumed from the kept checkpoint"
  grep -q "done: 24 steps" "$work/full.log" || fail "the resumed run did not finish"
  [ "$(grep -c '"step"' "$work/full.safetensors.metrics.jsonl")" -eq 24 ] || fail "not 24 metrics lines"
  ;;
bad_inputs)
  # Each a clear error naming the input, exit 1, and nothing overwritten.
  steps=--search.steps
  [ "$cmd" = search ] || steps=--train.steps
  run good "$steps=4" || fail "a short run exited $?"
  sums() { md5sum "$work"/good.safetensors*; }
  before=$(sums)
  expect() { # WHAT PATTERN [options...]: the run fails with PATTERN in its output
    local what=$1 pattern=$2
    shift 2
    run_args good "$steps=8" "$@"
    set +e
    "$TMIXD" "${args[@]}" >"$work/bad.log" 2>&1
    local rc=$?
    set -e
    [ "$rc" -eq 1 ] || fail "$what: exit $rc"
    grep -q -- "$pattern" "$work/bad.log" || fail "$what: expected '$pattern' in: $(cat "$work/bad.log")"
    [ "$(sums)" = "$before" ] || fail "$what: a file was overwritten"
  }
  expect "checkpoint exists" "good.safetensors.ckpt exists: --resume"
  if [ "$cmd" = search ]; then
    "$MAKE_IMAGEFOLDER" "$work/three" 3 5 32 32
    expect "other classes" "classifies 10 classes; imagefolder:$work/three (train) has 3" \
      --dataset.format=imagefolder --dataset.path="$work/three" --augment.size=28
    expect "not a learned method" "not mixup" --mix.method=mixup
    expect "no out" "needs \[search\] out" --search.out=
    expect "no teacher" "needs \[teacher\] path" --teacher.path=
    expect "another n" "mixes n = 2 images; \[mix\] n = 3" --resume --mix.n=3
    expect "another seed" "made with search.seed = 3, this run has 4" --resume --search.seed=4
    expect "another batch size" "made with search.batch_size = 40, this run has 50" --resume \
      --search.batch_size=50
  else
    expect "unknown arch" "lenet" --train.arch=lenet
    expect "no out" "needs \[train\] out" --train.out=
    expect "another seed" "made with train.seed = 3, this run has 4" --resume --train.seed=4
    expect "another data set" "made with train.samples = 1000, this run has 100" --resume \
      --dataset.split=test
  fi
  cp "$work/good.safetensors.ckpt" "$work/saved.ckpt"
  head -c 1000 "$work/saved.ckpt" >"$work/good.safetensors.ckpt"
  before=$(sums)
  expect "corrupt checkpoint" "good.safetensors.ckpt" --resume
  rm "$work/good.safetensors.ckpt"
  before=$(sums)
  expect "no checkpoint" "no checkpoint .*good.safetensors.ckpt" --resume
  ;;
learns)
  # Three epochs of 1,000 images: far above chance (10%) on the test split, and the teacher
  # file it writes is what serving loads for its CAMs.
  run learned --train.steps=0 --train.epochs=3 --train.batch_size=50 || fail "exit $?"
  acc=$(sed -n 's/.*done: 60 steps, test accuracy \([0-9.]*\)%.*/\1/p' "$work/learned.log")
  echo "test accuracy after 3 epochs of 1,000 images: $acc%"
  awk -v a="${acc:-0}" 'BEGIN { exit !(a >= 50) }' || fail "test accuracy ${acc:-none}%"
  "$TMIXD" serve --server.endpoint="ipc://$work/s.sock" --server.state_dir="$work/state" \
    --dataset.path="$work/idx" --server.workers=2 --server.device=cpu --augment.size=32 \
    --augment.crop=pad --augment.pad=2 --mix.method=softmax-cam \
    --teacher.path="$work/learned.safetensors" >"$work/serve.log" 2>&1 &
  pid=$!
  "$TMIXCTL" pull -e "ipc://$work/s.sock" --group g --batches 2 --batch-size 20 --timeout 30 \
    >"$work/pull.log" 2>&1 || fail "pull from a daemon serving the trained teacher"
  grep -q "method softmax-cam" "$work/pull.log" || fail "not mixed with the trained teacher"
  kill -TERM "$pid"
  wait "$pid" || fail "tmixd exited $? after SIGTERM"
  pid=
  ;;
eval)
  # Every method on the same 100 test images with the fixture teacher and module; without a
  # module the learned methods are rows that say so; without a teacher, an error.
  fixture=(--server.device=cpu --dataset.path="$work/idx" --eval.samples=100 --eval.batch_size=50
    --teacher.path="$GOLDEN/transformmix/teacher.safetensors")
  "$TMIXD" eval "${fixture[@]}" --mix.module="$GOLDEN/transformmix/module.safetensors" \
    >"$work/table" 2>"$work/eval.log" || fail "eval exited $?"
  cat "$work/table"
  grep -q "clean accuracy [0-9.]*% (100 images)" "$work/table" || fail "no clean accuracy"
  for m in mixup cutmix softmax-cam stn-only mpn-only transformmix; do
    grep -Eq "^$m +[0-9]+\.[0-9]{4} +[0-9.]+%$" "$work/table" || fail "no scores for $m"
  done
  "$TMIXD" eval "${fixture[@]}" >"$work/plain" 2>>"$work/eval.log" || fail "eval without a module"
  [ "$(grep -c "needs \[mix\] module" "$work/plain")" -eq 3 ] || fail "3 rows need the module"
  # The draws are the method's own business only in how it mixes: mixup's row is the same
  # with or without a module.
  [ "$(grep "^mixup" "$work/table")" = "$(grep "^mixup" "$work/plain")" ] || fail "other draws"
  if "$TMIXD" eval "${fixture[@]}" --teacher.path= >"$work/none" 2>&1; then
    fail "eval without a teacher ran"
  fi
  grep -q "eval needs \[teacher\] path" "$work/none" || fail "no teacher: $(cat "$work/none")"
  ;;
search_learns)
  # With the shipped teacher and its settings, 20 search steps (batch 50) from a fresh module
  # lower TransformMix's loss on 100 held-out test images, at the same draws, below the
  # fresh module's and below softmax-cam's. SEARCH_ON (say "--server.device=cuda:0
  # --mix.precision=bf16"): where the 20 steps run (the CPU otherwise); at bf16 on a GPU the
  # teacher must run whole, forward and backward. The evaluations run on the CPU.
  zoo=(-c "$ZOO/fashion_mnist.conf" --server.device=cpu --dataset.path="$work/idx")
  read -r -a search_on <<<"${SEARCH_ON:-}"
  held_out() { # MODULE: the eval table on 100 test images
    "$TMIXD" eval "${zoo[@]}" --mix.module="$1" --eval.samples=100 --eval.batch_size=50 \
      2>>"$work/eval.log"
  }
  loss_of() { awk -v m="$1" '$1 == m { print $2 }' "$2"; }
  for steps in 1 20; do
    lr=0.0005 on=("${search_on[@]}")
    [ "$steps" = 1 ] && lr=1e-12 on=() # a step that leaves the fresh module as it is
    "$TMIXD" search "${zoo[@]}" "${on[@]}" --search.out="$work/m$steps.safetensors" \
      --search.steps=$steps --search.batch_size=50 --search.lr=$lr >"$work/search$steps.log" 2>&1 ||
      fail "search exited $?"
    held_out "$work/m$steps.safetensors" >"$work/table$steps" || fail "eval exited $?"
  done
  if [[ "${SEARCH_ON:-}" == *bf16* ]]; then
    grep -q "the teacher runs whole at bf16, forward and backward" "$work/search20.log" ||
      fail "the teacher did not run whole"
  fi
  cat "$work/table20"
  fresh=$(loss_of transformmix "$work/table1")
  trained=$(loss_of transformmix "$work/table20")
  cam=$(loss_of softmax-cam "$work/table20")
  echo "held-out loss: transformmix fresh $fresh, after 20 steps $trained; softmax-cam $cam"
  awk -v a="$trained" -v b="$fresh" 'BEGIN { exit !(a < b) }' || fail "the search did not help"
  awk -v a="$trained" -v b="$cam" 'BEGIN { exit !(a < b) }' || fail "not below softmax-cam"
  ;;
*)
  fail "unknown scenario"
  ;;
esac
echo "PASS $scenario${2:+ $cmd}"
