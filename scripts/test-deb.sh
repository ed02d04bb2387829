#!/bin/sh
# Installs the amd64 package in a clean Debian 12 root and runs it from there;
# checks the arm64 package's contents and runs its binary under qemu-user
# (docs/edge.md, "Installing"). `make test-deb` builds both packages first.
#
#   scripts/test-deb.sh AMD64.deb [ARM64.deb]
#
# The clean root is a debootstrap of bookworm (minbase) from Debian's mirror,
# kept as a tarball in $DEB_TEST_CACHE (default
# /tmp/luastream-bookworm-minbase.tar) so later runs skip the download. In it:
# the libraries the package's Depends names (apt-get), then dpkg -i, then
#  - every library the binary needs resolves (ldd), the conffiles are registered,
#    and systemd-analyze (systemd installed into the root) verifies the unit;
#  - the demo (the crash detector on its dev broker with simulated phones) runs
#    for 8 s from the installed files: exit 0, every record out printed, crash
#    alerts among them;
#  - the unit's ExecStart line, expanded as systemd would for
#    luastream@crash-detector with an env file, runs with a NOTIFY_SOCKET this
#    script owns: READY=1, WATCHDOG=1 pings, STOPPING=1 on SIGTERM, exit 0;
#  - dpkg -P removes the binary, the conffiles and the state directory.
# Needs root (chroot, mounts) and debootstrap (scripts/install-deps.sh deb).
set -eu
cd "$(dirname "$0")/.."
amd64=${1:?usage: $0 AMD64.deb [ARM64.deb]}
arm64=${2:-}
[ "$(id -u)" = 0 ] || { echo "$0: needs root (chroot)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "$0: needs debootstrap (scripts/install-deps.sh deb)" >&2; exit 2; }

work=$(mktemp -d /tmp/luastream-deb-test.XXXXXX)
root="$work/root"
cleanup() {
  for m in "$root/dev" "$root/proc"; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT INT TERM
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# ---- the clean root --------------------------------------------------------
cache=${DEB_TEST_CACHE:-/tmp/luastream-bookworm-minbase.tar}
mkdir -p "$root"
if [ -f "$cache" ]; then
  tar -xf "$cache" -C "$root"
else
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; fail "debootstrap"; }
  tar -cf "$cache.tmp" -C "$root" . && mv "$cache.tmp" "$cache"
fi
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The demo's output with --timeout: every record produced printed as
# topic<TAB>key<TAB>value (the simulated readings to phone-data and the alerts
# to crash-alerts), and each alert once more by sdf:print() as "[phone-data] ...".
check_demo() { # FILE STOPPED_LINE; sets alerts
  produced=$(grep -c "^[a-z-]*	" "$1" || true)
  alerts=$(grep -c "^crash-alerts	" "$1" || true)
  shown=$(grep -c "^\[phone-data\] " "$1" || true)
  recs=$(echo "$2" | sed 's/.*, \([0-9]*\) records out.*/\1/')
  [ "$produced" = "$recs" ] || fail "$produced records printed, the stopped line says $recs"
  [ "$alerts" -gt 0 ] && [ "$alerts" = "$shown" ] || fail "$alerts alerts, $shown shown by sdf:print()"
}
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8 "$@"; }
[ ! -e "$root/usr/bin/luastream" ] || fail "the clean root already has luastream"

# ---- install: the Depends from Debian, then dpkg -i ------------------------
depends=$(dpkg-deb -f "$amd64" Depends | tr ',' '\n' | sed 's/(.*//; s/ //g' | grep .)
in_root apt-get update -qq >"$work/apt.log" 2>&1 || { cat "$work/apt.log"; fail "apt-get update"; }
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -qq --no-install-recommends $depends \
  >>"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; fail "installing the Depends"; }
