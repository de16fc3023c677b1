# Sourced by the serving scenarios (serving.sh, faults.sh, access.sh, operations.sh), each
# run as `SCRIPT SCENARIO` under `set -euo pipefail`: $scenario, a 1,000-sample IDX set cut
# from Debian's Fashion-MNIST in $work/idx, and the helpers below that start tmixd daemons
# and tmixctl trainers on ipc:// sockets in $work (scratch.sh: $work, fail, stop_daemon).
# Needs TMIXD, TMIXCTL, RAWREQ, MAKE_IMAGEFOLDER, MAKE_IDX, FMNIST, GOLDEN, and for formats
# NUMPY_PYTHON and CHECK_FORMATS (with PYTHONPATH reaching client/python), for devices
# CHECK_DEVICES, for access LISTENING, in the environment. The daemon mixes on the first GPU
# when there is one.
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
