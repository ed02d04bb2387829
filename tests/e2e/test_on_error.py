"""on_error policies (skip, dead-letter, stop, a function) on bad rows and bad messages.

The pipeline (scripts/errors_pipeline.lua) maps {id, n} to {id, doubled = 2n}. Bad
inputs, one of each kind:
  lua-string  n is a string        -> Lua error            (stage process)
  lua-nil     n is missing         -> Lua error            (stage process)
  nan         output holds NaN     -> JSON cannot encode   (stage encode)
  bad-json    truncated JSON       -> decode error         (stage decode)
  bad-utf8    invalid UTF-8 inside a JSON string            (stage decode)
  empty       empty value (b"")    -> not valid JSON       (stage decode)
  bad-key     key is not UTF-8, key format "string"         (stage decode)
A tombstone (null value) is not a row: it is passed over without an error and
committed, like a message the pipeline filtered out.
"""

import json
from dataclasses import dataclass, field

import pytest

from conftest import (SCRIPTS, committed, end_offsets, hdict, jloads, line_of, produce,
                      read_all, wait_committed_to_end)

SCRIPT = SCRIPTS / "errors_pipeline.lua"
IN, OUT, DLQ, GROUP = "errors-in", "errors-out", "errors-dlq", "errors-e2e"
ENV = {"E2E_IN": IN, "E2E_OUT": OUT, "E2E_DLQ": DLQ, "E2E_APP": GROUP}
ARITH_LINE = line_of(SCRIPT, "E2E:arith")
FATAL_LINE = line_of(SCRIPT, "E2E:fatal")


@dataclass
class Entry:
    kind: str
    key: bytes
    value: bytes
    headers: list = field(default_factory=list)
    partition: int = 0
    offset: int = -1
    id: int = 0


# kind -> (id, key, value, headers, stage, words the error must contain)
BAD = {
    "lua-string": (101, b"k101", b'{"id": 101, "n": "abc"}', [("trace", b"t-101")],
                   "process", ["string value"]),
    "lua-nil": (102, b"k102", b'{"id": 102}', [], "process", ["nil value"]),
    "nan": (107, b"k107", b'{"id": 107, "n": 1, "nan": true}', [("trace", b"t-107")],
            "encode", ["NaN"]),
    "bad-json": (103, b"k103", b'{"id": 103, "n": ', [("trace", b"t-103"), ("bin", b"\x00\xff")],
                 "decode", ["JSON"]),
    "bad-utf8": (104, b"k104", b'{"id": 104, "n": 1, "s": "\xff\xfe"}', [], "decode",
                 ["UTF-8"]),
    "empty": (105, b"k105", b"", [], "decode", []),
    "bad-key": (108, b"\xc3\x28", b'{"id": 108, "n": 1}', [("trace", b"t-108")], "decode",
                ["key", "UTF-8"]),
    "fatal": (199, b"k199", b'{"id": 199, "n": 1, "fatal": true}', [], "process",
              ["fatal row 199"]),
}


def good(i, partition=0):
    return Entry("good", f"k{i}".encode(), json.dumps({"id": i, "n": i}).encode(),
                 partition=partition, id=i)


def bad(kind, partition=0):
    i, key, value, headers, _, _ = BAD[kind]
    return Entry(kind, key, value, list(headers), partition=partition, id=i)


def tombstone(partition=0):
    return Entry("tombstone", b"k109", None, partition=partition, id=109)


def produce_entries(addr, entries):
    offs = produce(addr, IN, [(e.key, e.value, e.headers or None, e.partition) for e in entries])
    for e, (p, o) in zip(entries, offs):
        assert p == e.partition
        e.offset = o
    return entries


def two_partition_mix():
    """Good rows around every kind of bad input, over 2 partitions."""
    p0 = ([good(i, 0) for i in range(1, 11)] + [bad("lua-string", 0)] +
          [good(i, 0) for i in range(11, 16)] + [bad("bad-json", 0), bad("empty", 0)] +
          [good(i, 0) for i in range(16, 21)] + [bad("nan", 0), tombstone(0)] +
          [good(i, 0) for i in range(21, 23)])
    p1 = ([good(i, 1) for i in range(31, 41)] + [bad("lua-nil", 1), bad("bad-utf8", 1)] +
          [good(i, 1) for i in range(41, 46)] + [bad("bad-key", 1)] +
          [good(i, 1) for i in range(46, 51)])
    return p0 + p1


