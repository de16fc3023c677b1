#!/usr/bin/env bash
# On another machine (a GPU box without our Debian packages): unpack a bundle and run, in two
# PARTs that each fit one 10-minute call:
#   tests  the tests that never ran on a GPU first (where brought: the CUDA twins, teacher
#          precision, mix graph; with Fashion-MNIST and rawreq the GPU serving scenarios of
#          tests/serve/serving.sh (devices, gpu_fault, gpu_hang, lanes, shm) and, with PyTorch, the
#          Loader's cuda delivery tests), then the bundle's selftest (CPU and cuda:0 rows);
#   bench  bench_mix on the GPU at fp32, tf32 and bf16, each with its ops' times (--ops),
#          beside its PyTorch peer
#          (tests/bench/peer_torch.py; teachers made there with PyTorch), tmixctl bench for 1,
#          4 and 8 trainers on Fashion-MNIST and a generated 64x64 JPEG ImageFolder, and last
#          the end-to-end bench (tests/bench/e2e.sh, mixup, E2E_SECONDS per row, default 3;
#          its peer needs torchvision and PIL).
# Without PART both run. Each step has a time limit, a failed step does not stop the others,
# every output goes to OUT_DIR as it is written, and each step's line says when it ended
# (seconds since the start), for planning the next lease's calls. Everything it needs
# travels in one folder, which tests/bench/box_dir.sh DIR makes (51 MiB):
#   DIR/tmix-*.tar.gz (deploy/bundle.sh), DIR/make_imagefolder (build-bundle/tests/serve/),
#   optional: DIR/fmnist/*.gz (Debian's Fashion-MNIST files), DIR/test_twins,
#   DIR/test_precision, DIR/test_mix_graph and DIR/test_infer (build-bundle/tests/gpu/),
#   DIR/bench_mix (build-bundle/tests/bench/), DIR/rawreq (build-bundle/tests/serve/).
#   tests/bench/box.sh DIR OUT_DIR [tests|bench]
# Run from the root of a checkout (the GPU bench uses client/python to make its teachers).
# A device call brings back at most 8 files, and the tests part writes more: run it as
#   timeout 560 tests/bench/box.sh DIR /tmp/box tests; tar czf $OUT/tests.tgz -C /tmp box
# cuDNN is looked for in the Python package nvidia.cudnn (as on the lent H200 boxes).
set -uo pipefail
repo=$PWD
dir=$(cd "$1" && pwd)
out=$(mkdir -p "$2" && cd "$2" && pwd)
part=${3:-all}
case $part in all|tests|bench) ;; *) echo "box.sh: PART is tests or bench, not $part" >&2; exit 2 ;; esac
want() { [ "$part" = all ] || [ "$part" = "$1" ]; }
cd "$dir"
tar xzf tmix-*.tar.gz
B=$(ls -d "$dir"/tmix-*/ | head -1)
ln -sfn "$B/lib" lib # the test programs' rpath (box_dir.sh); the bundle's have their own
CUDNN=$(python3 -c "import nvidia.cudnn as m; print(m.__path__[0])" 2>/dev/null)/lib
export LD_LIBRARY_PATH=$CUDNN:/usr/local/cuda/lib64
{ nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null; nproc
  "$B/bin/tmixd" --version; } | tee "$out/machine.txt"
# BOX_CUDA_PLUGIN: another plugin in its place, such as the fake GPU (tests/fakecuda), to try
# this script on a machine without a GPU before a lease.
export TMIX_CUDA_PLUGIN=${BOX_CUDA_PLUGIN:-$B/lib/tmix/libtmix-cuda.so}
if want tests && [ -x ./test_twins ]; then
  timeout 200 ./test_twins >"$out/twins.txt" 2>&1
  echo "twins exit $? at ${SECONDS} s: $(grep -c '^PASS' "$out/twins.txt") groups passed"
  grep '^FAIL' "$out/twins.txt"
fi
for t in test_precision test_mix_graph test_infer; do
  want tests && [ -x ./$t ] || continue
  TMIX_ZOO_DIR=$repo/models/zoo timeout 120 ./$t >"$out/$t.txt" 2>&1
  echo "$t exit $? at ${SECONDS} s"
  grep -E '^FAIL|turned off|expected|the CPU says|^(fp32|tf32|bf16): |element|nothing to|whole' \
    "$out/$t.txt" | head -20
