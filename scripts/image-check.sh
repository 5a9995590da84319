#!/usr/bin/env bash
# Checks the container image's build and run steps without a container
# engine: builds keyway with the Dockerfile's own cargo command (release,
# slow on 2 cores: not part of scripts/test.sh, whose tests/cli.rs checks
# the Dockerfile's text and runs the debug binary the same way), then runs
# that binary as the image runs it (its config file, its KEYWAY_*
# environment), asks it with redis-cli, runs the image's HEALTHCHECK
# command against it, and checks the CA bundle rustls reads is present.
set -euo pipefail
cd "$(dirname "$0")/.."

build=$(grep -E '^RUN cargo build' Dockerfile | tail -1 | sed 's/^RUN //')
echo "building as the Dockerfile does: $build"
$build

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
port=$(free_port)
metrics=$(free_port)
config=$(grep -E '^COPY config/' Dockerfile | awk '{print $2}')
echo "running target/release/keyway with $config, KEYWAY_LISTEN=127.0.0.1:$port, KEYWAY_METRICS_LISTEN=127.0.0.1:$metrics"
KEYWAY_CONFIG="$config" KEYWAY_LISTEN="127.0.0.1:$port" KEYWAY_METRICS_LISTEN="127.0.0.1:$metrics" \
  target/release/keyway >/tmp/keyway-image-check.log 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  redis-cli -p "$port" ping >/dev/null 2>&1 && break
  sleep 0.1
done
[ "$(redis-cli -p "$port" ping)" = PONG ] || { echo "keyway does not answer on $port"; exit 1; }
probe=$(grep -A1 '^HEALTHCHECK' Dockerfile | tail -1 | sed -E 's/^ *CMD \["bash", "-c", "(.*)"\]$/\1/; s/\\\\/\\/g' | sed "s#/9121#/$metrics#")
bash -c "$probe" && echo "HEALTHCHECK passes: $probe"
[ -s /etc/ssl/certs/ca-certificates.crt ] && echo "CA bundle present (the image installs ca-certificates)"
grep -q ca-certificates Dockerfile
echo "image check: OK"
