"""The command line itself: option errors and --help of every command, the
default of `luastream test`, and `luastream state list/get/clear` on the state
of a real app.

The state tests run one stateful app (written below) once per module on the
dev broker: inputs {"x": i} keyed k<i % 20> for i = 0..99, plus a key with a
tab and a non-ASCII key. Its store "counts" keeps, per message key, the count
n, the sum of x, the last x (a table), tags (an array), a vec and the key; the
default store keeps seen = true and none = ls.null; the store "odd" keeps v = 1,
but NaN for k0. The tests then read that state directory with
`luastream state` and compare with what the inputs say it must hold.
"""

import json
import shutil
import types

import pytest

from conftest import (App, Broker, committed, end_offsets, produce, read_all, run_cli,
                      wait_committed_to_end)

APP = "cli-state"
KEYS = 20
TAB_KEY = "tab\there"
UTF8_KEY = "ключ"

SCRIPT = """\
local ls = require("luastream")
local app = ls.app{ name = "cli-state", commit_interval = 0.2 }
local input = app:topic("in", { key = "string", value = "json" })
local output = app:topic("out", { key = "string", value = "json" })
local sdf = app:dataframe(input)
sdf = sdf:update(function(row, state, msg)
  state:set("n", state:get("n", 0) + 1)
  state:set("sum", state:get("sum", 0) + row.x)
  state:set("last", { x = row.x })
  state:set("tags", ls.array{ "t" .. row.x, "u" })
  state:set("window", ls.vec.from{ row.x, row.x / 2 })
  state:set("key", msg.key)
end, { stateful = true, store = "counts" })
sdf = sdf:update(function(row, state)
  state:set("seen", true)
  state:set("none", ls.null)
end, { stateful = true })
sdf = sdf:update(function(row, state)
  state:set("v", row.x % 20 == 0 and 0 / 0 or 1) -- NaN for k0, which JSON cannot carry
end, { stateful = true, store = "odd" })
sdf:to_topic(output)
"""

STORES = ("counts", "default", "odd")
SEEN = '{"none":null,"seen":true}'
HEADER = ("store                partition       keys        bytes   changelog_next   "
          "input_offset")


def usage_line(stderr):
    return [ln for ln in stderr.splitlines() if ln.startswith("usage: luastream")]


# --------------------------------------------------------------------------
# options and --help


@pytest.mark.parametrize("args, cmd", [
    (["run", "app.lua", "--verbose"], "run"),
    (["run", "--verbose"], "run"),
    (["run", "-x", "app.lua"], "run"),
    (["broker", "--verbose"], "broker"),
    (["state", "list", "some/dir", "--verbose"], "state"),
    (["state", "get", "some/dir", "store", "key", "--verbose"], "state"),
    (["test", "--verbose"], "test"),
    (["lua", "--verbose"], "lua"),
    (["--verbose"], None),
], ids=["run-last", "run-only", "run-first", "broker", "state-list", "state-get", "test", "lua",
        "top"])
def test_unknown_option_says_so_with_the_usage_line_and_exits_2(args, cmd):
    r = run_cli(*args, timeout=10)
    assert r.returncode == 2, r
    bad = next(a for a in args if a.startswith("-"))
    assert f"unknown option {bad}" in r.stderr, r.stderr
    assert "needs a value" not in r.stderr, r.stderr
    lines = usage_line(r.stderr)
    assert lines and lines[0].startswith(f"usage: luastream {cmd or '<command>'}"), r.stderr
    assert r.stdout == ""


@pytest.mark.parametrize("args, option", [
    (["run", "app.lua", "--broker"], "--broker"),
    (["run", "app.lua", "--count"], "--count"),
    (["run", "app.lua", "--name", "--watch"], "--name"),
    (["broker", "--topic"], "--topic"),
    (["state", "get", "some/dir", "store", "key", "--partition"], "--partition"),
], ids=["run-broker", "run-count", "run-name-then-flag", "broker-topic", "state-partition"])
def test_known_option_without_its_value_needs_a_value(args, option):
    r = run_cli(*args, timeout=10)
    assert r.returncode == 2, r
    assert f"option {option} needs a value" in r.stderr, r.stderr
    assert usage_line(r.stderr), r.stderr


