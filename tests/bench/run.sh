#!/bin/sh
# The throughput benchmarks (`make bench`): luastream against kcat and a Python
# loop on one dev broker, plus the in-process batch path. See tests/bench/README.md.
#
#   tests/bench/run.sh                 build dir: build/ (or $BUILD)
#   ROWS=400000 REPEAT=3 tests/bench/run.sh
#   PEERS=luastream LS_ARGS="--set batch_size=2000" tests/bench/run.sh
#
# Environment: ROWS (input rows, default 400000), REPEAT (runs per peer, default 3;
# the table shows medians), PEERS (comma-separated subset of kcat,python,luastream),
# LS_ARGS (extra arguments for `luastream run`), PIPELINE_ROWS (rows for the
# in-process benchmark, default 2000000, 0 to skip it), CHECK=0 (skip reading the
# outputs back), BUILD (build directory).
set -eu

root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
BUILD=${BUILD:-build}
ROWS=${ROWS:-400000}
REPEAT=${REPEAT:-3}
PEERS=${PEERS:-kcat,python,luastream}
LS_ARGS=${LS_ARGS:-}
PIPELINE_ROWS=${PIPELINE_ROWS:-2000000}
CHECK=${CHECK:-1}
PY=/usr/bin/python3 # Debian's python3-confluent-kafka lives there, whatever python3 is on PATH

for tool in kcat "$PY"; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (scripts/install-deps.sh bench)" >&2; exit 1; }
done
"$PY" -c 'import confluent_kafka' 2>/dev/null ||
  { echo "run.sh: python3-confluent-kafka is missing (scripts/install-deps.sh bench)" >&2; exit 1; }

if [ ! -x "$BUILD/luastream" ]; then
  cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >/dev/null
  cmake --build "$BUILD" -j2
fi
bench_pipeline=""
if [ "$PIPELINE_ROWS" != 0 ]; then
  cmake --build "$BUILD" --target bench_pipeline -j2 >/dev/null
  bench_pipeline="$BUILD/bench_pipeline"
fi

work_prefix=luastream-bench
. tests/bench/broker.sh

# One broker process for everything: the input topic and one output topic per peer
# and run (out-kcat, out-py, out-ls, then out-kcat-2, ...), 16 partitions each.
topics="--topic phone-data:16"
i=1
while [ "$i" -le "$REPEAT" ]; do
  s=""
  [ "$i" -gt 1 ] && s="-$i"
  topics="$topics --topic out-kcat$s:16 --topic out-py$s:16 --topic out-ls$s:16"
  i=$((i + 1))
done
# shellcheck disable=SC2086
start_broker $topics

set -- --broker "$broker" --luastream "$BUILD/luastream" --rows "$ROWS" --repeat "$REPEAT" \
  --peers "$PEERS" --ls-args "$LS_ARGS" --workdir "$work" --pipeline-rows "$PIPELINE_ROWS"
[ -n "$bench_pipeline" ] && set -- "$@" --bench-pipeline "$bench_pipeline"
[ "$CHECK" = 0 ] && set -- "$@" --no-check
"$PY" tests/bench/throughput.py "$@" &
driver_pid=$!
rc=0
wait "$driver_pid" || rc=$?
driver_pid=""
[ "$rc" = 0 ] || keep_work=1
exit "$rc"
