"""Exactly-once mode (`--set guarantee=exactly-once`) against the dev broker.

The dev broker (librdkafka's mock cluster) accepts transactions but does not
enforce them:
  - it does not track the last stable offset: records of an open or aborted
    transaction are readable by a read_committed consumer too, so reading the
    outputs with isolation.level=read_committed cannot by itself prove that the
    transactions were committed;
  - offsets sent in a transaction (send_offsets_to_transaction) are discarded:
    after an exactly-once run the group's committed offsets are those of its
    last non-transactional commit (or none), and a restart re-reads from there;
  - zombies are not fenced.
So these tests check the protocol path (transactional producer, read_committed
consumer, transactional checkpoints, changelog replay) and what the mock makes
deterministic; the crash-and-restart guarantees need a real Kafka. The last
tests make the dev broker fail chosen requests mid-stream (its fault injection)
to check the abort-and-rewind path and the fatal path.

The pipeline is scripts/state_count.lua (see test_state.py): every input
{"x": i} keyed "k<i % 20>" becomes {key, x, n, sum} with the key's running
count and sum, kept in the store "counts" (changelog <app>__counts__changelog).
"""

import re
import signal
import struct
import subprocess
import time
from collections import Counter, defaultdict

import pytest
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from conftest import (LUASTREAM, OFFSET_INVALID, _consumer, committed, end_offsets, hdict,
                      partitions, produce, read_all, run_cli, wait_until)
from test_state import (IN, KEYS, OUT, PARTS, SCRIPT, changelog, check_exactly_once,
                        check_final_state, env, outputs, reference, replayed, rows, topics)

EOS = ("--set", "guarantee=exactly-once")
OFFSET_HEADER = "luastream.input.offset"


def read_isolated(addr, topic, isolation, timeout=20):
    """[(partition, offset, key, value)] of topic read from the beginning to the
    end of every partition by a consumer with isolation.level=isolation."""
    parts = partitions(addr, topic)
    c = _consumer(addr, **{"isolation.level": isolation})
    out = []
    try:
        c.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in parts])
        at_eof = set()
        deadline = time.monotonic() + timeout
        while len(at_eof) < len(parts):
            assert time.monotonic() < deadline, \
                f"{isolation} read of {topic}: no end of {sorted(set(parts) - at_eof)}"
            m = c.poll(0.2)
            if m is None:
                continue
            if m.error():
                assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
                at_eof.add(m.partition())
                continue
            at_eof.discard(m.partition())
            out.append((m.partition(), m.offset(), m.key(), m.value()))
    finally:
        c.close()
    return sorted(out)


def n_outputs(addr):
    return sum(end_offsets(addr, OUT).values())


def wait_outputs(addr, n, app, timeout=60):
    """Waits until OUT holds n records, then a moment more to see that no
    further ones come. With the transactional offsets discarded by the dev
    broker, the group's committed offsets cannot tell when the input is done."""
    wait_until(lambda: n_outputs(addr) >= n, timeout, f"{n} records on {OUT}",
               interval=0.2, app=app)
    time.sleep(1.0)
    assert n_outputs(addr) == n, f"more than {n} records on {OUT}"


def clean_stop(app):
    """SIGTERM: exit 0, and no warning or error on stderr (neither luastream's
    nor librdkafka's)."""
    assert app.stop() == 0, app.stderr()
    err = app.stderr()
    assert not re.search(r"^\S+ (warn|error)", err, re.M), err
    assert not re.search(r"^%[0-4]\|", err, re.M), err
    assert "exactly-once:" not in err, err
    return err


def mp_int(b):
    """A MessagePack integer (all the counting script stores)."""
    t = b[0]
    if t <= 0x7f:
        return t
    if t >= 0xe0:
        return t - 0x100
    fmt = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q",
           0xd0: ">b", 0xd1: ">h", 0xd2: ">i", 0xd3: ">q"}[t]
    (v,) = struct.unpack(fmt, b[1:])
    return v


def state_key(k):
    """A changelog key: 2-byte big-endian length of the message key, the
    message key, the state key. -> (message key, state key)."""
    (n,) = struct.unpack(">H", k[:2])
    return k[2:2 + n].decode(), k[2 + n:].decode()


# --------------------------------------------------------------------------


