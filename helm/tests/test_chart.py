"""The chart, rendered by Helm's engine for the default values and the ci/
files, validated against Kubernetes' schemas and checked for what matters
to Magnetar."""

import json
import re

import kubernetes_validate
import pytest
import yaml

from conftest import (
    CHART,
    CI_VALUES,
    NAMESPACE,
    RELEASE,
    REPO,
    VALUE_SETS,
    by_kind,
    env_of,
    merge,
    one,
    pod_spec,
    render,
    strip,
)

import helm_python

# Oldest supported (Chart.yaml kubeVersion: the broker's preStop sleep action
# is on by default from 1.30), a middle one, and a recent one.
# kubernetes-validate ships these schemas in its wheel: no network needed.
KUBE_VERSIONS = ["1.30", "1.31", "1.33"]

# Kinds from CRDs, which Kubernetes' own schemas do not cover; checked by
# test_service_monitor instead.
CRD_KINDS = {"ServiceMonitor"}

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job")


def all_docs(rendered):
    for name, (docs, _) in rendered.items():
        for d in docs:
            yield name, d


# ---- Helm's own checks ---------------------------------------------------------


@pytest.mark.parametrize("values_file", [None, "minimal.yaml", "production.yaml", "tls.yaml", "tls-only.yaml"])
def test_helm_lint_passes(values_file):
    values = yaml.safe_load((CI_VALUES / values_file).read_text()) if values_file else None
    result = helm_python.lint(str(CHART), values, strict=True)
    assert result["errors"] == [], result
    # Severity 1 is INFO (e.g. "icon is recommended"); warnings (2) and errors (4) fail.
    serious = [m for m in result["messages"] if m["severity"] > 1]
    assert serious == [], serious


def test_bad_values_file_is_refused_by_the_schema():
    bad = yaml.safe_load((CI_VALUES / "bad.yaml").read_text())
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(bad)
    message = str(err.value)
    assert "/meta/replicas" in message, message
    assert "3, 5, 7" in message, message


@pytest.mark.parametrize(
    "values, where",
    [
        ({"meta": {"replicas": 1}}, "/meta/replicas"),
        ({"meta": {"replicas": 6}}, "/meta/replicas"),
        ({"tls": {"enabled": True}}, "/tls/secretName"),
        ({"auth": {"enabled": True}}, "/auth/secretName"),
        ({"broker": {"resources": {"limits": None}}}, "/broker/resources"),
        ({"podSecurityContext": {"runAsNonRoot": False}}, "/podSecurityContext/runAsNonRoot"),
        ({"bookie": {"persistence": {"journal": {"size": "ten gigs", "storageClass": ""}}}}, "/bookie/persistence/journal/size"),
        ({"initialize": {"enabled": True, "tenants": [{"name": "a b"}]}}, "/initialize/tenants/0/name"),
        ({"brokers": {"replicas": 3}}, "brokers"),
    ],
)
def test_schema_refuses(values, where):
    with pytest.raises(helm_python.HelmValuesError) as err:
        render(values)
    assert where in str(err.value), str(err.value)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"broker": {"ensembleSize": 4}}, "broker.ensembleSize is 4 but bookie.replicas is 3"),
        ({"bookie": {"replicas": 2}, "broker": {"ensembleSize": 3, "writeQuorum": 2, "ackQuorum": 2}},
         "broker.ensembleSize is 3 but bookie.replicas is 2"),
        ({"broker": {"ensembleSize": 2, "writeQuorum": 3, "ackQuorum": 2}}, "broker.writeQuorum (3) must not exceed broker.ensembleSize (2)"),
        ({"broker": {"ensembleSize": 3, "writeQuorum": 2, "ackQuorum": 3}}, "broker.ackQuorum (3) must not exceed broker.writeQuorum (2)"),
        ({"broker": {"terminationGracePeriodSeconds": 30, "preStopSleepSeconds": 10}}, "broker.terminationGracePeriodSeconds (30) must be at least"),
        ({"auth": {"enabled": True, "secretName": "s", "keyType": "public"}}, "auth.keyType public needs auth.brokerClientTokenKey"),
        ({"offload": {"enabled": True, "driver": "aws-s3", "bucket": "b"}}, "offload.driver aws-s3 needs offload.region"),
        ({"offload": {"enabled": True, "driver": "S3", "bucket": "b"}}, "offload.driver S3 (an S3-protocol server) needs offload.endpoint"),
        ({"offload": {"enabled": True, "driver": "aws-s3", "region": "eu-west-1"}}, "needs offload.bucket"),
        ({"broker": {"autoscaling": {"enabled": True, "minReplicas": 5, "maxReplicas": 2}}}, "minReplicas must not exceed maxReplicas"),
    ],
)
def test_templates_refuse_inconsistent_values(values, message):
    with pytest.raises(helm_python.HelmRenderError) as err:
        render(values)
    assert message in str(err.value), str(err.value)


