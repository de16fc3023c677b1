#!/bin/sh
# bench_mix on the CUDA emulator, as box.sh runs it on a GPU, at a batch of 4: not a timing
# (the emulator's milliseconds mean nothing), but every row and both op tables are printed,
# and at bf16 the teacher runs whole (one layers_forward in the whole mix; in the search step
# its forward for the loss and its backward too). A GPU's minutes are few; a benchmark that
# broke since it last ran would waste them.
set -eu
fail() { echo "FAIL: $*" >&2; exit 1; }
out=$("$BENCH_MIX" "$1" --size 32 --batch 4 --repeat 1 --backend cuda --precision bf16 --ops) ||
  fail "bench_mix exited $?"
echo "$out"
for row in 'CAMs (teacher forward + CAM)' 'whole mix (CAMs + STN + MPN + blend)' \
           'search step (mix + teacher loss + backward)' 'whole mix, one CUDA graph launch' \
           'ops of one whole mix' 'ops of one search step'; do
  echo "$out" | grep -qF "$row" || fail "no row '$row'"
done
# An op table: from its title to the next blank line.
ops_of() { echo "$out" | sed -n "/^ops of one $1/,/^\$/p"; }
ops_of 'whole mix' | grep -Eq '^layers_forward +1 ' ||
  fail "the teacher did not run whole in the whole mix"
ops_of 'search step' | grep -Eq '^layers_forward +2 ' && ops_of 'search step' |
  grep -Eq '^layers_backward +1 ' || fail "the teacher did not run whole in the search step"
echo "PASS bench_mix on the emulator"
