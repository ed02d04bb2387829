"""Whose state is it: one instance per state dir, a transactional id per
instance that survives restarts, and local state that belongs to another
cluster (or to a changelog that is gone) is rebuilt instead of being added to.

Uses scripts/state_count.lua and the helpers of test_state.py: every input
{"x": i} keyed k<i % 20> becomes {key, x, n, sum} with the key's running count
and sum, so the last output of a key shows exactly what its state held.
"""

import re

from confluent_kafka.admin import AdminClient

from conftest import partitions, read_all, wait_committed_to_end, wait_until
from test_state import (IN, KEYS, OUT, PARTS, SCRIPT, changelog, check_exactly_once,
                        check_final_state, last_per_key, produce, rows, topics)

EOS = ("--set", "guarantee=exactly-once")


def cluster_id(addr):
    c = AdminClient({"bootstrap.servers": addr})
    return c.list_topics(timeout=10).cluster_id


def txn_id(stderr):
    m = re.search(r"transactional\.id (\S+) \(this instance", stderr)
    assert m, f"no transactional.id line:\n{stderr}"
    return m.group(1)


def test_second_instance_on_one_state_dir_is_refused(broker_factory, run_app, tmp_path):
    """A second process on a state dir that a running one holds exits 2 at start,
    naming the directory and the holder's pid; the first carries on; once it has
    stopped, the dir can be used again."""
    app_name = "id-lock"
    broker = broker_factory(topics(app_name))
    state = tmp_path / "shared-state"
    produce(broker.addr, IN, rows(0, 100))
    first = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state))
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=first)
    second = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state))
    assert second.wait(30) == 2, second.stderr()
    err = second.stderr()
    assert f"state directory {state}/{app_name} is in use by another instance " \
           f"(pid {first.proc.pid})" in err, err
    assert first.proc.poll() is None, first.stderr()
    assert first.stop() == 0, first.stderr()
    again = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state))
    produce(broker.addr, IN, rows(100, 100))
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=again)
    assert again.stop() == 0, again.stderr()
    check_exactly_once(*check_final_state(broker.addr))


def test_state_dir_is_private(broker_factory, run_app, tmp_path):
    """The state holds the devices' readings: the directories luastream creates
    are 0700, and its files (LMDB's and the identity files) 0600."""
    app_name = "id-mode"
    broker = broker_factory(topics(app_name))
    state = tmp_path / "st"
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state))
    wait_until(lambda: (state / app_name / "cluster-id").exists(), 30, "cluster-id", app=app)
    assert app.stop() == 0, app.stderr()
    assert (state.stat().st_mode & 0o777) == 0o700
    assert ((state / app_name).stat().st_mode & 0o777) == 0o700
    for f in ("instance-id", "cluster-id", "LOCK", "data.mdb", "lock.mdb"):
        assert ((state / app_name / f).stat().st_mode & 0o777) == 0o600, f


def test_transactional_id_is_per_instance_and_stable(broker_factory, run_app, tmp_path):
    """Exactly-once: two instances (own state dirs) get different transactional
    ids, even where both would have the same pid (containers); a restart keeps
    its id; group.instance.id, when set, names the instance instead."""
    app_name = "id-txn"
    broker = broker_factory(topics(app_name))
    a = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(tmp_path / "a"), *EOS)
    b = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(tmp_path / "b"), *EOS)
    for app in (a, b):
        wait_until(lambda: "transactional.id" in app.stderr(), 30, "the id line", app=app)
    ida, idb = txn_id(a.stderr()), txn_id(b.stderr())
    assert ida != idb
    assert re.fullmatch(rf"{app_name}-[0-9a-f]{{32}}", ida), ida
    stored = (tmp_path / "a" / app_name / "instance-id").read_text().strip()
    assert ida == f"{app_name}-{stored}"
    for app in (a, b):
        assert app.stop() == 0, app.stderr()
    a2 = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(tmp_path / "a"), *EOS)
    wait_until(lambda: "transactional.id" in a2.stderr(), 30, "the id line", app=a2)
    assert txn_id(a2.stderr()) == ida
    assert a2.stop() == 0, a2.stderr()
    pod = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(tmp_path / "c"),
                  *EOS, "--set", "kafka.group.instance.id=pod-2")
    wait_until(lambda: "transactional.id" in pod.stderr(), 30, "the id line", app=pod)
    assert txn_id(pod.stderr()) == f"{app_name}-pod-2"
    assert pod.stop() == 0, pod.stderr()


