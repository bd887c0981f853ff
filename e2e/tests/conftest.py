"""The short e2e suite of `make test` (make test-e2e): the images, bad
configuration, SIGTERM, and three fault scenarios against the Docker cluster
of e2e/docker-compose.yml, which the session starts fresh and removes at the
end (E2E_KEEP=1 leaves it up). MAGNETAR_TAG picks the images (make test-e2e
uses dev-debug: the debug binaries make test has already built)."""

import os
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.cluster import Cluster  # noqa: E402

RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.fixture(scope="session")
def tag() -> str:
    return os.environ.get("MAGNETAR_TAG", "dev")


@pytest.fixture(scope="session")
def cluster(tag):
    c = Cluster(tag=tag)
    took = c.up(fresh=True)
    print(f"\ncluster of {tag} images healthy in {took:.1f}s")
    yield c
    if os.environ.get("E2E_KEEP") != "1":
        c.down()


@pytest.fixture(scope="session")
def results_log():
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / time.strftime("test-e2e-%Y%m%dT%H%M%SZ.log", time.gmtime())
    with path.open("w") as f:
        yield f
