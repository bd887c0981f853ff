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

.PHONY: cluster cluster-stop all setup python-env s3-env build run test test-unit lint fmt bench bench-meta bench-ledger bench-managed-ledger bench-broker bench-cluster clean

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
PULSAR_CLIENT := pulsar-client==3.13.0
WEBSOCKET_CLIENT := websocket-client==1.8.0
SCHEMATHESIS := schemathesis==4.32.5

python-env: setup
	@$(PY_VENV)/bin/python -c 'import pulsar, websocket, schemathesis' 2>/dev/null || { \
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

test: lint test-unit

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

clean:
	$(CARGO) clean

bench-broker: setup
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar --bench perf

bench-cluster: setup
	$(CARGO) build --release --bins
	$(CARGO) bench -p magnetar --bench cluster
