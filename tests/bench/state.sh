#!/bin/sh
# The per-key state benchmarks: luastream's stateful crash pipeline against the
# stateless one and a Python loop keeping the state in a dict, the pause of a
# checkpoint with many changed keys, and the rate of recovery from the changelog.
# One dev broker for everything. See tests/bench/README.md ("State").
#
#   tests/bench/state.sh                       build dir: build/ (or $BUILD)
#   ROWS=300000 REPEAT=3 KEYS=400000 DIRTY=100000 tests/bench/state.sh
#   PARTS=checkpoint,recovery tests/bench/state.sh
#
# Environment: ROWS (phone rows, default 300000), REPEAT (runs per peer, default 3;
# the table shows medians), KEYS (distinct keys for the checkpoint and recovery
# parts, default 400000), DIRTY (changed keys per checkpoint, default 100000), PARTS (comma-separated subset of
# throughput,checkpoint,recovery), LS_ARGS (extra arguments for the two luastream
# runs of the throughput part), CHECK=0 (skip reading the outputs back), KEEP=1
# (keep the working directory), BUILD.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
ROWS=${ROWS:-300000}
REPEAT=${REPEAT:-3}
KEYS=${KEYS:-400000}
DIRTY=${DIRTY:-100000}
PARTS=${PARTS:-throughput,checkpoint,recovery}
LS_ARGS=${LS_ARGS:-}
CHECK=${CHECK:-1}
PY=/usr/bin/python3

for tool in kcat "$PY"; do
  command -v "$tool" >/dev/null || { echo "state.sh: $tool is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
done
"$PY" -c 'import confluent_kafka' 2>/dev/null ||
  { echo "state.sh: python3-confluent-kafka is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
if [ ! -x "$BUILD/luastream" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2
fi

work_prefix=luastream-state
. tests/bench/broker.sh

# Every topic up front. The runtime would create the changelogs itself (through the
# broker's side channel); declared here, their creation stays out of the timed runs.
topics="--topic phone-data:16 --topic count-in:16 --topic count-out:16"
topics="$topics --topic bench-state-count__default__changelog:16"
i=1
while [ "$i" -le "$REPEAT" ]; do
  s=""
  [ "$i" -gt 1 ] && s="-$i"
  topics="$topics --topic out-sl$s:16 --topic out-sf$s:16 --topic out-pyst$s:16"
  topics="$topics --topic bench-crash-stateful${s}__default__changelog:16"
  i=$((i + 1))
done
# shellcheck disable=SC2086
start_broker $topics

set -- --broker "$broker" --luastream "$BUILD/luastream" --rows "$ROWS" --repeat "$REPEAT" \
  --keys "$KEYS" --dirty "$DIRTY" --parts "$PARTS" --ls-args "$LS_ARGS" --workdir "$work"
[ "$CHECK" = 0 ] && set -- "$@" --no-check
"$PY" tests/bench/state_bench.py "$@" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_pid=""
[ "$rc" = 0 ] || keep_work=1
[ "${KEEP:-0}" = 1 ] && keep_work=1
exit "$rc"
