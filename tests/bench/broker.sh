# Shared by run.sh and state.sh (sourced, not run): a working directory, one
# `luastream broker` process on loopback, and clean-up on exit or interrupt.
#
#   work_prefix=luastream-bench; . tests/bench/broker.sh    (needs BUILD; sets work)
#   start_broker --topic NAME:16 ...   (sets broker and broker_pid)
#   op=$(output_partitions ROWS PER)   (16, or 16 per PER rows above 300,000)
# The caller sets driver_pid while its driver runs, and keep_work=1 to keep
# the working directory (the logs) at exit.
# PIN=1 gives the peer under test a core of its own: this shell and all it starts
# (the broker, the driver with its output counter) run on CPU 1, and the driver
# starts each peer on CPU 0 (LS_BENCH_PEER_CPU, read by throughput.py).

me=$(basename "$0")
if [ "${PIN:-0}" = 1 ]; then
  taskset -cp 1 $$ >/dev/null
  export LS_BENCH_PEER_CPU=0
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/$work_prefix.XXXXXX")
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
    echo "$me: logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

# Partitions for output topics of ROWS rows: the dev broker's per-partition cap
# and keys that do not spread evenly leave room for ~PER rows of outputs (sized
# by the caller) per 16 partitions; 16 up to 300,000 rows. OUT_PARTS overrides.
output_partitions() {
  if [ -n "${OUT_PARTS:-}" ]; then
    echo "$OUT_PARTS"
  elif [ "$1" -le 300000 ]; then
    echo 16
  else
    echo $((($1 + $2 - 1) / $2 * 16))
  fi
}

start_broker() {
  "$BUILD/luastream" broker "$@" --bootstrap-file "$work/bootstrap" >"$work/broker.out" 2>"$work/broker.err" &
  broker_pid=$!
  n=0
  while [ ! -s "$work/bootstrap" ]; do
    n=$((n + 1))
    if [ "$n" -gt 100 ] || ! kill -0 "$broker_pid" 2>/dev/null; then
      echo "$me: the dev broker did not start:" >&2
      cat "$work/broker.err" >&2
      exit 1
    fi
    sleep 0.1
  done
  broker=$(cat "$work/bootstrap")
  echo "dev broker: $broker (pid $broker_pid)" >&2
}