def test_exactly_once_run_outputs_each_input_once(broker_factory, run_app):
    """2000 keyed inputs in two batches (the second while the app runs, so
    several transactions commit), exactly-once, commit_interval 0.2 s: every
    input has exactly one output, each key's outputs count 1..n with running
    sums; exit 0 on SIGTERM with a clean stderr; a read_committed consumer reads
    all 2000 outputs, and the same ones as a read_uncommitted consumer (on the
    dev broker, which tracks no last stable offset, read_committed sees open
    transactions too, so this checks the consumer path, not the commit)."""
    app_name = "eo-once"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 1000))
    app = run_app(SCRIPT, broker.addr, "--name", app_name, *EOS,
                  "--set", "commit_interval=0.2")
    wait_outputs(broker.addr, 1000, app)
    produce(broker.addr, IN, rows(1000, 1000))
    wait_outputs(broker.addr, 2000, app)
    clean_stop(app)
    assert app.stats() == (2000, 2000, 0, 0), app.stderr()

    committed_recs = read_isolated(broker.addr, OUT, "read_committed")
    assert committed_recs == read_isolated(broker.addr, OUT, "read_uncommitted")
    assert len(committed_recs) == 2000
    outs = outputs(broker.addr)
    assert len({p for p, _, _ in outs}) > 1, "all keys landed in one partition"
    ref = reference(broker.addr)
    check_exactly_once(ref, outs)
    assert len(ref) == KEYS
    # Several checkpoints committed state: changelog records carry more than
    # one input offset per partition (one per transaction that changed it).
    marks = defaultdict(set)
    for r in read_all(broker.addr, changelog(app_name)):
        marks[r.partition].update(hdict(r.headers)[OFFSET_HEADER])
    assert any(len(v) > 1 for v in marks.values()), marks


def check_changelog(addr, app_name):
    """The changelog of an exactly-once run: partition p holds only keys of
    input partition p, every record has the luastream.input.offset header (at
    most the end of that input partition, and the highest one equals it: the
    last checkpoint covered the last input), and the latest n and sum of every
    key equal its count and sum of inputs."""
    in_part = {r.key.decode(): r.partition for r in read_all(addr, IN)}
    in_end = end_offsets(addr, IN)
    ref = reference(addr)
    latest, top = {}, defaultdict(int)
    for r in read_all(addr, changelog(app_name)):
        key, field = state_key(r.key)
        assert in_part[key] == r.partition, (key, r.partition)
        marks = hdict(r.headers).get(OFFSET_HEADER)
        assert marks and len(marks) == 1, r
        mark = int(marks[0])
        assert 0 < mark <= in_end[r.partition], (r, in_end)
        top[r.partition] = max(top[r.partition], mark)
        latest[(key, field)] = mp_int(r.value)
    assert dict(top) == {p: e for p, e in in_end.items() if e > 0}, (dict(top), in_end)
    assert latest == {**{(k, "n"): len(xs) for k, xs in ref.items()},
                      **{(k, "sum"): sum(xs) for k, xs in ref.items()}}