def output_set(recs):
    """Outputs as a sorted list of (key, id, doubled); checks their shape."""
    out = []
    for r in recs:
        v = jloads(r.value)
        assert set(v) == {"id", "doubled"}, v
        out.append((r.key, v["id"], v["doubled"]))
    return sorted(out)


def expected_outputs(entries):
    return sorted((e.key, e.id, 2 * e.id) for e in entries if e.kind == "good")


def where(e):
    return f"{IN}[{e.partition}]@{e.offset}"


def error_line(stderr, e):
    lines = [ln for ln in stderr.splitlines() if where(e) + ":" in ln]
    assert lines, f"no error line names {where(e)} ({e.kind})\n--- stderr ---\n{stderr}"
    return lines[0]


def start(broker_factory, run_app, in_parts, *args, env=None):
    broker = broker_factory({IN: in_parts, OUT: 4, DLQ: 4})
    return broker, (lambda: run_app(SCRIPT, broker.addr, *args, env={**ENV, **(env or {})}))


def test_skip_outputs_good_rows_commits_everything_and_logs_each_bad_message(
        broker_factory, run_app):
    """on_error=skip (set with --set): outputs are exactly the good rows, every offset is
    committed, and stderr names topic[partition]@offset and the stage of every bad
    message, plus the script's file:line for Lua errors. An empty value is a decode
    error; a tombstone (null value) is passed over silently."""
    broker, launch = start(broker_factory, run_app, 2, "--set", "on_error=skip")
    entries = produce_entries(broker.addr, two_partition_mix())
    end = end_offsets(broker.addr, IN)
    app = launch()
    wait_committed_to_end(broker.addr, GROUP, IN, 60, app=app)
    assert app.stop() == 0, app.stderr()

    assert output_set(read_all(broker.addr, OUT)) == expected_outputs(entries)
    assert read_all(broker.addr, DLQ) == []
    assert committed(broker.addr, GROUP, IN) == end
    err = app.stderr()
    for e in entries:
        if e.kind == "good":
            continue
        if e.kind == "tombstone":
            assert where(e) + ":" not in err, f"a tombstone is not an error:\n{err}"
            continue
        line = error_line(err, e)
        stage, words = BAD[e.kind][4], BAD[e.kind][5]
        assert f"{stage} error" in line, (e.kind, line)
        assert "skipped" in line, line
        for w in words:
            assert w in line, (e.kind, w, line)
        if stage == "process":
            assert f"errors_pipeline.lua:{ARITH_LINE}" in line, line
    n_bad = sum(e.kind not in ("good", "tombstone") for e in entries)
    assert app.stats() == (len(entries), sum(e.kind == "good" for e in entries), n_bad, 0)


def check_dead_letter(rec, e):
    """rec is e's dead-letter record: original key, value and headers, plus the
    luastream.* headers."""
    stage, words = BAD[e.kind][4], BAD[e.kind][5]
    assert rec.key == e.key, (e.kind, rec.key)
    assert (rec.value or b"") == e.value, (e.kind, rec.value)
    if e.kind == "empty":
        assert rec.value == b"", "an empty value must stay empty (not null) when dead-lettered"
    n = len(e.headers)
    assert rec.headers[:n] == e.headers, (e.kind, rec.headers)
    h = hdict(rec.headers[n:])
    assert set(h) == {"luastream.error", "luastream.error.stage", "luastream.source.topic",
                      "luastream.source.partition", "luastream.source.offset"}, h
    assert all(len(v) == 1 for v in h.values()), h
    reason = h["luastream.error"][0].decode()
    assert reason, e.kind
    for w in words:
        assert w in reason, (e.kind, w, reason)
    if stage == "process" and e.kind != "fatal":
        assert f"errors_pipeline.lua:{ARITH_LINE}" in reason, reason
    assert h["luastream.error.stage"] == [stage.encode()], (e.kind, h)
    assert h["luastream.source.topic"] == [IN.encode()]
    assert h["luastream.source.partition"] == [str(e.partition).encode()]
    assert h["luastream.source.offset"] == [str(e.offset).encode()]


def dlq_by_source(recs):
    by = {}
    for r in recs:
        h = hdict(r.headers)
        k = (int(h["luastream.source.partition"][-1]), int(h["luastream.source.offset"][-1]))
        assert k not in by, f"dead-lettered twice: {k}"
        by[k] = r
    return by


