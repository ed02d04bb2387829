"""The test driver (luastream.testing) against `luastream run`, record for record.

The same input goes through a pipeline twice: produced to a `luastream broker`
and consumed by `luastream run` (with --broker, so app:is_dev_broker() is false
and the examples' simulators stay off), and sent to `testing.driver` (option
dev_broker = false) by a small Lua script run with `luastream lua`. Both sides
have the same number of partitions on every topic, and every input record has
an explicit key and partition, so both see the same records, in the same order,
at the same offsets of each partition. What each wrote must then be the same:
per output topic (the dead-letter topic included), the multiset of (partition,
key bytes, value, headers, timestamp). Values are compared as bytes, except
that JSON objects are compared with their keys sorted: the order in which the
runtime writes an object's keys follows Lua's table order, which is not the
same from one Lua state to the next (production runs differ the same way).

Pipelines: every example with input topics (crash_detection.lua, stateful;
sensor_routing.lua, with dead letters; telemetry.lua, arrays as vecs), and
tests/e2e/scripts/errors_pipeline.lua with bad rows of every kind under
on_error = skip, dead-letter and a function (whose calls are compared too).
"""

import importlib.util
import json
import os
import random
import subprocess
from collections import Counter

import pytest

from conftest import (EXAMPLES, LUASTREAM, ROOT, SCRIPTS, produce, read_all,
                      wait_committed_to_end)

PARTITIONS = 3

# Runs the records of a JSON file through testing.driver and writes what the
# app wrote, one JSON object per line. Bytes travel as hex.
DRIVE_LUA = r"""
local testing = require("luastream.testing")
local core = require("luastream.core")
local null = core.null

local cfg_path, out_path = arg[1], arg[2]
local f = assert(io.open(cfg_path, "rb"))
local cfg = core.decode("json", f:read("*a"))
f:close()

local function unhex(h)
  if h == nil or h == null then return nil end
  return (h:gsub("..", function(x) return string.char(tonumber(x, 16)) end))
end
local function hex(s)
  if s == nil then return null end
  return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end

local set = nil
if cfg.set ~= null and next(cfg.set) ~= nil then set = cfg.set end
local d = testing.driver(cfg.script, { partitions = cfg.partitions, dev_broker = false, set = set })

-- Each partition's records in order, sent in batches of varying size, the
-- partitions taking turns (as one consumer of several partitions would).
local queues, order = {}, {}
for _, r in ipairs(cfg.records) do
  local rec = { raw_key = unhex(r.key), raw_value = unhex(r.value), partition = r.partition,
    timestamp = r.timestamp }
  if r.headers ~= null and #r.headers > 0 then
    local h = {}
    for j, p in ipairs(r.headers) do h[j] = { p[1], unhex(p[2]) } end
    rec.headers = h
  end
  if not queues[r.partition] then
    queues[r.partition] = {}
    order[#order + 1] = r.partition
  end
  table.insert(queues[r.partition], rec)
end
local sizes, turn = { 1, 5, 13, 64, 2 }, 0
local left = true
while left do
  left = false
  for _, p in ipairs(order) do
    local q = queues[p]
    if #q > 0 then
      turn = turn + 1
      local n = math.min(#q, sizes[(turn - 1) % #sizes + 1])
      local batch = {}
      for j = 1, n do batch[j] = table.remove(q, 1) end
      d:send_batch(cfg.topic, batch)
      left = left or #q > 0
    end
  end
end

local out = assert(io.open(out_path, "wb"))
for _, topic in ipairs(cfg.outputs) do
  for _, r in ipairs(d:read(topic, { raw = true })) do
    local hs = {}
    for j, h in ipairs(r.headers or {}) do hs[j] = { h[1], hex(h[2]) } end
    out:write(core.encode("json", { topic = topic, partition = r.partition, key = hex(r.key),
      value = hex(r.value), headers = core.array(hs), timestamp = r.timestamp }), "\n")
  end
end
local errs = d:errors()
out:write(core.encode("json", { errors = #errs }), "\n")
out:close()
"""


