"""Shared pieces of the deployment checks (helm/tests and terraform/tests).

The chart is rendered by Helm's own engine (helm-python-sdk binds Helm's Go
SDK), offline; nothing here needs a Kubernetes API server or the network.
"""

import copy
import pathlib

import pytest
import yaml

REPO = pathlib.Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "magnetar"
CI_VALUES = CHART / "ci"
RELEASE = "mg"
NAMESPACE = "streaming"


def load_values_file(name):
    """A values file of the chart's ci/ folder, as a dict."""
    return yaml.safe_load((CI_VALUES / name).read_text()) or {}


def merge(base, override):
    """Helm's merge of user values: maps merge key by key, the rest replaces."""
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def render(values=None, release=RELEASE, namespace=NAMESPACE):
    """Renders the chart; returns (manifests: list of dicts, notes: str).

    Raises helm_python's HelmValuesError (schema) or HelmRenderError (a `fail`
    in a template) when Helm refuses the values.
    """
    import helm_python

    chart = helm_python.Chart.load(str(CHART))
    out = chart.render(values or {}, name=release, namespace=namespace)
    docs, notes = [], ""
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc["__template__"] = path
                docs.append(doc)
    return docs, notes


def strip(doc):
    """A manifest without the test's bookkeeping keys."""
    return {k: v for k, v in doc.items() if not k.startswith("__")}


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind, name_suffix):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"expected one {kind} named *{name_suffix}, found {[d['metadata']['name'] for d in found]}"
    return found[0]


def pod_spec(doc):
    if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None


def env_of(container):
    """Plain-value environment of a container (valueFrom entries map to None)."""
    return {e["name"]: e.get("value") for e in container.get("env", [])}


# The values sets every check runs over: name -> values.
VALUE_SETS = {
    "default": {},
    "minimal": load_values_file("minimal.yaml"),
    "production": load_values_file("production.yaml"),
    # TLS beside the plain listeners, internal mutual TLS, certificate auth.
    "tls": load_values_file("tls.yaml"),
    # The brokers' plain listeners off.
    "tls-only": load_values_file("tls-only.yaml"),
}


@pytest.fixture(scope="session")
def rendered():
    """Every values set rendered once: name -> (docs, notes)."""
    return {name: render(values) for name, values in VALUE_SETS.items()}


def pytest_terminal_summary(terminalreporter):
    """One line in cargo's format, so CI's closing tally (.ci/run) counts these tests too."""
    stats = terminalreporter.stats
    passed = len(stats.get("passed", []))
    failed = len(stats.get("failed", [])) + len(stats.get("error", []))
    skipped = len(stats.get("skipped", []))
    verdict = "ok" if failed == 0 else "FAILED"
    terminalreporter.write_line(
        f"test result: {verdict}. {passed} passed; {failed} failed; {skipped} ignored; (deployment checks: pytest)"
    )
