"""docker/k8s and docker/compose.yaml: the manifests parse, and they have
what running luastream there needs (checked against the runtime's own flags,
endpoints, the image's user and the examples they run). Neither can run here
(no cluster, no Docker engine, no registry for Kafka's image): the image itself
is built and run by scripts/container-test.sh."""

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


def test_statefulset_runs_as_the_images_user_on_a_read_only_root():
    """The pod's user is the one docker/Dockerfile creates, the state volume is
    writable for its group, and nothing but /state is written."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    uid = int(re.search(r"useradd [^\n]*--uid (\d+)", dockerfile).group(1))
    assert re.search(rf"^USER {uid}:{uid}$", dockerfile, re.M)
    pod = statefulset()["spec"]["template"]["spec"]
    sc = pod["securityContext"]
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == uid and sc["fsGroup"] == uid
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


def test_kafka_password_comes_from_a_secret():
    (c,) = statefulset()["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in c["env"]}
    ref = env["KAFKA_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "kafka-credentials" and ref["optional"] is True
    assert not any("password" in a for a in c["args"])


def test_compose_has_a_writable_state_volume_a_producer_and_a_scrape():
    compose = yaml.safe_load((ROOT / "docker" / "compose.yaml").read_text())
    svc = compose["services"]
    crash = svc["crash-detector"]
    args = crash["command"]
    assert args[:2] == ["run", "/app/crash_detection.lua"]
    state_dir = args[args.index("--state-dir") + 1]
    mounts = {m.split(":")[1]: m for m in crash["volumes"]}
    assert mounts[state_dir] == f"state:{state_dir}"  # a named volume, writable
    assert mounts["/app"].endswith(":ro") and "state" in compose["volumes"]
    assert crash["read_only"] is True
    http = args[args.index("--http") + 1]
    port = http.rsplit(":", 1)[1]
    # on a real Kafka the crash detector does not simulate phones: a producer does
    phones = svc["phones"]["command"]
    assert phones[0] == "run" and (ROOT / "examples" / phones[1].split("/app/", 1)[1]).is_file()
    assert svc["phones"]["environment"]["LUASTREAM_BROKER"] == crash["environment"]["LUASTREAM_BROKER"]
    # Prometheus scrapes that port with the shipped configuration
    (mount,) = svc["prometheus"]["volumes"]
    assert mount == "./prometheus:/etc/prometheus:ro"
    prom = yaml.safe_load((ROOT / "docker" / "prometheus" / "prometheus.yml").read_text())
    assert prom["scrape_configs"][0]["static_configs"][0]["targets"] == [f"crash-detector:{port}"]


def test_dockerignore_keeps_build_trees_out_of_the_context():
    lines = (ROOT / ".dockerignore").read_text().split("\n")
    assert ".git" in lines and "build*" in lines
