#!/usr/bin/env bash
# The relocatable bundle runs where none of our packages are: deploy/bundle.sh builds it, and
# tmixd --version and tmixd selftest must pass in a chroot that holds only glibc, libstdc++
# and libgcc_s (what any GPU box has) plus the unpacked bundle at an arbitrary path.
# Needs root for chroot and the /proc mount; skips (77) otherwise.
set -euo pipefail
if [ "$(id -u)" -ne 0 ] || ! command -v chroot >/dev/null; then
  echo "SKIP: needs root and chroot"; exit 77
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
rfs=$work/rootfs
cleanup() { umount "$rfs/proc" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

tarball=$("$root/deploy/bundle.sh" "$work/dist" | tail -n 1)
mkdir -p "$rfs/proc" "$rfs/srv/somewhere" "$rfs/lib64" "$rfs/lib/x86_64-linux-gnu" "$rfs/tmp"
chmod 1777 "$rfs/tmp" # selftest writes the TransformMix output there
tar -C "$rfs/srv/somewhere" -xzf "$tarball"
cp /lib64/ld-linux-x86-64.so.2 "$rfs/lib64/"
for lib in libc.so.6 libm.so.6 libdl.so.2 libpthread.so.0 librt.so.1 libstdc++.so.6 libgcc_s.so.1; do
  cp -L "/lib/x86_64-linux-gnu/$lib" "$rfs/lib/x86_64-linux-gnu/"
done
if ! mount -t proc proc "$rfs/proc"; then
  echo "SKIP: cannot mount /proc in the chroot"; exit 77
fi
tmixd=$(cd "$rfs" && ls -d srv/somewhere/tmix-*/bin/tmixd)
echo "bundle: $(basename "$tarball"), $(du -sh "$rfs/srv/somewhere" | cut -f1) unpacked"

out=$(chroot "$rfs" "/$tmixd" --version)
echo "$out"
echo "$out" | grep -q '^tmixd [0-9.]* (backends: cpu' || { echo "FAIL: --version"; exit 1; }
chroot "$rfs" "/$tmixd" selftest > "$work/selftest.txt" || {
  cat "$work/selftest.txt"; echo "FAIL: selftest in the chroot"; exit 1; }
tail -n 3 "$work/selftest.txt"
grep -q ' 0 failed' "$work/selftest.txt" || { echo "FAIL: selftest summary"; exit 1; }
echo "PASS bundle.relocatable"
