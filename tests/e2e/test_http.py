"""--http: Prometheus metrics with exact counts for a known input (bad rows
included), the consumer lag, the /health and /ready probes and state queries,
on scripts/state_count.lua and scripts/hold_row.lua."""

import json
import re
import socket
import time
import urllib.error
import urllib.request

from confluent_kafka import Producer

from conftest import SCRIPTS, read_all, wait_committed_to_end, wait_count, wait_until
from test_state import IN, KEYS, OUT, SCRIPT, produce, rows, topics

HOLD = SCRIPTS / "hold_row.lua"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def get(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def samples(text):
    """{'name{labels}': value} of the exposition's sample lines."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            out[key] = float(value)
    return out


def test_metrics_count_known_input_and_bad_rows(broker_factory, run_app):
    app_name = "http-metrics"
    broker = broker_factory(topics(app_name))
    bad_json = [(b"k1", b"{oops", None)] * 2
    bad_row = [(b"k2", b'{"x": "not a number"}', None)] * 3
    produce(broker.addr, IN, rows(0, 200) + bad_json + bad_row)
    port = free_port()
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--http", f"127.0.0.1:{port}",
                  "--set", "on_error=skip", "--set", "commit_interval=0.5")
    wait_until(lambda: get(port, "/health")[0] == 200, 20, "/health 200", app=app)
    # The loop turns before the group has assigned anything (the join takes seconds).
    assert get(port, "/ready") == (503, "not ready: partitions not assigned or state not restored\n")
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)
    wait_until(lambda: get(port, "/ready")[0] == 200, 20, "/ready 200", app=app)
    status, text = get(port, "/metrics")
    assert status == 200
    m = samples(text)
    ins = {k: v for k, v in m.items() if k.startswith("luastream_messages_in_total{")}
    assert sum(ins.values()) == 205, ins
    assert all(f'topic="{IN}"' in k for k in ins)
    assert m[f'luastream_messages_out_total{{topic="{OUT}"}}'] == 200
    assert m['luastream_errors_total{stage="decode",action="skip"}'] == 2
    assert m['luastream_errors_total{stage="process",action="skip"}'] == 3
    assert m["luastream_batch_seconds_count"] >= 1
    assert m['luastream_batch_seconds_bucket{le="+Inf"}'] == m["luastream_batch_seconds_count"]
    assert m["luastream_checkpoint_seconds_count"] >= 1
    # published every 5 s: n and sum of 20 keys
    wait_until(lambda: samples(get(port, "/metrics")[1]).get('luastream_state_keys{store="counts"}') == 40,
               15, "state keys 40", app=app)
    assert m["process_resident_memory_bytes"] > 1e6
    assert m["process_cpu_seconds_total"] > 0
    assert get(port, "/nope")[0] == 404
    assert app.stop() == 0, app.stderr()
    assert get(port, "/health")[0] is None  # gone with the process


def test_http_address_in_use_is_an_error_at_start(broker_factory, run_app):
    broker = broker_factory(topics("http-busy"))
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    try:
        app = run_app(SCRIPT, broker.addr, "--name", "http-busy", "--http", f"127.0.0.1:{s.getsockname()[1]}")
        assert app.wait(30) == 2, app.stderr()
        assert "--http 127.0.0.1:" in app.stderr() and "cannot listen" in app.stderr()
    finally:
        s.close()


def test_state_query_returns_a_keys_checkpointed_state(broker_factory, run_app):
    """/state/<store>?key=K: the key's state as JSON (as of the last checkpoint),
    404 for an absent key or store, 400 without a key."""
    app_name = "http-state"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 100))  # k0..k19, x = 0..99: k3 has 3, 23, 43, 63, 83
    port = free_port()
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--http", str(port),
                  "--set", "commit_interval=0.3")
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)

    def k3():
        status, body = get(port, "/state/counts?key=k3")
        return status == 200 and json.loads(body) == {"n": 5, "sum": 3 + 23 + 43 + 63 + 83}
    wait_until(k3, 20, "k3's state", app=app)
    status, body = get(port, "/state/counts?key=nobody")
    assert status in (404, 421) and "no state for key 'nobody'" in body, (status, body)
    assert get(port, "/state/nostore?key=k3")[0] == 404
    assert get(port, "/state/counts")[0] == 400
    assert app.stop() == 0, app.stderr()


def test_http_app_option_and_bad_values(broker_factory, run_app):
    """The app option http (here through --set) starts the endpoint; a value
    that is not PORT, :PORT or HOST:PORT is refused at load (exit 2)."""
    broker = broker_factory(topics("http-opt"))
    port = free_port()
    app = run_app(SCRIPT, broker.addr, "--name", "http-opt", "--set", f"http=127.0.0.1:{port}")
    wait_until(lambda: get(port, "/health")[0] == 200, 20, "/health 200", app=app)
    assert app.stop() == 0, app.stderr()
    bad = run_app(SCRIPT, broker.addr, "--name", "http-opt", "--set", "http=not a port")
    assert bad.wait(30) == 2, bad.stderr()
    assert "option 'http' must be PORT, :PORT or HOST:PORT" in bad.stderr()


def lags(port, topic="in"):
    """{partition: value} of luastream_consumer_lag for topic, or None."""
    status, text = get(port, "/metrics")
    if status != 200:
        return None
    out = {}
    for key, value in samples(text).items():
        m = re.fullmatch(r'luastream_consumer_lag\{topic="' + topic + r'",partition="(\d+)"\}', key)
        if m:
            out[int(m.group(1))] = value
    return out


def held_rows(first, n, hold):
    """{"x": i} for i in first..first+n-1, keyed "a"; the row x == hold holds the loop."""
    return [(b"a", json.dumps({"x": i, "hold": True} if i == hold else {"x": i}).encode(), None)
            for i in range(first, first + n)]


def test_consumer_lag_is_exact_and_health_fails_after_60_s_without_a_turn(broker_factory, run_app,
                                                                          tmp_path):
    """luastream_consumer_lag{topic,partition} is the high watermark minus the
    next offset to consume, read when /metrics is served. scripts/hold_row.lua
    takes one message per batch and holds its loop on a row: the lag is then
    exactly the messages after it. A partition with nothing in it has lag 0,
    and so has, after a restart, a partition nothing new was written to (its
    committed offset, not its beginning). /health turns 503 once the loop has
    not turned for 60 s, and 200 again when it turns."""
    broker = broker_factory({"in": 2, "out": 2})
    release = tmp_path / "release"
    env = {"E2E_RELEASE": str(release)}
    produce(broker.addr, "in", held_rows(0, 10, hold=3), partition=0)  # offsets 0..9, held at 3
    port = free_port()
    started = time.monotonic()
    app = run_app(HOLD, broker.addr, "--http", f"127.0.0.1:{port}", env=env)
    wait_until(lambda: lags(port) == {0: 6, 1: 0}, 30, "lag {0: 6, 1: 0} while held at offset 3", app=app)
    assert get(port, "/health") == (200, "ok\n")
    wait_until(lambda: get(port, "/health")[0] == 503, 90, "/health 503", interval=0.5, app=app)
    assert time.monotonic() - started >= 60
    assert get(port, "/health") == (503, "the loop has not turned recently\n")
    assert lags(port) == {0: 6, 1: 0}  # served by its own thread all along
    release.touch()
    wait_until(lambda: get(port, "/health")[0] == 200, 10, "/health 200 after the hold", app=app)
    wait_until(lambda: lags(port) == {0: 0, 1: 0}, 20, "lag 0 once caught up", app=app)
    assert len(wait_count(broker.addr, "out", 10, 30, app=app)) == 10
    assert app.stop() == 0, app.stderr()

    # Restarted: partition 0 committed 10 of 10 and gets nothing new;
    # partition 1 gets 4 messages, held at its offset 1.
    release.unlink()
    produce(broker.addr, "in", held_rows(10, 4, hold=11), partition=1)
    app = run_app(HOLD, broker.addr, "--http", f"127.0.0.1:{port}", env=env)
    wait_until(lambda: lags(port) == {0: 0, 1: 2}, 30, "lag {0: 0, 1: 2} after the restart", app=app)
    release.touch()
    wait_until(lambda: lags(port) == {0: 0, 1: 0}, 20, "lag 0 after the restart", app=app)
    assert len(wait_count(broker.addr, "out", 14, 30, app=app)) == 14
    assert app.stop() == 0, app.stderr()


def test_ready_through_a_restart_that_restores_state(broker_factory, run_app):
    """/ready says 503 until the partitions are assigned and their state
    restored, then 200: an instance with an empty state dir rebuilds every
    key from the changelog, and the first 200 finds them all there."""
    app_name = "http-restore"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 100))  # k0..k19, five each
    port = free_port()
    first = run_app(SCRIPT, broker.addr, "--name", app_name, "--http", f"127.0.0.1:{port}",
                    "--set", "commit_interval=0.3")
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=first)
    assert first.stop() == 0, first.stderr()

    second = run_app(SCRIPT, broker.addr, "--name", app_name, "--http", f"127.0.0.1:{port}")  # a new state dir
    seen = []

    def ready():
        status = get(port, "/ready")[0]
        if status is not None and (not seen or seen[-1] != status):
            seen.append(status)
        return status == 200
    wait_until(ready, 60, "/ready 200", interval=0.02, app=second)
    answers = {f"k{j}": get(port, f"/state/counts?key=k{j}") for j in range(KEYS)}
    assert seen == [503, 200]
    assert {k: (s, json.loads(b)) for k, (s, b) in answers.items()} == {
        f"k{j}": (200, {"n": 5, "sum": sum(range(j, 100, KEYS))}) for j in range(KEYS)}
    assert re.search(r"state counts: replayed \d+ changelog records of 4 partitions \(\d+ applied\)",
                     second.stderr()), second.stderr()
    assert second.stop() == 0, second.stderr()


def test_state_query_answers_the_last_checkpoint_not_the_live_value(broker_factory, run_app):
    """/state/<store>?key=K reads what the last checkpoint wrote: rows
    processed since do not show until the next one (here every 100 messages)."""
    app_name = "http-ckpt"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 100))
    port = free_port()
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--http", f"127.0.0.1:{port}",
                  "--set", "commit_interval=3600", "--set", "commit_every=100")

    def k3():
        status, body = get(port, "/state/counts?key=k3")
        return json.loads(body) if status == 200 else None
    first = {"n": 5, "sum": 3 + 23 + 43 + 63 + 83}
    wait_until(lambda: k3() == first, 60, "k3 at the first checkpoint", app=app)

    produce(broker.addr, IN, [(b"k3", json.dumps({"x": 1000}).encode(), None)] * 5)

    def processed():
        m = samples(get(port, "/metrics")[1])
        return (sum(v for k, v in m.items() if k.startswith("luastream_messages_in_total{")) == 105 and
                m.get(f'luastream_messages_out_total{{topic="{OUT}"}}') == 105)
    wait_until(processed, 30, "105 messages processed", app=app)
    live = [json.loads(r.value) for r in read_all(broker.addr, OUT) if r.key == b"k3"]
    assert max(r["n"] for r in live) == 10  # the live state
    assert k3() == first  # the checkpoint's

    produce(broker.addr, IN, rows(100, 95))  # 100 since the checkpoint: the next one
    second = {"n": 15, "sum": first["sum"] + 5000 + 103 + 123 + 143 + 163 + 183}
    wait_until(lambda: k3() == second, 60, "k3 at the second checkpoint", app=app)
    assert app.stop() == 0, app.stderr()


def test_state_query_names_the_partition_of_another_instance(broker_factory, run_app):
    """Two instances share the input: a key's state is answered by the one
    that owns its partition; the other says 421 and names the partition (the
    producer here partitions with murmur2, as the runtime's does)."""
    app_name = "http-two"
    broker = broker_factory(topics(app_name))
    producer = Producer({"bootstrap.servers": broker.addr, "partitioner": "murmur2_random"})
    part_of = {}

    def delivered(err, msg):
        assert err is None, err
        part_of[msg.key().decode()] = msg.partition()
    for key, value, _ in rows(0, 100):
        producer.produce(IN, value=value, key=key, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert sorted(set(part_of.values())) != [part_of["k0"]]  # the keys are spread
    ports = [free_port(), free_port()]
    apps = [run_app(SCRIPT, broker.addr, "--name", app_name, "--http", f"127.0.0.1:{p}",
                    "--set", "commit_interval=0.3") for p in ports]
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=apps[0])

    def answers():
        return {f"k{j}": [get(p, f"/state/counts?key=k{j}") for p in ports] for j in range(KEYS)}

    def expected(j, owner):
        k = f"k{j}"
        state = (200, {"n": 5, "sum": sum(range(j, 100, KEYS))})
        other = (421, f"no state for key '{k}' here: with murmur2 partitioning it is in partition "
                      f"{part_of[k]} of {IN}, which is not on this instance\n")
        return [state, other] if owner == 0 else [other, state]

    def settled():
        got = answers()
        for j in range(KEYS):
            owner = 0 if got[f"k{j}"][0][0] == 200 else 1
            if [(s, json.loads(b) if s == 200 else b) for s, b in got[f"k{j}"]] != expected(j, owner):
                return None
        return got
    got = wait_until(settled, 60, "each key answered by one instance, 421 from the other", app=apps[1])
    owners = {j: 0 if got[f"k{j}"][0][0] == 200 else 1 for j in range(KEYS)}
    assert set(owners.values()) == {0, 1}  # both hold some partitions
    for j in range(KEYS):  # a partition's keys are all on one instance
        assert all(owners[i] == owners[j] for i in range(KEYS) if part_of[f"k{i}"] == part_of[f"k{j}"])
    for a in apps:
        assert a.stop() == 0, a.stderr()


def test_window_late_rows_are_counted_per_store(broker_factory, run_app):
    """luastream_window_late_rows_total{store}: rows a window dropped as late
    (scripts/window_tumbling.lua: 1 s windows, grace 0.5 s, per key)."""
    broker = broker_factory({"in": 1, "out": 1})
    produce(broker.addr, "in", [(k, json.dumps({"ts": ts, "x": 1}), None) for k, ts in
                                [("a", 10000), ("a", 12000), ("a", 10100), ("a", 10200), ("b", 10000)]])
    port = free_port()
    app = run_app(SCRIPTS / "window_tumbling.lua", broker.addr, "--http", f"127.0.0.1:{port}")

    def late():
        got = {k: v for k, v in samples(get(port, "/metrics")[1]).items()
               if k.startswith("luastream_window_late_rows_total{")}
        return got if sum(got.values()) == 2 else None
    got = wait_until(late, 30, "2 late rows", app=app)  # published every 5 s
    stores = [k for k in samples(get(port, "/metrics")[1]) if k.startswith("luastream_state_keys{")]
    assert len(stores) == 1, stores  # the window's store, named as luastream_state_keys names it
    assert list(got) == [stores[0].replace("luastream_state_keys", "luastream_window_late_rows_total")]
    assert app.stdout().splitlines() == ["late a 10100", "late a 10200"]
    assert app.stop() == 0, app.stderr()
