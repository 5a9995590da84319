#!/usr/bin/env bash
# Runs keyway's whole test suite. Installs what the tests need if it is
# missing (Debian packages: redis-server, redis-tools, memcached, nutcracker,
# chromium for the status page's test, and for the client-library tests
# nodejs, npm and python3-venv; then their
# npm and PyPI packages, pinned in tests/clients/), saying what it installs
# and why, then checks formatting and lints and runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || missing+=(redis-tools)
command -v memcached >/dev/null 2>&1 || missing+=(memcached)
command -v nutcracker >/dev/null 2>&1 || missing+=(nutcracker)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
# The status page's test renders it in a headless browser.
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if ((${#missing[@]})); then
  echo "installing Debian packages the tests run (servers keyway proxies to, redis-cli, Node.js/Python for the client-library tests, Chromium for the status page's): ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The client libraries tests/clients.rs drives (it would install them too,
# but inside a test whose output cargo captures: a slow download would look
# like a hang).
if [ ! -f tests/clients/node_modules/bullmq/package.json ]; then
  echo "installing the Node.js client libraries (tests/clients/package-lock.json: BullMQ, ioredis) with npm ci..."
  (cd tests/clients && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -f tests/clients/.venv/installed ]; then
  echo "installing the Python client libraries (tests/clients/requirements.txt: redis-py, RQ, Celery) into tests/clients/.venv..."
  python3 -m venv tests/clients/.venv
  tests/clients/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/clients/requirements.txt
  touch tests/clients/.venv/installed
fi

cargo fmt --check
cargo clippy --all-targets -- -D warnings
cargo test
