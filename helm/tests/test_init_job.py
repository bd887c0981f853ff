"""The initialisation Job's script, run for real under /bin/sh with a stand-in
`magnetar` CLI that answers like the real one (same exit codes, same
`error: <status>: <reason>` lines on stderr): it must be idempotent and fail
loudly."""

import json
import os
import subprocess
import textwrap

import pytest

from conftest import one, pod_spec, render

TENANTS = {
    "initialize": {
        "tenants": [
            {"name": "acme", "adminRoles": ["acme-admin", "ops"], "namespaces": [{"name": "orders", "bundles": 8}, {"name": "audit"}]},
            {"name": "beta"},
        ]
    }
}

# The stand-in CLI. State (what exists, how the server behaves) lives in a JSON
# file; every call is appended to a log.
FAKE_CLI = textwrap.dedent(
    r'''
    #!/usr/bin/env python3
    import json, os, sys
    state_path = os.environ["FAKE_STATE"]
    state = json.load(open(state_path))
    args = sys.argv[1:]
    with open(os.environ["FAKE_LOG"], "a") as log:
        log.write(json.dumps({"args": args, "token": os.environ.get("MAGNETAR_TOKEN")}) + "\n")

    def save():
        json.dump(state, open(state_path, "w"))

    def refuse(status, reason):
        sys.stderr.write(f"error: {status}: {reason}\n")
        sys.exit(1)

    if args[:2] == ["tokens", "create"]:
        print("signed-token-for-" + args[args.index("--subject") + 1])
        sys.exit(0)
    assert args[0] == "admin", args
    if state["unreachable_calls"] > 0:
        state["unreachable_calls"] -= 1
        save()
        sys.stderr.write("error: cannot reach http://broker:8080: connection refused\n")
        sys.exit(3)
    if state.get("require_token") and os.environ.get("MAGNETAR_TOKEN") != state["require_token"]:
        refuse("401 Unauthorized", "authentication required")
    group, op, target = args[1], args[2], args[3]
    if (group, op) == ("clusters", "get"):
        if target not in state["clusters"]:
            refuse("404 Not Found", f"cluster {target} does not exist")
        print(json.dumps({"serviceUrl": "http://x"}))
    elif (group, op) == ("tenants", "create"):
        if state.get("forbid_tenants"):
            refuse("403 Forbidden", "role app is not a superuser")
        if target in state["tenants"]:
            refuse("409 Conflict", f"tenant {target} already exists")
        state["tenants"][target] = args[4:]
    elif (group, op) == ("namespaces", "create"):
        tenant = target.split("/")[0]
        if tenant not in state["tenants"]:
            refuse("404 Not Found", f"tenant {tenant} does not exist")
        if target in state["namespaces"]:
            refuse("409 Conflict", f"namespace {target} already exists")
        state["namespaces"][target] = args[4:]
    elif (group, op) == ("namespaces", "policies"):
        if target not in state["namespaces"]:
            refuse("404 Not Found", f"namespace {target} does not exist")
    else:
        sys.exit(f"fake magnetar: unexpected call {args}")
    save()
    '''
).lstrip()


def job_container(values):
    docs, _ = render(values)
    job = one(docs, "Job", "-init")
    return job, pod_spec(job)["containers"][0]


