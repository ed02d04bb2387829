"""docker/k8s: the manifests parse, and the StatefulSet has what running
luastream there needs (checked against the runtime's own flags and endpoints)."""

import re

import yaml

from conftest import ROOT, run_cli

K8S = ROOT / "docker" / "k8s"


def docs():
    out = []
    for path in sorted(K8S.glob("*.yaml")):
        out += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return out


def statefulset():
    (sts,) = [d for d in docs() if d["kind"] == "StatefulSet"]
    return sts


def test_every_manifest_parses_and_has_kind_and_name():
    ds = docs()
    assert {d["kind"] for d in ds} >= {"StatefulSet", "Service"}
    assert all(d["apiVersion"] and d["metadata"]["name"] for d in ds)


def test_statefulset_runs_luastream_with_state_probes_and_static_membership():
    sts = statefulset()
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    (c,) = pod["containers"]
    args = c["args"]
    assert args[0] == "run" and "--watch" in args
    assert args[args.index("--state-dir") + 1] == "/state"
    http = args[args.index("--http") + 1]
    assert re.fullmatch(r"0\.0\.0\.0:\d+", http)
    port = int(http.split(":")[1])
    assert "kafka.group.instance.id=$(POD_NAME)" in args
    env = {e["name"]: e for e in c["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["http"] == port
    assert c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["state"]["mountPath"] == "/state" and not mounts["state"].get("readOnly")
    assert mounts["script"]["readOnly"] is True
    assert [t["metadata"]["name"] for t in spec["volumeClaimTemplates"]] == ["state"]
    assert pod["terminationGracePeriodSeconds"] >= 30
    assert spec["serviceName"] == "crash-detector"


def test_the_flags_the_manifest_uses_exist():
    """Every option in the container's args is one `luastream run` knows."""
    args = statefulset()["spec"]["template"]["spec"]["containers"][0]["args"]
    help_text = run_cli("run", "--help").stdout
    for a in args:
        if a.startswith("--"):
            assert a in help_text, a
