#!/bin/sh
# Boots systemd as PID 1 in a clean Debian 12 root, installs the amd64 package
# there and watches systemd supervise luastream@crash-detector
# (docs/edge.md, "How systemd supervises it"):
#  - start: Type=notify, active only once the process sent READY=1;
#  - WATCHDOG=1 pings keep it running (same PID, no restart);
#  - systemctl reload: SIGHUP, the runtime reloads the edited script in place;
#  - the loop stopped (kill -STOP): systemd's watchdog kills it with SIGABRT,
#    Restart=on-failure starts a new process RestartSec later, active again;
#  - systemctl stop: STOPPING=1, exit 0, the unit inactive.
# A dev broker (the package's `luastream broker`) and the simulated phones
# (examples/phones_producer.lua) run as transient units beside it, on the
# container's own loopback. A drop-in sets WatchdogSec=3s for the test; the
# shipped unit is not changed.
#
#   scripts/test-systemd.sh AMD64.deb          (`make test-systemd` builds it)
#
# The root is a debootstrap of bookworm (minbase, with systemd, systemd-sysv,
# dbus and the package's Depends) from Debian's mirror, kept as a tarball in
# $SD_TEST_CACHE (default /tmp/luastream-bookworm-systemd.tar). systemd boots
# in it under podman (--systemd=always, --privileged so that the unit's
# sandboxing can make its namespaces (without it: status=226/NAMESPACE),
# --network none: loopback only). Where
# podman's defaults cannot start a container, runc with limits within the
# current ones (as scripts/container-test.sh does).
# Needs root, podman, runc and debootstrap (scripts/install-deps.sh container).
# Prints each check as ok/FAIL and exits non-zero on a failure. About 40 s with
# the root cached, 80 s with the bootstrap; not part of `make test`.
# Environment: SD_TEST_CACHE, DEBIAN_MIRROR (default http://deb.debian.org/debian),
# TMPDIR (where the working directory goes), KEEP=1 to keep it.
set -eu
deb=${1:?usage: $0 AMD64.deb}
[ -f "$deb" ] || { echo "$0: no $deb" >&2; exit 2; }
deb=$(realpath "$deb")
[ "$(id -u)" = 0 ] || { echo "$0: needs root (debootstrap, podman)" >&2; exit 2; }
for tool in podman debootstrap; do
  command -v "$tool" >/dev/null || { echo "$0: needs $tool (scripts/install-deps.sh container)" >&2; exit 2; }
done

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
cache=${SD_TEST_CACHE:-/tmp/luastream-bookworm-systemd.tar}
ctr=luastream-systemd-test-$$
unit=luastream@crash-detector.service
wd=3 # WatchdogSec of the drop-in, in seconds

work=$(mktemp -d "${TMPDIR:-/tmp}/luastream-systemd-test.XXXXXX")
root=$work/root
started=""
cleanup() {
  trap - EXIT INT TERM
  set +e
  [ -n "$started" ] && podman rm -f -t 0 "$ctr" >/dev/null 2>&1
  for m in "$root/dev" "$root/proc"; do mountpoint -q "$m" 2>/dev/null && umount -l "$m"; done
  if [ "${KEEP:-0}" = 1 ]; then echo "kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
failed=0
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; failed=1; }
die() { echo "FAIL: $*"; exit 1; }
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
secs() { # MS: as seconds with one decimal
  echo "$(( $1 / 1000 )).$(( $1 % 1000 / 100 ))"
}
t_begin=$(now_ms)

