#!/usr/bin/env bash
# `tmixd search` as a real process on a 1,000-sample IDX set cut from Debian's Fashion-MNIST,
# with the fixture teacher (cifar_resnet20) of tests/golden/transformmix.
#   test_search.sh SCENARIO    (resume, bad_inputs)
# Needs TMIXD, MAKE_IDX, MAKE_IMAGEFOLDER, FMNIST and GOLDEN in the environment.
set -euo pipefail
scenario=$1
[ -d "$FMNIST" ] || { echo "SKIP: $FMNIST missing (apt-get install dataset-fashion-mnist)"; exit 77; }
work=$(mktemp -d "${TMPDIR:-/tmp}/tmix-search.XXXXXX")
pid=
cleanup() {
  [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "FAIL $scenario: $*" >&2; for f in "$work"/*.log; do [ -f "$f" ] && { echo "--- $f"; tail -20 "$f"; }; done >&2; exit 1; }

python3 "$MAKE_IDX" "$FMNIST" "$work/idx" 1000 100
# search NAME [options...]: a 24-step search (batch 40) writing $work/NAME.*; log in NAME.log.
# start_search: the same in the background, its pid in $pid.
search_args() {
  local name=$1
  shift
  args=(search --server.device=cpu --dataset.path="$work/idx" --mix.method=transformmix
    --teacher.path="$GOLDEN/transformmix/teacher.safetensors" --search.batch_size=40
    --search.steps=24 --search.checkpoint_every=4 --search.momentum=0.9 --search.seed=3
    --search.out="$work/$name.safetensors" "$@")
}
search() { search_args "$@"; "$TMIXD" "${args[@]}" >>"$work/$1.log" 2>&1; }
start_search() { search_args "$@"; "$TMIXD" "${args[@]}" >>"$work/$1.log" 2>&1 & pid=$!; }
wait_lines() { # FILE N: until FILE has N lines (or 30 s)
  for _ in $(seq 600); do
    [ "$(cat "$1" 2>/dev/null | wc -l)" -ge "$2" ] && return 0
    sleep 0.05
  done
}
losses() { sed 's/, "images_per_s".*//' "$1"; } # what must repeat: step, epoch, loss, lr, tau

case $scenario in
resume)
  search straight || fail "the uninterrupted search exited $?"
  [ "$(wc -l <"$work/straight.safetensors.metrics.jsonl")" -eq 24 ] || fail "24 metrics lines expected"
  grep -q "done: 24 steps" "$work/straight.log" || fail "no end line"
  # SIGKILL after step 10 (the checkpoint of step 8 is on disk), then --resume.
  start_search killed
  wait_lines "$work/killed.safetensors.metrics.jsonl" 10
  kill -9 "$pid"
  wait "$pid" 2>/dev/null || true
  pid=
  ps -C tmixd -o args= | grep -q "$work" && fail "a search still runs after SIGKILL"
  [ -f "$work/killed.safetensors.ckpt" ] || fail "no checkpoint after 10 steps"
  [ ! -f "$work/killed.safetensors" ] || fail "a module file before the end"
  if search killed; then fail "a second start without --resume ran (it must refuse)"; fi
  grep -q "exists: --resume continues" "$work/killed.log" || fail "a second start did not refuse"
  search killed --resume || fail "--resume exited $?"
  grep -q "resuming .* at step" "$work/killed.log" || fail "no resume line"
  diff <(losses "$work/straight.safetensors.metrics.jsonl") \
    <(losses "$work/killed.safetensors.metrics.jsonl") >/dev/null ||
    fail "the resumed search did not repeat the losses of the uninterrupted one"
  cmp -s "$work/straight.safetensors" "$work/killed.safetensors" || fail "other module files"
  # SIGTERM: a checkpoint, exit 0, and --resume finishes the same module.
  start_search termed
  wait_lines "$work/termed.safetensors.metrics.jsonl" 5
  kill -TERM "$pid"
  wait "$pid" || fail "SIGTERM: exit $?"
  pid=
  grep -q "Terminated at step .*--resume continues" "$work/termed.log" || fail "no SIGTERM line"
  search termed --resume || fail "--resume after SIGTERM exited $?"
  cmp -s "$work/straight.safetensors" "$work/termed.safetensors" || fail "SIGTERM: other module"
  ;;
bad_inputs)
  # Each a clear error naming the input, exit 1, and nothing overwritten.
  search good --search.steps=4 || fail "a short search exited $?"
  sums() { md5sum "$work"/good.safetensors*; }
  before=$(sums)
  expect() { # WHAT PATTERN [options...]: the search fails with PATTERN in its last line
    local what=$1 pattern=$2
    shift 2
    : >"$work/bad.log"
    set +e
    "$TMIXD" search --server.device=cpu --dataset.path="$work/idx" --mix.method=transformmix \
      --teacher.path="$GOLDEN/transformmix/teacher.safetensors" --search.batch_size=40 \
      --search.steps=8 --search.momentum=0.9 --search.seed=3 \
      --search.out="$work/good.safetensors" "$@" >"$work/bad.log" 2>&1
    local rc=$?
    set -e
    [ "$rc" -eq 1 ] || fail "$what: exit $rc"
    grep -q -- "$pattern" "$work/bad.log" || fail "$what: expected '$pattern' in: $(cat "$work/bad.log")"
    [ "$(sums)" = "$before" ] || fail "$what: a file was overwritten"
  }
  "$MAKE_IMAGEFOLDER" "$work/three" 3 5 32 32
  expect "other classes" "classifies 10 classes; imagefolder:$work/three (train) has 3" \
    --dataset.format=imagefolder --dataset.path="$work/three" --augment.size=28
  expect "not a learned method" "not mixup" --mix.method=mixup
  expect "no out" "needs \[search\] out" --search.out=
  expect "no teacher" "needs \[teacher\] path" --teacher.path=
  expect "checkpoint exists" "good.safetensors.ckpt exists: --resume"
  expect "another n" "mixes n = 2 images; \[mix\] n = 3" --resume --mix.n=3
  expect "another seed" "made with search.seed = 3, this run has 4" --resume --search.seed=4
  expect "another batch size" "made with search.batch_size = 40, this run has 50" --resume \
    --search.batch_size=50
  cp "$work/good.safetensors.ckpt" "$work/saved.ckpt"
  head -c 1000 "$work/saved.ckpt" >"$work/good.safetensors.ckpt"
  before=$(sums)
  expect "corrupt checkpoint" "good.safetensors.ckpt" --resume
  rm "$work/good.safetensors.ckpt"
  before=$(sums)
  expect "no checkpoint" "no checkpoint .*good.safetensors.ckpt" --resume
  ;;
*)
  fail "unknown scenario"
  ;;
esac
echo "PASS search.$scenario"