def test_dead_letter_keeps_original_bytes_and_headers(broker_factory, run_app):
    """on_error=dead-letter: outputs are exactly the good rows; the dead-letter topic
    holds exactly the bad messages, with their original key, value and headers and
    luastream.error / .error.stage / .source.topic / .source.partition /
    .source.offset headers; every offset is committed; nothing is lost."""
    broker, launch = start(broker_factory, run_app, 2, "--set", "on_error=dead-letter")
    entries = produce_entries(broker.addr, two_partition_mix())
    end = end_offsets(broker.addr, IN)
    app = launch()
    wait_committed_to_end(broker.addr, GROUP, IN, 60, app=app)
    assert app.stop() == 0, app.stderr()

    assert output_set(read_all(broker.addr, OUT)) == expected_outputs(entries)
    dlq = dlq_by_source(read_all(broker.addr, DLQ))
    bads = [e for e in entries if e.kind not in ("good", "tombstone")]
    assert sorted(dlq) == sorted((e.partition, e.offset) for e in bads)
    for e in bads:
        check_dead_letter(dlq[(e.partition, e.offset)], e)
    assert committed(broker.addr, GROUP, IN) == end
    # Every input is accounted for: an output, a dead letter, or a tombstone.
    accounted = len(expected_outputs(entries)) + len(dlq) + sum(e.kind == "tombstone" for e in entries)
    assert accounted == len(entries) == sum(end.values())
    assert app.stats() == (len(entries), len(expected_outputs(entries)), 0, len(bads))


@pytest.mark.parametrize("kind", ["lua-string", "bad-json", "nan"])
def test_stop_exits_1_and_commits_up_to_the_bad_message(broker_factory, run_app, kind):
    """on_error=stop (the script's default) on a single partition: exit code 1, stderr
    names the bad offset and stage, the committed offset is the bad message's offset,
    and the outputs are exactly the rows before it."""
    broker, launch = start(broker_factory, run_app, 1)
    entries = produce_entries(broker.addr, [good(i) for i in range(1, 11)] + [bad(kind)] +
                              [good(i) for i in range(11, 21)])
    bad_e = entries[10]
    assert bad_e.offset == 10
    app = launch()
    rc = app.wait(60)
    err = app.stderr()
    assert rc == 1, err
    line = error_line(err, bad_e)
    stage = BAD[kind][4]
    assert f"{stage} error" in line, line
    if stage == "process":
        assert f"errors_pipeline.lua:{ARITH_LINE}" in line, line
    assert committed(broker.addr, GROUP, IN) == {0: 10}
    assert output_set(read_all(broker.addr, OUT)) == expected_outputs(entries[:10])
    assert read_all(broker.addr, DLQ) == []
    # It says how to get past the record.
    assert "to get past it: fix the pipeline and run again (or save it under --watch), or skip " \
           "bad records (--set on_error=skip), or send them to a dead-letter topic (--set " \
           "on_error=dead-letter --set dead_letter=TOPIC)" in err, err


