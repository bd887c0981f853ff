"""The images themselves: budget, labels, user, init, healthcheck, volumes, and
bad configuration exiting non-zero with a reason instead of a restart loop."""

import json
import subprocess

import pytest

BUDGET = 80_000_000
SERVICES = {
    "magnetar-meta": "/data",
    "magnetar-bookie": "/data",
    "magnetar-broker": None,
    "magnetar": "/data",
}


def inspect(image: str) -> dict:
    out = subprocess.run(["docker", "image", "inspect", image], capture_output=True,
                         text=True, check=True).stdout
    return json.loads(out)[0]


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_image_shape(name, tag):
    img = inspect(f"{name}:{tag}")
    cfg = img["Config"]
    assert img["Size"] <= BUDGET, f"{name}:{tag} is {img['Size'] / 1e6:.1f} MB"
    labels = cfg["Labels"]
    assert labels["org.opencontainers.image.version"] not in ("", "0.0.0")
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert cfg["User"] == "magnetar"
    assert cfg["Entrypoint"][0] == "/usr/bin/tini"
    assert cfg["Healthcheck"]["Test"][:2] == ["CMD", "/usr/local/bin/healthcheck"]
    if SERVICES[name]:
        assert SERVICES[name] in (cfg.get("Volumes") or {})
    # Its libraries resolve in the image (that the user is not root shows in
    # test_unwritable_volume_exits_with_one_line: root could write there).
    who = subprocess.run(["docker", "run", "--rm", "--entrypoint", "/usr/local/bin/" + name,
                          f"{name}:{tag}", "--version"], capture_output=True, text=True)
    assert who.returncode == 0, who.stderr


def run_briefly(args, timeout=30):
    """Runs a container that must exit by itself; returns (code, output)."""
    p = subprocess.run(["docker", "run", "--rm", *args], capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, (p.stdout + p.stderr).strip()


@pytest.mark.parametrize("image,args", [
    ("magnetar-broker", []),
    ("magnetar-bookie", ["--id", "b1"]),
])
def test_missing_meta_address_exits_with_reason(image, args, tag):
    code, out = run_briefly([f"{image}:{tag}", *args])
    assert code == 2, out  # refused at argument parsing
    assert out.startswith("error: ") and "--meta" in out, out


@pytest.mark.parametrize("image,args", [
    ("magnetar-bookie", ["--id", "b1", "--meta", "127.0.0.1:7001"]),
    ("magnetar-meta", ["--id", "1"]),
])
def test_unwritable_volume_exits_with_one_line(image, args, tag):
    # A root-owned volume the service (uid 10001) cannot write.
    code, out = run_briefly(["--tmpfs", "/data:mode=0755,uid=0", f"{image}:{tag}", *args])
    assert code == 1, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    assert "/data/" in lines[0] and "Permission denied" in lines[0], out
