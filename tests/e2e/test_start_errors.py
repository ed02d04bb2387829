"""Errors at start: bad scripts, bad options, an unreachable broker, and the broker CLI."""

import time

import pytest

from conftest import SCRIPTS, line_of, partitions, run_cli

ERRORS_SCRIPT = SCRIPTS / "errors_pipeline.lua"


def only_line(text):
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    assert len(lines) == 1, f"expected a one-line reason, got:\n{text}"
    return lines[0]


def test_missing_script_exits_2_naming_the_file(tmp_path):
    """A script that does not exist: exit 2, one line naming the file."""
    missing = tmp_path / "no_such_pipeline.lua"
    r = run_cli("run", str(missing), cwd=tmp_path)
    assert r.returncode == 2, r
    line = only_line(r.stderr)
    assert str(missing) in line and "No such file" in line, line


def test_syntax_error_exits_2_with_file_and_line(tmp_path):
    """A script with a syntax error: exit 2, the message has file:line."""
    script = SCRIPTS / "bad_syntax.lua"
    r = run_cli("run", str(script), cwd=tmp_path)
    assert r.returncode == 2, r
    assert f"bad_syntax.lua:{line_of(script, '= = 1')}:" in r.stderr, r.stderr


def test_error_raised_while_loading_exits_2_with_file_and_line(tmp_path):
    """error() in the script's main chunk: exit 2, file:line and the message."""
    script = SCRIPTS / "raises_at_load.lua"
    r = run_cli("run", str(script), cwd=tmp_path)
    assert r.returncode == 2, r
    assert f"raises_at_load.lua:{line_of(script, 'boom')}:" in r.stderr, r.stderr
    assert "boom at load" in r.stderr


def test_unknown_app_option_exits_2_naming_option_and_line(tmp_path):
    """ls.app{ bogus = 1 }: exit 2, names the option and the file:line of ls.app."""
    script = SCRIPTS / "bad_option.lua"
    r = run_cli("run", str(script), cwd=tmp_path)
    assert r.returncode == 2, r
    line = only_line(r.stderr)
    assert "bogus" in line, line
    assert f"bad_option.lua:{line_of(script, 'bogus')}:" in line, line


@pytest.mark.parametrize("args, words", [
    (["--frobnicate", "1"], ["--frobnicate"]),
    (["--timeout", "soon"], ["--timeout"]),
    (["--set", "novalue"], ["--set"]),
    (["--set", "bogus_option=1"], ["bogus_option"]),
    (["--set", "on_error=explode"], ["on_error", "explode"]),
    (["--set", "commit_interval=often"], ["commit_interval"]),
], ids=["unknown-flag", "bad-timeout", "set-without-equals", "set-unknown-option",
        "set-bad-policy", "set-not-a-number"])
def test_bad_command_line_exits_2(tmp_path, args, words):
    """Unknown or malformed command-line options: exit 2 and a message naming them,
    before any broker is contacted (no broker is running here)."""
    t0 = time.monotonic()
    r = run_cli("run", str(ERRORS_SCRIPT), "--broker", "127.0.0.1:1", *args, cwd=tmp_path)
    assert r.returncode == 2, r
    assert time.monotonic() - t0 < 5
    for w in words:
        assert w in r.stderr, (w, r.stderr)


def test_no_command_and_unknown_command_exit_2():
    assert run_cli().returncode == 2
    r = run_cli("frobnicate")
    assert r.returncode == 2 and "frobnicate" in r.stderr, r


def test_unreachable_broker_exits_1_within_20s(tmp_path):
    """--broker 127.0.0.1:1 (nothing listens there): exit 1 within 20 s, saying the
    broker cannot be reached."""
    t0 = time.monotonic()
    r = run_cli("run", str(ERRORS_SCRIPT), "--broker", "127.0.0.1:1", cwd=tmp_path,
                timeout=40)
    elapsed = time.monotonic() - t0
    assert r.returncode == 1, r
    assert elapsed < 20, elapsed
    assert "cannot reach" in r.stderr and "127.0.0.1:1" in r.stderr, r.stderr


def test_version_and_help():
    r = run_cli("version")
    assert r.returncode == 0 and r.stdout.startswith("luastream "), r
    r = run_cli("help")
    assert r.returncode == 0 and "run SCRIPT.lua" in r.stdout, r


def test_broker_prints_address_writes_file_and_stops_on_sigterm(broker_factory):
    """`luastream broker`: prints the bootstrap address first, writes the same to
    --bootstrap-file, creates --topic NAME:PARTS, and exits 0 on SIGTERM."""
    b = broker_factory({"three": 3, "seven": 7})
    assert b.addr.startswith("127.0.0.1:"), b.addr
    assert b.printed_addr == b.addr
    assert partitions(b.addr, "three") == [0, 1, 2]
    assert partitions(b.addr, "seven") == list(range(7))
    assert b.stop() == 0


def test_misspelled_input_topic_exits_2_naming_it_and_the_closest(broker_factory, tmp_path):
    """An input topic that does not exist on the cluster: exit 2 at start, naming
    the topic, the broker and the closest existing topic; nothing is consumed."""
    broker = broker_factory({"phone-data": 2, "out": 2})
    script = tmp_path / "typo.lua"
    script.write_text(
        'local ls = require("luastream")\n'
        'local app = ls.app{ name = "typo" }\n'
        'local sdf = app:dataframe(app:topic("phone-dta", { value = "json" }))\n'
        'sdf:to_topic(app:topic("out", { value = "json" }))\n')
    r = run_cli("run", str(script), "--broker", broker.addr, cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r
    assert f"input topic 'phone-dta' does not exist on {broker.addr} (did you mean " \
           f"'phone-data'?); create it, or set wait_for_topics = true" in r.stderr, r.stderr
    from confluent_kafka.admin import AdminClient
    # Listing every topic creates none (asking for one by name would, on this broker).
    assert "phone-dta" not in AdminClient({"bootstrap.servers": broker.addr}).list_topics(
        timeout=10).topics


def test_wait_for_topics_waits_until_the_input_exists(broker_factory, tmp_path):
    """wait_for_topics = true: the app says it waits, and once the topic is
    created (by a first record) it processes it."""
    from conftest import App, produce, read_all, wait_until
    broker = broker_factory({"out": 2})
    script = tmp_path / "waits.lua"
    script.write_text(
        'local ls = require("luastream")\n'
        'local app = ls.app{ name = "waits", wait_for_topics = true }\n'
        'local sdf = app:dataframe(app:topic("later", { value = "json" }))\n'
        'sdf:to_topic(app:topic("out", { value = "json" }))\n')
    app = App(tmp_path / "app", script, broker.addr)
    try:
        wait_until(lambda: "waiting for input topic 'later' to be created" in app.stderr(), 30,
                   "the waiting line", app=app)
        produce(broker.addr, "later", [(b"k", b'{"x":1}', None)])
        wait_until(lambda: len(read_all(broker.addr, "out")) == 1, 40, "the output", app=app)
        assert app.stop() == 0, app.stderr()
        assert read_all(broker.addr, "out")[0].value == b'{"x":1}'
    finally:
        app.kill()