def test_on_error_function_chooses_per_error(broker_factory, run_app):
    """on_error = function(err, row, msg): skip for a string n, dead-letter for a missing
    n, decode and encode errors, stop for a 'fatal row'. Each choice is applied; the
    function gets the row (nil for decode errors) and msg.topic/key/partition/offset;
    the stop commits up to the fatal row and exits 1."""
    broker, launch = start(broker_factory, run_app, 1, env={"E2E_POLICY_FN": "1"})
    entries = produce_entries(broker.addr, (
        [good(i) for i in range(1, 6)] + [bad("lua-string")] + [good(i) for i in range(6, 9)] +
        [bad("lua-nil"), bad("bad-json")] + [good(i) for i in range(9, 11)] +
        [bad("nan"), tombstone()] + [good(i) for i in range(11, 13)] + [bad("fatal")] +
        [good(i) for i in range(13, 15)]))
    fatal = next(e for e in entries if e.kind == "fatal")
    app = launch()
    rc = app.wait(60)
    err = app.stderr()
    assert rc == 1, err
    line = error_line(err, fatal)
    assert "fatal row 199" in line and f"errors_pipeline.lua:{FATAL_LINE}" in line, line

    before = [e for e in entries if e.offset < fatal.offset]
    assert output_set(read_all(broker.addr, OUT)) == expected_outputs(before)
    assert committed(broker.addr, GROUP, IN) == {0: fatal.offset}
    dlq = dlq_by_source(read_all(broker.addr, DLQ))
    dead = [e for e in entries if e.kind in ("lua-nil", "bad-json", "nan")]
    assert sorted(dlq) == sorted((0, e.offset) for e in dead)
    for e in dead:
        check_dead_letter(dlq[(0, e.offset)], e)

    # One call per bad message (decode errors of a batch are handled before its rows
    # run, so the calls are compared in offset order).
    calls = on_error_calls(app)
    want = [("skip", "lua-string"), ("dead-letter", "lua-nil"), ("dead-letter", "bad-json"),
            ("dead-letter", "nan"), ("stop", "fatal")]
    assert [(c[1], c[6]) for c in calls] == [
        (choice, "-" if BAD[k][4] == "decode" else str(BAD[k][0])) for choice, k in want], calls
    by_kind = {e.kind: e for e in entries}
    for c, (_, k) in zip(calls, want):
        e = by_kind[k]
        assert c[2] == IN and c[4] == "0" and c[5] == str(e.offset), c
        assert c[3] == e.key.decode(), c
        for w in BAD[k][5]:
            assert w in c[9], c


def on_error_calls(app):
    """The on_error function's printed calls, in offset order: [_, choice, topic, key,
    partition, offset, row id, header count, first header, err]."""
    return sorted((ln.split("|", 9) for ln in app.stdout().splitlines()
                   if ln.startswith("on_error|")), key=lambda c: int(c[5]))


def test_on_error_function_msg_has_headers(broker_factory, run_app):
    """The msg given to an on_error function has the message's headers like the msg of
    row functions (docs/api.md: `{ {name, value}, ... }`, an empty table when there
    are none)."""
    broker, launch = start(broker_factory, run_app, 1, env={"E2E_POLICY_FN": "1"})
    entries = produce_entries(broker.addr, [bad("lua-string"), bad("lua-nil"), good(1)])
    app = launch()
    wait_committed_to_end(broker.addr, GROUP, IN, 60, app=app)
    assert app.stop() == 0, app.stderr()
    assert output_set(read_all(broker.addr, OUT)) == expected_outputs(entries)
    calls = on_error_calls(app)
    assert [(c[1], c[5]) for c in calls] == [("skip", "0"), ("dead-letter", "1")], calls
    assert (calls[0][7], calls[0][8]) == ("1", "trace=t-101"), \
        f"msg.headers of a message with one header: count {calls[0][7]}, first {calls[0][8]}"
    assert (calls[1][7], calls[1][8]) == ("0", "-"), \
        f"msg.headers of a message without headers: count {calls[1][7]}"


def test_replayed_batch_does_not_repeat_in_place_steps(broker_factory, run_app):
    """A batch that fails is replayed row by row; rows of that batch that had already
    gone through in-place steps (column assignment, update) must not go through them
    twice: every good row comes out with n + 1 and seen = 1, whatever its position
    relative to the bad row (scripts/inplace_then_fail.lua, on_error = skip)."""
    broker = broker_factory({"inplace-in": 1, "inplace-out": 4})
    recs = ([(f"k{i}".encode(), json.dumps({"id": i, "n": i}).encode(), None) for i in range(1, 11)] +
            [(b"kbad", b'{"id": 99, "n": "abc"}', None)] +
            [(f"k{i}".encode(), json.dumps({"id": i, "n": i}).encode(), None) for i in range(11, 21)])
    produce(broker.addr, "inplace-in", recs)
    app = run_app(SCRIPTS / "inplace_then_fail.lua", broker.addr)
    wait_committed_to_end(broker.addr, "inplace-e2e", "inplace-in", 60, app=app)
    assert app.stop() == 0, app.stderr()
    got = sorted((jloads(r.value) for r in read_all(broker.addr, "inplace-out")),
                 key=lambda v: v["id"])
    assert [v["id"] for v in got] == list(range(1, 21))
    wrong = [v for v in got if v != {"id": v["id"], "n": v["id"] + 1, "m": (v["id"] + 1) * 10,
                                     "seen": 1}]
    assert not wrong, f"in-place steps applied more than once: {wrong}"
    assert "inplace-in[0]@10:" in app.stderr()