# ---- Kubernetes schemas ----------------------------------------------------------


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_manifest_validates_against_kubernetes_schemas(rendered, kube_version):
    checked = 0
    for name, doc in all_docs(rendered):
        if doc["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(strip(doc), kube_version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{name}: {doc['kind']} {doc['metadata']['name']} invalid for Kubernetes {kube_version}: {e.message} at {list(e.path)}")
        checked += 1
    # Every values set renders at least its 3 workloads, services, PDBs, SAs.
    assert checked >= 3 * 12


def test_every_values_set_renders_the_expected_objects(rendered):
    for name, (docs, _) in rendered.items():
        kinds = sorted(d["kind"] for d in docs)
        jobs = 1 if VALUE_SETS[name].get("initialize", {}).get("tenants") else 0
        for kind, count in [("StatefulSet", 2), ("Deployment", 1), ("Job", jobs), ("PodDisruptionBudget", 3), ("Service", 3), ("ServiceAccount", 2)]:
            assert kinds.count(kind) == count, (name, kind, kinds)
        for d in docs:
            assert d["metadata"].get("namespace") == NAMESPACE, (name, d["kind"], d["metadata"]["name"])


# ---- What matters to Magnetar ------------------------------------------------------


def parse_peers(value):
    peers = {}
    for item in value.split(","):
        node_id, addr = item.split("=", 1)
        peers[int(node_id)] = addr
    return peers