cp "$amd64" "$root/tmp/luastream.deb"
in_root dpkg -i /tmp/luastream.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; fail "dpkg -i"; }
ok "dpkg -i $(basename "$amd64") in a clean bookworm root (Depends: $(echo $depends))"
[ "$(in_root dpkg-query -W -f='${Status}' luastream)" = "install ok installed" ] || fail "not installed"
if in_root ldd /usr/bin/luastream | grep -q "not found"; then
  in_root ldd /usr/bin/luastream
  fail "libraries missing"
fi
ok "every library of /usr/bin/luastream resolves"
in_root luastream version
for f in /etc/luastream/example.env /etc/luastream/README; do
  in_root dpkg-query -W -f='${Conffiles}\n' luastream | grep -q " $f " || fail "$f is not a conffile"
done
ok "conffiles: /etc/luastream/example.env /etc/luastream/README"
unit=/usr/lib/systemd/system/luastream@.service
[ -f "$root$unit" ] || fail "no $unit"
# systemd's own check of the unit (systemd itself is not running in the root).
DEBIAN_FRONTEND=noninteractive in_root apt-get install -y -qq --no-install-recommends systemd \
  >>"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; fail "installing systemd"; }
in_root systemd-analyze verify luastream@crash-detector.service || fail "systemd-analyze verify"
ok "systemd-analyze verify luastream@crash-detector.service"

# ---- the demo from the installed files -------------------------------------
in_root sh -c 'cd /tmp && exec luastream run /usr/share/luastream/examples/crash_detection.lua --timeout 8' \
  >"$work/demo.out" 2>"$work/demo.err" || { cat "$work/demo.err"; fail "the demo exited with $?"; }
line=$(grep "stopped:" "$work/demo.err") || { cat "$work/demo.err"; fail "no stopped line"; }
in=$(echo "$line" | sed 's/.*stopped: \([0-9]*\) messages in, \([0-9]*\) records out.*/\1/')
out=$(echo "$line" | sed 's/.*stopped: \([0-9]*\) messages in, \([0-9]*\) records out.*/\2/')
check_demo "$work/demo.out" "$line"
ok "the demo ran from the package: $in messages in, $out records out ($alerts crash alerts)"

# ---- the unit's command line, under a NOTIFY_SOCKET owned here -------------
cp "$root/usr/share/luastream/examples/crash_detection.lua" "$root/etc/luastream/crash-detector.lua"
cp "$root/usr/share/luastream/examples/phones_sim.lua" "$root/etc/luastream/phones_sim.lua"
printf 'LUASTREAM_ARGS=--set batch_size=200 --set state_cache_keys=10000\n' >"$root/etc/luastream/crash-detector.env"
mkdir -p "$root/var/lib/luastream/crash-detector"
python3 - "$root" "$unit" <<'EOF' || fail "the unit's ExecStart under a NOTIFY_SOCKET"
import os, shlex, signal, socket, subprocess, sys, time
root, unit = sys.argv[1], sys.argv[2]
inst = "crash-detector"
text = open(root + unit).read()
lines = {}
for l in text.splitlines():
    if "=" in l and not l.startswith("#"):
        k, v = l.split("=", 1)
        lines.setdefault(k, v)
for k, want in (("Type", "notify"), ("Restart", "on-failure"), ("NotifyAccess", "main")):
    assert lines.get(k) == want, f"{k}={lines.get(k)}"
assert int(lines["WatchdogSec"].rstrip("s")) > 0
env = {"PATH": "/usr/bin:/bin"}
envfile = lines["EnvironmentFile"].lstrip("-").replace("%i", inst)
for l in open(root + envfile).read().splitlines():
    if l and not l.startswith("#"):
        k, v = l.split("=", 1)
        env[k] = v
# systemd: %i the instance; $VAR split into words, ${VAR} one word.
argv = []
for w in shlex.split(lines["ExecStart"].replace("%i", inst)):
    if w.startswith("$") and not w.startswith("${"):
        argv += env.get(w[1:], "").split()
    else:
        argv.append(w)
