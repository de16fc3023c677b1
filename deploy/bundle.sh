#!/usr/bin/env bash
# Makes a relocatable tarball of tmix: bin/ (tmixd), lib/ (our non-CUDA shared dependencies,
# found with ldd), lib/tmix/ (the CUDA plugin, when built) and share/tmix/ (run-time data).
# Binaries find their libraries through rpath $ORIGIN/../lib, libraries each other through
# $ORIGIN. Not carried: glibc, libstdc++/libgcc_s (the target's newer ones must win, cuDNN
# needs them) and the CUDA driver, runtime and cuDNN, which the GPU box provides
# (LD_LIBRARY_PATH=<cudnn lib>:<cuda lib64> there).
#
#   deploy/bundle.sh [OUT_DIR]     -> OUT_DIR/tmix-<version>-<arch>.tar.gz (default: dist/)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)
build=$root/build-bundle

if [ -f "$build/build.ninja" ]; then
  meson configure "$build" --prefix=/ -Dlibdir=lib -Dbuildtype=release >/dev/null
else
  meson setup "$build" "$root" --prefix=/ -Dlibdir=lib -Dbuildtype=release >/dev/null
fi
ninja -C "$build" >/dev/null
version=$(meson introspect "$build" --projectinfo | sed -n 's/.*"version": *"\([^"]*\)".*/\1/p')
name=tmix-$version-$(uname -m)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
dest=$stage/$name
DESTDIR=$dest meson install -C "$build" --no-rebuild --quiet

# Libraries the target provides itself.
system='^(linux-vdso|ld-linux|libc|libm|libdl|libpthread|librt|libresolv|libstdc\+\+|libgcc_s|libcuda|libcudart|libcudnn[a-z_]*|libnvrtc|libcublas[A-Za-z]*)\.so'

copy_deps() { # copy_deps ELF: copies every non-system library it needs (recursively via ldd)
  ldd "$1" | awk '/=> \// { print $1, $3 }' | while read -r soname path; do
    [[ $soname =~ $system ]] && continue
    [ -e "$dest/lib/$soname" ] && continue
    cp -L "$path" "$dest/lib/$soname"
    chmod u+w "$dest/lib/$soname"
    patchelf --set-rpath '$ORIGIN' "$dest/lib/$soname"
  done
}

mkdir -p "$dest/lib"
for exe in "$dest"/bin/*; do
  patchelf --set-rpath '$ORIGIN/../lib' "$exe"
  copy_deps "$exe"
done
for plugin in "$dest"/lib/tmix/*.so; do
  [ -e "$plugin" ] || continue
  # cuDNN and the CUDA runtime come from the target; our own libraries from the bundle.
  patchelf --set-rpath '$ORIGIN/..' "$plugin"
  copy_deps "$plugin"
done

tar -C "$stage" -czf "$out/$name.tar.gz" "$name"
echo "$out/$name.tar.gz"
