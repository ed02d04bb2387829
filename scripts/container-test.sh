#!/bin/sh
# Builds docker/Dockerfile with podman and runs the crash-detection example in
# the image against a dev broker on the host's loopback. Needs no registry:
# the Debian 12 base images (debian:bookworm and debian:bookworm-slim, as the
# Dockerfile names them) are bootstrapped from the Debian mirror with
# debootstrap and imported into podman's local storage, once.
#
#   scripts/install-deps.sh container   podman and debootstrap
#   scripts/container-test.sh           as root (debootstrap and podman need it)
#
# Slow (the first run bootstraps two root filesystems and the build installs a
# compiler in the image: about ten minutes on two cores), so it is not part of
# `make test`. It prints the image size and the figures it checked, and exits
# non-zero when a step fails.
#
# Environment: BUILD (a build of the host's luastream for the broker, default
# build), DEBIAN_MIRROR (default http://deb.debian.org/debian), IMAGE (default
# localhost/luastream:test), REBASE=1 to bootstrap the base images again,
# KEEP=1 to keep the working directory.
set -eu
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
IMAGE=${IMAGE:-localhost/luastream:test}
BASE=docker.io/library/debian

say() { echo "container-test: $*" >&2; }
die() { say "$*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (debootstrap and podman's storage need it)"
for tool in podman debootstrap python3; do
  command -v "$tool" >/dev/null || die "$tool is missing (scripts/install-deps.sh container)"
done
if [ ! -x "$BUILD/luastream" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2 --target luastream
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/luastream-container.XXXXXX")
broker_pid=""
cleanup() {
  trap - EXIT INT TERM
  set +e
  podman rm -f ls-test-phones ls-test-crash >/dev/null 2>&1
  if [ -n "$broker_pid" ]; then kill "$broker_pid" 2>/dev/null; wait "$broker_pid" 2>/dev/null; fi
  podman volume rm -f ls-test-state >/dev/null 2>&1
  if [ "${KEEP:-0}" = 1 ]; then say "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- 1. the base images, from the Debian mirror ---------------------------
# debian:bookworm is a minbase debootstrap; debian:bookworm-slim is the same
# without documentation, manual pages and translations, and with dpkg told to
# leave them out of later installs (what Debian's own slim images do).
slimify() {
  root=$1
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  cat >"$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root/usr/share/man"/* "$root/usr/share/info"/* "$root/usr/share/lintian"
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
}

import_rootfs() { # ROOT TAG
  tar --numeric-owner -C "$1" -c . | podman import -q --change 'CMD ["bash"]' - "$2" >/dev/null
}

if [ "${REBASE:-0}" = 1 ] || ! podman image exists "$BASE:bookworm" || ! podman image exists "$BASE:bookworm-slim"; then
  t0=$(date +%s)
  root=$work/rootfs
  say "debootstrap bookworm (minbase) from $MIRROR"
  debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -rf "$root/var/lib/apt/lists"/* "$root/var/cache/apt"/*.bin "$root/var/cache/apt/archives"/*.deb
  printf 'APT::Install-Recommends "false";\n' >"$root/etc/apt/apt.conf.d/docker-no-recommends"
  import_rootfs "$root" "$BASE:bookworm"
  slimify "$root"
  import_rootfs "$root" "$BASE:bookworm-slim"
  rm -rf "$root"
  say "base images imported in $(( $(date +%s) - t0 )) s"
fi

# Where podman's defaults cannot start a container (crun refuses hybrid
# cgroup hierarchies; the default open-files limit may be above the hard limit
# a sandbox allows), runc with limits within the current ones.
if ! podman run --rm --network none "$BASE:bookworm-slim" true 2>"$work/probe.err"; then
  command -v runc >/dev/null ||
    die "podman cannot start a container ($(cat "$work/probe.err")); runc may (scripts/install-deps.sh container)"
  nofile=$(awk '/^Max open files/ { print $5 }' /proc/self/limits) # the hard limits
  nproc=$(awk '/^Max processes/ { print $4 }' /proc/self/limits)
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; then nproc=4096; fi
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nruntime = "runc"\n' \
    "$nofile" "$nofile" "$nproc" "$nproc" >"$work/containers.conf"
  export CONTAINERS_CONF="$work/containers.conf"
  podman run --rm --network none "$BASE:bookworm-slim" true 2>"$work/probe.err" ||
    die "podman cannot start a container: $(cat "$work/probe.err")"
  say "podman's defaults cannot start a container here: runc, open files $nofile, processes $nproc"
fi

# ---- 2. the image ------------------------------------------------------------
# --network host: the build's apt-get reaches the mirror the way the host does.
t0=$(date +%s)
say "building $IMAGE from docker/Dockerfile"
podman build --pull=never --network host -f docker/Dockerfile -t "$IMAGE" . >"$work/build.log" 2>&1 ||
  { tail -30 "$work/build.log" >&2; die "podman build failed (log above)"; }
build_s=$(( $(date +%s) - t0 ))
size=$(podman image inspect --format '{{.Size}}' "$IMAGE")
base_size=$(podman image inspect --format '{{.Size}}' "$BASE:bookworm-slim")
podman run --rm --network none "$IMAGE" version >"$work/version" ||
  die "the image cannot run 'luastream version'"

# ---- 3. the crash detector in the image against a broker on the host --------
# The changelog is declared: the broker's side channel (a Unix socket on the
# host) is not reachable from the container (docs/deploy.md).
"$BUILD/luastream" broker --topic phone-data:4 --topic crash-alerts:4 \
  --topic crash-detector__default__changelog:4 --bootstrap-file "$work/bootstrap" >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
i=0
while [ ! -s "$work/bootstrap" ]; do
  i=$((i + 1)); [ "$i" -le 150 ] || die "the dev broker did not start: $(cat "$work/broker.err")"
  sleep 0.1
done
broker=$(cat "$work/bootstrap")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
say "dev broker $broker; /metrics on 127.0.0.1:$port"

# The phones: examples/phones_producer.lua in the image too (on a broker given
# by address the crash detector does not simulate them itself).
podman run -d --name ls-test-phones --network host -e LUASTREAM_BROKER="$broker" \
  -v "$PWD/examples:/app:ro" "$IMAGE" run /app/phones_producer.lua --timeout 40 >/dev/null
# As the StatefulSet runs it: the image's user, a read-only root, no capabilities.
podman run -d --name ls-test-crash --network host -e LUASTREAM_BROKER="$broker" \
  --read-only --cap-drop ALL --security-opt no-new-privileges \
  -v "$PWD/examples:/app:ro" -v ls-test-state:/state "$IMAGE" \
  run /app/crash_detection.lua --state-dir /state --http "127.0.0.1:$port" --timeout 30 --print >/dev/null

metric() { # NAME{LABELS}: its value on /metrics, or nothing
  python3 - "$port" "$1" <<'EOF'
import sys, urllib.request
try:
    text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=3).read().decode()
except OSError:
    sys.exit(0)
for line in text.splitlines():
    if line.startswith(sys.argv[2] + " "):
        print(line.rsplit(" ", 1)[1])
EOF
}
probe() { # PATH: its HTTP status, or 000
  python3 - "$port" "$1" <<'EOF'
import sys, urllib.request, urllib.error
try:
    print(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}{sys.argv[2]}", timeout=3).status)
except urllib.error.HTTPError as e:
    print(e.code)
except OSError:
    print("000")
EOF
}

ready=000 alerts="" i=0
while [ "$i" -lt 25 ]; do
  i=$((i + 1))
  sleep 1
  [ "$ready" = 200 ] || ready=$(probe /ready)
  alerts=$(metric 'luastream_messages_out_total{topic="crash-alerts"}')
  [ "$ready" = 200 ] && [ -n "$alerts" ] && [ "${alerts%%.*}" -gt 0 ] && break
done
health=$(probe /health)
in_total=$(python3 - "$port" <<'EOF'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/metrics", timeout=3).read().decode()
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
              if l.startswith("luastream_messages_in_total{"))))
EOF
)
rc=$(podman wait ls-test-crash)
podman logs ls-test-crash >"$work/crash.out" 2>"$work/crash.err"
podman rm ls-test-crash >/dev/null
printed=$(grep -c '^crash-alerts	' "$work/crash.out" || true)
podman rm -f ls-test-phones >/dev/null
state_files=$(podman run --rm --network none -v ls-test-state:/state --entrypoint /bin/sh "$IMAGE" \
  -c 'find /state -type f | wc -l')

echo "image:            $IMAGE, $(( size / 1000000 )) MB ($size bytes; the slim base alone $(( base_size / 1000000 )) MB)"
echo "built in:         $build_s s"
echo "version:          $(cat "$work/version")"
echo "probes:           /ready $ready, /health $health"
echo "while running:    $in_total messages in, ${alerts:-no} alerts out (/metrics)"
echo "at the end:       $(grep -o 'stopped: .*' "$work/crash.err" || echo 'no stop line'); $printed alerts printed"
echo "state files:      $state_files in the volume"
echo "exit code:        $rc"
[ "$ready" = 200 ] || die "/ready never said 200"
[ "$health" = 200 ] || die "/health said $health"
[ "${in_total:-0}" -gt 0 ] || die "no messages in"
[ "$printed" -gt 0 ] || { cat "$work/crash.err" >&2; die "no alerts printed"; }
[ "$state_files" -gt 0 ] || die "no state written to the volume"
[ "$rc" = 0 ] || { cat "$work/crash.err" >&2; die "the crash detector exited with $rc"; }
say "ok"