def test_changelog_and_restore_in_exactly_once_mode(broker_factory, run_app, tmp_path):
    """Run 0, at-least-once, state dir A: inputs 0..999, committed to the end of
    the input (a plain offset commit, which the dev broker keeps).
    Run 1, exactly-once, empty state dir B: inputs 1000..1999. It replays the
    whole changelog and applies every record (all covered by the committed
    offsets), so its counts continue exactly from run 0's: over runs 0 and 1
    every input has exactly one output. The changelog holds the state with
    the input offset header, and its latest values are the exact counts.
    Run 2, exactly-once, empty state dir C: the dev broker discarded run 1's
    transactional offsets, so the group is back at run 0's commit. Run 2
    replays the changelog and must apply exactly run 0's records (covered by
    that commit) and none of run 1's (beyond it), then re-read inputs
    1000..1999: its outputs are the same records, with the same n and sum, as
    run 1's. This is the deterministic part: state and input position agree,
    nothing is counted twice."""
    app_name = "eo-log"
    broker = broker_factory(topics(app_name))
    log = changelog(app_name)

    produce(broker.addr, IN, rows(0, 1000))
    run0 = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir",
                   str(tmp_path / "state-a"), env=env(0))
    wait_outputs(broker.addr, 1000, run0)
    clean_stop(run0)
    plain_commit = committed(broker.addr, app_name, IN)
    assert plain_commit == end_offsets(broker.addr, IN), plain_commit
    log_after_run0 = end_offsets(broker.addr, log)
    assert sum(log_after_run0.values()) == 2 * KEYS, log_after_run0  # n and sum per key

    produce(broker.addr, IN, rows(1000, 1000))
    run1 = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir",
                   str(tmp_path / "state-b"), *EOS, env=env(1))
    wait_outputs(broker.addr, 2000, run1)
    err1 = clean_stop(run1)
    assert run1.stats() == (1000, 1000, 0, 0), err1
    assert sorted(replayed(err1)) == sorted(
        ("counts", p, n, n) for p, n in log_after_run0.items() if n > 0), err1
    outs01 = outputs(broker.addr)
    check_exactly_once(reference(broker.addr), outs01)
    check_changelog(broker.addr, app_name)
    assert read_isolated(broker.addr, log, "read_committed") == \
        read_isolated(broker.addr, log, "read_uncommitted")

    # The dev broker dropped the offsets of run 1's transactions: the group is
    # still at run 0's plain commit. (If this fails, the broker now keeps
    # transactional offsets and run 2 below should resume at the end instead.)
    assert committed(broker.addr, app_name, IN) == plain_commit
    log_after_run1 = end_offsets(broker.addr, log)

    run2 = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir",
                   str(tmp_path / "state-c"), *EOS, env=env(2))
    wait_outputs(broker.addr, 3000, run2)
    err2 = clean_stop(run2)
    assert run2.stats() == (1000, 1000, 0, 0), err2
    assert sorted(replayed(err2)) == sorted(
        ("counts", p, log_after_run1[p], log_after_run0[p])
        for p in range(PARTS) if log_after_run1[p] > 0), err2
    by_run = defaultdict(dict)
    for _, _, v in outputs(broker.addr):
        assert v["x"] not in by_run[v["run"]], v
        by_run[v["run"]][v["x"]] = (v["n"], v["sum"])
    assert set(by_run["1"]) == set(range(1000, 2000))
    assert by_run["2"] == by_run["1"]


def test_unknown_guarantee_exits_2_naming_the_option(broker_factory):
    """--set guarantee=exactly-twice: exit 2 at start, a message naming the
    option, the bad value and the valid ones; nothing is consumed or produced."""
    broker = broker_factory(topics("eo-bad"))
    produce(broker.addr, IN, rows(0, 10))
    r = run_cli("run", str(SCRIPT), "--broker", broker.addr, "--name", "eo-bad",
                "--set", "guarantee=exactly-twice", timeout=30)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "guarantee" in r.stderr and "exactly-twice" in r.stderr, r.stderr
    assert "exactly-once" in r.stderr and "at-least-once" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "stopped:" not in r.stderr, r.stderr
    assert read_all(broker.addr, OUT) == []
    assert set(committed(broker.addr, "eo-bad", IN).values()) == {OFFSET_INVALID}


def test_two_exactly_once_instances_share_the_partitions(broker_factory, run_app, tmp_path):
    """Two exactly-once instances of one app (own state dirs, so two
    transactional ids "<app>-<pid>"): once both hold partitions, 2000 inputs
    are produced; together they output each input exactly once with exact
    per-key counts, each wrote some outputs, and both stop with exit 0 and a
    clean stderr. The input is produced only after the group has settled:
    a partition that moves between the members is re-read from the last
    plain commit on the dev broker (it drops transactional offsets), which
    would repeat outputs."""
    app_name = "eo-pair"
    broker = broker_factory(topics(app_name))
    apps = []
    for label in ("a", "b"):
        apps.append(run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir",
                            str(tmp_path / f"state-{label}"), *EOS,
                            "--set", "commit_interval=0.3", env=env(label)))
        time.sleep(0.5)
    a, b = apps

    def settled():
        held = {}
        for app in apps:
            lines = re.findall(r"partitions (assigned|revoked): in\[([\d,]*)\]", app.stderr())
            if not lines:
                return False
            mine = set()
            for what, ps in lines:
                ps = {int(p) for p in ps.split(",") if p}
                mine = mine | ps if what == "assigned" else mine - ps
            held[app] = mine
        return (held[a] and held[b] and not held[a] & held[b]
                and held[a] | held[b] == set(range(PARTS)))
    wait_until(settled, 60, "both instances to hold partitions", interval=0.3, app=b)
    assert a.proc.poll() is None, a.stderr()
    time.sleep(1.0)

    produce(broker.addr, IN, rows(0, 2000))
    wait_outputs(broker.addr, 2000, b)
    assert a.proc.poll() is None, a.stderr()
    outs = outputs(broker.addr)
    check_exactly_once(reference(broker.addr), outs)
    runs = Counter(v["run"] for _, _, v in outs)
    assert runs["a"] > 0 and runs["b"] > 0, runs
    owner = defaultdict(set)  # a key is processed by one instance only
    for _, _, v in outs:
        owner[v["key"]].add(v["run"])
    assert all(len(o) == 1 for o in owner.values()), dict(owner)

    # One after the other (stopping both at once makes the dev broker's group
    # coordinator time out a request of the leaving consumers). The survivor
    # may get the other's partitions for a moment: with no committed offset on
    # the dev broker (transactional offsets are dropped) it re-reads them from
    # the beginning, with their state rebuilt from the changelog as of that
    # position (nothing applied), so any repeat must carry the same n and sum
    # as the first output of its input.
    for app in apps:
        clean_stop(app)
    stats = [app.stats() for app in apps]
    total = n_outputs(broker.addr)
    assert sum(s[1] for s in stats) == total, (stats, total)
    assert sum(s[0] for s in stats) == total, (stats, total)
    first = {v["x"]: (v["n"], v["sum"]) for _, _, v in outs}
    for _, _, v in outputs(broker.addr):
        assert first[v["x"]] == (v["n"], v["sum"]), v