# --------------------------------------------------------------------------
# the two sides


def canonical(value):
    """A value as compared: JSON text with its objects' keys sorted (the order of
    an object's keys follows a Lua table's, which differs from one Lua state to
    the next, in production too), else the bytes as they are."""
    if value is None:
        return None
    try:
        return ("json", json.dumps(json.loads(value), sort_keys=True))
    except ValueError:  # not JSON (or not UTF-8): a dead letter's original bytes, say
        return ("bytes", value)


def as_key(topic, partition, key, value, headers, timestamp):
    return (topic, partition, key, canonical(value), tuple((n, v) for n, v in headers), timestamp)


def run_production(broker_factory, run_app, script, group, in_topic, outputs, records,
                   args=(), env=None, extra_topics=()):
    """Records through `luastream run`: {output topic: Counter of records}, stdout."""
    topics = {in_topic: PARTITIONS, **{t: PARTITIONS for t in outputs}}
    topics.update({t: PARTITIONS for t in extra_topics})
    broker = broker_factory(topics)
    offs = produce(broker.addr, in_topic,
                   [(r["key"], r["value"], r["headers"] or None, r["partition"], r["timestamp"])
                    for r in records])
    assert [p for p, _ in offs] == [r["partition"] for r in records]
    app = run_app(script, broker.addr, *args, env=env)
    wait_committed_to_end(broker.addr, group, in_topic, 90, app=app)
    assert app.stop() == 0, app.stderr()
    got = {}
    for t in outputs:
        got[t] = Counter(as_key(t, r.partition, r.key, r.value, r.headers, r.timestamp)
                         for r in read_all(broker.addr, t))
    return got, app.stdout()


