#!/bin/sh
# tmixd's command line: --version names the version and backends, bad commands and
# arguments exit 2 with a message naming them, and help goes to stdout.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }

out=$("$TMIXD" --version) || fail "--version exited $?"
echo "$out" | grep -Eq '^tmixd [0-9]+\.[0-9]+\.[0-9]+ \(backends: cpu' || fail "--version printed: $out"

"$TMIXD" --help | grep -q selftest || fail "--help does not mention selftest"

set +e
err=$("$TMIXD" frobnicate 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] || fail "unknown command exited $rc, expected 2"
echo "$err" | grep -q "unknown command 'frobnicate'" || fail "unknown command said: $err"

set +e
err=$("$TMIXD" selftest extra 2>&1); rc=$?
set -e
[ "$rc" -eq 2 ] || fail "selftest with an extra argument exited $rc"
echo "$err" | grep -q "unexpected argument 'extra'" || fail "extra argument said: $err"

set +e
"$TMIXD" >/dev/null 2>&1; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "no command exited $rc, expected 2"
# tmixd mix: usage errors exit 2 naming the option; a bad file exits 1 naming the file.
expect() { # RC PATTERN ARGS...: runs tmixd with ARGS, wants exit RC and PATTERN on stderr
  want=$1 pattern=$2
  shift 2
  set +e
  err=$("$TMIXD" "$@" 2>&1 >/dev/null); rc=$?
  set -e
  [ "$rc" -eq "$want" ] || fail "tmixd $* exited $rc, expected $want ($err)"
  echo "$err" | grep -q -- "$pattern" || fail "tmixd $* said: $err"
}
"$TMIXD" mix --help | grep -q -- "--teacher" || fail "mix --help does not mention --teacher"
expect 2 "--teacher is required" mix --in a --out b
expect 2 "unknown option '--frob'" mix --frob 1
expect 2 "--n '4'" mix --teacher t --in a --out b --n 4
expect 2 "--seed '-1'" mix --teacher t --in a --out b --seed -1
expect 2 "--out needs a value" mix --teacher t --in a --out
expect 1 "/nonexistent/t.safetensors" mix --teacher /nonexistent/t.safetensors --in a --out b
expect 1 "unknown mixing method 'puzzle'" mix --teacher t --in a --out b --method puzzle
expect 1 "needs --module" mix --teacher t --in a --out b --method transformmix
expect 1 "--backend 'cuda:x'" mix --teacher t --in a --out b --backend cuda:x
echo "PASS tmixd.cli"
