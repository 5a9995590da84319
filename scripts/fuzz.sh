#!/usr/bin/env bash
# Runs keyway's fuzzers: each cargo-fuzz target (the request codec, the
# command table and argument helpers, the memory backend on random
# commands) for SECONDS, then the differential fuzzer (the same random
# commands to keyway's memory backend and to a redis-server) for COMMANDS.
#
#   bash scripts/fuzz.sh [SECONDS] [COMMANDS] [TARGET...|none]
#
# Defaults: 300 seconds per target, 1,000,000 differential commands, all
# targets. Corpora grow in fuzz/corpus/ (not committed); start from
# fuzz/seeds/. Crashes land in fuzz/artifacts/<target>/. After a long run,
# `bash scripts/fuzz.sh --keep` minimizes the corpora into fuzz/seeds/,
# which `cargo test` replays (tests/fuzz_replay.rs).
#
# Needs the nightly toolchain and cargo-fuzz (installed here if missing)
# and redis-server (scripts/test.sh installs it).
set -euo pipefail
cd "$(dirname "$0")/.."

targets_all=(codec command_table memory)

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "installing cargo-fuzz (cargo install cargo-fuzz)"
  cargo install cargo-fuzz --locked
fi

if [[ "${1:-}" == "--keep" ]]; then
  for t in "${targets_all[@]}"; do
    mkdir -p "fuzz/seeds/$t"
    echo "minimizing fuzz/corpus/$t into fuzz/seeds/$t"
    (cd fuzz && cargo +nightly fuzz cmin -O -s none "$t" "corpus/$t" -- -rss_limit_mb=2048 >/dev/null 2>&1)
    rm -f "fuzz/seeds/$t"/*
    # The smallest 300 inputs: enough for the replay to reach what the
    # fuzzer reached, little enough to commit.
    ls -S -r "fuzz/corpus/$t" | head -300 | while read -r f; do cp "fuzz/corpus/$t/$f" "fuzz/seeds/$t/"; done
    echo "  $(ls "fuzz/seeds/$t" | wc -l) seeds"
  done
  exit 0
fi

seconds="${1:-300}"
commands="${2:-1000000}"
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=("${targets_all[@]}")
# `none`: only the differential fuzzer.
[ "${targets[*]}" = none ] && targets=()

status=0
for t in "${targets[@]+"${targets[@]}"}"; do
  mkdir -p "fuzz/corpus/$t"
  [ -d "fuzz/seeds/$t" ] && cp -n "fuzz/seeds/$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
  echo "== $t: $seconds s"
  log="fuzz/$t.log"
  # AddressSanitizer where unsafe code runs (the memory backend's store);
  # the codec and the command table are safe Rust, fuzzed 5x faster without.
  sanitizer=none
  [ "$t" = memory ] && sanitizer=address
  if (cd fuzz && cargo +nightly fuzz run -O -s "$sanitizer" "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -malloc_limit_mb=2048 \
        -print_final_stats=1) >"$log" 2>&1; then
    grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb" "$log" | sed 's/^/   /'
  else
    echo "   FAILED: see $log and fuzz/artifacts/$t/"
    grep -E "panicked|ERROR|SUMMARY" "$log" | head -5 | sed 's/^/   /'
    status=1
  fi
done

if [ "$commands" -gt 0 ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  echo "== differential: $commands commands against redis-server on port $port"
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  redis_pid=$!
  trap 'kill $redis_pid 2>/dev/null || true' EXIT
  for _ in $(seq 50); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.1; done
  cargo build --release --example differential -q
  seed=1
  done_commands=0
  chunk=100000
  while [ "$done_commands" -lt "$commands" ]; do
    n=$(( commands - done_commands < chunk ? commands - done_commands : chunk ))
    if ! CHECK_STATE=1 ./target/release/examples/differential "$port" "$seed" "$n" >"fuzz/differential-$seed.log"; then
      echo "   seed $seed: differences, see fuzz/differential-$seed.log"
      tail -n 20 "fuzz/differential-$seed.log" | sed 's/^/   /'
      status=1
    fi
    done_commands=$(( done_commands + n ))
    seed=$(( seed + 1 ))
  done
  echo "   $done_commands commands over $(( seed - 1 )) seeds"
fi
exit $status
