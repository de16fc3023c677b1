#!/bin/sh
# tmixctl's command line: usage errors exit 2 with one line naming the option, help goes to
# stdout, a bad endpoint is a usage error too, and libtmix exports only tmix.h's functions.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }

expect() { # RC PATTERN ARGS...: runs tmixctl with ARGS, wants exit RC and one line PATTERN
  want=$1 pattern=$2
  shift 2
  set +e
  err=$("$TMIXCTL" "$@" 2>&1 >/dev/null); rc=$?
  set -e
  [ "$rc" -eq "$want" ] || fail "tmixctl $* exited $rc, expected $want ($err)"
  echo "$err" | grep -q -- "$pattern" || fail "tmixctl $* said: $err"
  [ "$(echo "$err" | wc -l)" -eq 1 ] || fail "tmixctl $* said more than one line: $err"
}

"$TMIXCTL" --version | grep -Eq '^tmixctl [0-9]+\.[0-9]+\.[0-9]+$' || fail "--version"
"$TMIXCTL" --help | grep -q 'bench' || fail "--help does not mention bench"
"$TMIXCTL" pull --help | grep -q -- '--print-ids' || fail "pull --help: no --print-ids"
"$TMIXCTL" bench --help | grep -q -- '--trainers' || fail "bench --help: no --trainers"
"$TMIXCTL" status --help | grep -q -- '--endpoint' || fail "status --help: no --endpoint"
set +e
"$TMIXCTL" >/dev/null 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "no command exited $rc, expected 2"

expect 2 "unknown command 'frob'" frob
expect 2 "tmixctl pull: --batches is required" pull -e ipc:///tmp/x.sock
expect 2 "tmixctl pull: --batches '0': expected an integer from 1 to 1000000000" pull --batches 0
expect 2 "tmixctl pull: --batches '2.5'" pull --batches 2.5
expect 2 "tmixctl pull: --mode 'ring': expected one of shard|broadcast" pull --batches 1 --mode ring
expect 2 "tmixctl pull: --dtype 'int8': expected one of float32|float16|uint8" pull --batches 1 --dtype int8
expect 2 "tmixctl pull: --layout 'chw'" pull --batches 1 --layout chw
expect 2 "tmixctl pull: --out needs a value" pull --batches 1 --out
expect 2 "tmixctl pull: --print-ids takes no value" pull --batches 1 --print-ids=yes
expect 2 "tmixctl pull: unknown option '--frob'" pull --batches 1 --frob 3
expect 2 "tmixctl pull: unexpected argument 'extra'" pull --batches 1 extra
expect 2 "tmixctl bench: --seconds is required" bench
expect 2 "tmixctl bench: --trainers '0'" bench --seconds 1 --trainers 0
expect 2 "tmixctl status: --timeout '-1'" status --timeout -1
expect 2 "tmixctl: carrier-pigeon://roof: not an endpoint" status -e carrier-pigeon://roof
expect 2 "group 'a b'" pull --batches 1 --group 'a b' -e ipc:///tmp/x.sock

# Nothing listening: exit 1, one line naming the endpoint and the wait.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
expect 1 "tmixctl: ipc://$dir/none.sock: no reply to StatusRequest within 200 ms" \
  status -e "ipc://$dir/none.sock" --timeout 0.2

# The library's dynamic symbols: tmix.h's functions, nothing else (not the protobuf code).
extra=$(nm -D --defined-only "$LIBTMIX" | awk '{ print $3 }' | sed 's/@.*//' |
        grep -v -e '^tmix_[a-z_]*$' -e '^TMIX_[0-9.]*$' || true)
[ -z "$extra" ] || fail "libtmix exports: $extra"
nm -D --defined-only "$LIBTMIX" | grep -q ' tmix_next@@TMIX_0.1$' || fail "no tmix_next"
echo "PASS tmixctl.cli"
