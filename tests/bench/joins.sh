#!/bin/sh
# The join benchmarks: luastream's stream-table join (join_table.lua: phone rows
# joined with the table of their owners) against the stateless crash pipeline and a
# Python loop keeping the table in a dict, on one dev broker, then the same two
# scripts in process (bench_pipeline, the join's table filled first). See
# tests/bench/README.md ("Joins").
#
#   tests/bench/joins.sh                       build dir: build/ (or $BUILD)
#   ROWS=600000 REPEAT=3 tests/bench/joins.sh
#
# Environment: ROWS (phone rows, default 600000, at most ~800,000), REPEAT (runs per peer, default 3;
# the table shows medians), PIPELINE_ROWS (rows per in-process pass, default ROWS,
# at most ROWS), PARTS (comma-separated subset of throughput,inprocess), LS_ARGS
# (extra arguments for the luastream runs of part 1), CHECK=0 (counts only, no
# read-back), KEEP=1 (keep the working directory), PIN=1 (the peers on a core of
# their own, broker.sh), OUT_PARTS (the output topics' partitions), BUILD.
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
ROWS=${ROWS:-600000}
REPEAT=${REPEAT:-3}
PIPELINE_ROWS=${PIPELINE_ROWS:-$ROWS}
PARTS=${PARTS:-throughput,inprocess}
LS_ARGS=${LS_ARGS:-}
CHECK=${CHECK:-1}
PY=/usr/bin/python3

for tool in kcat "$PY"; do
  command -v "$tool" >/dev/null || { echo "joins.sh: $tool is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
done
"$PY" -c 'import confluent_kafka' 2>/dev/null ||
  { echo "joins.sh: python3-confluent-kafka is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
if [ ! -x "$BUILD/luastream" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2
fi
case ",$PARTS," in
  *,inprocess,*) cmake --build "$BUILD" --target bench_pipeline -j2 >/dev/null ;;
esac

work_prefix=luastream-joins
. tests/bench/broker.sh

# Inputs and outputs up front, 16 partitions each: the stream and the table must be
# co-partitioned. A table has no changelog topic: its topic is its own (docs/joins.md).
# A joined row is about twice the size of its reading and the device keys do not
# spread evenly: above 300,000 rows the outputs get 16 partitions per 150,000
# rows, to stay under the dev broker's per-partition cap (the input's 16 hold up
# to ~800,000 rows).
topics="--topic phone-data:16 --topic phone-owners:16 --topic join-empty:16"
op=$(output_partitions "$ROWS" 150000)
i=1
while [ "$i" -le "$REPEAT" ]; do
  s=""
  [ "$i" -gt 1 ] && s="-$i"
  topics="$topics --topic out-sl$s:$op --topic out-join$s:$op --topic out-pyjoin$s:$op"
  i=$((i + 1))
done
# shellcheck disable=SC2086
start_broker $topics

set -- --broker "$broker" --luastream "$BUILD/luastream" --bench-pipeline "$BUILD/bench_pipeline" \
  --rows "$ROWS" --repeat "$REPEAT" --pipeline-rows "$PIPELINE_ROWS" --parts "$PARTS" \
  --ls-args "$LS_ARGS" --workdir "$work"
[ "$CHECK" = 0 ] && set -- "$@" --no-check
"$PY" tests/bench/joins_bench.py "$@" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_pid=""
[ "$rc" = 0 ] || keep_work=1
[ "${KEEP:-0}" = 1 ] && keep_work=1
exit "$rc"
