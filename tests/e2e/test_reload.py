"""Live reload (`luastream run --watch`, SIGHUP) under steady input.

The app counts per key (stateful, store "default") and tags every output with
the version of the code that produced it and the input's partition and
offset. Its logic lives partly in a project module (reload_logic.lua), so both
the script and a module it requires are watched. While a producer thread
writes one record every few milliseconds, the test edits the code three times:
a logic change (in the module), a syntax error (in the script), and a fix that
also adds a step. Then it checks, from the output topic:

- every input (partition, offset) has exactly one output: no loss, no duplicate;
- in each partition the version never goes back, all three versions ran, and
  each output follows its version's logic;
- inputs produced after a "reloaded" line are all handled by the new code, and
  the old code kept running after the failed reload;
- per key, the counts are 1, 2, 3, ... in offset order: state carried across
  every reload.
"""

import json
import os
import re
import signal
import threading
import time
from collections import defaultdict

from confluent_kafka import Producer

from conftest import jloads, read_all, wait_until

IN, OUT = "in", "out"
PARTS = 4
KEYS = 10

SCRIPT = """\
local ls = require("luastream")
local logic = require("reload_logic")

local app = ls.app{ name = "reloader", commit_interval = 1, on_error = "stop" }
local input = app:topic("in", { key = "string", value = "json" })
local output = app:topic("out", { key = "string", value = "json" })

local sdf = app:dataframe(input)
sdf = sdf:update(function(row, state, msg)
  local n = state:get("n", 0) + 1
  state:set("n", n)
  row.n, row.part, row.off, row.key = n, msg.partition, msg.offset, msg.key
end, { stateful = true })
sdf.v = logic.version
sdf.y = sdf.x * logic.factor
--EXTRA--
sdf:to_topic(output)
"""

MODULE = "return {{ version = {version}, factor = {factor} }}\n"


def script_text(extra=""):
    return SCRIPT.replace("--EXTRA--\n", extra)


