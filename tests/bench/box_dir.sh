#!/usr/bin/env bash
# Makes the folder that tests/bench/box.sh runs from on a GPU box: the bundle (deploy/bundle.sh,
# which builds build-bundle/ in release, the CUDA plugin with it), the test and bench programs
# of that same build (so that their plugin ABI is the bundle's), and Debian's Fashion-MNIST
# files. Prints the folder's size: a device call carries at most 64 MiB, the checkout's
# tracked files (about 5 MiB) included.
#   tests/bench/box_dir.sh DIR     (DIR: a path git ignores, such as dist/box, to carry)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dir=$(mkdir -p "$1" && cd "$1" && pwd)
fmnist=/usr/share/datasets/fashion-mnist
rm -rf "$dir"/tmix-*
"$root/deploy/bundle.sh" "$dir" >/dev/null
# The programs find the bundle's libraries in DIR/lib, which box.sh links to them, so that
# nothing puts our Debian libraries on the box's Python's library path.
for program in gpu/test_twins gpu/test_precision gpu/test_mix_graph gpu/test_infer bench/bench_mix \
  serve/rawreq serve/make_imagefolder; do
  cp "$root/build-bundle/tests/$program" "$dir/"
  patchelf --set-rpath '$ORIGIN/lib' "$dir/${program#*/}"
done
mkdir -p "$dir/fmnist"
cp "$fmnist"/*-ubyte.gz "$dir/fmnist/"
du -sh "$dir"