def test_changelog_is_not_created_by_a_5s_wait_on_the_dev_broker(broker_factory, run_app):
    """Against `luastream broker` (no CreateTopics), a stateful app whose changelog
    does not exist yet does not wait for a CreateTopics answer that never comes:
    it creates the changelog through the broker's side channel, with the input's
    partition count, and works."""
    app_name = "id-nocreate"
    broker = broker_factory({IN: PARTS, OUT: PARTS})
    produce(broker.addr, IN, rows(0, 200))
    app = run_app(SCRIPT, broker.addr, "--name", app_name)
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)
    assert app.stop() == 0, app.stderr()
    err = app.stderr()
    assert "no answer" not in err, err
    assert "takes no CreateTopics" not in err, err
    assert f"dev broker: ok created {changelog(app_name)} {PARTS}" in err, err
    assert partitions(broker.addr, changelog(app_name)) == list(range(PARTS))
    assert sum(1 for _ in read_all(broker.addr, changelog(app_name))) >= 2 * KEYS


def run_to_end(broker, run_app, app_name, state, extra_env=None):
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir", str(state),
                  "--set", "commit_interval=0.5", env=extra_env)
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)
    assert app.stop() == 0, app.stderr()
    return app.stderr()


def test_state_of_another_cluster_is_rebuilt(broker_factory, run_app, tmp_path):
    """Run on broker 1 (500 inputs), stop; a new broker (a new cluster, as after
    restarting `luastream broker`) gets 300 other inputs; the same app with the
    same state dir says its state belongs to another cluster, drops it, and
    counts only what this cluster holds: exact counts from 1, exactly once."""
    app_name = "id-cluster"
    state = tmp_path / "state"
    b1 = broker_factory(topics(app_name))
    produce(b1.addr, IN, rows(0, 500))
    run_to_end(b1, run_app, app_name, state)
    old_cluster = (state / app_name / "cluster-id").read_text().strip()
    b1.stop()

    b2 = broker_factory(topics(app_name))
    produce(b2.addr, IN, rows(1000, 300))
    err = run_to_end(b2, run_app, app_name, state)
    new_cluster = (state / app_name / "cluster-id").read_text().strip()
    assert new_cluster == cluster_id(b2.addr) != old_cluster
    assert f"was built against Kafka cluster {old_cluster}, but the broker is cluster " \
           f"{new_cluster}: dropping it" in err, err
    ref, outs = check_final_state(b2.addr)
    check_exactly_once(ref, outs)
    assert max(v["n"] for v in last_per_key(outs).values()) == 300 // KEYS


def test_changelog_that_ends_before_the_mark_means_stale_state(broker_factory, run_app,
                                                               tmp_path):
    """The same cluster id (as when a changelog topic was deleted and created
    again, or the state dir was copied from elsewhere) but a changelog that ends
    before the store's mark: each such partition is dropped with a warning
    naming it and rebuilt from the changelog; counts are exact."""
    app_name = "id-mark"
    state = tmp_path / "state"
    b1 = broker_factory(topics(app_name))
    produce(b1.addr, IN, rows(0, 400))
    run_to_end(b1, run_app, app_name, state)
    b1.stop()

    b2 = broker_factory(topics(app_name))
    produce(b2.addr, IN, rows(2000, 200))
    # Pretend the state was built against b2: only the changelog can tell.
    (state / app_name / "cluster-id").write_text(cluster_id(b2.addr) + "\n")
    err = run_to_end(b2, run_app, app_name, state)
    stale = re.findall(rf"state counts\[(\d)\]: the local state was saved up to changelog offset "
                       rf"\d+, but {changelog(app_name)}\[\d\] ends at 0: it belongs to other data",
                       err)
    assert sorted(int(p) for p in stale) == list(range(PARTS)), err
    ref, outs = check_final_state(b2.addr)
    check_exactly_once(ref, outs)
