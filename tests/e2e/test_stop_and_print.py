"""Stopping by signal and printed output, as a person (or `timeout`) meets them.

scripts/state_count.lua counts per key; outputs go to "out" and, with --print,
to stdout as topic<TAB>key<TAB>value lines.
"""

import json
import signal

from conftest import committed, end_offsets, wait_committed_to_end, wait_until
from test_state import IN, SCRIPT, produce, rows, topics


def test_two_quick_stop_signals_still_stop_cleanly(broker_factory, run_app):
    """SIGTERM then SIGINT at once (what `timeout` and a process-group kill do):
    the second is ignored, the app finishes, commits and exits 0."""
    app_name = "sig-twice"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 300))
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--set", "commit_interval=60")
    wait_until(lambda: sum(end_offsets(broker.addr, "out").values()) >= 300, 60, "300 outputs",
               app=app)
    app.proc.send_signal(signal.SIGTERM)
    app.proc.send_signal(signal.SIGINT)
    assert app.stop() == 0, app.stderr()
    # commit_interval = 60 s: only the final checkpoint can have committed the end.
    assert committed(broker.addr, app_name, IN) == end_offsets(broker.addr, IN)
    assert app.stats()[:2] == (300, 300), app.stderr()


def test_printed_outputs_appear_while_running(broker_factory, run_app):
    """--print on a file (or pipe): each output line is there as soon as it is
    produced, not at exit."""
    app_name = "print-live"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 5))
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--print")
    def printed():
        lines = [l for l in app.stdout().splitlines() if l.startswith("out\t")]
        return lines if len(lines) >= 5 else None
    lines = wait_until(printed, 30, "5 printed lines", app=app)
    assert app.proc.poll() is None
    got = sorted(json.loads(l.split("\t", 2)[2])["x"] for l in lines)
    assert got == [0, 1, 2, 3, 4]
    assert app.stop() == 0, app.stderr()


def test_log_format_json_is_one_object_per_line(broker_factory, run_app):
    """--log-format json: every stderr line is a JSON object with time, level and
    msg, also a multi-line error (a bad record that stops the app)."""
    app_name = "log-json"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 3) + [(b"k1", b'{"x": "not a number"}', None)])
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--log-format", "json")
    assert app.wait(60) == 1, app.stderr()
    lines = [l for l in app.stderr().splitlines() if l.strip()]
    objs = [json.loads(l) for l in lines]
    assert all(set(o) == {"time", "level", "msg"} for o in objs), lines
    assert all(o["level"] in ("debug", "info", "warn", "error") for o in objs)
    assert all(o["time"].endswith("Z") and "T" in o["time"] for o in objs)
    stop = [o for o in objs if o["level"] == "error" and "process error" in o["msg"]]
    assert stop and "\n  row: " in stop[0]["msg"], objs


def test_a_stop_on_a_bad_record_keeps_the_local_state(broker_factory, run_app, tmp_path):
    """on_error = stop: the app commits up to the bad record and exits 1; the
    local state it checkpointed stays (it is what the committed offsets cover),
    so the next start replays nothing it already has."""
    from conftest import run_cli
    app_name = "stop-keeps"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 40) + [(b"k1", b'{"x": "not a number"}', None)])
    state = tmp_path / "st"
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state))
    assert app.wait(60) == 1, app.stderr()
    listing = run_cli("state", "list", str(state / app_name)).stdout
    rows_ = [line.split() for line in listing.splitlines()[1:] if line.strip()]
    assert sum(int(r[2]) for r in rows_) > 0, listing  # before the fix: all dropped at exit
    done = committed(broker.addr, app_name, IN)
    for _store, part, keys, _bytes, _next, input_offset in rows_:
        if int(keys):  # a partition with state reflects exactly its committed offset
            assert int(input_offset) == done[int(part)], (listing, done)
