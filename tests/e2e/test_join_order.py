"""Records of joined topics are taken in timestamp order (docs/joins.md,
"Order across inputs").

scripts/join_order.lua joins trades with a prices table and, as of their
time, with quotes. Every topic's records are produced with increasing Kafka
timestamps, and the trades are all produced before the prices and quotes they
must see: taken in arrival order the trades would see nothing; taken in
timestamp order, partition by partition, each trade sees exactly the price and
the quote with the latest timestamp at or before its own (a price or quote with
the same timestamp as the trade comes first). The reference below computes that
from the records alone.
"""

import json
import random
import time

from conftest import SCRIPTS, jloads, produce, read_all, wait_count
from test_http import free_port, get, samples

SCRIPT = SCRIPTS / "join_order.lua"
SYMBOLS = [f"s{i}" for i in range(16)]


def rec(key, value, ts):
    return (key.encode(), json.dumps(value).encode(), None, None, ts)


def make_inputs(seed, ntrades, nprices, nquotes, t0=1_700_000_000_000):
    rnd = random.Random(seed)

    def series(n, make):
        ts = sorted(rnd.randrange(t0, t0 + 100_000) for _ in range(n))
        return [(rnd.choice(SYMBOLS), make(i), t) for i, t in enumerate(ts)]

    trades = series(ntrades, lambda i: {"id": i})
    prices = series(nprices, lambda i: {"price": i})
    quotes = series(nquotes, lambda i: {"bid": i})
    return trades, prices, quotes


def latest_at_or_before(records, key, ts):
    best = None
    for k, v, t in records:  # in timestamp order
        if k == key and t <= ts:
            best = v
    return best


def expected(trades, prices, quotes):
    with_price, with_quote = {}, {}
    for k, v, t in trades:
        p = latest_at_or_before(prices, k, t)
        q = latest_at_or_before(quotes, k, t)
        with_price[v["id"]] = (k, dict(v, **(p or {})))
        with_quote[v["id"]] = (k, dict(v, **(q or {})))
    return with_price, with_quote


def outputs(addr, topic):
    got = {}
    for r in read_all(addr, topic):
        v = jloads(r.value)
        assert v["id"] not in got, f"{topic}: trade {v['id']} twice"
        got[v["id"]] = (r.key.decode(), v)
    return got


def run_case(broker_factory, run_app, tmp_path, seed, sizes, *args):
    broker = broker_factory({"prices": 4, "quotes": 4, "trades": 4, "with-price": 2, "with-quote": 2})
    trades, prices, quotes = make_inputs(seed, *sizes)
    produce(broker.addr, "trades", [rec(*r) for r in trades])
    produce(broker.addr, "prices", [rec(*r) for r in prices])
    produce(broker.addr, "quotes", [rec(*r) for r in quotes])
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / "state"), *args)
    wait_count(broker.addr, "with-price", len(trades), 90, app=app)
    wait_count(broker.addr, "with-quote", len(trades), 90, app=app)
    assert app.stop() == 0
    want_price, want_quote = expected(trades, prices, quotes)
    assert outputs(broker.addr, "with-price") == want_price
    assert outputs(broker.addr, "with-quote") == want_quote
    return app


def test_a_backlog_joins_in_timestamp_order(broker_factory, run_app, tmp_path):
    run_case(broker_factory, run_app, tmp_path, 1, (400, 60, 120))


def test_a_long_backlog_in_small_batches_pauses_the_side_ahead(broker_factory, run_app, tmp_path):
    # batch_size 20: a partition holding 40 waiting records is paused until it
    # drains, so the trades ahead do not pile up while prices are fetched
    app = run_case(broker_factory, run_app, tmp_path, 2, (3000, 300, 600),
                   "--set", "batch_size=20", "--log-level", "debug")
    err = app.stderr()
    assert "paused trades[" in err and "resumed trades[" in err


