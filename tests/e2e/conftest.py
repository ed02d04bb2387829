"""End-to-end harness: real `luastream` processes against the dev broker.

Every test gets its own dev broker (`luastream broker`, in its own process), so
tests never see each other's topics, groups or offsets. Helpers here produce
records with confluent_kafka, read topics back to their end, read committed
offsets, and start/stop `luastream run` subprocesses.

Run with Debian's Python (it has python3-confluent-kafka):

    /usr/bin/python3 -m pytest -q tests/e2e

The binary is $LUASTREAM, by default build/luastream.
"""

import json
import os
import pathlib
import re
import signal
import subprocess
import time
import uuid
from collections import namedtuple

import pytest
from confluent_kafka import (OFFSET_BEGINNING, Consumer, KafkaError, Producer,
                             TopicPartition)

ROOT = pathlib.Path(__file__).resolve().parents[2]
E2E_DIR = pathlib.Path(__file__).resolve().parent
SCRIPTS = E2E_DIR / "scripts"
EXAMPLES = ROOT / "examples"
LUASTREAM = os.environ.get("LUASTREAM", str(ROOT / "build" / "luastream"))

# librdkafka's "no committed offset" marker.
OFFSET_INVALID = -1001

Record = namedtuple("Record", "topic partition offset key value headers timestamp")


# --------------------------------------------------------------------------
# waiting


def wait_until(cond, timeout, what, interval=0.1, app=None):
    """Polls cond() until it returns a truthy value; fails after timeout seconds.

    When app is given and its process exits meanwhile, fails at once with its
    stderr (the condition can then never become true)."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = cond()
        if last:
            return last
        if app is not None and app.proc.poll() is not None:
            pytest.fail(
                f"luastream exited with {app.proc.returncode} while waiting for {what}\n"
                f"--- stderr ---\n{app.stderr()}"
            )
        if time.monotonic() > deadline:
            extra = f"\n--- stderr ---\n{app.stderr()}" if app is not None else ""
            pytest.fail(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)


# --------------------------------------------------------------------------
# the dev broker


class Broker:
    """A `luastream broker` process; .addr is its bootstrap address."""

    def __init__(self, workdir, topics):
        workdir.mkdir(parents=True, exist_ok=True)
        self.bootstrap_file = workdir / "bootstrap"
        self.stderr_path = workdir / "broker.stderr"
        args = [LUASTREAM, "broker", "--bootstrap-file", str(self.bootstrap_file)]
        for name, parts in topics.items():
            args += ["--topic", f"{name}:{parts}"]
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self._stderr,
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while not self.bootstrap_file.exists():
            if self.proc.poll() is not None:
                raise RuntimeError(f"luastream broker exited with {self.proc.returncode}: "
                                   f"{self.stderr_path.read_text(errors='replace')}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("luastream broker did not write its bootstrap file")
            time.sleep(0.02)
        self.addr = self.bootstrap_file.read_text().strip()
        # The first stdout line is the same address.
        self.printed_addr = self.proc.stdout.readline().decode().strip()
        self.topics = dict(topics)

    def stop(self):
        """SIGTERM, then SIGKILL after 5 s; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()
        if self.proc.stdout:
            self.proc.stdout.close()
        return self.proc.returncode


@pytest.fixture(scope="session")
def luastream_bin():
    if not (os.path.isfile(LUASTREAM) and os.access(LUASTREAM, os.X_OK)):
        pytest.fail(f"{LUASTREAM} is not built (cmake -S . -B build && cmake --build build), "
                    "or set LUASTREAM")
    return LUASTREAM


@pytest.fixture
def broker_factory(luastream_bin, tmp_path):
    """start(topics={name: partitions}) -> Broker; all are stopped at teardown."""
    started = []

    def start(topics=None):
        b = Broker(tmp_path / f"broker{len(started)}", topics or {})
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


# --------------------------------------------------------------------------
# Kafka helpers