# --------------------------------------------------------------------------
# Failed transactions, with errors injected by the dev broker (its stdin takes
# `fail API ERROR [COUNT]` lines: the next COUNT requests of that Kafka API
# fail with that error; see docs/dev-broker.md).

class FaultBroker:
    """A `luastream broker` process with a pipe on stdin, for fault injection."""

    def __init__(self, workdir, topics):
        workdir.mkdir(parents=True, exist_ok=True)
        args = [LUASTREAM, "broker"]
        for name, parts in topics.items():
            args += ["--topic", f"{name}:{parts}"]
        self.stderr_path = workdir / "broker.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._stderr)
        self.addr = self.proc.stdout.readline().decode().strip()
        assert self.addr, self.stderr_path.read_text(errors="replace")

    def command(self, line):
        """Sends one command line; returns the broker's one-line answer."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().decode().strip()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout, self._stderr):
            f.close()
        return self.proc.returncode


@pytest.fixture
def fault_broker(luastream_bin, tmp_path):
    """fault_broker(topics) -> FaultBroker; stopped at teardown."""
    started = []

    def start(topics):
        b = FaultBroker(tmp_path / f"fault-broker{len(started)}", topics)
        started.append(b)
        return b

    yield start
    for b in started:
        b.stop()


def test_dev_broker_answers_fault_injection_commands(fault_broker):
    """Each command line gets one answer line; bad ones an error naming what
    is wrong, and the broker goes on serving."""
    broker = fault_broker({IN: PARTS})
    assert broker.command("fail EndTxn PRODUCER_FENCED") == "ok fail EndTxn(26) PRODUCER_FENCED x1"
    assert broker.command("fail 28 rd_kafka_resp_err_unknown_member_id 3") == \
        "ok fail TxnOffsetCommit(28) UNKNOWN_MEMBER_ID x3"
    assert broker.command("fail produce -195") == "ok fail Produce(0) _TRANSPORT x1"
    assert broker.command("clear Produce") == "ok clear Produce(0)"
    assert broker.command("fail Nothing PRODUCER_FENCED") == "error: unknown API Nothing"
    assert broker.command("fail EndTxn NOT_AN_ERROR") == "error: unknown error NOT_AN_ERROR"
    assert broker.command("fail EndTxn PRODUCER_FENCED 0") == "error: bad count 0"
    assert broker.command("fail EndTxn").startswith("error: usage: fail API ERROR [COUNT]")
    assert broker.command("launch").startswith("error: unknown command launch")
    assert broker.command("# a comment\nclear EndTxn") == "ok clear EndTxn(26)"
    assert produce(broker.addr, IN, rows(0, 10))
    assert broker.stop() == 0
    log = broker.stderr_path.read_text()
    assert "fault injection: ok fail EndTxn(26) PRODUCER_FENCED x1" in log, log
    assert re.search(r"warn  fault injection: error: unknown API Nothing", log), log


DEBUG = ("--log-level", "debug")  # for the "transaction committed: ..." lines


def txn_commits(stderr):
    """The input offsets the app's committed transactions sent, merged in log
    order: {partition: next offset} (from its debug lines)."""
    done = {}
    for line in re.findall(r"transaction committed: (.*)", stderr):
        for p, off in re.findall(r"\bin\[(\d+)\]@(\d+)", line):
            done[int(p)] = int(off)
    return done


def line_index(stderr, pattern, start=0):
    """Index of the first line at or after `start` matching pattern, or None."""
    lines = stderr.splitlines()
    for i in range(start, len(lines)):
        if re.search(pattern, lines[i]):
            return i
    return None


def wait_commits_reach_end(addr, app, timeout=30):
    """Waits until the app's committed transactions cover the whole input."""
    def done():
        end = {p: e for p, e in end_offsets(addr, IN).items() if e > 0}
        return txn_commits(app.stderr()) == end
    wait_until(done, timeout, "transactions covering the whole input", interval=0.2, app=app)


