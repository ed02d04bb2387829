"""A live reload (`--watch`) that changes a window starts it afresh; one that
leaves it as it was keeps its state (docs/windows.md, "State").

The app sums {ts, x} rows per key in 1000 ms tumbling windows by ts and emits
each window when it closes. Version A: { s = sum(x) }. Version A' is A with a
comment changed (the window's definition is the same). Version B adds n =
count(), another definition of the window in the same store.
"""

import json
import os

from conftest import jloads, produce, read_all, wait_committed_to_end, wait_count, wait_until

SCRIPT = """\
local ls = require("luastream")
local app = ls.app{ name = "win-reload", commit_interval = 0.5 }
local input = app:topic("in", { key = "string", value = "json", timestamp = "ts" })
local output = app:topic("out", { key = "string", value = "json" })
-- VERSION
app:dataframe(input):tumbling_window(1000):agg{ AGGS }:final():to_topic(output)
"""

A = SCRIPT.replace("AGGS", 's = ls.agg.sum("x")')
A2 = A.replace("-- VERSION", "-- VERSION (a comment changed)")
B = SCRIPT.replace("AGGS", 's = ls.agg.sum("x"), n = ls.agg.count()')


def write_atomic(path, text):
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def rows(*pairs):
    return [(b"k", json.dumps({"ts": ts, "x": x}).encode(), None) for ts, x in pairs]


def test_reload_changing_a_window_starts_it_afresh(broker_factory, run_app, tmp_path):
    broker = broker_factory({"in": 1, "out": 1})
    script = tmp_path / "win_reload.lua"
    script.write_text(A)
    app = run_app(script, broker.addr, "--watch", "--state-dir", str(tmp_path / "state"))
    wait_until(lambda: "partitions assigned" in app.stderr(), 30, "the assignment", app=app)

    produce(broker.addr, "in", rows((1000, 1), (1100, 2), (1900, 3)))
    wait_committed_to_end(broker.addr, "win-reload", "in", 30, app=app)  # in the window before the reload
    write_atomic(script, A2)  # the same window: its state stays
    wait_until(lambda: app.stderr().count("reloaded") == 1, 30, "the first reload", app=app)
    produce(broker.addr, "in", rows((2500, 0)))
    first = wait_count(broker.addr, "out", 1, 30, app=app)
    assert jloads(first[0].value) == {"start": 1000, "end": 2000, "s": 6}

    produce(broker.addr, "in", rows((3000, 1), (3100, 1)))
    wait_committed_to_end(broker.addr, "win-reload", "in", 30, app=app)
    write_atomic(script, B)  # another definition: the window starts afresh
    wait_until(lambda: app.stderr().count("reloaded") == 2, 30, "the second reload", app=app)
    produce(broker.addr, "in", rows((3500, 5), (4500, 0)))
    wait_count(broker.addr, "out", 3, 30, app=app)
    assert app.stop() == 0
    got = [jloads(r.value) for r in read_all(broker.addr, "out")]
    assert got == [
        {"start": 1000, "end": 2000, "s": 6},
        {"start": 2000, "end": 3000, "s": 0},         # closed by 3000 (version A')
        {"start": 3000, "end": 4000, "s": 5, "n": 1},  # B: the rows at 3000 and 3100 are not in it
    ], got
    assert "restart" not in app.stderr(), app.stderr()
