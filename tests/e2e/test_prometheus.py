"""Debian's Prometheus server scrapes `luastream run --http` and its query API
returns the exact counts of a known input with bad rows (on_error = skip)."""

import json
import subprocess
import urllib.parse
import urllib.request

from conftest import wait_committed_to_end, wait_until
from test_http import free_port
from test_state import IN, OUT, SCRIPT, produce, rows, topics


def query(port, expr):
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            data = json.loads(r.read())
    except OSError:
        return None
    result = data.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_exact_counts(broker_factory, run_app, tmp_path):
    app_name = "prom"
    broker = broker_factory(topics(app_name))
    produce(broker.addr, IN, rows(0, 200) + [(b"k1", b"{oops", None)] * 2 +
            [(b"k2", b'{"x": "not a number"}', None)] * 3)
    app_port, prom_port = free_port(), free_port()
    app = run_app(SCRIPT, broker.addr, "--name", app_name, "--http", f"127.0.0.1:{app_port}",
                  "--set", "on_error=skip", "--set", "commit_interval=0.5")
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: luastream\n    static_configs:\n"
        f"      - targets: ['127.0.0.1:{app_port}']\n")
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={config}",
                             f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                             f"--web.listen-address=127.0.0.1:{prom_port}"],
                            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_committed_to_end(broker.addr, app_name, IN, 60, app=app)
        expect = {
            f'sum(luastream_messages_in_total{{topic="{IN}"}})': 205,
            f'luastream_messages_out_total{{topic="{OUT}"}}': 200,
            'luastream_errors_total{stage="decode",action="skip"}': 2,
            'luastream_errors_total{stage="process",action="skip"}': 3,
            'up{job="luastream"}': 1,
        }
        for expr, want in expect.items():
            wait_until(lambda e=expr, w=want: query(prom_port, e) == w, 40, f"{expr} == {want}", app=app)
        assert query(prom_port, "luastream_batch_seconds_count") >= 1
    finally:
        prom.terminate()
        prom.wait(10)
        log.close()
    assert app.stop() == 0, app.stderr()