def commit_plain(addr, group, offsets):
    """Commits {partition: offset} on IN for group outside any transaction:
    what a real Kafka holds after the app's transactions, which the dev broker
    drops. The dev broker takes commits from group members only, so this joins
    the group first, with a short session: the dev broker may keep a member
    that left until its session times out."""
    c = _consumer(addr, group=group, **{"session.timeout.ms": 6000,
                                        "heartbeat.interval.ms": 1500})
    assigned = []
    try:
        c.subscribe([IN], on_assign=lambda _c, parts: assigned.extend(parts))
        deadline = time.monotonic() + 30
        while not assigned:
            assert time.monotonic() < deadline, f"no assignment in group {group}"
            c.poll(0.1)
        c.commit(offsets=[TopicPartition(IN, p, o) for p, o in offsets.items()],
                 asynchronous=False)
    finally:
        c.close()
    assert committed(addr, group, IN) == {p: offsets.get(p, OFFSET_INVALID)
                                          for p in range(PARTS)}


def restart_and_check(addr, run_app, app_name, state_dir, plain, unread):
    """After a run: commits the offsets of its last transaction (`plain`),
    produces one more input per key (x = 2000..2019) and restarts the app on
    the same state directory. The restart must read exactly the inputs x in
    `unread` and the new ones, with the counts continued from the state the
    run committed: the last output of every key is its exact count and sum."""
    commit_plain(addr, app_name, plain)
    produce(addr, IN, rows(2000, KEYS))
    want = set(unread) | set(range(2000, 2000 + KEYS))
    app = run_app(SCRIPT, addr, "--name", app_name, "--state-dir", str(state_dir), *EOS,
                  "--set", "commit_interval=0.2", env=env("restart"))
    wait_until(lambda: {v["x"] for _, _, v in outputs(addr) if v.get("run") == "restart"} == want,
               30, "the restart's outputs", interval=0.3, app=app)
    clean_stop(app)
    assert app.stats() == (len(want), len(want), 0, 0), app.stderr()
    check_final_state(addr)


ABORTABLE = [
    # EndTxn fails after the transaction's records were delivered: its outputs
    # stay readable on the dev broker, and are written again after the rewind.
    ("EndTxn", "UNKNOWN_PRODUCER_ID", 0.2),
    # The offsets fail before the commit's flush: the abort purges the records
    # still queued, whose failed deliveries belong to the aborted transaction.
    ("TxnOffsetCommit", "UNKNOWN_MEMBER_ID", 0.2),
    # Registering the output partitions fails as soon as the first outputs are
    # produced: the transaction refuses every later record (the checkpoint's
    # changelog records at least, a second later) until it is aborted.
    ("AddPartitionsToTxn", "TOPIC_AUTHORIZATION_FAILED", 1.0),
]


