"""Checks of terraform/ that need no provider download (so no `terraform init`
or `validate`, see terraform/README.md): formatting, checkov's policies, the
modules' documentation, and the chart values the release module produces,
rendered through the real chart."""

import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import hcl2
import pytest
import yaml

TF = pathlib.Path(__file__).resolve().parents[1]
REPO = TF.parent
CHART = REPO / "helm" / "magnetar"
MODULES = sorted(p for p in (TF / "modules").iterdir() if p.is_dir())
ROOTS = MODULES + [TF / "examples" / "eks"]


def load(path):
    """A .tf file parsed by checkov's HCL parser (bc-python-hcl2), which wraps
    each attribute's value in a one-element list; unwrapped here."""
    with open(path) as f:
        raw = hcl2.load(f)
    out = {}
    for kind, entries in raw.items():
        if kind in ("locals", "terraform"):
            out[kind] = [body(e) for e in entries]
        elif kind in ("resource", "data"):
            out[kind] = [{t: {n: body(b) for n, b in named.items()} for t, named in e.items()} for e in entries]
        else:  # variable, output, module, provider
            out[kind] = [{n: body(b) for n, b in e.items()} for e in entries]
    return out


# Nested block types used in these files: lists of bodies, not attributes.
NESTED_BLOCKS = {
    "statement", "condition", "principals", "rule", "filter", "abort_incomplete_multipart_upload",
    "apply_server_side_encryption_by_default", "required_providers", "content", "validation",
    "vpc_config", "access_config", "encryption_config", "provider", "scaling_config", "update_config",
    "launch_template", "taint", "metadata_options", "block_device_mappings", "ebs", "tag_specifications",
    "route", "metadata", "exec", "kubernetes", "default_tags",
}


def body(b):
    out = {}
    for k, v in b.items():
        if k.startswith("__"):
            continue
        if k == "dynamic":
            out[k] = [{name: body(inner) for name, inner in d.items()} for d in v]
        elif k in NESTED_BLOCKS and isinstance(v, list) and all(isinstance(x, dict) for x in v):
            out[k] = [body(x) for x in v]
        else:
            out[k] = v[0] if isinstance(v, list) and len(v) == 1 else v
    return out


def blocks(root, kind):
    """Every `kind` block (variable, output, module, ...) of a module: name -> body."""
    out = {}
    for tf in sorted(root.glob("*.tf")):
        for block in load(tf).get(kind, []):
            out.update(block)
    return out