done
if want tests && [ -d fmnist ] && [ -x ./rawreq ]; then
  export TMIXD=$B/bin/tmixd TMIXCTL=$B/bin/tmixctl RAWREQ=$dir/rawreq FMNIST=$dir/fmnist \
    MAKE_IMAGEFOLDER=$dir/make_imagefolder MAKE_IDX=$repo/tests/serve/make_idx.py \
    GOLDEN=$repo/tests/golden NUMPY_PYTHON=python3 PYTHONPATH=$repo/client/python \
    CHECK_FORMATS=$repo/tests/serve/check_formats.py CHECK_DEVICES=$repo/tests/serve/check_devices.py
  for scenario in devices gpu_fault gpu_hang lanes shm; do
    timeout 120 bash "$repo/tests/serve/serving.sh" $scenario >"$out/serve.$scenario.txt" 2>&1
    echo "serve.$scenario exit $? at ${SECONDS} s"
  done
  for name in cuda cuda_kill held_expired; do
    TMIX_LIBRARY=$B/lib/libtmix.so.0 timeout 120 python3 "$repo/tests/python/test_loader.py" \
      $name >"$out/loader_$name.txt" 2>&1
    echo "python.loader.$name exit $? at ${SECONDS} s: $(tail -1 "$out/loader_$name.txt")"
  done
fi
if want tests; then # ran on a GPU before (2026-11-30): last
  timeout 150 "$B/bin/tmixd" selftest >"$out/selftest.txt" 2>&1
  echo "selftest exit $? at ${SECONDS} s: $(tail -1 "$out/selftest.txt"); cuda:0 rows: $(grep -c 'cuda:0' "$out/selftest.txt")"
fi
want bench || exit 0
if [ -x ./bench_mix ]; then
  PYTHONPATH=$repo/client/python timeout 60 python3 -c "
import torch
from tmix import export, zoo
torch.manual_seed(0)
for arch, k in (('cifar_resnet18', 10), ('resnet50', 1000)):
    m = zoo.build(arch, k)
    zoo.randomize_bn(m, 0)
    export.export(m.state_dict(), arch, '/tmp/tmix-box-' + arch + '.safetensors')"
  {
    for precision in fp32 tf32 bf16; do
      timeout 60 ./bench_mix /tmp/tmix-box-cifar_resnet18.safetensors --size 32 --repeat 5 \
        --backend cuda --precision $precision --ops
      timeout 90 ./bench_mix /tmp/tmix-box-resnet50.safetensors --size 224 --repeat 3 \
        --backend cuda --precision $precision --ops
    done
    PYTHONPATH=$repo/client/python timeout 150 python3 "$repo/tests/bench/peer_torch.py" \
      --repeat 5
  } 2>&1 | tee "$out/bench_mix.txt"
  echo "bench_mix and peer_torch.py done at ${SECONDS} s"
fi
bench() { # NAME TRAINERS tmixd-options...
  local name=$1 t=$2
  shift 2
  "$B/bin/tmixd" serve --server.endpoint=ipc:///tmp/tmix-box.sock \
    --server.state_dir=/tmp/tmix-box-state --server.log_level=warn "$@" 2>>"$out/tmixd.log" &
  local pid=$!
  for _ in $(seq 100); do
    "$B/bin/tmixctl" status -e ipc:///tmp/tmix-box.sock --timeout 0.2 >/dev/null 2>&1 && break
    sleep 0.1
  done
  timeout 30 "$B/bin/tmixctl" bench -e ipc:///tmp/tmix-box.sock --seconds 8 --trainers "$t" \
    --group "g$t" | awk -v n="$name" 'NR == 2 { printf "%-24s %s\n", n, $0 }'
  kill -TERM $pid
  wait $pid
  rm -rf /tmp/tmix-box-state
}
if [ -d fmnist ]; then
  ./make_imagefolder /tmp/tmix-box-jpeg64 10 500 64 64
  {
    echo "mixup, batch 128, float32 NCHW, inline over ipc://, 8 s per row, $(nproc) cores"
    printf "%-24s %8s %10s %12s %12s %9s %9s %11s\n" "data set" trainers batches images \
      images/s "p50 ms" "p99 ms" "least share"
    for t in 1 4 8; do bench "fashion-mnist 28x28" $t --dataset.path="$dir/fmnist"; done
    for t in 1 4 8; do
      bench "jpeg imagefolder 64x64" $t --dataset.format=imagefolder \
        --dataset.path=/tmp/tmix-box-jpeg64 --augment.size=64 --augment.crop=random-resized
    done
  } | tee "$out/bench.txt"
  echo "tmixctl bench done at ${SECONDS} s"
fi
# BUILD_DIR is not used: the bundle's programs are named by the variables.
TMIXD=$B/bin/tmixd TMIXCTL=$B/bin/tmixctl MAKE_IMAGEFOLDER=$dir/make_imagefolder \
  TMIX_LIBRARY=$B/lib/libtmix.so.0 PYTHONPATH=$repo/client/python \
  timeout 300 "$repo/tests/bench/e2e.sh" "$B" "${E2E_SECONDS:-3}" 2>&1 | tee "$out/e2e.txt"
