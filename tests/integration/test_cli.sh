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
echo "PASS tmixd.cli"