@pytest.mark.parametrize("replicas", [3, 5, 7])
def test_meta_peer_list_matches_replica_count(replicas):
    docs, _ = render({"meta": {"replicas": replicas}})
    sts = one(docs, "StatefulSet", "-meta")
    assert sts["spec"]["replicas"] == replicas
    # Voters must start together: readiness needs an elected leader.
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    container = pod_spec(sts)["containers"][0]
    env = env_of(container)
    peers = parse_peers(env["MAGNETAR_META_PEERS"])
    assert sorted(peers) == list(range(1, replicas + 1))
    headless = one(docs, "Service", "-meta-headless")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == "grpc")
    # Pods are numbered from 1 and node i is pod <sts>-i ...
    assert sts["spec"]["ordinals"] == {"start": 1}
    for node_id, addr in peers.items():
        assert addr == f"{sts['metadata']['name']}-{node_id}.{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{port}"
    # ... because each pod takes its ordinal as its id (no shell in the image).
    (id_var,) = [e for e in container["env"] if e["name"] == "MAGNETAR_META_ID"]
    assert id_var["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    assert "command" not in container and "args" not in container
    # Its advertised address is its own entry of the peer list.
    assert env["MAGNETAR_META_ADVERTISE"] == f"$(POD_NAME).{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local:{port}"
    # Bookies and brokers are given every voter.
    addrs = ",".join(peers[i] for i in sorted(peers))
    bookie = pod_spec(one(docs, "StatefulSet", "-bookie"))["containers"][0]
    broker = pod_spec(one(docs, "Deployment", "-broker"))["containers"][0]
    assert env_of(bookie)["MAGNETAR_BOOKIE_META"] == addrs
    assert env_of(broker)["MAGNETAR_BROKER_META"] == addrs


def test_service_containers_run_the_images_own_command(rendered):
    """The service images have no shell: their entrypoint runs the binary and
    the chart configures it through the environment only."""
    docs, _ = rendered["production"]
    for kind, suffix in [("StatefulSet", "-meta"), ("StatefulSet", "-bookie"), ("Deployment", "-broker")]:
        c = pod_spec(one(docs, kind, suffix))["containers"][0]
        assert "command" not in c and "args" not in c, suffix
        for handler in (c.get("lifecycle") or {}).values():
            assert "exec" not in handler, suffix


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_broker_quorums_fit_the_bookies(rendered, name):
    docs, _ = rendered[name]
    bookies = one(docs, "StatefulSet", "-bookie")["spec"]["replicas"]
    env = env_of(pod_spec(one(docs, "Deployment", "-broker"))["containers"][0])
    e, qw, qa = (int(env[f"MAGNETAR_BROKER_{k}"]) for k in ("ENSEMBLE_SIZE", "WRITE_QUORUM", "ACK_QUORUM"))
    assert 1 <= qa <= qw <= e <= bookies, (e, qw, qa, bookies)


def test_notes_warn_when_ensemble_uses_every_bookie():
    _, notes = render({"broker": {"ensembleSize": 3, "writeQuorum": 2, "ackQuorum": 2}})
    assert "WARNING: broker.ensembleSize (3) equals bookie.replicas" in notes
    _, notes = render({})
    assert "WARNING" not in notes


def containers_of(doc):
    spec = pod_spec(doc)
    return spec.get("initContainers", []) + spec["containers"]


def test_every_container_has_probes_limits_and_a_non_root_security_context(rendered):
    seen = 0
    for name, doc in all_docs(rendered):
        if doc["kind"] not in WORKLOAD_KINDS:
            continue
        spec = pod_spec(doc)
        where = f"{name}: {doc['kind']} {doc['metadata']['name']}"
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", where
        assert spec["automountServiceAccountToken"] is False, where
        for c in containers_of(doc):
            seen += 1
            # Long-running containers are probed; a Job's container runs to completion.
            if doc["kind"] != "Job":
                assert "readinessProbe" in c and "livenessProbe" in c, f"{where}/{c['name']} lacks probes"
            for kind in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    assert c["resources"][kind][res], f"{where}/{c['name']} lacks {kind}.{res}"
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["runAsUser"] != 0, where
            assert sc["allowPrivilegeEscalation"] is False, where
            assert sc["readOnlyRootFilesystem"] is True, where
            assert sc["capabilities"]["drop"] == ["ALL"], where
            # A read-only root filesystem needs a writable /tmp.
            assert any(m["mountPath"] == "/tmp" for m in c["volumeMounts"]), where
    # 3 services in each of 3 values sets, plus the production init Job.
    assert seen >= 3 * 3 + 1


def test_probes_point_at_the_health_endpoints(rendered):
    docs, _ = rendered["default"]
    for kind, suffix in [("StatefulSet", "-meta"), ("StatefulSet", "-bookie"), ("Deployment", "-broker")]:
        c = pod_spec(one(docs, kind, suffix))["containers"][0]
        assert c["readinessProbe"]["httpGet"] == {"path": "/health", "port": "http"}, suffix
        http = next(p["containerPort"] for p in c["ports"] if p["name"] == "http")
        env = env_of(c)
        http_var = {"-meta": "MAGNETAR_META_HTTP", "-bookie": "MAGNETAR_BOOKIE_HTTP", "-broker": "MAGNETAR_BROKER_HTTP"}[suffix]
        assert env[http_var] == f"0.0.0.0:{http}", suffix
    # A metadata outage must not restart every meta node or broker: their
    # liveness only checks that the port answers.
    for kind, suffix in [("StatefulSet", "-meta"), ("Deployment", "-broker")]:
        c = pod_spec(one(docs, kind, suffix))["containers"][0]
        assert "tcpSocket" in c["livenessProbe"], suffix


def test_broker_grace_period_covers_its_drain(rendered):
    for name in VALUE_SETS:
        docs, _ = rendered[name]
        dep = one(docs, "Deployment", "-broker")
        spec = pod_spec(dep)
        c = spec["containers"][0]
        sleep = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert spec["terminationGracePeriodSeconds"] >= sleep + 30, name
        # Rolling updates never take a broker away before its replacement is ready.
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def match(selector, labels):
    return all(labels.get(k) == v for k, v in selector.items())


def test_pdbs_and_services_select_the_right_pods(rendered):
    for name, (docs, _) in rendered.items():
        pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in docs if d["kind"] in ("Deployment", "StatefulSet")}
        for pdb in by_kind(docs, "PodDisruptionBudget"):
            assert pdb["spec"]["maxUnavailable"] == 1, name
            selected = [p for p, labels in pods.items() if match(pdb["spec"]["selector"]["matchLabels"], labels)]
            assert len(selected) == 1, (name, pdb["metadata"]["name"], selected)
            assert pdb["metadata"]["name"] == selected[0], (name, pdb["metadata"]["name"], selected)
        for svc in by_kind(docs, "Service"):
            selected = [p for p, labels in pods.items() if match(svc["spec"]["selector"], labels)]
            assert len(selected) == 1, (name, svc["metadata"]["name"], selected)
            target = next(d for d in docs if d["metadata"]["name"] == selected[0] and d["kind"] in ("Deployment", "StatefulSet"))
            port_names = {p["name"] for c in pod_spec(target)["containers"] for p in c["ports"]}
            for p in svc["spec"]["ports"]:
                assert p["targetPort"] in port_names, (name, svc["metadata"]["name"], p)


