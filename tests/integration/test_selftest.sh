#!/bin/sh
# tmixd selftest prints the backends side by side: with --backend cpu --backend cpu (how a
# machine without a GPU sees the layout) the header has two column groups and every row two
# errors; a failing run names the backend in the verdict and its error below the table; bad
# --backend values exit 2 naming them.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
golden=$(cd "$(dirname "$0")/../golden" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The table of a selftest output: the lines after the "op check case" header, up to the
# first blank line.
rows() { sed -n '/^op  /,/^$/p' "$1" | sed '1d;/^$/d'; }
# Number of rows of stdin whose count of errors (numbers like 1.00e-05) is not $1.
rows_without_errors() {
  awk -v want="$1" '{ n = 0; for (i = 1; i <= NF; i++) if ($i ~ /^[0-9]\.[0-9][0-9]e[-+][0-9][0-9]$/) n++
                      if (n != want) bad++ } END { print bad + 0 }'
}

# all_ok NAME COLUMNS: $work/NAME.txt's rows (into $work/NAME.rows) each have COLUMNS errors and
# are ok, and its summary counts every check (one per row and backend) passed.
all_ok() {
  local name=$1 columns=$2 n
  rows "$work/$name.txt" > "$work/$name.rows"
  [ "$(rows_without_errors "$columns" < "$work/$name.rows")" -eq 0 ] ||
    fail "$name: rows without $columns errors"
  grep -v '  ok$' "$work/$name.rows" && fail "$name: rows above are not ok"
  n=$(($(wc -l < "$work/$name.rows") * columns))
  grep -qx "$n checks: $n passed, 0 failed, 0 not supported by their backend" \
    "$work/$name.txt" || fail "$name: summary: $(tail -n 1 "$work/$name.txt")"
}

"$TMIXD" selftest --backend cpu --backend cpu > "$work/two.txt" || fail "two CPU columns exited $?"
header=$(grep '^op  ' "$work/two.txt")
[ "$(echo "$header" | grep -o ' error ' | wc -l)" -eq 2 ] || fail "header: $header"
rule=$(grep -B1 '^op  ' "$work/two.txt" | head -n 1)
[ "$(echo "$rule" | grep -o -- '- cpu -' | wc -l)" -eq 2 ] || fail "backend names: $rule"
all_ok two 2
[ "$(wc -l < "$work/two.rows")" -gt 300 ] || fail "only $(wc -l < "$work/two.rows") rows"
grep -q '^transformmix      fwd+bwd      cams ' "$work/two.rows" || fail "no TransformMix rows"

# Without --backend: the CPU and every GPU. With GPUs (or the CUDA emulator, as test
# emu.selftest_columns runs this), a cpu column and one per GPU, from cuda:0, every row ok on
# each; with none visible, one column and why.
gpus=$("$TMIXD" --version | sed -n 's/.*GPUs visible: \([0-9]*\)).*/\1/p')
[ -n "$gpus" ] || fail "tmixd --version does not count GPUs: $("$TMIXD" --version)"
if [ "$gpus" -gt 0 ]; then
  "$TMIXD" selftest > "$work/gpu.txt" || fail "plain selftest with $gpus GPUs exited $?"
  rule=$(grep -B1 '^op  ' "$work/gpu.txt" | head -n 1)
  echo "$rule" | grep -q -- '- cpu -.*- cuda:0 -' || fail "GPU backend names: $rule"
  all_ok gpu $((gpus + 1))
  [ "$(wc -l < "$work/gpu.rows")" -eq "$(wc -l < "$work/two.rows")" ] || fail "GPU rows"
else
  "$TMIXD" selftest > "$work/one.txt" || fail "plain selftest exited $?"
  [ "$(grep '^op  ' "$work/one.txt" | grep -o ' error ' | wc -l)" -eq 1 ] || fail "plain header"
  [ "$(rows "$work/one.txt" | rows_without_errors 1)" -eq 0 ] || fail "plain rows"
  grep -q '^GPU: none used (cuda' "$work/one.txt" || fail "plain selftest does not say why"
  set +e
  err=$("$TMIXD" selftest --backend cpu --backend cuda:0 2>&1 >/dev/null); rc=$?
  set -e
  [ "$rc" -eq 1 ] || fail "--backend cuda:0 without a GPU exited $rc"
  echo "$err" | grep -q '^tmixd selftest: cuda' || fail "--backend cuda:0 said: $err"
fi

# A TransformMix run that fails: every tensor row fails on both columns, and the reason
# (naming the file) is printed below the table, once per backend.
mkdir "$work/golden" "$work/golden/transformmix"
ln -s "$golden"/*.safetensors "$work/golden/"
ln -s "$golden"/transformmix/*.safetensors "$work/golden/transformmix/"
rm "$work/golden/transformmix/teacher.safetensors"
echo junk > "$work/golden/transformmix/teacher.safetensors"
set +e
TMIX_GOLDEN_DIR=$work/golden "$TMIXD" selftest --backend cpu --backend cpu > "$work/bad.txt"; rc=$?
set -e
[ "$rc" -eq 1 ] || fail "a broken teacher exited $rc"
grep -q '^transformmix      fwd+bwd      cams  .*  failed  .*  failed  .*  FAIL cpu,cpu$' \
  "$work/bad.txt" || fail "no failed TransformMix row: $(grep '^transformmix' "$work/bad.txt")"
[ "$(grep -c "^cpu transformmix fwd+bwd cams: $work/golden/transformmix/teacher.safetensors" \
  "$work/bad.txt")" -eq 2 ] || fail "failure texts: $(tail -n 5 "$work/bad.txt")"
grep -q ' 0 failed' "$work/bad.txt" && fail "a failing run says 0 failed"

expect() { # RC PATTERN ARGS...: runs tmixd selftest ARGS, wants exit RC and PATTERN on stderr
  want=$1 pattern=$2
  shift 2
  set +e
  err=$("$TMIXD" selftest "$@" 2>&1 >/dev/null); rc=$?
  set -e
  [ "$rc" -eq "$want" ] || fail "selftest $* exited $rc, expected $want ($err)"
  echo "$err" | grep -q -- "$pattern" || fail "selftest $* said: $err"
}
expect 2 "--backend 'nosuch': expected cpu, cuda or cuda:N" --backend nosuch
expect 2 "--backend 'cuda:x'" --backend cpu --backend cuda:x
expect 2 "--backend needs a value" --backend
expect 2 "unexpected argument 'extra'" --backend cpu extra
"$TMIXD" selftest --help | grep -q -- "--backend NAME" || fail "selftest --help"
echo "PASS tmixd.selftest_columns"