# ---- the root: bookworm with systemd and the package's Depends -------------
depends=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/(.*//; s/ //g' | grep . | tr '\n' ' ')
depends=${depends% }
mkdir -p "$root"
if [ -f "$cache" ]; then
  tar -xf "$cache" -C "$root"
else
  include=$(echo "systemd systemd-sysv dbus $depends" | tr ' ' ',')
  debootstrap --variant=minbase --include="$include" bookworm "$root" "$MIRROR" >"$work/debootstrap.log" 2>&1 ||
    { tail -20 "$work/debootstrap.log"; die "debootstrap"; }
  rm -rf "$root/var/lib/apt/lists"/* "$root/var/cache/apt/archives"/*.deb
  tar -cf "$cache.tmp" -C "$root" . && mv "$cache.tmp" "$cache"
fi
missing=""
for p in $depends; do
  chroot "$root" dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then # a cached root from before a change of Depends
  mount -t proc proc "$root/proc"
  mount --bind /dev "$root/dev"
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  # shellcheck disable=SC2086 # one word per package
  { chroot "$root" apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive chroot "$root" apt-get install -y -qq --no-install-recommends $missing; } \
    >"$work/apt.log" 2>&1 || { tail -20 "$work/apt.log"; die "installing$missing into the root"; }
  umount -l "$root/proc" "$root/dev"
fi
ok "a bookworm root with $(chroot "$root" dpkg-query -W -f='systemd ${Version}' systemd) and $depends"

# ---- boot systemd as PID 1 ---------------------------------------------------
# Where podman's defaults cannot start a container (crun refuses hybrid cgroup
# hierarchies; the default open-files limit may be above the hard limit), runc
# with limits within the current ones.
if ! podman run --rm --network none --rootfs "$root" /bin/true 2>"$work/probe.err"; then
  command -v runc >/dev/null ||
    die "podman cannot start a container ($(cat "$work/probe.err")); runc may (scripts/install-deps.sh container)"
  nofile=$(awk '/^Max open files/ { print $5 }' /proc/self/limits)
  nproc=$(awk '/^Max processes/ { print $4 }' /proc/self/limits)
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 4096 ]; then nproc=4096; fi
  printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n[engine]\nruntime = "runc"\n' \
    "$nofile" "$nofile" "$nproc" "$nproc" >"$work/containers.conf"
  export CONTAINERS_CONF="$work/containers.conf"
  podman run --rm --network none --rootfs "$root" /bin/true 2>"$work/probe.err" ||
    die "podman cannot start a container: $(cat "$work/probe.err")"
  echo "podman: runc, open files $nofile, processes $nproc (podman's defaults cannot start a container here)"
fi
cp "$deb" "$root/root/luastream.deb"
t0=$(now_ms)
started=1
podman run -d --name "$ctr" --systemd=always --privileged --network none --rootfs "$root" /sbin/init \
  >/dev/null 2>"$work/run.err" || die "podman run /sbin/init: $(cat "$work/run.err")"
in_ctr() { podman exec "$ctr" "$@"; }
state=""
i=0
while [ "$i" -lt 60 ]; do
  state=$(in_ctr systemctl is-system-running 2>/dev/null || true)
  case "$state" in running|degraded) break ;; esac
  i=$((i + 1)); sleep 0.5
done
pid1=$(in_ctr cat /proc/1/comm)
[ "$pid1" = systemd ] || die "PID 1 in the container is '$pid1', not systemd"
case "$state" in
  running) ok "systemd $(in_ctr systemctl --version | head -1 | cut -d' ' -f2) is PID 1, system '$state' in $(secs $(( $(now_ms) - t0 ))) s" ;;
  degraded) ok "systemd is PID 1, system 'degraded' (failed: $(in_ctr systemctl --failed --plain --no-legend | cut -d' ' -f1 | tr '\n' ' '))" ;;
  *) in_ctr journalctl -b --no-pager | tail -30; die "the system did not finish booting: '$state'" ;;
esac
# systemd's debug log shows the notification messages it gets (READY=1,
# WATCHDOG=1, STOPPING=1).
in_ctr systemctl log-level debug

# ---- the package, the broker, the phones -------------------------------------
in_ctr dpkg -i /root/luastream.deb >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log"; die "dpkg -i"; }
[ "$(in_ctr systemctl show -p LoadState --value "$unit")" = loaded ] ||
  die "systemd does not know $unit after dpkg -i"
ok "dpkg -i $(basename "$deb"): systemd loaded $unit from $(in_ctr systemctl show -p FragmentPath --value "$unit") ($(in_ctr luastream version | head -1))"

in_ctr systemd-run -q --unit=ls-dev-broker -p Type=exec /usr/bin/luastream broker \
  --topic phone-data:4 --topic crash-alerts:4 --topic crash-detector__default__changelog:4 \
  --bootstrap-file /run/ls-dev-broker.addr || die "systemd-run the dev broker"
i=0
until broker=$(in_ctr cat /run/ls-dev-broker.addr 2>/dev/null) && [ -n "$broker" ]; do
  i=$((i + 1)); [ "$i" -le 50 ] || { in_ctr journalctl -u ls-dev-broker --no-pager; die "the dev broker did not start"; }
  sleep 0.2
done
in_ctr systemd-run -q --unit=ls-phones -p Type=exec -p WorkingDirectory=/tmp /usr/bin/luastream run \
  /usr/share/luastream/examples/phones_producer.lua --broker "$broker" --state-dir /var/lib/ls-phones ||
  die "systemd-run the phones"
ok "dev broker (luastream broker) on $broker and the simulated phones, as transient units"

# The crash demo as luastream@crash-detector, its broker in the env file; the
# drop-in shortens the watchdog for the test.
in_ctr sh -ec "
  cp /usr/share/luastream/examples/crash_detection.lua /etc/luastream/crash-detector.lua
  cp /usr/share/luastream/examples/phones_sim.lua /etc/luastream/phones_sim.lua
  echo LUASTREAM_BROKER=$broker >/etc/luastream/crash-detector.env
  mkdir -p /etc/systemd/system/$unit.d
  printf '[Service]\nWatchdogSec=${wd}s\n' >/etc/systemd/system/$unit.d/test-watchdog.conf
  systemctl daemon-reload"
prop() { in_ctr systemctl show -p "$1" --value "$unit"; }
props() { in_ctr systemctl show -p ActiveState,SubState,MainPID,NRestarts,Result "$unit" | tr '\n' ' '; }
[ "$(prop DropInPaths)" = "/etc/systemd/system/$unit.d/test-watchdog.conf" ] && [ "$(prop Type)" = notify ] &&
  [ "$(prop Restart)" = on-failure ] ||
  die "the unit with the drop-in: DropInPaths=$(prop DropInPaths) Type=$(prop Type) Restart=$(prop Restart)"
restart_ms=$(( $(prop RestartUSec | sed 's/s$//') * 1000 ))
ok "drop-in $unit.d/test-watchdog.conf: WatchdogSec=${wd}s (Type=notify, Restart=on-failure, RestartSec=$(prop RestartUSec) as shipped)"

journal() { in_ctr journalctl -u "$unit" -o short-monotonic --no-pager "$@"; }
# ---- start: active on READY=1 ------------------------------------------------
t0=$(now_ms)
in_ctr systemctl start "$unit" || { journal | tail -30; die "systemctl start $unit"; }
t_start=$(( $(now_ms) - t0 ))
pid=$(prop MainPID)
if [ "$(in_ctr systemctl is-active "$unit")" = active ] && [ "$pid" -gt 0 ] && [ "$(prop WatchdogUSec)" = "${wd}s" ]; then
  ok "systemctl start returned after $(secs "$t_start") s; is-active: active, MainPID $pid, WatchdogUSec=${wd}s"
else
  bad "after systemctl start: $(props)"
fi
# DynamicUser=yes and StateDirectory=: a user systemd made up, owning the state.
uid=$(in_ctr awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
owner=$(in_ctr stat -c %u /var/lib/private/luastream/crash-detector 2>/dev/null || true)
link=$(in_ctr readlink /var/lib/luastream/crash-detector || true)
if [ -n "$uid" ] && [ "$uid" -ge 61184 ] && [ "$uid" -le 65519 ] && [ "$owner" = "$uid" ] &&
   [ "$link" = ../private/luastream/crash-detector ]; then
  ok "PID $pid runs as uid $uid (DynamicUser=yes), the owner of /var/lib/private/luastream/crash-detector" \
    "(/var/lib/luastream/crash-detector links to it)"
else
  bad "PID $pid runs as uid '$uid'; the state directory's owner is '$owner'"
fi
# READY=1 from the main process, then start -> running.
journal >"$work/j1"
ready=$(grep -n "Got notification message from PID $pid (READY=1" "$work/j1" | head -1 | cut -d: -f1)
running=$(grep -n "Changed start -> running" "$work/j1" | head -1 | cut -d: -f1)
if [ -n "$ready" ] && [ -n "$running" ] && [ "$ready" -lt "$running" ]; then
  ok "journal: READY=1 from PID $pid, then start -> running:"
  sed -n "${ready}p;${running}p" "$work/j1" | sed 's/^/    /'
else
  bad "no READY=1 from PID $pid before start -> running"; tail -20 "$work/j1"
fi

# ---- pings keep it alive -----------------------------------------------------
sleep $(( 3 * wd ))
journal >"$work/j2"
pings=$(grep -c "Got notification message from PID $pid (WATCHDOG=1" "$work/j2" || true)
status=$(prop StatusText)
if [ "$(prop MainPID)" = "$pid" ] && [ "$(prop NRestarts)" = 0 ] && [ "$pings" -ge $(( 2 * wd )) ]; then
  ok "$(( 3 * wd )) s later: still PID $pid, NRestarts=0, $pings WATCHDOG=1 pings; StatusText: $status"
else
  bad "$(( 3 * wd )) s after start: $(props), $pings pings"
fi
case "$status" in *"messages in"*) ;; *) bad "StatusText '$status' has no message counts" ;; esac

# ---- reload: the edited script, same process ---------------------------------
in_ctr sed -i 's/^local CRASH_DG = 3.0/local CRASH_DG = 2.5/' /etc/luastream/crash-detector.lua
if in_ctr systemctl reload "$unit"; then
  i=0
  until journal --grep 'reloaded /etc/luastream/crash-detector.lua' >"$work/jr" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -le 40 ] || break
    sleep 0.25
  done
  if [ -s "$work/jr" ] && [ "$(prop MainPID)" = "$pid" ]; then
    ok "systemctl reload: exit 0, same PID $pid:"
    journal --grep 'Reloading|Reloaded|reloaded' | grep -v '^--' | sed 's/^/    /'
  else
    bad "no reload in the journal after systemctl reload ($(props))"
  fi
else
  bad "systemctl reload exited $?"
fi

# ---- the loop stops: the watchdog kills it, Restart= starts it again ---------
journal -n 0 --show-cursor | sed -n 's/^-- cursor: //p' >"$work/cursor"
in_ctr sh -c "kill -STOP $pid"
t0=$(now_ms)
t_kill="" t_up="" seen_result="" seen_state="" newpid=""
while [ $(( $(now_ms) - t0 )) -lt $(( (wd + 30) * 1000 + restart_ms )) ]; do
  p=$(props)
  st=$(echo "$p" | sed 's/.*SubState=\([^ ]*\).*/\1/')
  res=$(echo "$p" | sed 's/.*Result=\([^ ]*\).*/\1/')
  mp=$(echo "$p" | sed 's/.*MainPID=\([^ ]*\).*/\1/')
  act=$(echo "$p" | sed 's/.*ActiveState=\([^ ]*\).*/\1/')
  if [ -z "$t_kill" ] && [ "$st" != running ]; then t_kill=$(( $(now_ms) - t0 )); fi
  if [ -n "$t_kill" ] && [ "$res" != success ] && [ -z "$seen_result" ]; then
    seen_result=$res seen_state="$act/$st"
  fi
  if [ -n "$t_kill" ] && [ "$act" = active ] && [ "$st" = running ] && [ "$mp" != "$pid" ] && [ "$mp" != 0 ]; then
    t_up=$(( $(now_ms) - t0 )) newpid=$mp
    break
  fi
  sleep 0.2
done
in_ctr journalctl -u "$unit" -o short-monotonic --no-pager --after-cursor "$(cat "$work/cursor")" >"$work/j3"
if [ -n "$t_kill" ]; then
  ok "PID $pid stopped (SIGSTOP): the unit left 'running' after $(secs "$t_kill") s (WatchdogSec=${wd}s)"
else
  bad "PID $pid stopped: the unit stayed running: $(props)"
fi
if [ "$seen_result" = watchdog ]; then ok "Result=watchdog while $seen_state"
else bad "Result after the kill: '$seen_result' ($seen_state)"; fi
if [ -n "$t_up" ]; then
  ok "active again after $(secs "$t_up") s with a new MainPID $newpid: $(props)"
else
  bad "not active again with a new PID: $(props)"
fi
for want in "Watchdog timeout (limit ${wd}s)!" "Killing process $pid (luastream) with signal SIGABRT" \
  "Main process exited, code=killed, status=6/ABRT" "Failed with result 'watchdog'" \
  "Scheduled restart job, restart counter is at 1" "Got notification message from PID ${newpid:-?} (READY=1"; do
  grep -qF "$want" "$work/j3" || bad "journal: no '$want'"
done
in_ctr test ! -e "/proc/$pid" || bad "the stopped process $pid is still there"
# From the journal's monotonic clock: the last ping of the stopped process to
# the timeout, and the failure to the new process's READY=1.
sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", a - b }'; }
mono() { grep -F "$1" "$work/j3" | head -1 | sed 's/^\[ *\([0-9.]*\)\].*/\1/'; }
last_ping=$(grep -F "from PID $pid (WATCHDOG=1" "$work/j3" | tail -1 | sed 's/^\[ *\([0-9.]*\)\].*/\1/')
[ -n "$last_ping" ] || last_ping=$(journal | grep -F "from PID $pid (WATCHDOG=1" | tail -1 | sed 's/^\[ *\([0-9.]*\)\].*/\1/')
t_timeout=$(mono "Watchdog timeout") t_failed=$(mono "Failed with result 'watchdog'")
t_ready=$(mono "from PID ${newpid:-?} (READY=1")
if [ -n "$last_ping" ] && [ -n "$t_timeout" ] && [ -n "$t_failed" ] && [ -n "$t_ready" ]; then
  ok "journal clock: last ping of $pid to the timeout $(sub "$t_timeout" "$last_ping") s;" \
    "timeout to the process gone $(sub "$t_failed" "$t_timeout") s; to READY=1 from $newpid $(sub "$t_ready" "$t_failed") s"
fi
[ "$(prop NRestarts)" = 1 ] || bad "NRestarts=$(prop NRestarts), not 1"
echo "    journal:"
grep -E "Watchdog timeout|Killing process|Main process exited|Failed with result|Scheduled restart|Stopped luastream|Starting luastream|Started luastream|from PID ${newpid:-?} \(READY=1|Changed auto-restart|Changed stop-watchdog|Changed start -> running" \
  "$work/j3" | sed 's/^/    /'

# The new process pings and works.
if [ -n "$newpid" ]; then
  sleep $(( 2 * wd ))
  in_ctr journalctl -u "$unit" --no-pager --after-cursor "$(cat "$work/cursor")" >"$work/j4"
  pings=$(grep -c "Got notification message from PID $newpid (WATCHDOG=1" "$work/j4" || true)
  if [ "$(prop MainPID)" = "$newpid" ] && [ "$(prop NRestarts)" = 1 ] && [ "$pings" -ge "$wd" ]; then
    ok "$(( 2 * wd )) s later: still PID $newpid, NRestarts=1, $pings pings; StatusText: $(prop StatusText)"
    in_ctr systemctl status --no-pager -n 0 "$unit" | sed 's/^/    /' || true
  else
    bad "after the restart: $(props), $pings pings from $newpid"
  fi
fi

# ---- stop: STOPPING=1, exit 0 ------------------------------------------------
pid=$(prop MainPID)
journal -n 0 --show-cursor | sed -n 's/^-- cursor: //p' >"$work/cursor"
t0=$(now_ms)
if in_ctr systemctl stop "$unit"; then
  t_stop=$(( $(now_ms) - t0 ))
  # The unit is garbage-collected once inactive: its properties are reset,
  # the journal keeps what happened.
  in_ctr journalctl -u "$unit" -o short-monotonic --no-pager --after-cursor "$(cat "$work/cursor")" >"$work/j5"
  if grep -qF "Got notification message from PID $pid (STOPPING=1" "$work/j5" &&
     grep -qF "Main process exited, code=exited, status=0/SUCCESS" "$work/j5" &&
     grep -qF "Deactivated successfully" "$work/j5" &&
     [ "$(in_ctr systemctl is-active "$unit" || true)" = inactive ]; then
    ok "systemctl stop: exit 0 in $(secs "$t_stop") s; STOPPING=1 from PID $pid, the process exited 0, inactive:"
    grep -E "Stopping luastream|from PID $pid \(STOPPING|stopped:|Main process exited|Deactivated|Stopped luastream" "$work/j5" |
      sed 's/^/    /'
  else
    bad "after systemctl stop: $(props)"
    tail -20 "$work/j5"
  fi
else
  bad "systemctl stop exited $?"
fi

if [ "$failed" = 0 ]; then
  echo "all systemd checks passed in $(secs $(( $(now_ms) - t_begin ))) s"
else
  echo "FAIL: some systemd checks failed (KEEP=1 keeps $work)"
  exit 1
fi
