# Magnetar: `make run` builds and starts `magnetar standalone`; `make test` runs
# every check CI runs. Both install missing system packages first.

SHELL := /bin/bash
CARGO_TARGET_DIR ?= $(HOME)/.cache/magnetar/target
export CARGO_TARGET_DIR
# Dependencies rebuild less often when every run shares one target dir; CI on a
# fresh clone reuses the builds of earlier runs on the same machine.
CARGO ?= cargo
BIN_DIR := $(CARGO_TARGET_DIR)/debug
DATA_DIR ?= ./data

# Debian packages the build needs: clang/libclang for RocksDB's bindings,
# protoc for the gRPC code, a C++ toolchain for RocksDB itself.
APT_PACKAGES := clang libclang-dev protobuf-compiler build-essential python3-venv

.PHONY: cluster cluster-stop all setup python-env s3-env build run test test-unit lint fmt bench bench-meta bench-ledger bench-managed-ledger bench-offload bench-broker bench-tls bench-cluster bench-topics clean

all: build

setup:
	@missing=""; \
	command -v clang >/dev/null || missing="$$missing clang"; \
	ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 || missing="$$missing libclang-dev"; \
	command -v protoc >/dev/null || missing="$$missing protobuf-compiler"; \
	command -v c++ >/dev/null || missing="$$missing build-essential"; \
	python3 -c 'import ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "make: installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	  else \
	    echo "make: missing system packages:$$missing"; \
	    echo "      install them with: sudo apt-get install -y $(APT_PACKAGES)"; \
	    exit 1; \
	  fi; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "make: cargo not found; install Rust from your distribution or rustup"; exit 1; }

# The official Pulsar Python client drives the compatibility tests.
PY_VENV := $(HOME)/.cache/magnetar/venv
# [avro]: fastavro, for the client's AvroSchema (the schema registry tests).
PULSAR_CLIENT := pulsar-client[avro]==3.13.0
WEBSOCKET_CLIENT := websocket-client==1.8.0
SCHEMATHESIS := schemathesis==4.32.5

python-env: setup
	@$(PY_VENV)/bin/python -c 'import pulsar, fastavro, websocket, schemathesis' 2>/dev/null || { \
	  echo "make: installing $(PULSAR_CLIENT) $(WEBSOCKET_CLIENT) $(SCHEMATHESIS) into $(PY_VENV)"; \
	  python3 -m venv $(PY_VENV) && $(PY_VENV)/bin/pip install -q '$(PULSAR_CLIENT)' '$(WEBSOCKET_CLIENT)' '$(SCHEMATHESIS)'; }

# An S3-protocol server that checks SigV4 signatures (moto's server mode) for
# the tiered-storage tests; libs/testkit/src/s3.rs starts it from this venv.
S3_VENV := $(HOME)/.cache/magnetar/moto-venv
MOTO := moto[server]==5.2.6

s3-env: setup
	@$(S3_VENV)/bin/python -c 'import moto.server, boto3' 2>/dev/null || { \
	  echo "make: installing $(MOTO) into $(S3_VENV)"; \
	  python3 -m venv $(S3_VENV) && $(S3_VENV)/bin/pip install -q '$(MOTO)'; }

build: setup
	$(CARGO) build --workspace --bins

run: build
	$(BIN_DIR)/magnetar standalone --data-dir $(DATA_DIR)

# A local cluster of separate processes: META, BOOKIES and BROKERS set the
# counts (3, 3, 2 by default); `make cluster-stop` stops it.
META ?= 3
BOOKIES ?= 3
BROKERS ?= 2
cluster: build
	META=$(META) BOOKIES=$(BOOKIES) BROKERS=$(BROKERS) BIN_DIR=$(BIN_DIR) scripts/cluster.sh start

cluster-stop:
	BIN_DIR=$(BIN_DIR) scripts/cluster.sh stop

lint: setup
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

# Unit, property and multi-process tests. Cluster tests start their own
# processes on loopback through libs/testkit.
test-unit: setup python-env s3-env
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace --no-fail-fast -- --test-threads=2

test: lint test-unit test-e2e test-deploy