@pytest.fixture
def fake(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "magnetar"
    cli.write_text(FAKE_CLI)
    cli.chmod(0o755)
    state = tmp_path / "state.json"
    log = tmp_path / "calls.log"

    def setup(**overrides):
        s = {
            "unreachable_calls": 0,
            "clusters": ["magnetar"],
            "tenants": {"public": []},
            "namespaces": {"public/default": []},
        }
        s.update(overrides)
        state.write_text(json.dumps(s))

    def run(values, wait_seconds="0"):
        _, c = job_container(values)
        env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
        env.update(
            PATH=f"{bin_dir}:{os.environ['PATH']}",
            FAKE_STATE=str(state),
            FAKE_LOG=str(log),
            WAIT_SECONDS=wait_seconds,
            RETRY_SECONDS="0",
        )
        assert c["command"][:2] == ["/bin/sh", "-c"]
        return subprocess.run(c["command"], env=env, capture_output=True, text=True, timeout=60)

    def calls():
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    def current():
        return json.loads(state.read_text())

    setup()
    return type("Fake", (), {"setup": staticmethod(setup), "run": staticmethod(run), "calls": staticmethod(calls), "state": staticmethod(current)})


def test_no_job_without_tenants_to_create():
    """The brokers bootstrap public/default themselves; the Job only exists for more."""
    docs, notes = render({})
    assert not [d for d in docs if d["kind"] == "Job" or d["metadata"]["name"].endswith("-init")]
    assert "job/" not in notes
    docs, _ = render({**TENANTS, "initialize": {**TENANTS["initialize"], "enabled": False}})
    assert not [d for d in docs if d["kind"] == "Job"]


def test_job_is_a_post_install_hook_without_hidden_failures():
    job, c = job_container(TENANTS)
    ann = job["metadata"]["annotations"]
    assert ann["helm.sh/hook"] == "post-install,post-upgrade"
    assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
    script = c["command"][-1]
    assert "|| true" not in script and "|| :" not in script
    assert script.lstrip().startswith("set -eu")
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"


def test_creates_tenants_and_namespaces_then_is_idempotent(fake):
    r = fake.run(TENANTS)
    assert r.returncode == 0, r.stderr
    s = fake.state()
    assert s["tenants"]["acme"] == ["--allowed-clusters", "magnetar", "--admin-roles", "acme-admin,ops"]
    assert s["tenants"]["beta"] == ["--allowed-clusters", "magnetar"]
    assert s["namespaces"]["acme/orders"] == ["--bundles", "8"]
    assert s["namespaces"]["acme/audit"] == []
    assert "created tenant acme" in r.stdout and "created namespace acme/orders" in r.stdout
    # The second run (helm upgrade) finds everything and succeeds, changing nothing.
    r = fake.run(TENANTS)
    assert r.returncode == 0, r.stderr
    assert "tenant acme exists; left as it is" in r.stdout
    assert "namespace acme/audit exists; left as it is" in r.stdout
    assert fake.state() == s


def test_waits_for_the_brokers_then_proceeds(fake):
    fake.setup(unreachable_calls=3)
    r = fake.run(TENANTS, wait_seconds="10")
    assert r.returncode == 0, r.stderr
    gets = [c for c in fake.calls() if c["args"][1:3] == ["clusters", "get"]]
    assert len(gets) == 4


def test_gives_up_loudly_when_no_broker_answers(fake):
    fake.setup(unreachable_calls=1000)
    r = fake.run(TENANTS, wait_seconds="0")
    assert r.returncode != 0
    assert "FAILED: no broker served cluster magnetar" in r.stderr
    assert "connection refused" in r.stderr


def test_a_missing_cluster_record_is_waited_for_then_fails(fake):
    fake.setup(clusters=[])
    r = fake.run(TENANTS, wait_seconds="0")
    assert r.returncode != 0 and "404 Not Found: cluster magnetar does not exist" in r.stderr


def test_a_refused_create_fails_the_job(fake):
    fake.setup(forbid_tenants=True)
    r = fake.run(TENANTS)
    assert r.returncode != 0
    assert "FAILED: creating tenant acme (exit 1): error: 403 Forbidden: role app is not a superuser" in r.stderr
    # It stopped there: nothing after the failure ran.
    assert not any(c["args"][1:3] == ["namespaces", "create"] for c in fake.calls())


def test_a_missing_public_default_fails_the_job(fake):
    # The brokers bootstrap public/default; the Job checks it is there.
    fake.setup(namespaces={})
    r = fake.run({"initialize": {"tenants": [{"name": "acme"}]}})
    assert r.returncode != 0 and "namespace public/default is missing" in r.stderr


def test_wrong_credentials_fail_at_once_without_waiting(fake):
    fake.setup(require_token="something-else")
    values = {**TENANTS, "auth": {"enabled": True, "secretName": "magnetar-auth"}}
    r = fake.run(values, wait_seconds="1000")
    assert r.returncode != 0
    assert "401 Unauthorized" in r.stderr
    assert len([c for c in fake.calls() if c["args"][0] == "admin"]) == 1


def test_with_a_secret_key_the_job_signs_a_superuser_token(fake):
    fake.setup(require_token="signed-token-for-ops")
    values = {**TENANTS, "auth": {"enabled": True, "secretName": "magnetar-auth", "superuserRoles": ["ops", "admin"]}}
    _, c = job_container(values)
    env = {e["name"]: e.get("value") for e in c["env"]}
    key_file = env["AUTH_SECRET_KEY_FILE"]
    assert any(key_file.startswith(m["mountPath"] + "/") for m in c["volumeMounts"] if m["name"] == "auth")
    r = fake.run(values)
    assert r.returncode == 0, r.stderr
    (sign,) = [x for x in fake.calls() if x["args"][0] == "tokens"]
    assert sign["args"] == ["tokens", "create", "--secret-key", key_file, "--subject", "ops"]
    assert all(x["token"] == "signed-token-for-ops" for x in fake.calls() if x["args"][0] == "admin")


def test_with_a_public_key_the_job_uses_the_brokers_token(tmp_path, fake):
    token_file = tmp_path / "token"
    token_file.write_text("the-broker-token")
    fake.setup(require_token="the-broker-token")
    values = {**TENANTS, "auth": {"enabled": True, "secretName": "s", "keyType": "public", "brokerClientTokenKey": "broker.token"}}
    _, c = job_container(values)
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["AUTH_TOKEN_FILE"].endswith("/broker.token")
    # Point the script at a real file instead of the Secret's mount.
    c["env"] = [e if e["name"] != "AUTH_TOKEN_FILE" else {"name": "AUTH_TOKEN_FILE", "value": str(token_file)} for e in c["env"]]
    run_env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    run_env.update(
        PATH=f"{tmp_path / 'bin'}:{os.environ['PATH']}",
        FAKE_STATE=str(tmp_path / "state.json"),
        FAKE_LOG=str(tmp_path / "calls.log"),
        WAIT_SECONDS="0",
        RETRY_SECONDS="0",
    )
    r = subprocess.run(c["command"], env=run_env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "tenant acme" in r.stdout
