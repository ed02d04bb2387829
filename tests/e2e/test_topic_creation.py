"""Internal topics on the dev broker: `luastream broker` takes no CreateTopics
(librdkafka's mock cluster auto-creates every topic with 4 partitions), so it
serves a side channel, a Unix domain socket named after its port, where the
runtime creates changelogs with its input's partition count (docs/dev-broker.md).

Uses scripts/state_count.lua and the helpers of test_state.py: every input
{"x": i} keyed k<i % 20> becomes {key, x, n, sum} with the key's running count
and sum, so the last output of a key shows exactly what its state held.
"""

import os
import re
import socket
import stat
from collections import Counter

from conftest import (committed, end_offsets, partitions, run_cli, wait_committed_to_end,
                      wait_until)
from test_state import (IN, OUT, SCRIPT, SteadyProducer, changelog, check_final_state, env,
                        outputs, produce, rows)


def side_channel(addr):
    """The side channel's path of the broker at addr (as docs/dev-broker.md says)."""
    port = int(addr.split(",")[0].rsplit(":", 1)[1])
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and xdg.startswith("/"):
        return f"{xdg}/luastream-broker-{port}.sock"
    return f"/tmp/luastream-broker-{os.getuid()}-{port}.sock"


def ask(addr, line):
    """Sends one command line to the side channel; its one reply line."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect(side_channel(addr))
        s.sendall(line.encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = s.recv(1024)
            assert chunk, f"the side channel closed without answering {line!r}"
            reply += chunk
        return reply.decode().strip()


def wait_drained(addr, group, topic, timeout, app=None):
    """Like wait_committed_to_end, for a topic with empty partitions (20 keys in
    12 partitions), which have no committed offset."""
    def done():
        end = end_offsets(addr, topic)
        got = committed(addr, group, topic)
        return end and all(got.get(p) == n for p, n in end.items() if n > 0)
    wait_until(done, timeout, f"group {group} to commit the end of {topic}", interval=0.3,
               app=app)


def test_side_channel_create_answers_ok_exists_or_error(broker_factory):
    """The socket is there (mode 0600) once the bootstrap address is; `create`
    makes a topic with the count asked for, says "ok exists" for a topic with
    that count and an error naming both counts for one with another; the fault
    injection commands work there too; the socket is gone after the broker."""
    broker = broker_factory({"in": 12})
    path = side_channel(broker.addr)
    st = os.stat(path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    assert ask(broker.addr, "create made 6") == "ok created made 6"
    assert ask(broker.addr, "create made 6") == "ok exists made 6"
    assert ask(broker.addr, "create made 3") == "error: topic made exists with 6 partitions, not 3"
    assert ask(broker.addr, "create in 12") == "ok exists in 12"
    assert ask(broker.addr, "create in 4") == "error: topic in exists with 12 partitions, not 4"
    assert ask(broker.addr, "create bad/name 4").startswith("error: bad topic name")
    assert ask(broker.addr, "create made").startswith("error: usage: create TOPIC PARTITIONS")
    assert ask(broker.addr, "create other 0").startswith("error: bad partition count")
    assert ask(broker.addr, "fail Produce NOT_LEADER_FOR_PARTITION 1").startswith("ok fail Produce")
    assert ask(broker.addr, "clear Produce").startswith("ok clear Produce")
    assert partitions(broker.addr, "made") == list(range(6))
    assert broker.stop() == 0
    assert not os.path.exists(path)


def test_three_instances_on_a_12_partition_input_share_it_with_exact_counts(
        broker_factory, run_app, tmp_path):
    """A stateful app on a 12-partition input against `luastream broker`, its
    changelog not declared: the first instance creates the changelog with 12
    partitions (no "Unknown partition" later); three instances with their own
    state dirs share the input, each writes outputs, and the last output of
    every key has its exact count and sum."""
    app_name = "tc-scale"
    broker = broker_factory({IN: 12, OUT: 12})
    produce(broker.addr, IN, rows(0, 300))
    feeder = SteadyProducer(broker.addr, first=300, rate=150)
    feeder.start()
    apps = []
    try:
        for run in "abc":
            apps.append(run_app(SCRIPT, broker.addr, "--name", app_name, "--state-dir",
                                str(tmp_path / f"state-{run}"), "--set", "commit_interval=0.5",
                                env=env(run)))

        def all_working():
            runs = Counter(v.get("run") for _, _, v in outputs(broker.addr))
            return all(runs[r] > 10 for r in "abc")
        wait_until(all_working, 60, "all three instances to write outputs", interval=0.5,
                   app=apps[-1])
    finally:
        feeder.stop()
    wait_drained(broker.addr, app_name, IN, 60, app=apps[0])
    for a in apps:
        assert a.stop() == 0, a.stderr()
    errs = [a.stderr() for a in apps]
    assert partitions(broker.addr, changelog(app_name)) == list(range(12))
    created = [e for e in errs if f"dev broker: ok created {changelog(app_name)} 12" in e]
    assert len(created) == 1, errs
    for e in errs:
        assert "Unknown partition" not in e and "CreateTopics" not in e, e
    check_final_state(broker.addr)


def test_changelog_with_fewer_partitions_than_its_input_is_an_error_at_start(broker_factory,
                                                                            tmp_path):
    """A changelog that exists with 4 partitions for a 12-partition input: exit 2
    at start, naming both topics and both counts."""
    app_name = "tc-short"
    broker = broker_factory({IN: 12, OUT: 12, changelog(app_name): 4})
    r = run_cli("run", str(SCRIPT), "--broker", broker.addr, "--name", app_name,
                "--state-dir", str(tmp_path / "state"), timeout=60)
    assert r.returncode == 2, r.stderr
    assert (f"changelog topic '{changelog(app_name)}' has 4 partitions but input topic '{IN}' "
            f"has 12") in r.stderr, r.stderr


def test_changelog_with_more_partitions_than_its_input_is_fine(broker_factory, run_app):
    """More changelog partitions than input partitions are not used, and no error."""
    app_name = "tc-more"
    broker = broker_factory({IN: 4, OUT: 4, changelog(app_name): 8})
    produce(broker.addr, IN, rows(0, 200))
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--set", "commit_interval=0.5")
    wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)
    assert app.stop() == 0, app.stderr()
    assert not re.search(r"^\S+ (warn|error)", app.stderr(), re.M), app.stderr()
    check_final_state(broker.addr)
