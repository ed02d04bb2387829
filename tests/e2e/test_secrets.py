"""Secrets in kafka properties: values read from the environment or a file
(`{ env = "NAME" }`, `{ file = "PATH" }`) reach librdkafka and never appear in
logs (text or JSON, librdkafka's debug output included), errors, the status
line, /metrics, the probes or /state. scripts/secrets.lua takes the property
named by E2E_PROP (default sasl.password) from E2E_SECRET and
ssl.key.password from the file E2E_SECRET_FILE."""

import json
import uuid

from conftest import SCRIPTS, line_of, produce, run_cli, wait_count, wait_until
from test_http import free_port, get

SCRIPT = SCRIPTS / "secrets.lua"
PATHS = ("/metrics", "/health", "/ready", "/state/counts?key=k1", "/state/counts?key=nobody",
         "/state/nostore?key=k1", "/nope")


def sentinels(tmp_path):
    """(env, file sentinel, the env for the app)."""
    env_secret, file_secret = f"ENV-SENTINEL-{uuid.uuid4().hex}", f"FILE-SENTINEL-{uuid.uuid4().hex}"
    path = tmp_path / "ssl-key-password"
    path.write_text(file_secret + "\n")
    return env_secret, file_secret, {"E2E_SECRET": env_secret, "E2E_SECRET_FILE": str(path)}


def test_secrets_never_appear_in_logs_metrics_or_http(broker_factory, run_app, tmp_path):
    env_secret, file_secret, env = sentinels(tmp_path)
    broker = broker_factory({"in": 4, "out": 4})
    produce(broker.addr, "in", [(f"k{i % 5}", json.dumps({"x": i}), None) for i in range(20)])
    seen = []
    for fmt in ("text", "json"):  # the second run restores its state from the changelog
        port = free_port()
        app = run_app(SCRIPT, broker.addr, "--http", f"127.0.0.1:{port}", "--log-level", "debug",
                      "--log-format", fmt, "--set", "kafka.debug=conf,security,generic", env=env)
        if fmt == "text":
            assert len(wait_count(broker.addr, "out", 20, 60, app=app)) == 20
        wait_until(lambda: get(port, "/state/counts?key=k1")[0] == 200, 60, "k1's state", app=app)
        assert json.loads(get(port, "/state/counts?key=k1")[1]) == {"n": 4}
        bodies = [get(port, p)[1] for p in PATHS]
        assert app.stop() == 0, app.stderr()
        err = app.stderr()
        # librdkafka got both, and its configuration dump redacts them
        for prop in ("sasl.password", "ssl.key.password"):
            assert f"{prop} = [redacted]" in err, err
        if fmt == "json":
            assert all(json.loads(line)["msg"] for line in err.splitlines())
        seen += [" ".join(app.cmd), app.stdout(), err, *bodies]
    for text in seen:
        assert env_secret not in text and file_secret not in text


def test_a_mistyped_or_invalid_secret_property_is_named_without_its_value(run_app, tmp_path):
    env_secret, file_secret, env = sentinels(tmp_path)
    cases = {
        "sasl.pasword": "kafka option 'sasl.pasword': no such librdkafka property",
        "consumer.sasl.pasword": "kafka option 'sasl.pasword': no such librdkafka property",
        "sasl.oauthbearer.method": "kafka option 'sasl.oauthbearer.method': invalid value (a secret: not shown)",
    }
    for prop, message in cases.items():
        app = run_app(SCRIPT, None, env={**env, "E2E_PROP": prop})
        assert app.wait(30) == 2, (prop, app.stderr())
        assert message in app.stderr(), app.stderr()
        assert env_secret not in app.stderr() + app.stdout() and file_secret not in app.stderr() + app.stdout()


def test_a_value_from_the_environment_reaches_librdkafka(run_app, tmp_path):
    """A property that is no secret shows its value in errors: here one read
    from the environment, so it was read and handed to librdkafka."""
    _, _, env = sentinels(tmp_path)
    app = run_app(SCRIPT, None, env={**env, "E2E_PROP": "security.protocol", "E2E_SECRET": "carrier-pigeon"})
    assert app.wait(30) == 2, app.stderr()
    assert "kafka option 'security.protocol' = 'carrier-pigeon': Invalid value" in app.stderr(), app.stderr()


def test_an_unset_variable_or_unreadable_file_stops_at_start(run_app, tmp_path):
    where = f"{SCRIPT}:{line_of(SCRIPT, 'ls.app{')}: ls.app: kafka property"
    _, _, env = sentinels(tmp_path)
    no_env = run_app(SCRIPT, None, env={"E2E_SECRET_FILE": env["E2E_SECRET_FILE"]})
    assert no_env.wait(30) == 2
    assert (f"{where} 'sasl.password': environment variable E2E_SECRET is not set or empty"
            in no_env.stderr()), no_env.stderr()
    no_file = run_app(SCRIPT, None, env={**env, "E2E_SECRET_FILE": str(tmp_path / "absent")})
    assert no_file.wait(30) == 2
    assert (f"{where} 'ssl.key.password': cannot read file {tmp_path / 'absent'}: No such file or directory"
            in no_file.stderr()), no_file.stderr()


def test_the_test_driver_needs_no_secrets(tmp_path):
    """`luastream test` connects to nothing: the script's secrets are not read."""
    spec = tmp_path / "secrets_spec.lua"
    spec.write_text(f"""
local testing = require("luastream.testing")
describe("secrets.lua", function()
  it("counts per key without its secrets", function()
    local d = testing.driver({json.dumps(str(SCRIPT))})
    d:send("in", {{ key = "k", value = {{ x = 1 }} }})
    d:send("in", {{ key = "k", value = {{ x = 2 }} }})
    local out = d:read("out")
    assert.same({{ 1, 2 }}, {{ out[1].value.n, out[2].value.n }})
  end)
end)
""")
    r = run_cli("test", str(spec))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 success / 0 failures / 0 errors" in r.stdout, r.stdout
