"""--http: Prometheus metrics with exact counts for a known input (bad rows
included), and the /health and /ready probes, on scripts/state_count.lua."""

import json
import socket
import urllib.error
import urllib.request

from conftest import wait_committed_to_end, wait_until
from test_state import IN, OUT, SCRIPT, produce, rows, topics


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
