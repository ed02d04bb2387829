"""Runaway scripts: the watchdog (batch_time_limit, heap_limit_mb).

scripts/runaway.lua counts the messages of each key (state n, output {x, n})
and, in its second step, loops forever on a row with "spin" (a compiled
LuaJIT trace: no hook fires there) or allocates without bound on a row with
"grow". The process must not hang: it reports the step (the script's
file:line) and the message (topic[partition]@offset), commits nothing past
that message, and exits 1 for its supervisor; a restart with the script fixed
(its line marked E2E:bad rewritten) then processes everything with exact
counts. Under --watch it stays (same pid), waits for the script to change,
refuses a change that does not load, and runs the fixed one.
"""

import json
import re
import signal
import time
from collections import Counter

import pytest

from conftest import (SCRIPTS, committed, jloads, line_of, produce, read_all,
                      wait_committed_to_end, wait_until)

SCRIPT = SCRIPTS / "runaway.lua"
PARTS, KEYS, N, BAD = 2, 10, 200, 120


def topics(name):
    return {"in": PARTS, "out": PARTS, f"{name}__default__changelog": PARTS}


def inputs(kind):
    """N rows x = 0..N-1 keyed k<x % KEYS>; row BAD carries kind (spin|grow)."""
    return [(f"k{x % KEYS}".encode(), json.dumps({"x": x, **({kind: True} if x == BAD else {})}).encode(), None)
            for x in range(N)]


def fixed_copy(tmp_path, bad=True):
    """A copy of the script (bad=False: made well, or None: made not to load)."""
    path = tmp_path / "runaway.lua"
    text = SCRIPT.read_text()
    if bad is False:
        text = text.replace("local bad = true -- E2E:bad", "local bad = false -- E2E:bad")
    elif bad is None:
        text = text.replace("local bad = true -- E2E:bad", "local bad = = -- E2E:bad")
    path.write_text(text)
    return path


def report_re(script, kind, part, off, limit):
    step = re.escape(f"{script}:{line_of(script, 'E2E:runaway-step')}: update")
    where = rf"in step {step}, on message in\[{part}\]@{off} \(row \d+ of a batch of \d+\)"
    if kind == "spin":
        return (rf"error watchdog: one call into the pipeline has run for [\d.]+ s, past "
                rf"batch_time_limit = {limit} s, {where}; ")
    return rf"error watchdog: the Lua heap reached [\d.]+ MB, over heap_limit_mb = {limit}, {where}; "


def check_exact(addr):
    """Every input has an output, and each key's last output counts all its inputs."""
    outs = read_all(addr, "out")
    seen = {jloads(r.value)["x"] for r in outs}
    assert seen == set(range(N)), sorted(set(range(N)) - seen)[:10]
    last = {}
    for r in outs:  # (partition, offset) order; a key lives in one partition
        last[r.key.decode()] = jloads(r.value)["n"]
    want = Counter(f"k{x % KEYS}" for x in range(N))
    assert last == dict(want), (last, want)


@pytest.mark.parametrize("kind", ["spin", "grow"])
def test_runaway_row_reports_step_and_message_exits_1_and_commits_nothing_past_it(
        kind, broker_factory, run_app, tmp_path):
    """A row that loops (batch_time_limit = 2 s) or allocates without bound
    (heap_limit_mb = 64): one error line names the step (runaway.lua's line of
    the update) and the message; the exit code is 1 within 20 s; the committed
    offset of that partition is at most the message's, and no output carries
    it. Restarted with the script fixed, every input gets its output and every
    key its exact count."""
    name = f"wd-{kind}"
    broker = broker_factory(topics(name))
    at = produce(broker.addr, "in", inputs(kind))
    part, off = at[BAD]
    opt = "batch_time_limit=2" if kind == "spin" else "heap_limit_mb=64"
    app = run_app(SCRIPT, broker.addr, "--name", name, "--set", opt)
    t0 = time.monotonic()
    assert app.wait(40) == 1, app.stderr()
    assert time.monotonic() - t0 < 20
    err = app.stderr()
    assert re.search(report_re(SCRIPT, kind, part, off, 2 if kind == "spin" else 64), err), err
    assert len(re.findall(r"error watchdog:", err)) == 1, err
    got = committed(broker.addr, name, "in")
    assert got[part] <= off, (got, part, off)
    assert BAD not in {jloads(r.value)["x"] for r in read_all(broker.addr, "out")}

    app = run_app(fixed_copy(tmp_path, bad=False), broker.addr, "--name", name,
                  "--state-dir", str(app.workdir / "state"))
    wait_committed_to_end(broker.addr, name, "in", 60, app=app)
    assert app.stop() == 0, app.stderr()
    check_exact(broker.addr)


@pytest.mark.parametrize("kind", ["spin", "grow"])
def test_watch_waits_for_a_fixed_script_in_the_same_process(kind, broker_factory, run_app, tmp_path):
    """Under --watch the same runaway does not end the process: it reports,
    restarts in place (same pid) and waits; an edit that does not load is
    refused with its error; the fixed script then runs, and every input gets
    its output with exact counts; SIGTERM stops it with 0."""
    name = f"wd-watch-{kind}"
    broker = broker_factory(topics(name))
    at = produce(broker.addr, "in", inputs(kind))
    part, off = at[BAD]
    script = fixed_copy(tmp_path, bad=True)
    opt = "batch_time_limit=2" if kind == "spin" else "heap_limit_mb=64"
    app = run_app(script, broker.addr, "--name", name, "--watch", "--set", opt)
    pid = app.proc.pid
    wait_until(lambda: "waiting for" in app.stderr(), 40, "the wait for a fixed script", app=app)
    err = app.stderr()
    assert re.search(report_re(script, kind, part, off, 2 if kind == "spin" else 64), err), err
    assert f"watchdog: restarted after the error above; waiting for {script} to change (--watch)" in err
    assert app.proc.pid == pid and app.proc.poll() is None
    time.sleep(1)
    fixed_copy(tmp_path, bad=None)
    wait_until(lambda: "still does not load" in app.stderr(), 20, "the refused edit", app=app)
    assert re.search(rf"watchdog: {re.escape(str(script))} still does not load: .*runaway\.lua:"
                     rf"{line_of(SCRIPT, 'local bad = true')}: unexpected symbol near '='; waiting for the next "
                     rf"change", app.stderr()), app.stderr()
    fixed_copy(tmp_path, bad=False)
    wait_until(lambda: "changed and loads; starting it" in app.stderr(), 20, "the fixed script", app=app)
    wait_committed_to_end(broker.addr, name, "in", 60, app=app)
    assert app.proc.pid == pid
    assert app.stop(sig=signal.SIGTERM) == 0, app.stderr()
    check_exact(broker.addr)
    assert len(re.findall(report_re(script, kind, part, off, 2 if kind == "spin" else 64),
                          app.stderr())) == 1, app.stderr()


def test_defaults_and_checks_of_the_options(broker_factory, run_app):
    """A bad value of either option stops the app at start with exit code 2,
    naming the option."""
    broker = broker_factory(topics("wd-opts"))
    for opt, msg in [("batch_time_limit=-1", "option 'batch_time_limit' must be a number of seconds"),
                     ("heap_limit_mb=2", "option 'heap_limit_mb' must be 0 (no limit) or a number of "
                                         "megabytes from 4 to 1048576")]:
        app = run_app(SCRIPT, broker.addr, "--name", "wd-opts", "--set", opt)
        assert app.wait(20) == 2, app.stderr()
        assert msg in app.stderr(), app.stderr()