@pytest.mark.parametrize("api,error,interval", ABORTABLE, ids=[a for a, _, _ in ABORTABLE])
def test_abortable_error_aborts_rewinds_and_keeps_exact_state(fault_broker, run_app, tmp_path,
                                                              api, error, interval):
    """Inputs 0..999 run through committed transactions; then the dev broker
    fails the next `api` request with `error` (abortable in librdkafka 2.0.2)
    and inputs 1000..1999 arrive. The app logs the abort, rewinds every
    partition to the offsets of its last committed transaction (the ones it
    reached with inputs 0..999), drops the uncommitted state, and carries on:
    later transactions commit, and it stops with exit 0 on SIGTERM.
    Every input has an output; an input output twice (aborted, then redone)
    carries the same n and sum both times; the last output of every key and
    the latest changelog values are its exact count and sum. A restart on the
    same state directory, from the offsets of the last transaction, reads
    only new inputs and continues the counts exactly."""
    app_name = "eo-abort"
    broker = fault_broker(topics(app_name))
    state_dir = tmp_path / "state"
    produce(broker.addr, IN, rows(0, 1000))
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state_dir), *EOS,
                  "--set", f"commit_interval={interval}", *DEBUG, env=env("abort"))
    wait_commits_reach_end(broker.addr, app)
    before = txn_commits(app.stderr())

    reply = broker.command(f"fail {api} {error}")
    assert reply.startswith(f"ok fail {api}(") and error in reply, reply
    produce(broker.addr, IN, rows(1000, 1000))
    wait_until(lambda: "rewound to" in app.stderr(), 30, "the rewind", interval=0.2, app=app)
    wait_commits_reach_end(broker.addr, app)
    assert app.stop() == 0, app.stderr()

    err = app.stderr()
    aborted = line_index(err, r"warn .*aborting the transaction and going back to the committed")
    rewound = line_index(err, r"info  rewound to the last committed offsets: ")
    assert aborted is not None and rewound is not None and aborted < rewound, err
    assert line_index(err, r"transaction committed: in\[", rewound) is not None, err
    assert len(re.findall(r"aborting the transaction", err)) == 1, err
    assert not re.search(r"^\S+ error (?!kafka)", err, re.M), err  # only librdkafka's own report
    positions = dict((int(p), int(o)) for p, o in
                     re.findall(r"in\[(\d+)\]@(\d+)", err.splitlines()[rewound]))
    assert positions == before, (positions, before)

    ref, outs = check_final_state(broker.addr)
    first = {}
    for _, _, v in outs:
        first.setdefault(v["x"], (v["n"], v["sum"]))
        assert first[v["x"]] == (v["n"], v["sum"]), v
    repeated = {x for x, c in Counter(v["x"] for _, _, v in outs).items() if c > 1}
    assert all(x >= 1000 for x in repeated), sorted(repeated)[:10]
    check_changelog(broker.addr, app_name)

    restart_and_check(broker.addr, run_app, app_name, state_dir, txn_commits(err), ())


FATAL = [
    # The commit finds the producer fenced (a newer instance took over its
    # transactional id).
    ("EndTxn", "PRODUCER_FENCED", 0.2),
    # Registering the first output partitions finds it fenced: the producer
    # refuses every later record (the checkpoint's changelog records at least,
    # a second later) with a fatal error.
    ("AddPartitionsToTxn", "INVALID_PRODUCER_EPOCH", 1.0),
]


@pytest.mark.parametrize("api,error,interval", FATAL, ids=[a for a, _, _ in FATAL])
def test_fatal_error_exits_1_without_committing(fault_broker, run_app, tmp_path, api, error,
                                                interval):
    """Inputs 0..999 run through committed transactions; then the dev broker
    fails the next `api` request with `error` (fatal in librdkafka 2.0.2: the
    producer is fenced) and inputs 1000..1999 arrive. The app exits with code
    1 and one error line of its own, saying it was fenced; it neither aborts and
    rewinds nor commits anything after the error (no transaction, no plain
    offset commit on the way out). A restart on the same state directory,
    from the offsets of the last transaction, reads inputs 1000..1999 again
    and ends with the exact count and sum of every key."""
    app_name = "eo-fatal"
    broker = fault_broker(topics(app_name))
    state_dir = tmp_path / "state"
    produce(broker.addr, IN, rows(0, 1000))
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state_dir), *EOS,
                  "--set", f"commit_interval={interval}", *DEBUG, env=env("fatal"))
    wait_commits_reach_end(broker.addr, app)
    before = txn_commits(app.stderr())

    reply = broker.command(f"fail {api} {error}")
    assert reply.startswith(f"ok fail {api}(") and error in reply, reply
    produce(broker.addr, IN, rows(1000, 1000))
    assert app.wait(30) == 1, app.stderr()

    err = app.stderr()
    own_errors = re.findall(r"^\S+ error (?!kafka )(.*)", err, re.M)  # not librdkafka's
    assert len(own_errors) == 1 and "fenced by a newer instance" in own_errors[0], err
    fatal = line_index(err, r"^\S+ error (?!kafka )")
    assert line_index(err, r"info  eo-fatal: stopped: ", fatal) is not None, err
    assert "aborting the transaction" not in err and "rewound to" not in err, err
    first_error = line_index(err, r"^\S+ error ")
    assert line_index(err, r"transaction committed", first_error) is None, err
    assert txn_commits(err) == before, (txn_commits(err), before)
    assert set(committed(broker.addr, app_name, IN).values()) == {OFFSET_INVALID}

    restart_and_check(broker.addr, run_app, app_name, state_dir, before, range(1000, 2000))
