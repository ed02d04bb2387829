"""Debian's Prometheus server scrapes `luastream run --http` and its query API
returns the exact counts of a known input with bad rows (on_error = skip),
with the recording and alerting rules of docker/prometheus/rules.yml loaded;
promtool checks the shipped configurations and unit-tests the rules."""

import json
import re
import subprocess
import urllib.parse
import urllib.request

import yaml

from conftest import ROOT, wait_committed_to_end, wait_until
from test_http import free_port
from test_state import IN, OUT, SCRIPT, produce, rows, topics


PROM = ROOT / "docker" / "prometheus"


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
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"rule_files: ['{PROM / 'rules.yml'}']\n"
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
            'luastream_ready{job="luastream"}': 1,
            # the recording rules of docker/prometheus/rules.yml
            'luastream:consumer_lag:sum{topic="in"}': 0,
            'count(luastream:messages_out:rate1m{topic="out"})': 1,
            'count(luastream:errors:rate5m{stage="process",action="skip"})': 1,
            'count(luastream:batch_seconds:p99_5m)': 1,  # NaN once no batch ran in 5 min
        }
        for expr, want in expect.items():
            wait_until(lambda e=expr, w=want: query(prom_port, e) == w, 40, f"{expr} == {want}", app=app)
        assert query(prom_port, "luastream_batch_seconds_count") >= 1
        with urllib.request.urlopen(f"http://127.0.0.1:{prom_port}/api/v1/rules", timeout=5) as r:
            groups = json.loads(r.read())["data"]["groups"]
        assert [g["name"] for g in groups] == ["luastream"]
        assert {rule["health"] for rule in groups[0]["rules"]} == {"ok"}, groups
    finally:
        prom.terminate()
        prom.wait(10)
        log.close()
    assert app.stop() == 0, app.stderr()


def promtool(*args):
    return subprocess.run(["promtool", *args], capture_output=True, text=True, cwd=PROM, timeout=60)


def test_shipped_prometheus_config_and_rules_check_and_pass_their_unit_tests():
    r = promtool("check", "config", "prometheus.yml")
    assert r.returncode == 0 and "SUCCESS: 11 rules found" in r.stdout, r.stdout + r.stderr
    r = promtool("test", "rules", "rules_test.yml")
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr


def test_kubernetes_scrape_config_keeps_the_annotated_pods():
    """Debian's Prometheus is built without Kubernetes discovery, so promtool
    cannot load kubernetes.yml: check what it says against the StatefulSet's
    annotations instead."""
    cfg = yaml.safe_load((PROM / "kubernetes.yml").read_text())
    assert cfg["rule_files"] == ["rules.yml"]
    (job,) = cfg["scrape_configs"]
    assert job["job_name"] == "luastream" and job["kubernetes_sd_configs"] == [{"role": "pod"}]
    keep = job["relabel_configs"][0]
    assert keep["action"] == "keep" and keep["regex"] == "true"
    sts = [d for d in yaml.safe_load_all((ROOT / "docker" / "k8s" / "crash-detector.yaml").read_text())
           if d and d["kind"] == "StatefulSet"][0]
    ann = sts["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/path"] == "/metrics"
    port = sts["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
    assert ann["prometheus.io/port"] == str(port)
    # the address rewrite: pod IP with the annotated port
    addr = job["relabel_configs"][2]
    assert re.sub("^" + addr["regex"] + "$", addr["replacement"].replace("$", "\\"),
                  f"10.1.2.3:8080;{port}") == f"10.1.2.3:{port}"