def live_trade_then_late_price(broker_factory, run_app, tmp_path, *args, between=None):
    """A running app at the end of every partition gets a trade, then, 0.5 s
    later, a price stamped before it. Returns the trade's output."""
    broker = broker_factory({"prices": 1, "quotes": 1, "trades": 1, "with-price": 1, "with-quote": 1})
    produce(broker.addr, "prices", [rec("s0", {"price": 1}, 1000)])
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / "state"), *args)
    produce(broker.addr, "trades", [rec("s0", {"id": 0}, 2000)])
    wait_count(broker.addr, "with-price", 1, 60, app=app)
    time.sleep(0.5)
    produce(broker.addr, "trades", [rec("s0", {"id": 1}, 5000)])
    time.sleep(0.5)
    if between is not None:
        between()
    produce(broker.addr, "prices", [rec("s0", {"price": 2}, 4000)])
    wait_count(broker.addr, "with-price", 2, 60, app=app)
    assert app.stop() == 0
    return outputs(broker.addr, "with-price")


def test_without_join_wait_a_row_does_not_wait_for_a_partner_at_its_end(broker_factory, run_app, tmp_path):
    got = live_trade_then_late_price(broker_factory, run_app, tmp_path)
    assert got == {0: ("s0", {"id": 0, "price": 1}), 1: ("s0", {"id": 1, "price": 1})}


def test_join_wait_holds_a_row_for_records_of_its_partner_stamped_before_it(broker_factory, run_app, tmp_path):
    port = free_port()
    waiting = []

    def between():  # the trade waits for prices: the gauge says so
        waiting.append(samples(get(port, "/metrics")[1])["luastream_join_waiting_records"])

    got = live_trade_then_late_price(broker_factory, run_app, tmp_path, "--set", "join_wait=5000",
                                     "--http", f"127.0.0.1:{port}", between=between)
    assert got == {0: ("s0", {"id": 0, "price": 1}), 1: ("s0", {"id": 1, "price": 2})}
    assert waiting == [1]


TIES = """
local ls = require("luastream")
local app = ls.app{ name = "ties", commit_interval = 0.5 }
local s = app:dataframe(app:topic("s", { key = "string", value = "json" }))
local t = app:table(app:topic("t", { key = "string", value = "json" }))
local r = app:dataframe(app:topic("r", { key = "string", value = "json" }))
s:join_table(t, { how = "left" }):to_topic(app:topic("out", { key = "string", value = "json" }))
r:join_asof(s, { how = "left" }):to_topic(app:topic("out2", { key = "string", value = "json" }))
"""


def test_on_equal_timestamps_a_table_goes_first_also_to_a_stream_an_as_of_join_records(broker_factory, run_app,
                                                                                       tmp_path):
    # s looks t up and is itself the side r's as-of join records, and is
    # declared before t: on equal timestamps t's record still goes first.
    broker = broker_factory({"s": 1, "t": 1, "r": 1, "out": 1, "out2": 1})
    t0 = 1_700_000_000_000
    produce(broker.addr, "s", [rec("k", {"id": i}, t0 + 1000 * i) for i in range(3)])
    produce(broker.addr, "t", [rec("k", {"price": i}, t0 + 1000 * i) for i in range(3)])
    produce(broker.addr, "r", [rec("k", {"q": i}, t0 + 1000 * i) for i in range(3)])
    script = tmp_path / "ties.lua"
    script.write_text(TIES)
    app = run_app(script, broker.addr, "--state-dir", str(tmp_path / "state"))
    wait_count(broker.addr, "out", 3, 60, app=app)
    wait_count(broker.addr, "out2", 3, 60, app=app)
    assert app.stop() == 0
    assert [jloads(r.value) for r in read_all(broker.addr, "out")] == [{"id": i, "price": i} for i in range(3)]
    # and s's row (as it came) goes before r's row of the same time, which sees it
    assert [jloads(r.value) for r in read_all(broker.addr, "out2")] == [{"q": i, "id": i} for i in range(3)]