def test_anti_affinity_required_for_meta_and_bookies_preferred_for_brokers(rendered):
    docs, _ = rendered["default"]
    for suffix in ("-meta", "-bookie"):
        sts = one(docs, "StatefulSet", suffix)
        anti = pod_spec(sts)["affinity"]["podAntiAffinity"]
        assert "preferredDuringSchedulingIgnoredDuringExecution" not in anti
        (term,) = anti["requiredDuringSchedulingIgnoredDuringExecution"]
        assert match(term["labelSelector"]["matchLabels"], sts["spec"]["template"]["metadata"]["labels"])
        assert term["topologyKey"] == "kubernetes.io/hostname"
    dep = one(docs, "Deployment", "-broker")
    anti = pod_spec(dep)["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in anti
    (pref,) = anti["preferredDuringSchedulingIgnoredDuringExecution"]
    assert match(pref["podAffinityTerm"]["labelSelector"]["matchLabels"], dep["spec"]["template"]["metadata"]["labels"])


def test_bookies_have_separate_journal_and_ledger_volumes(rendered):
    docs, _ = rendered["production"]
    sts = one(docs, "StatefulSet", "-bookie")
    claims = {c["metadata"]["name"]: c["spec"] for c in sts["spec"]["volumeClaimTemplates"]}
    assert sorted(claims) == ["journal", "ledgers"]
    assert claims["journal"]["storageClassName"] == "gp3-journal"
    assert claims["ledgers"]["storageClassName"] == "gp3"
    assert claims["ledgers"]["resources"]["requests"]["storage"] == "500Gi"
    c = pod_spec(sts)["containers"][0]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    env = env_of(c)
    assert env["MAGNETAR_BOOKIE_JOURNAL_DIR"].startswith(mounts["journal"] + "/")
    assert env["MAGNETAR_BOOKIE_LEDGER_DIR"].startswith(mounts["ledgers"] + "/")
    # Identity: the stable pod name, reachable through the headless service.
    headless = one(docs, "Service", "-bookie-headless")
    assert sts["spec"]["serviceName"] == headless["metadata"]["name"]
    assert env["MAGNETAR_BOOKIE_ID"] == "$(POD_NAME)"
    assert env["MAGNETAR_BOOKIE_ADVERTISE"].startswith(f"$(POD_NAME).{headless['metadata']['name']}.")
    assert env["MAGNETAR_BOOKIE_JOURNAL_SYNC"] == "true"
    # Default values: no storageClassName (the cluster's default class).
    docs, _ = rendered["default"]
    for claim in one(docs, "StatefulSet", "-bookie")["spec"]["volumeClaimTemplates"]:
        assert "storageClassName" not in claim["spec"]


def test_production_wires_offload_irsa_auth_hpa_and_service_monitor(rendered):
    docs, _ = rendered["production"]
    values = VALUE_SETS["production"]
    dep = one(docs, "Deployment", "-broker")
    spec = pod_spec(dep)
    c = spec["containers"][0]
    env = env_of(c)
    # IRSA: the brokers run as the service account that carries the role.
    sa = next(d for d in by_kind(docs, "ServiceAccount") if d["metadata"]["name"] == spec["serviceAccountName"])
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == values["serviceAccount"]["broker"]["annotations"]["eks.amazonaws.com/role-arn"]
    for kind, suffix in [("StatefulSet", "-meta"), ("StatefulSet", "-bookie"), ("Job", "-init")]:
        assert pod_spec(one(docs, kind, suffix))["serviceAccountName"] != spec["serviceAccountName"], suffix
    # Offload.
    assert env["MAGNETAR_BROKER_OFFLOAD_DRIVER"] == "aws-s3"
    assert env["MAGNETAR_BROKER_OFFLOAD_BUCKET"] == "magnetar-prod-offload"
    assert env["MAGNETAR_BROKER_OFFLOAD_REGION"] == "eu-west-1"
    assert env["AWS_REGION"] == "eu-west-1"
    assert "AWS_ACCESS_KEY_ID" not in env, "IRSA, not static keys"
    # Auth: the key file is mounted from the Secret where the flag points.
    key_file = env["MAGNETAR_BROKER_AUTH_SECRET_KEY"]
    mount = next(m for m in c["volumeMounts"] if m["name"] == "auth")
    assert key_file == f"{mount['mountPath']}/secret.key"
    volume = next(v for v in spec["volumes"] if v["name"] == "auth")
    assert volume["secret"]["secretName"] == "magnetar-auth"
    assert env["MAGNETAR_BROKER_SUPERUSER_ROLES"] == "admin,ops"
    # HPA owns the replica count.
    assert "replicas" not in dep["spec"]
    (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": dep["metadata"]["name"]}
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 9)
    # No double scraping: annotations off when the ServiceMonitor is on.
    assert "prometheus.io/scrape" not in dep["spec"]["template"]["metadata"].get("annotations", {})
    # Default values: none of it.
    docs, _ = rendered["default"]
    assert by_kind(docs, "HorizontalPodAutoscaler") == [] and by_kind(docs, "ServiceMonitor") == []
    env = env_of(pod_spec(one(docs, "Deployment", "-broker"))["containers"][0])
    assert not any(k.startswith(("MAGNETAR_BROKER_OFFLOAD_", "MAGNETAR_BROKER_AUTH_")) for k in env)


def test_service_monitor_scrapes_every_component(rendered):
    docs, _ = rendered["production"]
    (sm,) = by_kind(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    sel = sm["spec"]["selector"]
    (expr,) = sel["matchExpressions"]
    scraped = [
        s for s in by_kind(docs, "Service")
        if match(sel["matchLabels"], s["metadata"]["labels"]) and s["metadata"]["labels"]["app.kubernetes.io/component"] in expr["values"]
    ]
    assert sorted(s["metadata"]["labels"]["app.kubernetes.io/component"] for s in scraped) == ["bookie", "broker", "meta"]
    (endpoint,) = sm["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics"
    for s in scraped:
        assert endpoint["port"] in {p["name"] for p in s["spec"]["ports"]}, s["metadata"]["name"]


def test_default_values_annotate_pods_for_prometheus(rendered):
    docs, _ = rendered["default"]
    for kind, suffix in [("StatefulSet", "-meta"), ("StatefulSet", "-bookie"), ("Deployment", "-broker")]:
        d = one(docs, kind, suffix)
        ann = d["spec"]["template"]["metadata"]["annotations"]
        http = next(p["containerPort"] for p in pod_spec(d)["containers"][0]["ports"] if p["name"] == "http")
        assert ann == {"prometheus.io/scrape": "true", "prometheus.io/port": str(http), "prometheus.io/path": "/metrics"}


def test_images_follow_values():
    docs, _ = render({
        "images": {"broker": {"repository": "registry.example/mg/broker", "tag": "dev", "pullPolicy": "Always"}},
        "initialize": {"tenants": [{"name": "acme"}]},
    })
    c = pod_spec(one(docs, "Deployment", "-broker"))["containers"][0]
    assert c["image"] == "registry.example/mg/broker:dev" and c["imagePullPolicy"] == "Always"
    c = pod_spec(one(docs, "StatefulSet", "-meta"))["containers"][0]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert c["image"] == f"magnetar-meta:{chart['appVersion']}"
    c = pod_spec(one(docs, "Job", "-init"))["containers"][0]
    assert c["image"] == f"magnetar:{chart['appVersion']}"


# ---- The chart speaks the servers' real flags ---------------------------------------


def source_env_names():
    """Every MAGNETAR_* environment variable the Rust binaries read: clap's
    `env = "..."`, and the `const ...: &str = "MAGNETAR_..."` names read with
    std::env (libs/tls's MAGNETAR_INTERNAL_TLS_*, read by every binary)."""
    names = set()
    for path in list((REPO / "services").rglob("*.rs")) + list((REPO / "libs").rglob("*.rs")):
        text = path.read_text()
        names.update(re.findall(r'env\s*=\s*"(MAGNETAR_[A-Z0-9_]+)"', text))
        names.update(re.findall(r'const\s+[A-Z0-9_]+\s*:\s*&(?:\'static\s+)?str\s*=\s*"(MAGNETAR_[A-Z0-9_]+)"', text))
    return names


def test_every_magnetar_variable_the_chart_sets_is_a_real_flag(rendered):
    known = source_env_names()
    assert "MAGNETAR_META_PEERS" in known and "MAGNETAR_BROKER_ENSEMBLE_SIZE" in known, "source scan found nothing"
    assert "MAGNETAR_INTERNAL_TLS_CA" in known, "source scan missed libs/tls's constants"
    used = set()
    for _, doc in all_docs(rendered):
        if doc["kind"] in WORKLOAD_KINDS:
            for c in containers_of(doc):
                used.update(e["name"] for e in c.get("env", []) if e["name"].startswith("MAGNETAR_"))
    # Variables of the `magnetar` CLI's global flags (the init Job).
    unknown = sorted(used - known)
    assert unknown == [], f"the chart sets variables no binary reads: {unknown}"
    assert "MAGNETAR_BROKER_OFFLOAD_BUCKET" in used
    # The TLS values sets reach the broker's TLS flags and the internal ones.
    for name in ("MAGNETAR_BROKER_TLS_CERT_FILE", "MAGNETAR_BROKER_DISABLE_PLAIN_HTTP", "MAGNETAR_INTERNAL_TLS_CA", "MAGNETAR_INTERNAL_TLS_MUTUAL"):
        assert name in used, name


# ---- Dashboard and generated files ------------------------------------------------


def run_tool(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, REPO / "helm" / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_generated_files_are_up_to_date():
    assert (CHART / "values.schema.json").read_text() == run_tool("make_schema").render(), "run python3 helm/tools/make_schema.py"
    assert (CHART / "dashboards" / "magnetar.json").read_text() == run_tool("make_dashboard").render(), "run python3 helm/tools/make_dashboard.py"


def test_dashboard_bucket_bounds_match_the_broker():
    src = (REPO / "libs" / "broker" / "src" / "topic_metrics.rs").read_text()
    m = re.search(r"const LATENCY_BUCKETS_MS: \[f64; \d+\] = \[([^\]]*)\]", src)
    assert m, "LATENCY_BUCKETS_MS not found in topic_metrics.rs"
    assert [float(x) for x in m.group(1).split(",")] == run_tool("make_dashboard").WRITE_LATENCY_BUCKETS_MS


def metric_names_in_source():
    names = set()
    for path in (REPO / "libs").rglob("*.rs"):
        names.update(re.findall(r'"((?:magnetar|pulsar)_[a-z0-9_]+)"', path.read_text()))
    return names


def test_dashboard_queries_only_metrics_the_code_exports(rendered):
    docs, _ = rendered["default"]
    cm = one(docs, "ConfigMap", "-dashboard")
    board = json.loads(cm["data"]["magnetar.json"])
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
    titles = " ".join(p["title"] for p in board["panels"])
    for wanted in ("TPS in", "TPS out", "p99 / p999", "Backlog", "Dead-letter", "journal latency"):
        assert wanted in titles, wanted
    known = metric_names_in_source()
    bounds = {f"{b:g}".replace(".", "_") for b in run_tool("make_dashboard").WRITE_LATENCY_BUCKETS_MS} | {"overflow"}
    used = set()
    for e in exprs:
        used.update(re.findall(r"\b((?:magnetar|pulsar)_[a-z0-9_]+)", e))
    assert len(used) >= 15
    for name in sorted(used):
        m = re.fullmatch(r"pulsar_storage_write_latency_le_(\w+)", name)
        if m:
            # Built with format!() in topic_metrics.rs: check the bound instead.
            assert m.group(1) in bounds, name
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", name) if name.endswith("_bucket") else name
        assert base in known, f"dashboard queries {name}, which no code exports"
    # Brackets balance in every query (a cheap syntax check of the long ones).
    for e in exprs:
        assert e.count("(") == e.count(")") and e.count("[") == e.count("]"), e


def test_dashboard_can_be_turned_off():
    docs, _ = render({"metrics": {"dashboard": {"enabled": False}}})
    assert by_kind(docs, "ConfigMap") == []


def test_network_policies_keep_metadata_and_bookie_ports_inside_the_release(rendered):
    docs, _ = rendered["default"]
    pols = {d["metadata"]["name"]: d for d in by_kind(docs, "NetworkPolicy")}
    pods = {d["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in docs if d["kind"] in WORKLOAD_KINDS}
    for component, port_name in [("meta", "grpc"), ("bookie", "bookie")]:
        pol = pols[f"{RELEASE}-magnetar-{component}"]
        target = pods[component]
        assert match(pol["spec"]["podSelector"]["matchLabels"], target["spec"]["template"]["metadata"]["labels"])
        port = next(p["containerPort"] for p in pod_spec(target)["containers"][0]["ports"] if p["name"] == port_name)
        (rule,) = [r for r in pol["spec"]["ingress"] if any(p["port"] == port for p in r["ports"])]
        (peer,) = rule["from"]
        # Every pod of the release may connect, and nothing else.
        for other in pods.values():
            assert match(peer["podSelector"]["matchLabels"], other["spec"]["template"]["metadata"]["labels"])
        assert set(peer["podSelector"]["matchLabels"]) == {"app.kubernetes.io/name", "app.kubernetes.io/instance"}
        assert "namespaceSelector" not in peer
    broker = pols[f"{RELEASE}-magnetar-broker"]
    (rule,) = broker["spec"]["ingress"]
    assert "from" not in rule and sorted(p["port"] for p in rule["ports"]) == [6650, 8080]
    docs, _ = render({"networkPolicy": {"enabled": False}})
    assert by_kind(docs, "NetworkPolicy") == []


def test_offload_to_an_s3_protocol_server_with_static_credentials():
    docs, _ = render({"offload": {"enabled": True, "driver": "S3", "bucket": "ledgers", "endpoint": "http://minio.storage:9000", "credentialsSecret": "minio-keys"}})
    c = pod_spec(one(docs, "Deployment", "-broker"))["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    assert env["MAGNETAR_BROKER_OFFLOAD_DRIVER"]["value"] == "S3"
    assert env["MAGNETAR_BROKER_OFFLOAD_ENDPOINT"]["value"] == "http://minio.storage:9000"
    assert "MAGNETAR_BROKER_OFFLOAD_REGION" not in env and "AWS_REGION" not in env
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "minio-keys", "key": key}
