#!/bin/sh
# The window benchmarks: luastream's 10 s tumbling windows per device
# (window_stats.lua) against the stateless crash pipeline and a Python loop keeping
# the windows in a dict, the same two scripts in process, and the memory of 100,000
# keys with open windows. One dev broker for everything. See tests/bench/README.md
# ("Windows").
#
#   tests/bench/windows.sh                     build dir: build/ (or $BUILD)
#   ROWS=600000 REPEAT=3 KEYS=100000 tests/bench/windows.sh
#   PARTS=memory KEYS=200000 tests/bench/windows.sh
#
# Environment: ROWS (phone rows for parts 1 and 2, default 600000), REPEAT (runs per
# peer in part 1 and invocations per script in part 2, default 3; the tables show
# medians), PIPELINE_ROWS (rows per in-process pass, default ROWS, at most ROWS),
# KEYS (devices for part 3, default 100000), KEY_ROWS (rows per device in part 3,
# default 1), PARTS (comma-separated subset of throughput,inprocess,memory), LS_ARGS
# (extra arguments for the luastream runs of part 1), CHECK=0 (counts only, no
# read-back), KEEP=1 (keep the working directory), OUT_PARTS (the output topics'
# partitions), PIN=1 (the peers on a core of their own, broker.sh), BUILD.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
ROWS=${ROWS:-600000}
REPEAT=${REPEAT:-3}
PIPELINE_ROWS=${PIPELINE_ROWS:-$ROWS}
KEYS=${KEYS:-100000}
KEY_ROWS=${KEY_ROWS:-1}
PARTS=${PARTS:-throughput,inprocess,memory}
LS_ARGS=${LS_ARGS:-}
CHECK=${CHECK:-1}
PY=/usr/bin/python3

for tool in kcat "$PY"; do
  command -v "$tool" >/dev/null || { echo "windows.sh: $tool is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
done
"$PY" -c 'import confluent_kafka' 2>/dev/null ||
  { echo "windows.sh: python3-confluent-kafka is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
if [ ! -x "$BUILD/luastream" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2
fi
case ",$PARTS," in
  *,inprocess,*) cmake --build "$BUILD" --target bench_pipeline -j2 >/dev/null ;;
esac

work_prefix=luastream-windows
. tests/bench/broker.sh

# Inputs and outputs up front; the window changelogs
# (<name>____window__tumbling_10000_g0_<hash>__changelog) are created by the dev
# broker when the runtime asks for them.
# An output row with its window's columns is about three times the size of its
# reading and the device keys do not spread evenly: above 300,000 rows the
# outputs get 16 partitions per 100,000 rows, to stay under the dev broker's
# per-partition cap (the input's 16 hold up to ~800,000 rows).
topics="--topic phone-data:16 --topic mem-in:16 --topic mem-out:16 --topic mem-out-sl:16 --topic mem-out-lru:16"
op=$(output_partitions "$ROWS" 100000)
i=1
while [ "$i" -le "$REPEAT" ]; do
  s=""
  [ "$i" -gt 1 ] && s="-$i"
  topics="$topics --topic out-sl$s:$op --topic out-win$s:$op --topic out-pywin$s:$op"
  i=$((i + 1))
done
# shellcheck disable=SC2086
start_broker $topics

set -- --broker "$broker" --luastream "$BUILD/luastream" --bench-pipeline "$BUILD/bench_pipeline" \
  --rows "$ROWS" --repeat "$REPEAT" --pipeline-rows "$PIPELINE_ROWS" --keys "$KEYS" \
  --key-rows "$KEY_ROWS" --parts "$PARTS" --ls-args "$LS_ARGS" --workdir "$work"
[ "$CHECK" = 0 ] && set -- "$@" --no-check
"$PY" tests/bench/windows_bench.py "$@" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_pid=""
[ "$rc" = 0 ] || keep_work=1
[ "${KEEP:-0}" = 1 ] && keep_work=1
exit "$rc"
