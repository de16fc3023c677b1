#!/usr/bin/env bash
# tmix set-up on Debian 12: installs the Debian packages that are missing (only those),
# configures and builds in the clone this script belongs to, then does one of:
#   deploy/setup.sh         run the main job: tmixd serving Fashion-MNIST, a trainer pulling
#                           batches with tmixctl, then a clean stop
#   deploy/setup.sh selftest  `tmixd selftest`: every op and model against PyTorch cases
#   deploy/setup.sh test    run the whole test suite: unit, integration, gpu (gpu tests skip
#                           without a GPU; the PyTorch parity tests wait for the next pass)
#                           and emu (the CUDA backend's sources on the CPU emulator), then the
#                           unit, integration and emu op suites again under ASan + UBSan,
#                           then 30 s per fuzz target
#   deploy/setup.sh build   install and build only
# Build directories: build/ (the normal build) and build-asan/ (sanitizers, CPU only).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  meson ninja-build pkg-config gcc g++
  libuv1-dev libnanomsg-dev libprotobuf-c-dev protobuf-c-compiler libjpeg62-turbo-dev
  libopenblas-dev libcjson-dev libinih-dev zlib1g-dev libpng-dev libsystemd-dev
  libmicrohttpd-dev
  scdoc patchelf dataset-fashion-mnist clang libclang-rt-14-dev valgrind
  python3-numpy python3-torch python3-torchvision python3-yaml
)

install_missing() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "setup: installing ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}"
}

# configure DIR [meson options...]: sets DIR up once, reconfigures when it exists.
configure() {
  local dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@"
  fi
}

install_missing
configure build
ninja -C build

# run: tmixd serving TransformMix on Debian's Fashion-MNIST with the shipped teacher and
# mixing module (models/zoo/fashion_mnist.conf), one trainer pulling batches with tmixctl,
# then SIGTERM. A private socket and state directory keep it from meeting a tmixd already
# running on the default endpoint.
demo() {
  local dir pid rc=0
  dir=$(mktemp -d "${TMPDIR:-/tmp}/tmix-demo.XXXXXX")
  build/daemon/tmixd serve -c models/zoo/fashion_mnist.conf \
    --server.endpoint="ipc://$dir/tmixd.sock" \
    --server.state_dir="$dir/state" 2>"$dir/tmixd.log" &
  pid=$!
  for _ in $(seq 50); do
    build/client/tmixctl status -e "ipc://$dir/tmixd.sock" --timeout 0.2 >/dev/null 2>&1 && break
    sleep 0.1
  done
  build/client/tmixctl pull -e "ipc://$dir/tmixd.sock" --group demo --batches 20 || rc=$?
  build/client/tmixctl status -e "ipc://$dir/tmixd.sock" || rc=$?
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  echo "--- tmixd's log"
  cat "$dir/tmixd.log"
  rm -rf "$dir"
  return "$rc"
}

case "${1:-run}" in
  run)
    demo
    ;;
  selftest)
    exec build/daemon/tmixd selftest
    ;;
  build) ;;
  test)
    # The PyTorch parity tests (suite parity) run once, in the sanitizer pass below: their
    # time is PyTorch's, the same in both builds.
    meson test -C build --no-rebuild --print-errorlogs --suite unit --suite integration --suite gpu \
      --suite emu --no-suite parity
    # The sanitizer build is CPU-only: the CUDA runtime and ASan do not share an address space
    # layout, and there is no GPU to test here anyway. The CUDA emulator runs the CUDA
    # backend's ops there instead, so ASan checks every kernel's reads and writes.
    # Optimised (-O2): the integration suite under ASan took 7.6 min here, 10.3 at -O0.
    configure build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dcuda=disabled \
      -Dbuildtype=debugoptimized
    ninja -C build-asan
    # allocator_may_return_null: tmixd's answer to an allocation that fails is under test.
    # tests/lsan.supp: leaks of other projects' code, each with its bug report.
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1 \
      LSAN_OPTIONS=suppressions=$PWD/tests/lsan.supp:print_suppressions=0 \
      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      meson test -C build-asan --no-rebuild --print-errorlogs --suite unit --suite integration \
      --suite emu --no-suite emu-models
    # Each fuzz target for 30 s from its seed corpus (tests/fuzz/run.sh; longer runs by hand).
    CC=clang configure build-fuzz -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
      -Dcuda=disabled
    ninja -C build-fuzz fuzz
    tests/fuzz/run.sh build-fuzz "${FUZZ_SECONDS:-30}"
    ;;
  *)
    echo "usage: $0 [run|selftest|test|build]" >&2
    exit 2
    ;;
esac