def produce(addr, topic, records, partition=None, partitioner=None):
    """Produces records and waits for every acknowledgement.

    records: tuples (key, value, headers) or (key, value, headers, partition) or
    (key, value, headers, partition, timestamp_ms); key/value are bytes, str or
    None; headers a list of (name, bytes) or None. partitioner: librdkafka's
    (default consistent_random; "murmur2_random" places keys as the runtime's
    producer and Java clients do). Returns [(partition, offset)] in the order
    of records."""
    conf = {"bootstrap.servers": addr, "linger.ms": 5, "enable.idempotence": True,
            "message.timeout.ms": 20000}
    if partitioner:
        conf["partitioner"] = partitioner
    p = Producer(conf)
    results = [None] * len(records)
    errors = []

    def delivered(i):
        def cb(err, msg):
            if err is not None:
                errors.append(err)
            else:
                results[i] = (msg.partition(), msg.offset())
        return cb

    for i, rec in enumerate(records):
        key, value, headers = rec[0], rec[1], rec[2]
        part = rec[3] if len(rec) > 3 and rec[3] is not None else partition
        kwargs = {}
        if part is not None:
            kwargs["partition"] = part
        if len(rec) > 4 and rec[4] is not None:
            kwargs["timestamp"] = rec[4]
        if headers:
            kwargs["headers"] = headers
        while True:
            try:
                p.produce(topic, value=value, key=key, on_delivery=delivered(i), **kwargs)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    left = p.flush(30)
    assert left == 0, f"{left} records to {topic} were not acknowledged"
    assert not errors, f"producing to {topic} failed: {errors[:3]}"
    return results


def _consumer(addr, group=None, **extra):
    conf = {
        "bootstrap.servers": addr,
        "group.id": group or f"e2e-reader-{uuid.uuid4().hex}",
        "enable.auto.commit": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
    }
    conf.update(extra)
    return Consumer(conf)


def partitions(addr, topic):
    """The partition ids of topic ([] when it does not exist)."""
    c = _consumer(addr)
    try:
        md = c.list_topics(topic, timeout=10)
        t = md.topics.get(topic)
        if t is None or t.error is not None:
            return []
        return sorted(t.partitions)
    finally:
        c.close()


def read_all(addr, topic, timeout=20):
    """Every record of topic, from the beginning to the current end of every
    partition, sorted by (partition, offset)."""
    parts = partitions(addr, topic)
    if not parts:
        return []
    c = _consumer(addr)
    out = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        at_eof = set()
        deadline = time.monotonic() + timeout
        while len(at_eof) < len(parts):
            if time.monotonic() > deadline:
                raise AssertionError(f"reading {topic}: no end of partition for "
                                     f"{sorted(set(parts) - at_eof)} within {timeout} s")
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                if m.error().code() == KafkaError._PARTITION_EOF:
                    at_eof.add(m.partition())
                    continue
                raise AssertionError(f"reading {topic}: {m.error()}")
            at_eof.discard(m.partition())
            out.append(Record(m.topic(), m.partition(), m.offset(), m.key(), m.value(),
                              m.headers() or [], m.timestamp()[1]))
    finally:
        c.close()
    out.sort(key=lambda r: (r.partition, r.offset))
    return out


def end_offsets(addr, topic):
    """{partition: high watermark}."""
    c = _consumer(addr)
    try:
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions(addr, topic)}
    finally:
        c.close()


def committed(addr, group, topic):
    """{partition: committed offset} of group on topic (OFFSET_INVALID when none)."""
    parts = partitions(addr, topic)
    c = _consumer(addr, group=group)
    try:
        got = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return {tp.partition: tp.offset for tp in got}
    finally:
        c.close()


def wait_committed_to_end(addr, group, topic, timeout, app=None):
    """Waits until group's committed offsets equal the end of every partition."""
    def done():
        end = end_offsets(addr, topic)
        got = committed(addr, group, topic)
        return got == end and got
    return wait_until(done, timeout, f"group {group} to commit the end of {topic}",
                      interval=0.3, app=app)


def held(app, topic):
    """The partitions of topic the app holds now, as its log tells: what its
    "partitions assigned" lines gave, less what later "revoked"/"lost" lines
    took back."""
    cur = set()
    for kind, desc in re.findall(r"partitions (assigned|revoked|lost): (.*)", app.stderr()):
        parts = {int(p) for m in re.findall(rf"(?<![\w.-]){re.escape(topic)}\[([\d,]+)\]", desc)
                 for p in m.split(",")}
        cur = cur | parts if kind == "assigned" else cur - parts
    return cur