def run_driver(tmp_path, script, in_topic, outputs, records, sets=None, env=None):
    """Records through testing.driver: {output topic: Counter of records}, stdout,
    and the number of d:errors() entries."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    drive = tmp_path / "drive.lua"
    drive.write_text(DRIVE_LUA)
    cfg = tmp_path / "records.json"
    out = tmp_path / "out.jsonl"

    def hx(b):
        return None if b is None else b.hex()

    cfg.write_text(json.dumps({
        "script": str(script), "topic": in_topic, "outputs": outputs, "partitions": PARTITIONS,
        "set": sets or {},
        "records": [{"key": hx(r["key"]), "value": hx(r["value"]), "partition": r["partition"],
                     "timestamp": r["timestamp"],
                     "headers": [[n, hx(v)] for n, v in (r["headers"] or [])]}
                    for r in records],
    }))
    full_env = dict(os.environ)
    full_env.pop("LUASTREAM_BROKER", None)
    full_env.update(env or {})
    proc = subprocess.run([LUASTREAM, "lua", str(drive), str(cfg), str(out)], capture_output=True,
                          text=True, errors="replace", timeout=300, cwd=tmp_path, env=full_env, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"the driver failed:\n{proc.stderr}"
    got = {t: Counter() for t in outputs}
    nerr = None
    for line in out.read_text().splitlines():
        o = json.loads(line)
        if "errors" in o:
            nerr = o["errors"]
            continue
        unhx = lambda h: None if h is None else bytes.fromhex(h)  # noqa: E731
        got[o["topic"]][as_key(o["topic"], o["partition"], unhx(o["key"]), unhx(o["value"]),
                               [(n, unhx(v)) for n, v in o["headers"]], o["timestamp"])] += 1
    return got, proc.stdout, nerr


def assert_same(prod, drv):
    for t in prod:
        p, d = prod[t], drv[t]
        if p != d:
            only_p = list((p - d).elements())[:5]
            only_d = list((d - p).elements())[:5]
            pytest.fail(f"{t}: {sum(p.values())} records from luastream run, {sum(d.values())} from "
                        f"the driver\nonly in run (first 5): {only_p}\n"
                        f"only in the driver (first 5): {only_d}")


def record(key, value, partition, timestamp, headers=None):
    return {"key": key, "value": value, "partition": partition, "timestamp": timestamp,
            "headers": headers or []}


def compare(broker_factory, run_app, tmp_path, script, group, in_topic, outputs, records,
            sets=None, env=None, extra_topics=()):
    args = []
    for k, v in (sets or {}).items():
        args += ["--set", f"{k}={v}"]
    prod, prod_out = run_production(broker_factory, run_app, script, group, in_topic, outputs,
                                    records, args, env, extra_topics)
    drv, drv_out, nerr = run_driver(tmp_path / "driver", script, in_topic, outputs, records, sets, env)
    assert_same(prod, drv)
    return prod, prod_out, drv_out, nerr


# --------------------------------------------------------------------------
# inputs (deterministic)


def phone_readings(phones=24, per_phone=30, seed=7):
    rnd = random.Random(seed)
    recs = []
    for i in range(per_phone):
        for k in range(phones):
            dev = f"phone-{k:02d}"
            ts = 1_700_000_000_000 + i * 100 + k
            if rnd.random() < 0.05:
                g = (rnd.uniform(3, 6), rnd.uniform(-4, 4), rnd.uniform(2, 5))
            else:
                g = (rnd.uniform(-0.2, 0.2), rnd.uniform(-0.2, 0.2), 1 + rnd.uniform(-0.3, 0.3))
            v = {"device": dev, "ts": ts, "gX": g[0], "gY": g[1], "gZ": g[2]}
            recs.append(record(dev.encode(), json.dumps(v).encode(), k % PARTITIONS, ts))
    return recs


def sensor_readings(n=240, seed=11):
    rnd = random.Random(seed)
    kinds = [("temperature", ["C", "F", "K", None, "R"]), ("pressure", ["kPa", "psi", "bar", "hPa", "atm"]),
             ("humidity", ["%RH"]), ("co2", ["ppm"])]
    recs = []
    for i in range(n):
        kind, units = kinds[rnd.randrange(len(kinds))]
        unit = rnd.choice(units)
        sensor = f"{kind[0]}-{rnd.randrange(30)}"
        r = {"sensor": sensor, "kind": kind, "site": {"id": f"plant-{rnd.randrange(4)}"}}
        if rnd.random() < 0.9:
            r["value"] = round(rnd.uniform(-50, 400), rnd.randrange(4))
        elif rnd.random() < 0.5:
            r["value"] = None
        if unit is not None:
            r["unit"] = unit
        headers = [("gateway", f"gw-{i % 3}".encode())] if i % 4 == 0 else []
        recs.append(record(sensor.encode(), json.dumps(r).encode(), rnd.randrange(PARTITIONS),
                           1_700_000_000_000 + i, headers))
    return recs


def telemetry_messages(n=18):
    spec = importlib.util.spec_from_file_location("gen_telemetry", ROOT / "tests" / "bench" / "gen_telemetry.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    recs = []
    for key, msg in mod.messages(n, rate=1500, seed=5, cars=6):
        car = int(key.split("-")[1])  # "car-3": each car keeps to one partition
        recs.append(record(key.encode(), json.dumps(msg).encode(), car % PARTITIONS, msg["t0"]))
    return recs


ERRORS_ENV = {"E2E_IN": "errors-in", "E2E_OUT": "errors-out", "E2E_DLQ": "errors-dlq",
              "E2E_APP": "errors-e2e"}


def error_rows(seed=3):
    """Good rows around every kind of bad input (no fatal row: that one stops)."""
    bad = [
        (b"k101", b'{"id": 101, "n": "abc"}', [("trace", b"t-101")]),           # process
        (b"k102", b'{"id": 102}', []),                                          # process
        (b"k107", b'{"id": 107, "n": 1, "nan": true}', [("trace", b"t-107")]),  # encode
        (b"k103", b'{"id": 103, "n": ', [("trace", b"t-103"), ("bin", b"\x00\xff")]),  # decode
        (b"k104", b'{"id": 104, "n": 1, "s": "\xff\xfe"}', []),                 # decode (UTF-8)
        (b"k105", b"", []),                                                     # decode (empty)
        (b"\xc3\x28", b'{"id": 108, "n": 1}', [("trace", b"t-108")]),           # decode (key)
        (b"k109", None, []),                                                    # tombstone
    ]
    rnd = random.Random(seed)
    recs = []
    i = 0
    for _ in range(3):
        for key, value, headers in bad:
            for _ in range(rnd.randrange(1, 6)):
                i += 1
                recs.append(record(f"k{i}".encode(), json.dumps({"id": i, "n": i * 1.5}).encode(),
                                   rnd.randrange(PARTITIONS), 1_700_000_000_000 + i,
                                   [("seq", str(i).encode())] if i % 3 == 0 else []))
            i += 1
            recs.append(record(key, value, rnd.randrange(PARTITIONS), 1_700_000_000_000 + i, headers))
    return recs


# --------------------------------------------------------------------------
# the tests


def test_crash_detection(broker_factory, run_app, tmp_path):
    recs = phone_readings()
    prod, _, _, _ = compare(broker_factory, run_app, tmp_path, EXAMPLES / "crash_detection.lua",
                            "crash-detector", "phone-data", ["crash-alerts"], recs,
                            extra_topics=["crash-detector__default__changelog"])
    assert sum(prod["crash-alerts"].values()) >= 20  # the data set makes alerts


def test_sensor_routing(broker_factory, run_app, tmp_path):
    recs = sensor_readings()
    outputs = ["temperatures-c", "pressures-kpa", "readings-other", "readings-dlq"]
    prod, _, _, nerr = compare(broker_factory, run_app, tmp_path, EXAMPLES / "sensor_routing.lua",
                               "sensor-router", "sensor-readings", outputs, recs)
    for t in outputs:
        assert sum(prod[t].values()) > 0, t
    assert nerr == sum(prod["readings-dlq"].values())


def test_telemetry(broker_factory, run_app, tmp_path):
    recs = telemetry_messages()
    prod, _, _, _ = compare(broker_factory, run_app, tmp_path, EXAMPLES / "telemetry.lua",
                            "telemetry", "car-telemetry", ["car-stats", "car-alerts"], recs)
    assert sum(prod["car-stats"].values()) == len(recs)


@pytest.mark.parametrize("policy", ["skip", "dead-letter"])
def test_errors_pipeline(broker_factory, run_app, tmp_path, policy):
    recs = error_rows()
    prod, _, _, nerr = compare(broker_factory, run_app, tmp_path, SCRIPTS / "errors_pipeline.lua",
                               "errors-e2e", "errors-in", ["errors-out", "errors-dlq"], recs,
                               sets={"on_error": policy}, env=ERRORS_ENV)
    bad = 7 * 3  # every bad row but the tombstone, three times
    assert nerr == bad
    assert sum(prod["errors-dlq"].values()) == (bad if policy == "dead-letter" else 0)
    assert sum(prod["errors-out"].values()) == len(recs) - 8 * 3


def test_errors_pipeline_on_error_function(broker_factory, run_app, tmp_path):
    recs = error_rows()
    env = {**ERRORS_ENV, "E2E_POLICY_FN": "1"}
    prod, prod_out, drv_out, _ = compare(broker_factory, run_app, tmp_path,
                                         SCRIPTS / "errors_pipeline.lua", "errors-e2e", "errors-in",
                                         ["errors-out", "errors-dlq"], recs, env=env)
    # The function saw the same records, rows and messages on both sides.
    def calls(text):
        return Counter(ln for ln in text.splitlines() if ln.startswith("on_error|"))
    assert calls(prod_out) == calls(drv_out)
    assert sum(calls(prod_out).values()) == 7 * 3