def test_terraform_fmt():
    terraform = shutil.which("terraform")
    if terraform is None:
        pytest.skip("terraform is not installed (Debian does not package it); fmt not checked")
    out = subprocess.run([terraform, "fmt", "-check", "-recursive", "-diff", str(TF)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"terraform fmt -check failed (run `terraform fmt -recursive terraform`):\n{out.stdout}{out.stderr}"


def checkov(directory):
    checkov_bin = os.path.join(os.path.dirname(sys.executable), "checkov")
    out = subprocess.run(
        [checkov_bin, "-d", str(directory), "--framework", "terraform", "-o", "json", "--skip-download", "--compact"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE"},
    )
    assert out.stdout.strip(), f"checkov printed nothing (exit {out.returncode}): {out.stderr[-2000:]}"
    report = json.loads(out.stdout)
    return report if isinstance(report, dict) else report[0]


def test_checkov_passes_with_every_waiver_explained_in_place():
    report = checkov(TF)
    results = report["results"]
    failed = [(f["check_id"], f["resource"], f["file_path"], f["check_name"]) for f in results["failed_checks"]]
    assert failed == [], "\n".join(map(str, failed))
    assert report["summary"]["passed"] > 150
    # Waivers live next to the resource as `#checkov:skip=ID:reason`; each has a real reason.
    for s in results["skipped_checks"]:
        assert len((s["check_result"].get("suppress_comment") or "").strip()) > 30, f"{s['check_id']} on {s['resource']} is waived without a reason"
    written = sum(len(re.findall(r"#checkov:skip=CKV", p.read_text())) for p in TF.rglob("*.tf"))
    assert len(results["skipped_checks"]) == written, "a #checkov:skip comment matches no finding: remove it"


def test_checkov_catches_a_public_bucket(tmp_path):
    """The scan is live: a bucket without encryption, public access block or
    TLS-only policy is reported."""
    (tmp_path / "main.tf").write_text('resource "aws_s3_bucket" "b" {\n  bucket = "x"\n}\n')
    ids = {f["check_id"] for f in checkov(tmp_path)["results"]["failed_checks"]}
    assert {"CKV2_AWS_6", "CKV_AWS_145"} <= ids, ids


@pytest.mark.parametrize("root", ROOTS, ids=lambda p: str(p.relative_to(TF)))
def test_modules_are_documented_and_pinned(root):
    variables = blocks(root, "variable")
    outputs = blocks(root, "output")
    assert variables and outputs, root
    for name, body in variables.items():
        assert len(body.get("description", "")) > 10, f"variable {name} has no description"
        assert "type" in body, f"variable {name} has no type"
    for name, body in outputs.items():
        assert len(body.get("description", "")) > 10, f"output {name} has no description"
    (terraform,) = blocks_list(root, "terraform")
    assert terraform["required_version"] == ">= 1.5"
    providers = {}
    for p in terraform["required_providers"]:
        providers.update(p)
    for name, spec in providers.items():
        spec = spec[0] if isinstance(spec, list) else spec  # "kubernetes" is also a block name
        assert re.fullmatch(r">= [\d.]+, < \d+\.0", spec["version"]), (name, spec)
    # Every provider the module's resources use is pinned.
    used = set()
    for tf in root.glob("*.tf"):
        for kind in ("resource", "data"):
            for block in load(tf).get(kind, []):
                for rtype in block:
                    used.add(rtype.split("_")[0])
    assert used <= set(providers) | {"terraform"}, (used, set(providers))


def blocks_list(root, kind):
    out = []
    for tf in sorted(root.glob("*.tf")):
        out += load(tf).get(kind, [])
    return out


def test_example_wires_the_modules_together():
    modules = blocks(TF / "examples" / "eks", "module")
    irsa, bucket, release, eks = modules["broker_irsa"], modules["offload_bucket"], modules["magnetar"], modules["eks"]
    assert irsa["bucket_arn"] == "${module.offload_bucket.bucket_arn}"
    assert irsa["kms_key_arn"] == "${module.offload_bucket.kms_key_arn}"
    assert irsa["oidc_provider_arn"] == "${module.eks.oidc_provider_arn}"
    assert release["broker_role_arn"] == "${module.broker_irsa.role_arn}"
    assert release["offload"]["bucket"] == "${module.offload_bucket.bucket_name}"
    # The role trusts exactly the namespace and service account the chart gets.
    assert irsa["service_account"] == release["broker_service_account"]
    assert irsa["namespace"] == release["namespace"]
    assert eks["subnet_ids"] == "${module.vpc.private_subnet_ids}"
    for module in modules.values():
        assert (TF / "examples" / "eks" / module["source"]).resolve().is_dir(), module["source"]


def test_irsa_role_is_least_privilege():
    docs = {}
    for b in blocks_list(TF / "modules" / "broker-irsa", "data"):
        docs.update(b.get("aws_iam_policy_document", {}))
    trust = docs["trust"]["statement"][0]
    conditions = {c["variable"]: (c["test"], c["values"]) for c in trust["condition"]}
    assert conditions["${var.oidc_issuer}:sub"] == ("StringEquals", ["system:serviceaccount:${var.namespace}:${var.service_account}"])
    assert conditions["${var.oidc_issuer}:aud"] == ("StringEquals", ["sts.amazonaws.com"])
    policy = docs["offload"]
    actions = sorted(a for s in policy["statement"] for a in s["actions"])
    assert actions == sorted(["s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"])
    for s in policy["statement"]:
        assert "*" not in s["resources"], s
    objects = next(s for s in policy["statement"] if "s3:GetObject" in s["actions"])
    assert objects["resources"] == ["${var.bucket_arn}/*"]
    kms = policy["dynamic"][0]["statement"]["content"][0]
    assert sorted(kms["actions"]) == ["kms:Decrypt", "kms:GenerateDataKey"]


def test_offload_bucket_is_private_encrypted_and_cleans_up_multipart_uploads():
    resources = {}
    for b in blocks_list(TF / "modules" / "offload-bucket", "resource"):
        for rtype, named in b.items():
            for name, body in named.items():
                resources[(rtype, name)] = body
    pab = resources[("aws_s3_bucket_public_access_block", "offload")]
    assert all(pab[k] is True for k in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"))
    sse = resources[("aws_s3_bucket_server_side_encryption_configuration", "offload")]["rule"][0]
    assert sse["apply_server_side_encryption_by_default"][0]["sse_algorithm"] == "aws:kms"
    rule = resources[("aws_s3_bucket_lifecycle_configuration", "offload")]["rule"][0]
    assert rule["abort_incomplete_multipart_upload"][0]["days_after_initiation"] == "${var.abort_incomplete_multipart_days}"
    assert resources[("aws_kms_key", "offload")]["enable_key_rotation"] is True


# ---- The release module's values, through the real chart ------------------------


def release_values(inputs):
    """Evaluates the release module's `local.values` for given inputs: plain
    variable references are resolved from `inputs` or the variables'
    defaults; the few computed expressions are listed here explicitly (an
    expression the table does not know fails the test)."""
    root = TF / "modules" / "magnetar-release"
    variables = {name: body.get("default") for name, body in blocks(root, "variable").items()}
    variables.update(inputs)
    missing = [n for n, v in variables.items() if v is None and n not in ("chart_path", "auth_secret_name", "bookie_toleration")]
    assert not missing, f"give the test values for required variables {missing}"
    locals_ = {}
    for b in blocks_list(root, "locals"):
        locals_.update(b)
    registry, tag = variables["image_registry"], variables["image_tag"]
    fullname = "magnetar" if "magnetar" in variables["release_name"] else f"{variables['release_name']}-magnetar"
    computed = {
        "${local.image}": {
            c: {"repository": f"{registry}/{n}", "tag": tag, "pullPolicy": "IfNotPresent"}
            for c, n in {"meta": "magnetar-meta", "bookie": "magnetar-bookie", "broker": "magnetar-broker", "cli": "magnetar"}.items()
        },
        "${kubernetes_storage_class_v1.data.metadata[0].name}": f"{fullname}-gp3",
        "${kubernetes_storage_class_v1.journal.metadata[0].name}": f"{fullname}-journal",
        "${[for t in ['${var.bookie_toleration}'] : t if t != None]}": [t for t in [variables["bookie_toleration"]] if t is not None],
        "${var.auth_secret_name != None}": variables["auth_secret_name"] is not None,
        '${coalesce(var.auth_secret_name,"")}': variables["auth_secret_name"] or "",
    }

    def var_path(expr):
        m = re.fullmatch(r"var\.([a-z_]+)((?:\.[a-z_]+)*)", expr)
        if not m:
            return None
        value = variables[m.group(1)]
        for key in filter(None, m.group(2).split(".")):
            value = value[key]
        return value

    def evaluate(node):
        if isinstance(node, dict):
            return {k: evaluate(v) for k, v in node.items()}
        if isinstance(node, list):
            return [evaluate(v) for v in node]
        if not isinstance(node, str) or "${" not in node:
            return node
        if node in computed:
            return computed[node]
        whole = re.fullmatch(r"\$\{([^${}]+)\}", node)
        if whole and var_path(whole.group(1)) is not None:
            return var_path(whole.group(1))

        def interpolate(m):
            v = var_path(m.group(1))
            assert v is not None, f"the test cannot evaluate {node!r}"
            return str(v)

        return re.sub(r"\$\{([^${}]+)\}", interpolate, node)

    return evaluate(locals_["values"])


EXAMPLE_INPUTS = {
    "image_registry": "123456789012.dkr.ecr.eu-west-1.amazonaws.com",
    "broker_role_arn": "arn:aws:iam::123456789012:role/magnetar-broker",
    "offload": {"bucket": "magnetar-offload-123456789012", "region": "eu-west-1"},
    "client_cidrs": ["10.40.0.0/16"],
    "broker_node_selector": {"magnetar.io/pool": "broker"},
    "bookie_node_selector": {"magnetar.io/pool": "bookie"},
    "bookie_toleration": {"key": "magnetar.io/bookie", "operator": "Equal", "value": "true", "effect": "NoSchedule"},
}


@pytest.mark.parametrize("auth", [None, "magnetar-auth"])
def test_release_module_values_pass_the_chart(auth):
    import helm_python

    values = release_values({**EXAMPLE_INPUTS, "auth_secret_name": auth})
    chart = helm_python.Chart.load(str(CHART))
    out = chart.render(values, name="magnetar", namespace="magnetar")
    docs = [d for path, text in out.items() if path.endswith(".yaml") for d in yaml.safe_load_all(text) if d]
    sa = next(d for d in docs if d["kind"] == "ServiceAccount" and d["metadata"]["name"] == "magnetar-broker")
    assert sa["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] == EXAMPLE_INPUTS["broker_role_arn"]
    broker = next(d for d in docs if d["kind"] == "Deployment")
    spec = broker["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "magnetar-broker"
    env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
    assert env["MAGNETAR_BROKER_OFFLOAD_BUCKET"] == EXAMPLE_INPUTS["offload"]["bucket"]
    assert env["MAGNETAR_BROKER_OFFLOAD_REGION"] == "eu-west-1"
    assert ("MAGNETAR_BROKER_AUTH_SECRET_KEY" in env) == (auth is not None)
    # The module's output names the broker Service the chart creates.
    svc = next(d for d in docs if d["kind"] == "Service" and d["spec"].get("type") == "LoadBalancer")
    main = (TF / "modules" / "magnetar-release" / "main.tf").read_text()
    assert '"${local.fullname}-broker"' in main and svc["metadata"]["name"] == "magnetar-broker"
    sts = {d["metadata"]["name"]: d for d in docs if d["kind"] == "StatefulSet"}
    claims = {c["metadata"]["name"]: c["spec"]["storageClassName"] for c in sts["magnetar-bookie"]["spec"]["volumeClaimTemplates"]}
    assert claims == {"journal": "magnetar-journal", "ledgers": "magnetar-gp3"}
    assert sts["magnetar-bookie"]["spec"]["template"]["spec"]["tolerations"] == [EXAMPLE_INPUTS["bookie_toleration"]]


def test_release_module_default_chart_path_is_the_chart():
    main = (TF / "modules" / "magnetar-release" / "main.tf").read_text()
    m = re.search(r'coalesce\(var\.chart_path, "\$\{path\.module\}/([^"]+)"\)', main)
    assert m and (TF / "modules" / "magnetar-release" / m.group(1)).resolve() == CHART


def test_eks_nodes_match_the_chart_placement():
    """The bookie pool's taint is what the chart's production values tolerate,
    and pods cannot reach the node role through IMDS."""
    eks = (TF / "modules" / "eks" / "main.tf").read_text()
    assert 'key    = "magnetar.io/bookie"' in eks
    assert "http_put_response_hop_limit = 1" in eks and 'http_tokens                 = "required"' in eks
    production = yaml.safe_load((CHART / "ci" / "production.yaml").read_text())
    assert production["bookie"]["tolerations"][0]["key"] == "magnetar.io/bookie"
    assert production["bookie"]["nodeSelector"] == {"magnetar.io/pool": "bookie"}