def wait_held(apps, topic, nparts, timeout):
    """Waits until the apps between them hold every partition of topic, each
    partition once, each app some: the group's rebalance is over for all of
    them. (The dev broker can take several rounds to let a member in, and it
    refuses commits while a round is open: records processed then are
    processed again after it.) Returns each app's partitions."""
    def done():
        sets = [held(a, topic) for a in apps]
        whole = set().union(*sets)
        return all(sets) and sum(map(len, sets)) == nparts and whole == set(range(nparts)) and sets
    return wait_until(done, timeout, f"{len(apps)} instance(s) to hold the {nparts} partitions of {topic}",
                      app=apps[-1])


def wait_count(addr, topic, n, timeout, app=None):
    """Waits until topic holds at least n records; returns them."""
    box = {}

    def enough():
        box["recs"] = read_all(addr, topic)
        return len(box["recs"]) >= n
    wait_until(enough, timeout, f"{n} records on {topic}", interval=0.3, app=app)
    return box["recs"]


def hdict(headers):
    """Headers as {name: [values...]} (names may repeat)."""
    d = {}
    for k, v in headers:
        d.setdefault(k, []).append(v)
    return d


def jloads(b):
    return json.loads(b.decode("utf-8")) if b is not None else None


# --------------------------------------------------------------------------
# luastream run


class App:
    """A `luastream run` subprocess with stdout/stderr captured to files."""

    def __init__(self, workdir, script, broker=None, args=(), env=None):
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.out_path = workdir / "stdout"
        self.err_path = workdir / "stderr"
        cmd = [LUASTREAM, "run", str(script)]
        if broker is not None:
            cmd += ["--broker", broker]
        cmd += ["--state-dir", str(workdir / "state")]
        cmd += list(args)
        self.cmd = cmd
        full_env = dict(os.environ)
        full_env.pop("LUASTREAM_BROKER", None)
        full_env.update(env or {})
        self._out = open(self.out_path, "wb")
        self._err = open(self.err_path, "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=self._out, stderr=self._err,
                                     stdin=subprocess.DEVNULL, cwd=workdir, env=full_env)
        self.stop_seconds = None

    def stdout(self):
        return self.out_path.read_text(errors="replace")

    def stderr(self):
        return self.err_path.read_text(errors="replace")

    def wait(self, timeout):
        """Waits for the process to exit on its own; returns the exit code."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"luastream did not exit within {timeout} s\n--- stderr ---\n{self.stderr()}")
        self._close()
        return rc

    def stop(self, timeout=15, sig=signal.SIGTERM):
        """Sends sig and waits; records how long the exit took; returns the exit code."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"luastream did not exit within {timeout} s of signal {sig}\n"
                        f"--- stderr ---\n{self.stderr()}")
        self.stop_seconds = time.monotonic() - t0
        self._close()
        return rc

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self):
        for f in (self._out, self._err):
            if not f.closed:
                f.close()

    def stats(self):
        """(messages in, records out, skipped, dead-lettered) from the final log line."""
        m = re.search(r"stopped: (\d+) messages in, (\d+) records out, (\d+) skipped, "
                      r"(\d+) dead-lettered", self.stderr())
        assert m, f"no 'stopped:' summary on stderr:\n{self.stderr()}"
        return tuple(int(x) for x in m.groups())


@pytest.fixture
def run_app(luastream_bin, tmp_path):
    """run_app(script, broker_addr, *args, env={}) -> App; killed at teardown if still running."""
    apps = []

    def start(script, broker=None, *args, env=None):
        app = App(tmp_path / f"app{len(apps)}", script, broker, args, env)
        apps.append(app)
        return app

    yield start
    for a in apps:
        a.kill()


def run_cli(*args, timeout=30, cwd=None, env=None):
    """Runs `luastream ARGS...` to completion: CompletedProcess with text output."""
    full_env = dict(os.environ)
    full_env.pop("LUASTREAM_BROKER", None)
    full_env.update(env or {})
    return subprocess.run([LUASTREAM, *args], capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=full_env, stdin=subprocess.DEVNULL)


def line_of(path, marker):
    """The 1-based line number of the first line of path containing marker."""
    for i, line in enumerate(pathlib.Path(path).read_text().splitlines(), 1):
        if marker in line:
            return i
    raise AssertionError(f"{marker!r} not found in {path}")