print("ok: ExecStart for luastream@%s: %s" % (inst, " ".join(argv)))
sock_path = root + "/run/luastream-test.notify"
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sock_path)
s.settimeout(0.2)
env.update({"NOTIFY_SOCKET": "/run/luastream-test.notify", "WATCHDOG_USEC": "1000000"})
p = subprocess.Popen(["chroot", root, "env", "-i"] + [f"{k}={v}" for k, v in env.items()] + argv,
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd="/")
msgs = []
t0 = time.monotonic()
while time.monotonic() - t0 < 6:
    try:
        msgs.append(s.recv(4096).decode())
    except socket.timeout:
        pass
p.send_signal(signal.SIGTERM)
_, err = p.communicate(timeout=30)
try:
    while True:
        s.settimeout(0.5)
        msgs.append(s.recv(4096).decode())
except socket.timeout:
    pass
err = err.decode(errors="replace")
assert p.returncode == 0, f"exit {p.returncode}: {err}"
assert msgs and msgs[0].startswith("READY=1\n"), msgs[:3]
assert msgs[-1].startswith("STOPPING=1\n"), msgs[-3:]
pings = [m for m in msgs if m.startswith("WATCHDOG=1\n")]
assert len(pings) >= 3 and len(pings) == len(msgs) - 2, msgs
assert "crash-detector: stopped:" in err, err
print(f"ok: the unit's command ran: READY=1, {len(pings)} WATCHDOG=1 pings in ~6 s "
      f"(WATCHDOG_USEC=1000000), STOPPING=1, exit 0; last status: {pings[-1].split(chr(10))[1]}")
EOF

# ---- purge -----------------------------------------------------------------
rm -f "$root/etc/luastream/crash-detector.lua" "$root/etc/luastream/phones_sim.lua" \
  "$root/etc/luastream/crash-detector.env"
in_root dpkg -P luastream >"$work/purge.log" 2>&1 || { cat "$work/purge.log"; fail "dpkg -P"; }
[ ! -e "$root/usr/bin/luastream" ] && [ ! -e "$root/etc/luastream/example.env" ] &&
  [ ! -e "$root$unit" ] && [ ! -e "$root/var/lib/luastream" ] || fail "files left after dpkg -P"
ok "dpkg -P removed the binary, the unit, the conffiles and /var/lib/luastream"

# ---- arm64: contents, and its binary run under qemu-user --------------------
if [ -n "$arm64" ]; then
  [ "$(dpkg-deb -f "$arm64" Architecture)" = arm64 ] || fail "$arm64: Architecture is not arm64"
  [ "$(dpkg-deb -f "$arm64" Depends)" = "$(dpkg-deb -f "$amd64" Depends)" ] || fail "Depends differ"
  dpkg-deb -c "$amd64" | awk '{print $6}' | sort >"$work/files.amd64"
  dpkg-deb -c "$arm64" | awk '{print $6}' | sort >"$work/files.arm64"
  cmp -s "$work/files.amd64" "$work/files.arm64" || { diff "$work/files.amd64" "$work/files.arm64"; fail "file lists differ"; }
  mkdir "$work/arm64"
  dpkg-deb -x "$arm64" "$work/arm64"
  od -An -tx1 -j18 -N2 "$work/arm64/usr/bin/luastream" | grep -q "b7 00" || fail "the arm64 binary is not aarch64"
  (cd "$work" && qemu-aarch64 arm64/usr/bin/luastream run arm64/usr/share/luastream/examples/crash_detection.lua \
    --timeout 8 >"$work/arm64.out" 2>"$work/arm64.err") || { cat "$work/arm64.err"; fail "the arm64 demo under qemu"; }
  line=$(grep "stopped:" "$work/arm64.err") || fail "no stopped line from the arm64 demo"
  check_demo "$work/arm64.out" "$line"
  ok "arm64 package: same files and Depends; its demo under qemu-aarch64: ${line#*stopped: }"
fi
echo "all package checks passed"
