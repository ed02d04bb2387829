#!/bin/sh
# The C unit tests and the busted specs of the arm64 build, run under
# qemu-user (`make test-arm64` builds build-arm64 first; docs/edge.md).
#   scripts/test-arm64.sh [BUILD_DIR]     default: build-arm64
# ctest runs each arm64 program through qemu-aarch64 (the emulator set in
# cmake/aarch64-linux-gnu.cmake), with the arm64 libraries of the multiarch
# -dev:arm64 packages (scripts/install-deps.sh arm64).
set -e
cd "$(dirname "$0")/.."
build=${1:-build-arm64}
if [ ! -x "$build/luastream" ]; then
  echo "$build/luastream is not built: run make arm64" >&2
  exit 2
fi
if ! od -An -tx1 -j18 -N2 "$build/luastream" | grep -q "b7 00"; then
  echo "$build/luastream is not an arm64 (aarch64) program" >&2
  exit 2
fi

# busted's C modules (term.core, system.core, lfs) must be arm64 builds too in
# an arm64 process. lua-term has no Multi-Arch: same, so its arm64 package
# cannot be installed beside the amd64 one the host's busted uses: the three
# Debian packages are fetched with apt-get download and unpacked into the
# build directory, and LUA_CPATH points there.
mods="$PWD/$build/lua-arm64"
if [ ! -f "$mods/.unpacked" ]; then
  rm -rf "$mods"
  mkdir -p "$mods/debs"
  chmod 0777 "$mods/debs" # apt's download user writes there
  (cd "$mods/debs" && apt-get download -q lua-term:arm64 lua-system:arm64 lua-filesystem:arm64)
  for deb in "$mods"/debs/*.deb; do dpkg-deb -x "$deb" "$mods"; done
  touch "$mods/.unpacked"
fi
LUA_CPATH="$mods/usr/lib/aarch64-linux-gnu/lua/5.1/?.so;;"
export LUA_CPATH

echo "qemu: $(qemu-aarch64 --version | head -1)"
ctest --test-dir "$build" --output-on-failure --timeout 900 -R '^(unit|lua)\.'