@pytest.mark.parametrize("args, first", [
    (["-h"], "usage: luastream <command>"),
    (["--help"], "usage: luastream <command>"),
    (["help"], "usage: luastream <command>"),
    (["run", "-h"], "usage: luastream run SCRIPT.lua"),
    (["run", "--help"], "usage: luastream run SCRIPT.lua"),
    (["run", "app.lua", "--broker", "b", "--help"], "usage: luastream run SCRIPT.lua"),
    (["broker", "--help"], "usage: luastream broker"),
    (["broker", "-h"], "usage: luastream broker"),
    (["state", "--help"], "usage: luastream state list"),
    (["state", "get", "--help"], "usage: luastream state list"),
    (["test", "--help"], "usage: luastream test"),
    (["lua", "--help"], "usage: luastream lua FILE"),
    (["version", "--help"], "usage: luastream version"),
    (["help", "run"], "usage: luastream run SCRIPT.lua"),
    (["help", "broker"], "usage: luastream broker"),
])
def test_help_prints_the_usage_on_stdout_and_exits_0(args, first):
    r = run_cli(*args, timeout=10)
    assert r.returncode == 0, r
    assert r.stdout.startswith(first), r.stdout
    assert r.stderr == ""


def test_help_documents_the_commands():
    out = run_cli("help").stdout
    for text in ["state list DIR [STORE [PARTITION]] [--keys | --values]",
                 "state get DIR STORE KEY [--partition P]",
                 "test [DIR | FILE]", "spec/ if it exists", "*_spec.lua files of the current"]:
        assert text in out, text
    state = run_cli("state", "--help").stdout
    assert "--values" in state and "--partition P" in state and "JSON" in state


# --------------------------------------------------------------------------
# luastream test without DIR

PASS = 'describe("{0}", function() it("passes", function() assert.equal(2, 1 + 1) end) end)\n'
FAIL = 'describe("{0}", function() it("fails", function() assert.equal(1, 2) end) end)\n'
USES_RUNTIME = ('describe("runtime", function() it("loads luastream", function()\n'
                '  assert.is_function(require("luastream").app) end) end)\n')


def test_test_without_dir_runs_spec_dir_when_there_is_one(tmp_path):
    (tmp_path / "spec").mkdir()
    (tmp_path / "spec" / "ok_spec.lua").write_text(PASS.format("in spec/"))
    (tmp_path / "top_spec.lua").write_text(FAIL.format("not run: spec/ wins"))
    r = run_cli("test", cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r
    assert "1 success / 0 failures" in r.stdout, r.stdout


def test_test_without_dir_runs_the_current_directorys_specs_only(tmp_path):
    (tmp_path / "a_spec.lua").write_text(PASS.format("a"))
    (tmp_path / "b_spec.lua").write_text(USES_RUNTIME)
    (tmp_path / "helper.lua").write_text('error("not a spec, must not run")\n')
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "deep_spec.lua").write_text(FAIL.format("not run: a subdirectory"))
    r = run_cli("test", cwd=tmp_path, timeout=60)
    assert r.returncode == 0, r
    assert "2 successes / 0 failures / 0 errors" in r.stdout, r.stdout
    # busted's own options go after --
    r = run_cli("test", "--", "--filter", "loads", cwd=tmp_path, timeout=60)
    assert r.returncode == 0 and "1 success / 0 failures" in r.stdout, r


