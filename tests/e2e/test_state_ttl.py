"""State entries with a time to live (state:set(k, v, { ttl = ms })).

scripts/state_ttl.lua counts the inputs of each key, setting the count with a
ttl (E2E_TTL ms): a key quiet for longer starts again at 1. Expired entries read
as absent at once and are deleted at a later checkpoint: from LMDB and, with a
tombstone, from the changelog, so a store rebuilt from the changelog does not
bring them back.
"""

import json
import time

from conftest import SCRIPTS, jloads, produce, read_all, run_cli, wait_until

SCRIPT = SCRIPTS / "state_ttl.lua"
IN, OUT = "in", "out"
CHANGELOG = "state-ttl__recent__changelog"


def rec(key, x):
    return (key.encode(), json.dumps({"x": x}).encode(), None)


def counts(addr):
    return [(r.key.decode(), jloads(r.value)["n"]) for r in read_all(addr, OUT)]


def test_expired_counts_restart_and_are_tombstoned(broker_factory, run_app, tmp_path):
    broker = broker_factory({IN: 1, OUT: 1, CHANGELOG: 1})
    state = tmp_path / "state"
    ttl = {"E2E_TTL": "3000"}
    app = run_app(SCRIPT, broker.addr, "--state-dir", str(state), env=ttl)
    produce(broker.addr, IN, [rec("a", 1), rec("a", 2), rec("b", 3)])
    wait_until(lambda: len(read_all(broker.addr, OUT)) == 3, 30, "3 outputs", app=app)
    time.sleep(3.5)  # past the ttl, and several checkpoints later
    produce(broker.addr, IN, [rec("a", 4)])
    wait_until(lambda: len(read_all(broker.addr, OUT)) == 4, 30, "4 outputs", app=app)
    assert counts(broker.addr) == [("a", 1), ("a", 2), ("b", 1), ("a", 1)]

    # Swept: "b" expired and is gone from the changelog (a tombstone after its
    # value) and from LMDB; "a" was set again and is there.
    def b_tombstoned():
        recs = [r for r in read_all(broker.addr, CHANGELOG) if b"b" in r.key]
        return recs and recs[-1].value is None
    wait_until(b_tombstoned, 20, "a tombstone for b's count", app=app)
    got = run_cli("state", "get", str(state / "state-ttl"), "recent", "b")
    assert got.returncode == 1 and "no state for key b" in got.stderr, got

    # The changelog carries the expiry: a store rebuilt from it (lost state
    # dir) expires an entry on time too. "c" is set just before the stop, so
    # the last checkpoint writes it (not yet expired) to the changelog.
    produce(broker.addr, IN, [rec("c", 5)])
    wait_until(lambda: len(read_all(broker.addr, OUT)) == 5, 30, "5 outputs", app=app)
    assert app.stop() == 0, app.stderr()
    c_recs = [r for r in read_all(broker.addr, CHANGELOG) if b"c" in r.key]
    assert c_recs and c_recs[-1].value is not None
    assert int(dict(c_recs[-1].headers)["luastream.expire.ms"]) > 0, c_recs[-1].headers
    time.sleep(3.2)
    app2 = run_app(SCRIPT, broker.addr, "--state-dir", str(tmp_path / "fresh"), env=ttl)
    produce(broker.addr, IN, [rec("c", 6)])
    wait_until(lambda: len(read_all(broker.addr, OUT)) == 6, 30, "6 outputs", app=app2)
    assert counts(broker.addr)[-2:] == [("c", 1), ("c", 1)]
    assert app2.stop() == 0, app2.stderr()


def test_a_key_seen_within_the_ttl_keeps_counting(broker_factory, run_app):
    broker = broker_factory({IN: 1, OUT: 1, CHANGELOG: 1})
    app = run_app(SCRIPT, broker.addr, env={"E2E_TTL": "60000"})
    produce(broker.addr, IN, [rec("a", i) for i in range(5)])
    wait_until(lambda: len(read_all(broker.addr, OUT)) == 5, 30, "5 outputs", app=app)
    assert [n for _, n in counts(broker.addr)] == [1, 2, 3, 4, 5]
    assert app.stop() == 0, app.stderr()
