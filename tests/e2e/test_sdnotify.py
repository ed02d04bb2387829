"""The systemd notification protocol, through a NOTIFY_SOCKET the test owns.

`luastream run` under a service manager (packaging/luastream@.service,
docs/edge.md) gets NOTIFY_SOCKET and WATCHDOG_USEC in its environment. These
tests bind that datagram socket themselves and read what the process sends:
READY=1 once it runs, WATCHDOG=1 from its loop at most once per half of
WATCHDOG_USEC (with the counts as STATUS=), no pings while the loop is held
up, STOPPING=1 when it stops. scripts/stall_row.lua holds its loop for as
long as a row asks.
"""

import json
import socket
import threading
import time

from conftest import SCRIPTS, produce, wait_count, wait_until

SCRIPT = SCRIPTS / "stall_row.lua"
NAME = "stall-row"


class NotifySocket:
    """A bound AF_UNIX datagram socket; .messages is [(monotonic s, text)]."""

    def __init__(self, path):
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self.sock.recv(4096)
            except socket.timeout:
                continue
            with self._lock:
                self.messages.append((time.monotonic(), data.decode()))

    def snapshot(self):
        with self._lock:
            return list(self.messages)

    def pings(self):
        return [(t, m) for t, m in self.snapshot() if m.startswith("WATCHDOG=1\n")]

    def close(self):
        self._stop = True
        self._thread.join()
        self.sock.close()


def start(broker_factory, run_app, tmp_path, watchdog_usec):
    broker = broker_factory({"in": 2, "out": 2})
    notify = NotifySocket(tmp_path / "notify")
    app = run_app(SCRIPT, broker.addr, env={"NOTIFY_SOCKET": notify.path,
                                             "WATCHDOG_USEC": str(watchdog_usec)})
    return broker, notify, app


def status(msg):
    lines = [l for l in msg.split("\n") if l.startswith("STATUS=")]
    assert len(lines) == 1, msg
    return lines[0][len("STATUS="):]


def test_ready_pings_with_counts_and_stopping(broker_factory, run_app, tmp_path):
    """READY=1 first, then WATCHDOG=1 pings never closer than half the interval
    nor further apart than the interval, whose STATUS= counts reach the exact
    totals, and STOPPING=1 last."""
    broker, notify, app = start(broker_factory, run_app, tmp_path, 2_000_000)
    try:
        wait_until(lambda: notify.snapshot(), 30, "the first notification", app=app)
        produce(broker.addr, "in", [(f"k{i % 5}", json.dumps({"x": i}), None) for i in range(100)])
        wait_count(broker.addr, "out", 100, 60, app=app)
        # Two more pings after the outputs: the second one was sent after they were counted.
        seen = len(notify.pings())
        wait_until(lambda: len(notify.pings()) >= seen + 2, 30, "two more pings", app=app)
        assert app.stop() == 0, app.stderr()
        wait_until(lambda: notify.snapshot()[-1][1].startswith("STOPPING=1\n"), 5, "STOPPING=1")
    finally:
        notify.close()
    msgs = notify.snapshot()
    assert msgs[0][1] == f"READY=1\nSTATUS={NAME}: running\n"
    assert msgs[-1][1] == f"STOPPING=1\nSTATUS={NAME}: stopping\n"
    middle = [m for _, m in msgs[1:-1]]
    assert middle and all(m.startswith("WATCHDOG=1\nSTATUS=") for m in middle), middle
    assert status(middle[-1]) == f"{NAME}: 100 messages in, 100 records out"
    times = [t for t, _ in notify.pings()]
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(gaps) >= 2, msgs
    # Rate limit: one ping per half interval (1 s; a little slack for delivery).
    assert min(gaps) >= 0.9, gaps
    # What systemd checks: never a whole interval without a ping while the loop turns.
    assert max(gaps) < 2.0, gaps
    assert app.stats()[:2] == (100, 100)


def test_a_held_up_loop_stops_the_pings(broker_factory, run_app, tmp_path):
    """A row function busy for 3 s: no ping for 3 s (longer than the 1 s
    WATCHDOG_USEC, so systemd would restart the process), then pings again
    once the loop turns, and the rows all come out."""
    broker, notify, app = start(broker_factory, run_app, tmp_path, 1_000_000)
    try:
        wait_until(lambda: len(notify.pings()) >= 2, 30, "two pings", app=app)
        produce(broker.addr, "in", [("a", json.dumps({"x": 1}), None),
                                    ("a", json.dumps({"x": 2, "stall": 3}), None),
                                    ("a", json.dumps({"x": 3}), None)], partition=0)
        recs = wait_count(broker.addr, "out", 3, 60, app=app)
        seen = len(notify.pings())
        wait_until(lambda: len(notify.pings()) >= seen + 2, 30, "pings after the stall", app=app)
        assert app.stop() == 0, app.stderr()
    finally:
        notify.close()
    assert [json.loads(r.value)["x"] for r in recs] == [1, 2, 3]
    times = [t for t, _ in notify.pings()]
    gaps = [b - a for a, b in zip(times, times[1:])]
    long_gaps = [g for g in gaps if g >= 2.9]
    assert len(long_gaps) == 1, gaps
    # Pings came before the stall and went on after it.
    i = gaps.index(long_gaps[0])
    assert i >= 1 and len(gaps[i + 1:]) >= 2, gaps
