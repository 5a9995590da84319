#!/usr/bin/env bash
# Moves a namespace of a million keys of mixed types from redis-server to
# a Redis Cluster, and a million strings from memcached to redis-server,
# each under a steady write load, then rolls each back; checks every
# acknowledged write (scripts/migrate_at_scale.py) and prints the figures.
#
#   scripts/migrate-at-scale.sh [KEYS]        # default 1000000
#
# Needs redis-server, redis-cli and memcached (scripts/test.sh installs
# them) and builds keyway in release mode. Everything runs on free ports
# in a temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
KEYS="${1:-1000000}"

VENV=target/migrate-venv
if [ ! -x "$VENV/bin/python" ]; then
  echo "installing redis-py (tests/clients/requirements.txt) into $VENV..."
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "$(grep '^redis==' tests/clients/requirements.txt)"
fi
echo "building keyway (release)..."
cargo build --release --quiet

DIR="$(mktemp -d /tmp/keyway-migrate-XXXXXX)"
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$DIR"
}
trap cleanup EXIT

# A free port at most 55535: a cluster node also listens 10000 higher.
free_port() {
  python3 -c '
import socket
while True:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
    if p <= 55535: print(p); break'
}
wait_ping() {  # port name
  for _ in $(seq 100); do redis-cli -p "$1" ping >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "$2 on port $1 did not start; its log:"; tail -5 "$DIR/$1.log" 2>/dev/null; exit 1
}

redis() {  # port [extra args...]
  local port="$1"; shift
  mkdir -p "$DIR/$port"
  (cd "$DIR/$port" && exec redis-server --port "$port" --save "" --appendonly no "$@" >"$DIR/$port.log" 2>&1) &
  PIDS+=($!)
}

SRC=$(free_port); DST=$(free_port); MC=$(free_port); KW=$(free_port)
redis "$SRC"; redis "$DST"
NODES=()
for _ in 1 2 3; do
  p=$(free_port); NODES+=("127.0.0.1:$p")
  redis "$p" --cluster-enabled yes --cluster-config-file nodes.conf
done
memcached -u "$(id -un)" -l 127.0.0.1 -p "$MC" -m 2048 -U 0 >"$DIR/memcached.log" 2>&1 &
PIDS+=($!)
for p in "$SRC" "$DST" "${NODES[@]##*:}"; do wait_ping "$p" redis-server; done
redis-cli --cluster create "${NODES[@]}" --cluster-yes >/dev/null
until redis-cli -p "${NODES[0]##*:}" cluster info | grep -q cluster_state:ok; do sleep 0.2; done

CONFIG="$DIR/keyway.toml"
cat >"$CONFIG" <<TOML
[server]
listen = "127.0.0.1:$KW"
[backends.src]
type = "redis"
url = "redis://127.0.0.1:$SRC"
[[namespaces]]
name = "big"
prefix = "big:"
backend = "src"
TOML
target/release/keyway --config "$CONFIG" >"$DIR/keyway.log" 2>&1 &
KW_PID=$!
PIDS+=("$KW_PID")
wait_ping "$KW" keyway

NODE_LIST=$(IFS=,; echo "${NODES[*]}")
"$VENV/bin/python" scripts/migrate_at_scale.py --keys "$KEYS" --keyway "$KW" \
  --keyway-pid "$KW_PID" --config "$CONFIG" --src "$SRC" --dst "$DST" \
  --cluster "$NODE_LIST" --memcached "$MC" || { echo "keyway's log:"; tail -20 "$DIR/keyway.log"; exit 1; }
