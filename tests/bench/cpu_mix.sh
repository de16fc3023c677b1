#!/bin/sh
# CPU milliseconds per batch of the mixing pipeline (a table from bench_mix) for a random
# cifar_resnet18 teacher (10 classes) at 32x32 and, with --large, resnet50 at 224x224.
#   tests/bench/cpu_mix.sh [BUILD_DIR] [--large]
# Needs the build (ninja -C BUILD_DIR) and Debian's python3-torch for the teacher file.
set -eu
cd "$(dirname "$0")/../.."
build=${1:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
teacher() { # ARCH OUT
  PYTHONPATH=client/python /usr/bin/python3 -c "
import sys, torch
from tmix import export, zoo
torch.manual_seed(0)
model = zoo.build(sys.argv[1], 10)
zoo.randomize_bn(model, 0)
export.export(model.state_dict(), sys.argv[1], sys.argv[2])" "$1" "$2"
}
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}"
teacher cifar_resnet18 "$tmp/cifar_resnet18.safetensors"
"$build/tests/bench/bench_mix" "$tmp/cifar_resnet18.safetensors" --batch 128 --size 32 --repeat 3
if [ "${2:-}" = --large ]; then
  teacher resnet50 "$tmp/resnet50.safetensors"
  "$build/tests/bench/bench_mix" "$tmp/resnet50.safetensors" --batch 128 --size 224 --repeat 1
fi