def test_test_without_dir_and_without_specs_says_what_it_looked_for(tmp_path):
    (tmp_path / "app.lua").write_text("-- not a spec\n")
    r = run_cli("test", cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r
    assert "no specs found" in r.stderr, r.stderr
    assert "spec/" in r.stderr and "*_spec.lua" in r.stderr and str(tmp_path) in r.stderr
    assert "success" not in r.stdout


def test_test_with_a_missing_dir_names_it(tmp_path):
    r = run_cli("test", "no_such_dir", cwd=tmp_path, timeout=60)
    assert r.returncode == 2, r
    assert "no_such_dir" in r.stderr and "No such file" in r.stderr, r.stderr


# --------------------------------------------------------------------------
# luastream state, on the state of a real app


@pytest.fixture(scope="module")
def app_state(tmp_path_factory):
    """Runs the app over the inputs once; returns what the tests compare with."""
    work = tmp_path_factory.mktemp("cli-state")
    topics = {"in": 4, "out": 4, **{f"{APP}__{s}__changelog": 4 for s in STORES}}
    broker = Broker(work / "broker", topics)
    try:
        rows = [(f"k{i % KEYS}".encode(), json.dumps({"x": i}).encode(), None)
                for i in range(100)]
        rows += [(TAB_KEY.encode(), b'{"x": 1000}', None), (UTF8_KEY.encode(), b'{"x": 7}', None)]
        produce(broker.addr, "in", rows)
        script = work / "app.lua"
        script.write_text(SCRIPT)
        app = App(work / "app", script, broker.addr)
        try:
            wait_committed_to_end(broker.addr, APP, "in", 60, app=app)
            assert app.stop() == 0, app.stderr()
        finally:
            app.kill()
        xs, part = {}, {}
        for rec in read_all(broker.addr, "in"):
            key = rec.key.decode()
            xs.setdefault(key, []).append(json.loads(rec.value)["x"])
            part[key] = rec.partition
        yield types.SimpleNamespace(
            dir=work / "app" / "state" / APP, xs=xs, part=part,
            committed=committed(broker.addr, APP, "in"),
            changelog_end=end_offsets(broker.addr, f"{APP}__counts__changelog"))
    finally:
        broker.stop()


def expected_json(key, xs):
    """The state of key in "counts", as `luastream state get` prints it:
    state keys in byte order, no spaces, whole doubles without ".0"."""
    last = xs[-1]
    half = last // 2 if last % 2 == 0 else last / 2
    return json.dumps({"key": key, "last": {"x": last}, "n": len(xs), "sum": sum(xs),
                       "tags": [f"t{last}", "u"], "window": [last, half]},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def state(*args, **kw):
    return run_cli("state", *[str(a) for a in args], **kw)


def test_state_get_prints_the_state_of_a_key_as_json(app_state):
    d = app_state.dir
    for key in ["k3", "k17", UTF8_KEY]:
        r = state("get", d, "counts", key)
        assert r.returncode == 0, r
        assert r.stdout == expected_json(key, app_state.xs[key]) + "\n"
        assert r.stderr == ""
    assert app_state.xs["k3"] == [3, 23, 43, 63, 83]
    assert state("get", d, "counts", "k3").stdout == (
        '{"key":"k3","last":{"x":83},"n":5,"sum":215,"tags":["t83","u"],"window":[83,41.5]}\n')
    # another store; a partition given
    assert state("get", d, "default", "k3").stdout == SEEN + '\n'
    p = app_state.part["k3"]
    r = state("get", d, "counts", "k3", "--partition", p)
    assert r.returncode == 0 and r.stdout == expected_json("k3", app_state.xs["k3"]) + "\n", r
    # a key with a tab: escaped as it is listed, or as the raw bytes
    want = expected_json(TAB_KEY, [1000]) + "\n"
    assert state("get", d, "counts", "tab\\there").stdout == want
    assert state("get", d, "counts", TAB_KEY).stdout == want


def test_state_get_of_absent_state_exits_1_saying_why(app_state):
    d = app_state.dir
    r = state("get", d, "counts", "k99")
    assert r.returncode == 1 and r.stdout == "", r
    assert "no state for key k99 in store counts" in r.stderr and "0-3" in r.stderr, r.stderr
    other = (app_state.part["k3"] + 1) % 4
    r = state("get", d, "counts", "k3", "--partition", other)
    assert r.returncode == 1 and r.stdout == "", r
    assert f"no state for key k3 in store counts partition {other}" in r.stderr, r.stderr
    r = state("get", d, "nostore", "k3")
    assert r.returncode == 1 and "no store nostore" in r.stderr, r
    assert "stores: counts, default, odd" in r.stderr, r.stderr
    r = state("get", d, "counts", "k3", "--partition", "7")
    assert r.returncode == 1 and "has no partition 7" in r.stderr, r
    r = state("get", d, "counts", "k3", "--partition", "x")
    assert r.returncode == 2 and "bad partition x" in r.stderr, r


def parse_rows(stdout):
    lines = stdout.splitlines()
    assert lines[0] == HEADER, stdout
    out = []
    for ln in lines[1:]:
        store, part, keys, nbytes, clog, inp = ln.split()
        assert int(nbytes) > 0, ln
        out.append((store, int(part), int(keys), int(clog), int(inp)))
    return out


def listed(key):
    """A key as `state list` prints it (the tab key is the only one with an escape)."""
    return key.replace("\t", "\\t")


def keys_in(app_state, partition):
    """The message keys of partition, in LMDB order (shorter first)."""
    keys = [k for k, p in app_state.part.items() if p == partition]
    return sorted(keys, key=lambda k: (len(k.encode()), k.encode()))


def test_state_list_filters_by_store_and_partition(app_state):
    d = app_state.dir
    every = parse_rows(state("list", d).stdout)
    assert [(s, p) for s, p, *_ in every] == [(s, p) for s in STORES for p in range(4)]
    r = state("list", d, "counts")
    assert r.returncode == 0, r
    assert parse_rows(r.stdout) == [x for x in every if x[0] == "counts"]
    for p in range(4):
        r = state("list", d, "counts", p)
        assert r.returncode == 0, r
        n = len(keys_in(app_state, p))
        # 6 state keys per message key; the mark: the changelog's end, the committed input
        assert parse_rows(r.stdout) == [("counts", p, 6 * n, app_state.changelog_end[p],
                                         app_state.committed[p])]
        assert parse_rows(state("list", d, "default", p).stdout)[0][:3] == ("default", p, 2 * n)


def test_state_list_of_missing_store_or_partition_and_bad_partitions(app_state):
    d = app_state.dir
    r = state("list", d, "nostore")
    assert r.returncode == 1 and "no store nostore" in r.stderr, r
    assert "stores: counts, default, odd" in r.stderr
    r = state("list", d, "counts", 9)
    assert r.returncode == 1, r
    assert "store counts has no partition 9" in r.stderr and "partitions: 0-3" in r.stderr
    for bad in ["x", "-1", "1.5", "1048576", ""]:
        r = state("list", d, "counts", bad)
        assert r.returncode == 2, (bad, r)
        assert f"bad partition {bad}" in r.stderr and usage_line(r.stderr), r.stderr


def test_state_list_keys_and_values(app_state):
    d = app_state.dir
    p = app_state.part["k3"]
    keys = keys_in(app_state, p)
    r = state("list", d, "counts", p, "--keys")
    assert r.returncode == 0, r
    shown = [listed(k) for k in keys]
    assert r.stdout == "".join(f"counts\t{p}\t{k}\n" for k in shown)
    r = state("list", d, "counts", p, "--values")
    assert r.returncode == 0, r
    assert r.stdout == "".join(f"counts\t{p}\t{s}\t{expected_json(k, app_state.xs[k])}\n"
                               for k, s in zip(keys, shown))
    # every store and partition, and the default store's values
    lines = state("list", d, "--keys").stdout.splitlines()
    assert len(lines) == len(STORES) * len(app_state.xs)
    r = state("list", d, "default", p, "--values")
    assert r.stdout == "".join(f"default\t{p}\t{s}\t{SEEN}\n" for s in shown)
    r = state("list", d, "--keys", "--values")
    assert r.returncode == 2 and "exclude each other" in r.stderr, r


def test_state_on_the_parent_directory_points_at_the_app_directory(app_state):
    parent = app_state.dir.parent
    for args in (["list", parent], ["get", parent, "counts", "k3"]):
        r = state(*args)
        assert r.returncode == 1, r
        assert "no state at" in r.stderr and str(app_state.dir) in r.stderr, r.stderr
    assert not (parent / "data.mdb").exists()


def test_state_clear_drops_only_what_the_filter_selects(app_state, tmp_path):
    d = tmp_path / APP
    shutil.copytree(app_state.dir, d)
    r = state("clear", d, "counts", "x")
    assert r.returncode == 2 and "bad partition x" in r.stderr, r
    p = app_state.part["k3"]
    r = state("clear", d, "counts", p)
    assert r.returncode == 0 and r.stdout == "dropped 1 store partition\n", r
    left = [(s, q) for s, q, *_ in parse_rows(state("list", d).stdout)]
    assert left == ([("counts", q) for q in range(4) if q != p]
                    + [(s, q) for s in STORES[1:] for q in range(4)])
    assert state("get", d, "counts", "k3").returncode == 1
    assert state("get", d, "default", "k3").stdout == SEEN + '\n'
    r = state("clear", d)
    assert r.returncode == 0 and r.stdout == "dropped 11 store partitions\n", r
    assert state("list", d).stdout == HEADER + "\n"


def test_state_a_value_json_cannot_carry_is_an_error_naming_it(app_state):
    """NaN has no JSON form: get fails naming the state key; list --values
    reports the key and goes on with the others, exiting 1."""
    d = app_state.dir
    r = state("get", d, "odd", "k0")
    assert r.returncode == 1 and r.stdout == "", r
    assert 'key k0: state key "v": its value has no JSON form' in r.stderr, r.stderr
    assert "NaN" in r.stderr
    assert state("get", d, "odd", "k1").stdout == '{"v":1}\n'
    p = app_state.part["k0"]
    r = state("list", d, "odd", p, "--values")
    assert r.returncode == 1, r
    others = [k for k in keys_in(app_state, p) if k != "k0"]
    assert r.stdout == "".join(f'odd\t{p}\t{listed(k)}\t{{"v":1}}\n' for k in others)
    assert r.stderr.count("luastream state:") == 1 and "key k0:" in r.stderr, r.stderr
    assert state("list", d, "odd", p, "--keys").returncode == 0


def test_luastream_jit_off_runs_lua_interpreted(tmp_path):
    # docs/edge.md: the way around a LuaJIT code generation bug on arm64
    script = tmp_path / "jit.lua"
    script.write_text("print(jit.status())\n")
    assert run_cli("lua", str(script)).stdout.split("\t")[0] == "true"
    off = run_cli("lua", str(script), env={"LUASTREAM_JIT": "off"})
    assert off.returncode == 0 and off.stdout.split("\t")[0] == "false"
