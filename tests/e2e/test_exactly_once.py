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
deterministic; the crash-and-restart guarantees need a real Kafka.

The pipeline is scripts/state_count.lua (see test_state.py): every input
{"x": i} keyed "k<i % 20>" becomes {key, x, n, sum} with the key's running
count and sum, kept in the store "counts" (changelog <app>__counts__changelog).
"""

import re
import struct
import time
from collections import Counter, defaultdict

from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from conftest import (OFFSET_INVALID, _consumer, committed, end_offsets, hdict,
                      partitions, produce, read_all, run_cli, wait_until)
from test_state import (IN, KEYS, OUT, PARTS, SCRIPT, changelog, check_exactly_once, env,
                        outputs, reference, replayed, rows, topics)

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
