#!/usr/bin/env bash
# A local Magnetar cluster of separate processes on loopback:
#   scripts/cluster.sh start   (META=3 BOOKIES=3 BROKERS=2 by default)
#   scripts/cluster.sh stop
# `make cluster` / `make cluster-stop` call this. Data, logs and pid files
# live in $CLUSTER_DIR (default ./.cluster); `stop` keeps them, `start` after
# `stop` reuses them.
set -euo pipefail

BIN_DIR=${BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/magnetar/target}/debug}
CLUSTER_DIR=${CLUSTER_DIR:-./.cluster}
META=${META:-3}
BOOKIES=${BOOKIES:-3}
BROKERS=${BROKERS:-2}
HOST=${HOST:-127.0.0.1}
# Extra flags for every broker, e.g. BROKER_ARGS="--lease-ttl 5".
BROKER_ARGS=${BROKER_ARGS:-}

start_proc() { # name, command...
  local name=$1; shift
  if [[ -f "$CLUSTER_DIR/$name.pid" ]] && kill -0 "$(cat "$CLUSTER_DIR/$name.pid")" 2>/dev/null; then
    echo "$name already running (pid $(cat "$CLUSTER_DIR/$name.pid"))"
    return
  fi
  nohup "$@" >"$CLUSTER_DIR/$name.log" 2>&1 &
  echo $! >"$CLUSTER_DIR/$name.pid"
}

wait_http() { # name, url
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$1 did not become healthy; see $CLUSTER_DIR/$1.log" >&2
  tail -20 "$CLUSTER_DIR/$1.log" >&2
  exit 1
}

start() {
  mkdir -p "$CLUSTER_DIR"
  local peers="" meta_addrs=""
  for i in $(seq 1 "$META"); do
    peers+="${peers:+,}$i=$HOST:$((7000 + i))"
    meta_addrs+="${meta_addrs:+,}$HOST:$((7000 + i))"
  done
  for i in $(seq 1 "$META"); do
    start_proc "meta-$i" "$BIN_DIR/magnetar-meta" --id "$i" --listen "$HOST:$((7000 + i))" \
      --peers "$peers" --data-dir "$CLUSTER_DIR/meta-$i" --http "$HOST:$((7100 + i))"
  done
  for i in $(seq 1 "$META"); do wait_http "meta-$i" "http://$HOST:$((7100 + i))/health"; done
  # The metadata service answers once it has a leader.
  for _ in $(seq 1 100); do
    "$BIN_DIR/magnetar" meta status --meta "$meta_addrs" >/dev/null 2>&1 && break
    sleep 0.2
  done
  for i in $(seq 1 "$BOOKIES"); do
    start_proc "bookie-$i" "$BIN_DIR/magnetar-bookie" --id "b$i" --listen "$HOST:$((3180 + i))" \
      --meta "$meta_addrs" --journal-dir "$CLUSTER_DIR/bookie-$i/journal" \
      --ledger-dir "$CLUSTER_DIR/bookie-$i/ledgers" --http "$HOST:$((3280 + i))"
  done
  for i in $(seq 1 "$BOOKIES"); do wait_http "bookie-$i" "http://$HOST:$((3280 + i))/health"; done
  local quorum=$(( BOOKIES < 2 ? BOOKIES : 2 ))
  for i in $(seq 1 "$BROKERS"); do
    start_proc "broker-$i" "$BIN_DIR/magnetar-broker" --meta "$meta_addrs" \
      --listen "$HOST:$((6649 + i))" --http "$HOST:$((8079 + i))" \
      --ensemble-size "$quorum" --write-quorum "$quorum" --ack-quorum "$quorum" $BROKER_ARGS
  done
  for i in $(seq 1 "$BROKERS"); do wait_http "broker-$i" "http://$HOST:$((8079 + i))/health"; done
  echo
  echo "Magnetar cluster is up ($META metadata, $BOOKIES bookies, $BROKERS brokers):"
  echo "  metadata:  $meta_addrs"
  for i in $(seq 1 "$BROKERS"); do
    echo "  broker-$i:  pulsar://$HOST:$((6649 + i))  http://$HOST:$((8079 + i))"
  done
  echo "  service URL for clients: pulsar://$HOST:6650 (any broker answers lookups)"
  echo "  logs and data: $CLUSTER_DIR"
  echo "Stop it with: make cluster-stop"
}

stop() {
  shopt -s nullglob
  # Brokers first (they hand their topics over), storage last.
  for kind in broker bookie meta; do
    for f in "$CLUSTER_DIR"/$kind-*.pid; do
      local pid; pid=$(cat "$f")
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
      rm -f "$f"
    done
  done
  echo "Magnetar cluster stopped (data kept in $CLUSTER_DIR)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
