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

work=$(mktemp -d "${TMPDIR:-/tmp}/luastream-bench.XXXXXX")
broker_pid=""
driver_pid=""
# shellcheck disable=SC2317 # (called from the traps)
cleanup() {
  trap - EXIT INT TERM
  set +e
  if [ -n "$driver_pid" ]; then
    kill "$driver_pid" 2>/dev/null
    wait "$driver_pid" 2>/dev/null
  fi
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null
    wait "$broker_pid" 2>/dev/null
  fi
  if [ "${keep_work:-0}" = 1 ]; then
    echo "run.sh: logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

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
"$BUILD/luastream" broker $topics --bootstrap-file "$work/bootstrap" >"$work/broker.out" 2>"$work/broker.err" &
broker_pid=$!
n=0
while [ ! -s "$work/bootstrap" ]; do
  n=$((n + 1))
  if [ "$n" -gt 100 ] || ! kill -0 "$broker_pid" 2>/dev/null; then
    echo "run.sh: the dev broker did not start:" >&2
    cat "$work/broker.err" >&2
    exit 1
  fi
  sleep 0.1
done
broker=$(cat "$work/bootstrap")
echo "dev broker: $broker (pid $broker_pid)" >&2

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
