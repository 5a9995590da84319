#!/usr/bin/env bash
# Redis's own Tcl test suite (7.0.15, the Debian package's upstream
# sources) in its external mode, unit by unit, each against a fresh
# redis-server and a fresh keyway in front of it, or keyway's memory
# backend: what passes directly and what passes through keyway.
#
#   scripts/redis-suite.sh [memory|redis] [UNIT...]   # default: memory, every unit
#
# Units run one at a time with a fresh server each, since external mode
# leaves behind what a unit changed (CONFIG SET, keys) and a test client
# that times out ends the whole run. Prints per unit "ok err" directly
# and through keyway, then the totals. Needs tclsh (apt-get install tcl)
# and the sources, fetched once into target/redis-7.0.15 from
# deb.debian.org.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE="${1:-memory}"; shift || true
SRC=target/redis-7.0.15
if [ ! -d "$SRC/tests" ]; then
  echo "fetching redis 7.0.15's sources (its Tcl suite) from deb.debian.org..."
  mkdir -p target
  curl -sf -o target/redis-7.0.15.tar.gz \
    http://deb.debian.org/debian/pool/main/r/redis/redis_7.0.15.orig.tar.gz
  tar xzf target/redis-7.0.15.tar.gz -C target
fi
command -v tclsh >/dev/null || { echo "needs tclsh: apt-get install tcl" >&2; exit 1; }
cargo build --release --quiet
KEYWAY="$PWD/target/release/keyway"
WORK="$(mktemp -d /tmp/keyway-suite-XXXXXX)"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
if [ $# -gt 0 ]; then
  UNITS=("$@")
else
  mapfile -t UNITS < <(sed -n '/set ::all_tests {/,/}/p' "$SRC/tests/test_helper.tcl" | grep -o 'unit/[a-z0-9/_-]*')
fi

# run_unit UNIT PORT LOG: the unit in external mode against PORT.
run_unit() {
  (cd "$SRC" && timeout 300 ./runtest --host 127.0.0.1 --port "$2" --single "$1" \
    --clients 1 --timeout 30 --durable --baseport "$3" --portcount 500 >"$4" 2>&1) || true
  local ok err
  # Each failure is also repeated in the closing summary ("*** [err]"):
  # only lines that start with the bracket count.
  ok=$(grep -a -c '^\[.*ok.*\]:' "$4" || true)
  err=$(grep -a -c '^\[.*\(err\|exception\|TIMEOUT\).*\]:' "$4" || true)
  echo "$ok $err"
}

TOTAL_D=(0 0); TOTAL_K=(0 0)
printf '%-28s %12s %12s\n' unit "direct ok/err" "keyway ok/err"
for unit in "${UNITS[@]}"; do
  RP=$(free_port); RP2=$(free_port); KP=$(free_port)
  PIDS=()
  for p in "$RP" "$RP2"; do
    mkdir -p "$WORK/$p"
    (cd "$WORK/$p" && exec redis-server --port "$p" --save "" --appendonly no \
      --enable-debug-command yes >/dev/null 2>&1) &
    PIDS+=($!)
  done
  if [ "$MODE" = redis ]; then
    printf '[server]\nlisten = "127.0.0.1:%s"\nenable_debug_command = "yes"\n[backends.r]\ntype = "redis"\nurl = "redis://127.0.0.1:%s"\n[[namespaces]]\nname = "all"\nprefix = ""\nbackend = "r"\n' \
      "$KP" "$RP2" >"$WORK/k.toml"
  else
    printf '[server]\nlisten = "127.0.0.1:%s"\nenable_debug_command = "yes"\n[backends.m]\ntype = "memory"\n[[namespaces]]\nname = "all"\nprefix = ""\nbackend = "m"\n' \
      "$KP" >"$WORK/k.toml"
  fi
  "$KEYWAY" --config "$WORK/k.toml" >"$WORK/keyway.log" 2>&1 &
  PIDS+=($!)
  for p in "$RP" "$RP2" "$KP"; do
    for _ in $(seq 50); do redis-cli -p "$p" ping >/dev/null 2>&1 && break; sleep 0.1; done
  done
  name="${unit//\//_}"
  read -r dok derr < <(run_unit "$unit" "$RP" 21000 "$WORK/$name.direct")
  read -r kok kerr < <(run_unit "$unit" "$KP" 23000 "$WORK/$name.keyway")
  mkdir -p target/redis-suite
  cp "$WORK/$name.direct" "$WORK/$name.keyway" target/redis-suite/ 2>/dev/null || true
  kill "${PIDS[@]}" 2>/dev/null || true
  wait "${PIDS[@]}" 2>/dev/null || true
  printf '%-28s %6s/%-5s %6s/%-5s\n' "$unit" "$dok" "$derr" "$kok" "$kerr"
  TOTAL_D=($((TOTAL_D[0] + dok)) $((TOTAL_D[1] + derr)))
  TOTAL_K=($((TOTAL_K[0] + kok)) $((TOTAL_K[1] + kerr)))
done
printf '%-28s %6s/%-5s %6s/%-5s\n' total "${TOTAL_D[0]}" "${TOTAL_D[1]}" "${TOTAL_K[0]}" "${TOTAL_K[1]}"
echo "logs: target/redis-suite/"
