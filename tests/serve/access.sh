#!/usr/bin/env bash
# Limits and access: bad requests, errors at start, the configured limits, who can connect.
#   access.sh SCENARIO    (bad_messages, startup_errors, limits, access)
# Real tmixd daemons and tmixctl trainers (daemons.sh says what the environment needs).
set -euo pipefail
. "$(dirname "$0")/daemons.sh"

case $scenario in
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
access)
  # Who can reach tmixd: over ipc:// it listens on no TCP port at all; over tcp:// only on
  # the configured address, with the metrics on loopback; a group name is only a name.
  start_daemon a
  listening=$(python3 "$LISTENING" "$daemon")
  [ -z "$listening" ] || fail "an ipc:// daemon listens on TCP: $listening"
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
  listening=$(python3 "$LISTENING" "$daemon")
  [ "$listening" = "$(printf '127.0.0.1:%s\n' "$port" "$mport" | sort)" ] ||
    fail "tcp://127.0.0.1:$port listens on: $listening"
  stop_daemon "$daemon"
  ;;
*)
  echo "unknown scenario $scenario" >&2
  exit 2
  ;;
esac
echo "PASS serve.$scenario"
