#!/bin/sh
# Installs the Debian packages that luastream needs, and only the missing ones.
#   scripts/install-deps.sh build   compile and run
#   scripts/install-deps.sh test    + the test tools
#   scripts/install-deps.sh bench   + the benchmark peers
#   scripts/install-deps.sh arm64   + the aarch64 cross toolchain, arm64 libraries, qemu-user
#   scripts/install-deps.sh deb     + arm64, and debootstrap for the package test
#   scripts/install-deps.sh container  + podman, runc, debootstrap (scripts/container-test.sh, test-systemd.sh)
# Uses apt-get as root, or through sudo. Nothing else is downloaded.
set -e
want="build-essential cmake pkg-config librdkafka-dev libluajit-5.1-dev liblmdb-dev libmsgpack-dev libmicrohttpd-dev"
case "${1:-build}" in
  build) ;;
  test) want="$want lua-busted python3 python3-pytest python3-confluent-kafka python3-pytest-xdist python3-yaml lua-check cppcheck prometheus python3-numpy python3-xgboost python3-sklearn" ;;
  bench) want="$want lua-busted python3 python3-confluent-kafka python3-numpy kcat lua-cjson luajit python3-xgboost" ;;
  arm64|deb) want="$want lua-busted crossbuild-essential-arm64 qemu-user librdkafka-dev:arm64 libluajit-5.1-dev:arm64 liblmdb-dev:arm64 libmsgpack-dev:arm64 libmicrohttpd-dev:arm64"
    [ "$1" = deb ] && want="$want debootstrap"
    foreign=arm64 ;;
  container) want="$want python3 podman runc debootstrap" ;;
  *) echo "usage: $0 [build|test|bench|arm64|deb|container]" >&2; exit 2 ;;
esac
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "installing Debian packages:$missing"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || { echo "need root or sudo to install:$missing" >&2; exit 1; }
  SUDO=sudo
fi
if [ -n "${foreign:-}" ] && ! dpkg --print-foreign-architectures | grep -qx "$foreign"; then
  $SUDO dpkg --add-architecture "$foreign"
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
