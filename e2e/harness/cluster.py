"""The Docker cluster of e2e/docker-compose.yml: start, stop, health, and the
faults the campaign applies to it (kill, pause, network disconnect, iptables
partitions inside a container's network namespace, full restart).

Everything goes through the docker and docker-compose command-line tools; the
host reaches the containers' fixed addresses on the private network directly
(meta /health for the leader) and the brokers through their published ports.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

E2E_DIR = Path(__file__).resolve().parent.parent
COMPOSE_FILE = E2E_DIR / "docker-compose.yml"
PROJECT = "magnetar-e2e"
NETWORK = f"{PROJECT}_magnetar"
NET = os.environ.get("E2E_NET", "172.29.0")
GATEWAY = f"{NET}.1"

METAS = ["meta-1", "meta-2", "meta-3"]
BOOKIES = ["bookie-1", "bookie-2", "bookie-3"]
BROKERS = ["broker-1", "broker-2", "broker-3"]
SERVICES = METAS + BOOKIES + BROKERS

IP = {}
for i in (1, 2, 3):
    IP[f"meta-{i}"] = f"{NET}.1{i}"
    IP[f"bookie-{i}"] = f"{NET}.2{i}"
    IP[f"broker-{i}"] = f"{NET}.3{i}"

SERVICE_URL = "pulsar://127.0.0.1:16651,127.0.0.1:16652,127.0.0.1:16653"
LISTENER = "external"


def admin_url(broker: str) -> str:
    return f"http://127.0.0.1:1808{broker[-1]}"


def container(svc: str) -> str:
    return f"{PROJECT}-{svc}"


class CommandError(RuntimeError):
    pass


def run(*cmd: str, check: bool = True, timeout: float = 180, env=None) -> str:
    p = subprocess.run(
        list(cmd), capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and p.returncode != 0:
        raise CommandError(
            f"{' '.join(cmd)} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-2000:]}"
        )
    return p.stdout


def http_json(url: str, method: str = "GET", body=None, timeout: float = 5.0):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        raw = r.read()
    return json.loads(raw) if raw.strip() else None


class Cluster:
    def __init__(self, tag: str | None = None, log=print):
        self.tag = tag or os.environ.get("MAGNETAR_TAG", "dev")
        self.log = log
        # Faults in force, so that heal_all() can undo whatever a failed run left.
        self.paused: set[str] = set()
        self.disconnected: set[str] = set()
        self.firewalled: set[str] = set()

    # ---- compose -------------------------------------------------------

    def compose(self, *args: str, timeout: float = 300) -> str:
        env = dict(os.environ, MAGNETAR_TAG=self.tag, E2E_NET=NET)
        return run(
            "docker-compose", "-p", PROJECT, "-f", str(COMPOSE_FILE), *args,
            timeout=timeout, env=env,
        )

    def up(self, fresh: bool = True, timeout: float = 240) -> float:
        """Starts the cluster (from empty volumes when fresh); returns seconds
        until every container was healthy and every broker listed."""
        t0 = time.monotonic()
        if fresh:
            self.down()
        for image in ("magnetar-meta", "magnetar-bookie", "magnetar-broker"):
            run("docker", "image", "inspect", f"{image}:{self.tag}")
        self.compose("up", "-d", "--no-recreate", timeout=timeout)
        self.wait_healthy(timeout - (time.monotonic() - t0))
        return time.monotonic() - t0

    def down(self) -> None:
        self.heal_all()
        self.compose("down", "-v", "--remove-orphans", "-t", "20")

    def stop_all(self, grace: int = 30) -> None:
        """Every container gets SIGTERM (brokers first: compose stops dependents first)."""
        self.compose("stop", "-t", str(grace))

    def logs(self, svc: str, tail: int = 60) -> str:
        p = subprocess.run(
            ["docker", "logs", "--tail", str(tail), container(svc)],
            capture_output=True, text=True,
        )
        return p.stdout + p.stderr

    # ---- health --------------------------------------------------------

    def state(self, svc: str) -> dict:
        out = run("docker", "inspect", "-f", "{{json .State}}", container(svc), check=False)
        return json.loads(out) if out.strip() else {}

    def health(self, svc: str) -> str:
        st = self.state(svc)
        if not st:
            return "missing"
        if st.get("Paused"):
            return "paused"
        if not st.get("Running"):
            return "exited"
        return (st.get("Health") or {}).get("Status", "running")

    def live_brokers(self) -> list[str]:
        for b in BROKERS:
            try:
                return http_json(f"{admin_url(b)}/admin/v2/brokers/standalone") or []
            except Exception:
                continue
        return []

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            bad = {s: h for s in SERVICES if (h := self.health(s)) != "healthy"}
            if not bad and len(self.live_brokers()) == len(BROKERS):
                return
            if time.monotonic() > deadline:
                detail = "; ".join(f"{s}={h}" for s, h in bad.items()) or (
                    f"brokers listed: {self.live_brokers()}"
                )
                tails = "\n".join(
                    f"--- {s} ---\n{self.logs(s, 15)}" for s in list(bad)[:3]
                )
                raise TimeoutError(f"cluster not healthy after {timeout:.0f}s: {detail}\n{tails}")
            time.sleep(1)

    def meta_leader(self) -> str | None:
        for m in METAS:
            try:
                h = http_json(f"http://{IP[m]}:7100/health", timeout=2)
            except urllib.error.HTTPError as e:
                try:
                    h = json.loads(e.read())
                except Exception:
                    continue
            except Exception:
                continue
            if h and h.get("leader"):
                return f"meta-{h['leader']}"
        return None

    def owner(self, topic: str) -> str | None:
        """The broker that owns a topic (persistent://t/ns/name), by lookup."""
        path = topic.replace("persistent://", "persistent/")
        for b in BROKERS:
            if b in self.paused or self.health(b) not in ("healthy", "running", "unhealthy"):
                continue
            try:
                r = http_json(f"{admin_url(b)}/lookup/v2/topic/{path}", timeout=5)
            except Exception:
                continue
            m = re.search(r"broker-(\d)", json.dumps(r))
            if m:
                return f"broker-{m.group(1)}"
        return None

    def ledger_bookies(self, topic: str) -> list[str]:
        """Bookies of the topic's current ledger's last ensemble ([] if unknown)."""
        path = topic.replace("persistent://", "")
        for b in BROKERS:
            try:
                st = http_json(f"{admin_url(b)}/admin/v2/persistent/{path}/internalStats")
            except Exception:
                continue
            ledgers = (st or {}).get("ledgers") or []
            if not ledgers:
                return []
            lid = ledgers[-1].get("ledgerId")
            out = run(
                "docker", "run", "--rm", "--network", NETWORK, f"magnetar:{self.tag}",
                "ledger", "read", str(lid), "--password", "magnetar",  # the brokers' ledger password
                "--meta", ",".join(f"{m}:7001" for m in METAS), check=False, timeout=30,
            )
            try:
                ensembles = json.loads(out)["ensembles"]
            except (ValueError, KeyError):
                return []
            return sorted(re.sub(r":\d+$", "", b) for b in ensembles[-1]["bookies"])
        return []

    # ---- metadata linearizability -------------------------------------

    def start_meta_check(self, run_id: str) -> "MetaCheck":
        """Starts `magnetar meta check-linearizable` in a container on the
        cluster's network (so partitions of meta nodes do not cut it off)
        until finish() stops it."""
        return MetaCheck(self.tag, run_id)

    # ---- faults --------------------------------------------------------

    def kill(self, svc: str) -> None:
        run("docker", "kill", "-s", "KILL", container(svc))

    def start(self, svc: str) -> None:
        run("docker", "start", container(svc))

    def pause(self, svc: str) -> None:
        run("docker", "pause", container(svc))
        self.paused.add(svc)

    def unpause(self, svc: str) -> None:
        run("docker", "unpause", container(svc), check=False)
        self.paused.discard(svc)

    def disconnect(self, svc: str) -> None:
        run("docker", "network", "disconnect", "-f", NETWORK, container(svc))
        self.disconnected.add(svc)

    def connect(self, svc: str) -> None:
        run(
            "docker", "network", "connect", "--ip", IP[svc], "--alias", svc,
            NETWORK, container(svc), check=False,
        )
        self.disconnected.discard(svc)

    def _nsenter(self, svc: str, *cmd: str) -> None:
        pid = run("docker", "inspect", "-f", "{{.State.Pid}}", container(svc)).strip()
        if pid in ("", "0"):
            raise CommandError(f"{svc} is not running")
        run("nsenter", "-t", pid, "-n", *cmd)

    def partition(self, svc: str, peers: list[str]) -> None:
        """Drops all traffic between svc and the given addresses (services or
        IPs), both ways, with iptables inside svc's network namespace."""
        for p in peers:
            ip = IP.get(p, p)
            self._nsenter(svc, "iptables", "-w", "-I", "INPUT", "-s", ip, "-j", "DROP")
            self._nsenter(svc, "iptables", "-w", "-I", "OUTPUT", "-d", ip, "-j", "DROP")
        self.firewalled.add(svc)

    def unpartition(self, svc: str) -> None:
        try:
            self._nsenter(svc, "iptables", "-w", "-F", "INPUT")
            self._nsenter(svc, "iptables", "-w", "-F", "OUTPUT")
        except CommandError:
            pass  # not running: its namespace and rules are gone
        self.firewalled.discard(svc)

    def heal_all(self) -> None:
        """Undoes every fault: unpause, reconnect, flush rules, start what is stopped."""
        for s in list(self.paused):
            self.unpause(s)
        for s in list(self.disconnected):
            self.connect(s)
        for s in list(self.firewalled):
            self.unpartition(s)
        for s in SERVICES:
            st = self.state(s)
            if st and st.get("Paused"):
                self.unpause(s)

    def restore(self, timeout: float = 180) -> None:
        """Back to nine healthy containers after whatever a run did."""
        self.heal_all()
        for s in SERVICES:
            st = self.state(s)
            if not st:
                self.compose("up", "-d", "--no-recreate", timeout=timeout)
                break
            if not st.get("Running"):
                self.start(s)
        self.wait_healthy(timeout)


class MetaCheck:
    """Reads, writes and CAS on fresh registers of the metadata service for as
    long as a run lasts; finish() stops it (SIGTERM) and returns its verdict:
    {"linearizable": bool, "operations": n, ...} from the Rust checker."""

    def __init__(self, tag: str, run_id: str):
        self.name = f"{PROJECT}-metacheck"
        run("docker", "rm", "-f", self.name, check=False, timeout=60)
        prefix = f"e2e/lin/{run_id}-{int(time.time())}"
        self.proc = subprocess.Popen(
            [
                "docker", "run", "--rm", "--name", self.name, "--network", NETWORK,
                f"magnetar:{tag}", "meta", "--meta", ",".join(f"{m}:7001" for m in METAS),
                "check-linearizable", "--duration", "3600", "--prefix", prefix,
                "--clients", "4", "--keys", "3", "--slice", "10", "--pause-ms", "20",
            ],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def finish(self, timeout: float = 300) -> dict:
        run("docker", "stop", "-t", str(int(timeout)), self.name, check=False,
            timeout=timeout + 30)
        try:
            out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
        last = (out or "").strip().splitlines()[-1:] or [""]
        try:
            verdict = json.loads(last[0])
        except ValueError:
            return {"linearizable": None,
                    "error": f"meta check exited {self.proc.returncode}: {(err or out).strip()[-500:]}"}
        verdict["exit"] = self.proc.returncode
        return verdict