def write_atomic(path, text):
    """Writes like an editor that saves through a temporary file and a rename."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class SteadyProducer(threading.Thread):
    """Produces {"x": i} keyed k<i % KEYS>, one record every `every` seconds."""

    def __init__(self, addr, total, every=0.005):
        super().__init__(daemon=True)
        self.addr, self.total, self.every = addr, total, every
        self.sent = 0
        self.errors = []

    def run(self):
        p = Producer({"bootstrap.servers": self.addr, "linger.ms": 2, "enable.idempotence": True})
        for i in range(self.total):
            p.produce(IN, json.dumps({"x": i}).encode(), key=f"k{i % KEYS}".encode(),
                      on_delivery=lambda err, msg: err and self.errors.append(err))
            self.sent = i + 1
            p.poll(0)
            time.sleep(self.every)
        p.flush(30)


def outputs(addr):
    return [jloads(r.value) for r in read_all(addr, OUT)]


def wait_log(app, pattern, count, timeout):
    rx = re.compile(pattern)
    return wait_until(lambda: len(rx.findall(app.stderr())) >= count, timeout,
                      f"{count} log line(s) matching {pattern!r}", app=app)


def test_edit_three_times_under_steady_input(broker_factory, run_app, tmp_path):
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    src = tmp_path / "src"
    src.mkdir()
    script, module = src / "reload_app.lua", src / "reload_logic.lua"
    script.write_text(script_text())
    module.write_text(MODULE.format(version=1, factor=2))

    app = run_app(script, broker.addr, "--watch")
    wait_log(app, r"watching .*reload_app\.lua", 1, 15)
    prod = SteadyProducer(broker.addr, total=3000)
    prod.start()
    wait_until(lambda: any(o["v"] == 1 for o in outputs(broker.addr)), 30, "outputs of version 1", app=app)

    # 1. a logic change, in the module
    write_atomic(module, MODULE.format(version=2, factor=3))
    wait_log(app, r"reloaded .*reload_logic\.lua changed", 1, 10)
    after_v2 = prod.sent

    # 2. a syntax error, in the script: the old code keeps running
    broken = script_text("sdf.z = sdf.x %\n")
    write_atomic(script, broken)
    wait_log(app, r"reload of .* failed, still running the previous version", 1, 10)
    at_failure = prod.sent
    err_line = broken.splitlines().index("sdf:to_topic(output)") + 1
    assert re.search(r"reload_app\.lua:%d:" % err_line, app.stderr()), app.stderr()
    time.sleep(1.0)

    # 3. the fix, adding a step
    write_atomic(script, script_text("sdf.z = sdf.x % 7\nsdf.v = 3\n"))
    wait_log(app, r"reloaded .*reload_app\.lua changed", 1, 10)
    after_v3 = prod.sent

    prod.join(60)
    assert not prod.errors
    total = prod.total
    wait_until(lambda: len(read_all(broker.addr, OUT)) >= total, 60, f"{total} outputs", app=app)
    assert app.stop() == 0
    err = app.stderr()
    assert len(re.findall(r"reloaded ", err)) == 2, err

    outs = outputs(broker.addr)
    # exactly one output per input
    seen = defaultdict(int)
    for o in outs:
        seen[(o["part"], o["off"])] += 1
    assert len(outs) == total, f"{len(outs)} outputs for {total} inputs"
    dups = [k for k, n in seen.items() if n > 1]
    assert not dups, f"inputs processed twice: {dups[:5]}"
    assert sorted(o["x"] for o in outs) == list(range(total))

    # versions: monotone per partition, each with its own logic
    by_part = defaultdict(list)
    for o in outs:
        by_part[o["part"]].append(o)
    for part, rows in by_part.items():
        rows.sort(key=lambda o: o["off"])
        versions = [o["v"] for o in rows]
        assert versions == sorted(versions), f"partition {part}: version went back"
    for o in outs:
        factor = 2 if o["v"] == 1 else 3
        assert o["y"] == o["x"] * factor, o
        assert ("z" in o) == (o["v"] == 3), o
        if o["v"] == 3:
            assert o["z"] == o["x"] % 7
    assert {o["v"] for o in outs} == {1, 2, 3}

    # the new code handles everything produced after its reload was logged
    assert all(o["v"] >= 2 for o in outs if o["x"] >= after_v2)
    assert all(o["v"] == 3 for o in outs if o["x"] >= after_v3)
    # the failed reload left version 2 running
    assert any(o["v"] == 2 and o["x"] > at_failure for o in outs)

    # state carried across every reload: per key, n = 1, 2, 3, ... in offset order
    by_key = defaultdict(list)
    for o in outs:
        by_key[o["key"]].append(o)
    assert len(by_key) == KEYS
    for key, rows in by_key.items():
        rows.sort(key=lambda o: (o["part"], o["off"]))
        assert [o["n"] for o in rows] == list(range(1, len(rows) + 1)), key


def test_changes_that_need_a_restart_are_refused(broker_factory, run_app, tmp_path):
    broker = broker_factory({IN: PARTS, OUT: PARTS, "other": PARTS})
    src = tmp_path / "src"
    src.mkdir()
    script = src / "reload_app.lua"
    (src / "reload_logic.lua").write_text(MODULE.format(version=1, factor=2))
    script.write_text(script_text())
    app = run_app(script, broker.addr, "--watch")
    wait_log(app, r"partitions assigned", 1, 20)

    write_atomic(script, script_text().replace('app:topic("in"', 'app:topic("other"'))
    wait_log(app, r"reload of .* failed", 1, 10)
    assert "input topic in became other: a restart is needed to apply this change" in app.stderr()

    write_atomic(script, script_text().replace('name = "reloader"', 'name = "renamed"'))
    wait_log(app, r"reload of .* failed", 2, 10)
    assert "the app name changed (reloader -> renamed)" in app.stderr()

    # the first version still runs
    from conftest import produce
    produce(broker.addr, IN, [(b"k1", json.dumps({"x": 5}).encode(), None)])
    wait_until(lambda: len(read_all(broker.addr, OUT)) >= 1, 20, "an output", app=app)
    (out,) = outputs(broker.addr)
    assert out["v"] == 1 and out["y"] == 10
    assert app.stop() == 0


def test_sighup_reloads_without_watch(broker_factory, run_app, tmp_path):
    broker = broker_factory({IN: PARTS, OUT: PARTS, "out2": PARTS})
    src = tmp_path / "src"
    src.mkdir()
    script = src / "reload_app.lua"
    (src / "reload_logic.lua").write_text(MODULE.format(version=1, factor=2))
    script.write_text(script_text())
    app = run_app(script, broker.addr)
    wait_log(app, r"partitions assigned", 1, 20)
    assert "watching" not in app.stderr()

    # a new output topic applies live
    script.write_text(script_text().replace('app:topic("out"', 'app:topic("out2"'))
    time.sleep(0.5)
    assert "reloaded" not in app.stderr()  # no --watch: nothing happens on its own
    app.proc.send_signal(signal.SIGHUP)
    wait_log(app, r"reloaded .*\(SIGHUP\)", 1, 10)

    from conftest import produce
    produce(broker.addr, IN, [(b"k1", json.dumps({"x": 5}).encode(), None)])
    wait_until(lambda: len(read_all(broker.addr, "out2")) >= 1, 20, "an output on out2", app=app)
    assert read_all(broker.addr, OUT) == []
    assert app.stop() == 0


def test_reload_that_fails_on_every_row_is_rolled_back(broker_factory, run_app, tmp_path):
    """A reload that builds but fails on every row (an update that indexes a
    number) is rolled back at its first failing batch: the previous version
    processes that batch and carries on, the app does not stop, the log says
    why, and every input has exactly one output with state counts unbroken."""
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    src = tmp_path / "src"
    src.mkdir()
    script = src / "reload_app.lua"
    (src / "reload_logic.lua").write_text(MODULE.format(version=1, factor=2))
    script.write_text(script_text())
    app = run_app(script, broker.addr, "--watch")
    wait_log(app, r"partitions assigned", 1, 20)
    prod = SteadyProducer(broker.addr, total=1500)
    prod.start()
    wait_until(lambda: len(outputs(broker.addr)) > 50, 30, "outputs of version 1", app=app)

    bad = script_text("sdf = sdf:update(function(row) row.x.y = 1 end)\n")
    write_atomic(script, bad)
    wait_log(app, r"reload of .*reload_app\.lua rolled back", 1, 15)
    bad_line = bad.splitlines().index("sdf = sdf:update(function(row) row.x.y = 1 end)") + 1
    line = next(l for l in app.stderr().splitlines() if "rolled back" in l)
    assert re.search(r"reload_app\.lua:%d:" % bad_line, line), line
    assert "attempt to index" in line, line

    prod.join(60)
    assert not prod.errors
    wait_until(lambda: len(read_all(broker.addr, OUT)) >= prod.total, 60, "all outputs", app=app)
    assert app.proc.poll() is None, app.stderr()
    assert app.stop() == 0, app.stderr()
    outs = outputs(broker.addr)
    assert sorted(o["x"] for o in outs) == list(range(prod.total))
    assert {o["v"] for o in outs} == {1}
    by_key = defaultdict(list)
    for o in outs:
        by_key[o["key"]].append(o)
    for key, rows in by_key.items():
        rows.sort(key=lambda o: (o["part"], o["off"]))
        assert [o["n"] for o in rows] == list(range(1, len(rows) + 1)), key


def test_configmap_update_by_atomic_symlink_swap_reloads(broker_factory, run_app, tmp_path):
    """A Kubernetes ConfigMap volume: the script and module are symlinks through
    "..data", and an update renames a new "..data" symlink over the old one, so
    no event names the script. --watch sees it and reloads the new version."""
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    cm = tmp_path / "configmap"
    cm.mkdir()

    def version_dir(name, version, factor):
        d = cm / name
        d.mkdir()
        (d / "reload_app.lua").write_text(script_text())
        (d / "reload_logic.lua").write_text(MODULE.format(version=version, factor=factor))

    version_dir("..2026_01_01", 1, 2)
    os.symlink("..2026_01_01", cm / "..data")
    for f in ("reload_app.lua", "reload_logic.lua"):
        os.symlink(f"..data/{f}", cm / f)
    app = run_app(cm / "reload_app.lua", broker.addr, "--watch")
    wait_log(app, r"watching .*reload_app\.lua", 1, 15)
    from conftest import produce
    produce(broker.addr, IN, [(b"k1", json.dumps({"x": 5}).encode(), None)])
    wait_until(lambda: len(outputs(broker.addr)) == 1, 30, "an output of version 1", app=app)

    version_dir("..2026_01_02", 2, 3)
    os.symlink("..2026_01_02", cm / "..data_tmp")
    os.rename(cm / "..data_tmp", cm / "..data")
    wait_log(app, r"reloaded .*\.\.data|reloaded .*reload_", 1, 10)
    produce(broker.addr, IN, [(b"k1", json.dumps({"x": 5}).encode(), None)])
    wait_until(lambda: len(outputs(broker.addr)) == 2, 30, "an output of version 2", app=app)
    first, second = sorted(outputs(broker.addr), key=lambda o: o["off"])
    assert (first["v"], first["y"]) == (1, 10)
    assert (second["v"], second["y"]) == (2, 15)
    assert app.stop() == 0, app.stderr()