# Deployment checks (helm/tests, terraform/tests): the chart rendered by Helm's
# own engine (helm-python-sdk), every manifest validated against Kubernetes'
# schemas, checkov on the manifests and terraform/, `terraform fmt -check`.
# Offline once the venv exists; no Kubernetes API server needed. The init Job's
# arguments run for real: the `magnetar` binary against a standalone.
.PHONY: test-deploy
DEPLOY_VENV := $(HOME)/.cache/magnetar/venv-deploy
DEPLOY_PINS := helm-python-sdk==0.2.2 kubernetes-validate==1.37.0 checkov==3.3.30 pytest==9.1.1 PyYAML==6.0.4

test-deploy: setup
	@[ "$$(cat $(DEPLOY_VENV)/.pins 2>/dev/null)" = "$(DEPLOY_PINS)" ] || { \
	  echo "make: installing $(DEPLOY_PINS) into $(DEPLOY_VENV)"; \
	  rm -rf $(DEPLOY_VENV) && python3 -m venv $(DEPLOY_VENV) && \
	  $(DEPLOY_VENV)/bin/pip install -q $(DEPLOY_PINS) && echo "$(DEPLOY_PINS)" > $(DEPLOY_VENV)/.pins; }
	$(CARGO) build -p magnetar --bin magnetar
	MAGNETAR_BIN=$(BIN_DIR)/magnetar $(DEPLOY_VENV)/bin/python -m pytest -q -p no:cacheprovider helm/tests terraform/tests

# Benchmarks are release builds and write their figures to docs/BENCHMARKS.md.
bench: bench-meta bench-ledger bench-managed-ledger bench-broker bench-cluster

bench-meta: setup
	$(CARGO) bench -p magnetar-meta --bench cas

bench-ledger: setup
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar-bookie-service --bench ledger

bench-managed-ledger: setup
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar-managed-ledger --bench managed_ledger

# Tiered storage against moto's S3 server: raw PUT/GET vs offload and catch-up
# read of a 2 GiB backlog (MAGNETAR_BENCH_OFFLOAD_BYTES), memory growth.
bench-offload: setup s3-env
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar-managed-ledger --bench offload

clean:
	$(CARGO) clean

bench-broker: setup
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar --bench perf
	$(CARGO) bench -p magnetar --bench tls

# Plain vs pulsar+ssl:// on one standalone (also the end of bench-broker).
bench-tls: setup
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar --bench tls

bench-cluster: setup
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar --bench cluster

# Topic count as the variable: 1 → 10,000 topics (MAGNETAR_BENCH_MAX_TOPICS=100000
# for the last step), the same 10,000 msg/s in total.
bench-topics: setup
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar --bench topics

# Container images and the Docker fault campaign (docs/CONTAINERS.md).
# PROFILE=release (default) tags :{version} and :dev; PROFILE=debug tags
# :{version}-debug and :dev-debug from the debug binaries `make test` builds.
.PHONY: images e2e e2e-up e2e-down test-e2e
PROFILE ?= release
E2E_TAG = dev$(if $(filter debug,$(PROFILE)),-debug)
E2E_COMPOSE = docker-compose -p magnetar-e2e -f e2e/docker-compose.yml
E2E_LOCK = flock /tmp/magnetar-e2e.lock
RUNS ?= 10
SEED ?=

images: setup
	$(CARGO) build --workspace --bins $(if $(filter release,$(PROFILE)),--release)
	images/build.sh $(PROFILE)

e2e-up: images
	MAGNETAR_TAG=$(E2E_TAG) $(E2E_COMPOSE) up -d
	@echo "pulsar://127.0.0.1:16651,127.0.0.1:16652,127.0.0.1:16653 (listener_name=external);" \
	  "admin http://127.0.0.1:18081"

e2e-down:
	$(E2E_COMPOSE) down -v

e2e: images python-env
	$(E2E_LOCK) $(PY_VENV)/bin/python e2e/campaign.py --runs $(RUNS) $(if $(SEED),--seed $(SEED)) --tag $(E2E_TAG)

# The short version `make test` runs: debug images, 3 fault scenarios.
test-e2e: python-env
	$(MAKE) --no-print-directory images PROFILE=debug
	$(E2E_LOCK) env MAGNETAR_TAG=dev-debug $(PY_VENV)/bin/python -m pytest -q -p no:cacheprovider e2e/tests
