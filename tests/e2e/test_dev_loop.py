"""Developer aids of `luastream run`: --from-beginning, --count printing the
outputs, error lines once per distinct error, and the status line.

scripts/state_count.lua counts per key: input {"x": i} keyed k<i % 20> gives
{key, x, n, sum} with the key's running count n and sum.
"""

import json
import os
import pty
import re
import subprocess
import time

from conftest import (LUASTREAM, SCRIPTS, committed, jloads, produce, read_all, run_cli,
                      wait_committed_to_end, wait_until)

COUNT = SCRIPTS / "state_count.lua"
KEYS = 20


def rows(first, n):
    return [(f"k{i % KEYS}".encode(), json.dumps({"x": i}).encode(), None) for i in range(first, first + n)]


def counts_by_key(outs):
    last = {}
    for v in outs:
        last[v["key"]] = v["n"]
    return last


def test_from_beginning_replays_with_empty_state_and_leaves_the_app_alone(broker_factory, run_app,
                                                                          tmp_path):
    broker = broker_factory({"in": 4, "out": 4, "app__counts__changelog": 4})
    produce(broker.addr, "in", rows(0, 100))
    app = run_app(COUNT, broker.addr, "--name", "app")
    wait_committed_to_end(broker.addr, "app", "in", 30, app=app)
    assert app.stop() == 0
    before = committed(broker.addr, "app", "in")
    state_dir = app.workdir / "state" / "app"
    listing = run_cli("state", "list", str(state_dir)).stdout

    # 100 outputs, counts from 1 again, printed on stdout
    replay = subprocess.run([LUASTREAM, "run", str(COUNT), "--broker", broker.addr, "--name", "app",
                             "--state-dir", str(app.workdir / "state"), "--from-beginning",
                             "--count", "100"],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    assert "--from-beginning" in replay.stderr
    lines = replay.stdout.splitlines()
    assert len(lines) == 100, replay.stdout[-2000:]
    printed = []
    for line in lines:
        topic, key, value = line.split("\t")
        assert topic == "out"
        v = json.loads(value)
        assert v["key"] == key
        printed.append(v)
    assert sorted(v["x"] for v in printed) == list(range(100))
    assert counts_by_key(printed) == {f"k{k}": 5 for k in range(KEYS)}

    # the app's group offsets and local state are as they were
    assert committed(broker.addr, "app", "in") == before
    assert run_cli("state", "list", str(state_dir)).stdout == listing

    # and the app goes on where it stopped, with its state
    produce(broker.addr, "in", rows(100, 20))
    app2 = run_app(COUNT, broker.addr, "--name", "app")
    wait_until(lambda: len(read_all(broker.addr, "out")) >= 220, 30, "220 outputs", app=app2)
    assert app2.stop() == 0
    last = [jloads(r.value) for r in read_all(broker.addr, "out")]
    tail = [v for v in last if v["x"] >= 100]
    assert len(tail) == 20 and all(v["n"] == 6 for v in tail), tail


def test_count_prints_outputs_and_quiet_does_not(broker_factory, tmp_path):
    broker = broker_factory({"in": 2, "out": 2})
    produce(broker.addr, "in", rows(0, 10))
    base = [LUASTREAM, "run", str(COUNT), "--broker", broker.addr, "--state-dir", str(tmp_path / "s")]
    r = subprocess.run(base + ["--name", "p1", "--count", "10"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout.splitlines()) == 10
    r = subprocess.run(base + ["--name", "p2", "--count", "10", "--quiet"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""


BAD = """\
local ls = require("luastream")
local app = ls.app{ name = "bad", on_error = "skip" }
local input = app:topic("in", { key = "string", value = "json" })
local sdf = app:dataframe(input)
sdf = sdf:update(function(row)
  row.y = row.x * 2  -- E2E:arith
end)
sdf = sdf:filter(function(row) return row.y > 0 end)
sdf:to_topic(app:topic("out", { value = "json" }))
"""


def test_each_distinct_error_is_logged_once_with_its_row(broker_factory, run_app, tmp_path):
    broker = broker_factory({"in": 1, "out": 1})
    script = tmp_path / "bad.lua"
    script.write_text(BAD)
    recs = []
    for i in range(300):
        if i % 3 == 0:
            recs.append((b"k", b"not json %d" % i, None))
        elif i % 3 == 1:
            recs.append((b"k", json.dumps({"z": i, "long": "a" * 500}).encode(), None))
        else:
            recs.append((b"k", json.dumps({"x": i}).encode(), None))
    produce(broker.addr, "in", recs)
    app = run_app(script, broker.addr, "--name", "bad")
    wait_committed_to_end(broker.addr, "bad", "in", 30, app=app)
    assert app.stop() == 0
    err = app.stderr()
    decode = re.findall(r"in\[0\]@\d+: decode error, skipped: .*\n  value: not json \d+", err)
    process = re.findall(r"in\[0\]@\d+: process error, skipped: .*bad\.lua:6: .*\n  row: \{.*", err)
    assert len(decode) == 1, err
    assert len(process) == 1, err
    row_line = re.search(r"\n  row: (.*)", err).group(1)
    assert row_line.endswith("...") and len(row_line) < 260, row_line  # cut
    assert re.search(r"the same error again 99 times in the last \d+ s: decode error", err), err
    assert re.search(r"the same error again 99 times in the last \d+ s: process error: .*bad\.lua:6:", err), err
    assert len(read_all(broker.addr, "out")) == 100


def test_status_line_on_a_terminal(broker_factory, tmp_path):
    broker = broker_factory({"in": 2, "out": 2})
    produce(broker.addr, "in", rows(0, 50))
    master, slave = pty.openpty()
    proc = subprocess.Popen([LUASTREAM, "run", str(COUNT), "--broker", broker.addr, "--name", "st",
                             "--state-dir", str(tmp_path / "s"), "--timeout", "8", "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    assert proc.wait(30) == 0
    os.close(master)
    text = out.decode(errors="replace")
    lines = re.findall(r"\r\x1b\[Kin (\d+)/s  out (\d+)/s  lag (\d+)  state (\d+)  checkpoint [\d.]+ s ago  \((\d+) in, (\d+) out\)", text)
    assert lines, text[-3000:]
    last = lines[-1]
    assert int(last[4]) == 50 and int(last[5]) == 50, last
    assert int(last[2]) == 0 and int(last[3]) > 0, last
