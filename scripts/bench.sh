#!/usr/bin/env bash
# Load comparison on 127.0.0.1, in one run: direct redis-server, twemproxy
# (nutcracker) in front of it, keyway (release) with a redis backend on the
# same server, keyway with its memory backend, and keyway in front of a
# memcached. Each round runs, against each target in turn (A B C A B C ...,
# so that machine drift cancels):
# - one client with one request in flight (examples/latency, to the
#   microsecond): the latency a proxy adds to every request of a service;
# - redis-benchmark SET, GET and MSET (10 keys) at pipeline 1 and 16, 50
#   clients, 64-byte values, 100,000 keys: the proxy's own CPU per request.
# Then 10,000 idle clients and 1,000,000 keys in fresh processes.
# Prints the targets of issue 23 as its leading table (medians of the
# per-round figures), then the detail; --write puts both in BENCHMARKS.md.
#
#   bash scripts/bench.sh [--write] [--quick] [--rounds N]
#
# --rounds N (5 by default) trades time for steadier medians: each round
# takes about a minute and a half.
#
# Needs redis-server, redis-benchmark, nutcracker and memcached (the test
# command `bash scripts/test.sh` installs them). Everything it starts is
# stopped by pid on exit; every benchmark run is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."

WRITE=0
ROUNDS=5
REQUESTS=100000
LATENCY_REQUESTS=20000
while [ $# -gt 0 ]; do
    case "$1" in
        --write) WRITE=1 ;;
        --quick) ROUNDS=1; REQUESTS=20000; LATENCY_REQUESTS=5000 ;;
        --rounds)
            shift
            [[ "${1:-}" =~ ^[1-9][0-9]*$ ]] || { echo "--rounds takes a number of rounds" >&2; exit 2; }
            ROUNDS=$1 ;;
        *) echo "usage: $0 [--write] [--quick] [--rounds N]" >&2; exit 2 ;;
    esac
    shift
done
CLIENTS=50
KEYSPACE=100000
SIZE=64

for tool in redis-server redis-benchmark nutcracker memcached python3; do
    command -v "$tool" >/dev/null || { echo "missing $tool: run bash scripts/test.sh first" >&2; exit 1; }
done

cargo build --release --quiet --bin keyway --example latency
KEYWAY=target/release/keyway
LATENCY=target/release/examples/latency

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
    done
    # Up to 2 s to exit on their own (memcached takes a moment), then forced.
    for _ in $(seq 1 20); do
        alive=0
        for pid in "${PIDS[@]:-}"; do
            [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ "$alive" = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]:-}"; do
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 200); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "port $1 did not open" >&2
    exit 1
}

REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$WORK/redis.log" &
PIDS+=($!); REDIS_PID=$!

MC_PORT=$(free_port)
memcached -u nobody -l 127.0.0.1 -p "$MC_PORT" -U 0 -m 1024 -t 1 &
PIDS+=($!)

TW_PORT=$(free_port)
cat > "$WORK/nutcracker.yml" <<YML
bench:
  listen: 127.0.0.1:$TW_PORT
  redis: true
  hash: fnv1a_64
  distribution: ketama
  servers:
   - 127.0.0.1:$REDIS_PORT:1
YML
nutcracker -c "$WORK/nutcracker.yml" -o "$WORK/nutcracker.log" -a 127.0.0.1 -s "$(free_port)" &
PIDS+=($!); TW_PID=$!

KR_PORT=$(free_port)
cat > "$WORK/keyway-redis.toml" <<TOML
[server]
listen = "127.0.0.1:$KR_PORT"
[backends.r]
type = "redis"
url = "redis://127.0.0.1:$REDIS_PORT"
[[namespaces]]
name = "all"
prefix = ""
backend = "r"
TOML
RUST_LOG=warn $KEYWAY --config "$WORK/keyway-redis.toml" > "$WORK/keyway-redis.log" 2>&1 &
PIDS+=($!); KR_PID=$!

KM_PORT=$(free_port)
RUST_LOG=warn $KEYWAY --listen "127.0.0.1:$KM_PORT" > "$WORK/keyway-memory.log" 2>&1 &
PIDS+=($!); KM_PID=$!

KC_PORT=$(free_port)
cat > "$WORK/keyway-memcached.toml" <<TOML
[server]
listen = "127.0.0.1:$KC_PORT"
[backends.mc]
type = "memcached"
servers = ["127.0.0.1:$MC_PORT"]
connections = 64
[[namespaces]]
name = "all"
prefix = ""
backend = "mc"
TOML
RUST_LOG=warn $KEYWAY --config "$WORK/keyway-memcached.toml" > "$WORK/keyway-memcached.log" 2>&1 &
PIDS+=($!); KC_PID=$!

for p in $REDIS_PORT $MC_PORT $TW_PORT $KR_PORT $KM_PORT $KC_PORT; do wait_port "$p"; done

# name port pid-whose-CPU-counts
TARGETS=(
    "redis $REDIS_PORT $REDIS_PID"
    "twemproxy $TW_PORT $TW_PID"
    "keyway-redis $KR_PORT $KR_PID"
    "keyway-memory $KM_PORT $KM_PID"
    "keyway-memcached $KC_PORT $KC_PID"
)

cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

RESULTS="$WORK/results.csv"
echo "target,round,pipeline,test,rps,p50,p99,cpu_us" > "$RESULTS"
ONE="$WORK/one-client.csv"
echo "target,round,test,requests,p50,p90,p99,p999,cpu_us,rps" > "$ONE"
echo "benchmarking: $ROUNDS round(s), $REQUESTS requests per run (x10 at pipeline 16)" >&2
for round in $(seq 1 "$ROUNDS"); do
    # One client, one request at a time: what each request pays.
    for t in "${TARGETS[@]}"; do
        read -r name port pid <<< "$t"
        case "$name" in redis|twemproxy|keyway-redis|keyway-memory) ;; *) continue ;; esac
        timeout 300 "$LATENCY" "127.0.0.1:$port" "$LATENCY_REQUESTS" "$pid" \
            | sed "s/^/$name,$round,/" >> "$ONE"
        printf '  round %s  1 client  %-17s\n' "$round" "$name" >&2
    done
    for pipeline in 1 16; do
        for test in set get mset; do
            for t in "${TARGETS[@]}"; do
                read -r name port pid <<< "$t"
                # MSET is not a memcached command: skip keyway-memcached there.
                if [ "$name" = keyway-memcached ] && [ "$test" = mset ]; then continue; fi
                # Pipeline 16 runs ten times as many requests: 100,000 take
                # under 100 ms there, and connection set-up would dominate.
                n=$((pipeline == 16 ? REQUESTS * 10 : REQUESTS))
                before=$(cpu_ticks "$pid")
                out=$(timeout 300 redis-benchmark -h 127.0.0.1 -p "$port" -t "$test" \
                    -n "$n" -c "$CLIENTS" -P "$pipeline" -d "$SIZE" -r "$KEYSPACE" --csv \
                    2>/dev/null | tail -1)
                after=$(cpu_ticks "$pid")
                ticks=$((after - before))
                cpu_us=$(python3 -c "import os; print(round($ticks * 1e6 / os.sysconf('SC_CLK_TCK') / $n, 2))")
                # "SET","rps","avg","min","p50","p95","p99","max"
                IFS=, read -r _ rps _ _ p50 _ p99 _ <<< "$(echo "$out" | tr -d '"')"
                echo "$name,$round,$pipeline,$test,$rps,$p50,$p99,$cpu_us" >> "$RESULTS"
                printf '  round %s  P%-2s %-5s %-17s %10s rps\n' "$round" "$pipeline" "$test" "$name" "$rps" >&2
            done
        done
    done
done

# Idle connections: RSS of each process holding 10,000 idle clients.
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
idle_rss() {
    local port=$1 pid=$2
    python3 - "$port" "$pid" <<'PY'
import resource, socket, sys, time
port, pid = int(sys.argv[1]), sys.argv[2]
resource.setrlimit(resource.RLIMIT_NOFILE, (20000, 20000))
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
before = rss()
conns = []
for _ in range(10000):
    s = socket.create_connection(("127.0.0.1", port))
    conns.append(s)
for s in conns[:100]:
    s.sendall(b"PING\r\n")
    s.recv(16)
time.sleep(1)
print(before, rss())
PY
}
IDLE="$WORK/idle.csv"
echo "target,before_kb,with_10k_idle_kb" > "$IDLE"
ulimit -n 20000 2>/dev/null || true
# Fresh processes, so that the benchmark's data does not count.
IR_PORT=$(free_port)
redis-server --port "$IR_PORT" --bind 127.0.0.1 --save '' --appendonly no --maxclients 20000 \
    --logfile "$WORK/redis-idle.log" &
PIDS+=($!); IR_PID=$!
IK_PORT=$(free_port)
RUST_LOG=warn $KEYWAY --listen "127.0.0.1:$IK_PORT" > "$WORK/keyway-idle.log" 2>&1 &
PIDS+=($!); IK_PID=$!
IT_PORT=$(free_port)
sed "s/127.0.0.1:$TW_PORT/127.0.0.1:$IT_PORT/; s/^bench:/idle:/" "$WORK/nutcracker.yml" > "$WORK/nutcracker-idle.yml"
nutcracker -c "$WORK/nutcracker-idle.yml" -o "$WORK/nutcracker-idle.log" -a 127.0.0.1 -s "$(free_port)" &
PIDS+=($!); IT_PID=$!
for p in $IR_PORT $IK_PORT $IT_PORT; do wait_port "$p"; done
for t in "redis $IR_PORT $IR_PID" "twemproxy $IT_PORT $IT_PID" "keyway-memory $IK_PORT $IK_PID"; do
    read -r name port pid <<< "$t"
    if out=$(timeout 120 bash -c "$(declare -f idle_rss); idle_rss $port $pid" 2>/dev/null); then
        read -r before with <<< "$out"
        echo "$name,$before,$with" >> "$IDLE"
    fi
done

# 1,000,000 keys of 64 bytes: RSS of redis-server and of keyway's memory backend.
load_keys() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
value = b"v" * 64
batch = 10000
for start in range(0, 1_000_000, batch):
    buf = bytearray()
    for i in range(start, start + batch):
        k = b"key:%d" % i
        buf += b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$64\r\n%s\r\n" % (len(k), k, value)
    s.sendall(buf)
    need, got = batch * 5, 0
    while got < need:
        got += len(s.recv(1 << 20))
PY
}
MEM="$WORK/memory.csv"
echo "target,rss_kb_1m_keys" > "$MEM"
# Fresh processes again: freed benchmark data would stay in their RSS.
LR_PORT=$(free_port)
redis-server --port "$LR_PORT" --bind 127.0.0.1 --save '' --appendonly no \
    --logfile "$WORK/redis-load.log" &
PIDS+=($!); LR_PID=$!
LK_PORT=$(free_port)
RUST_LOG=warn $KEYWAY --listen "127.0.0.1:$LK_PORT" > "$WORK/keyway-load.log" 2>&1 &
PIDS+=($!); LK_PID=$!
for p in $LR_PORT $LK_PORT; do wait_port "$p"; done
for t in "redis $LR_PORT $LR_PID" "keyway-memory $LK_PORT $LK_PID"; do
    read -r name port pid <<< "$t"
    if timeout 300 bash -c "$(declare -f load_keys); load_keys $port"; then
        echo "$name,$(rss_kb "$pid")" >> "$MEM"
    fi
done

python3 - "$RESULTS" "$IDLE" "$MEM" "$WRITE" "$ROUNDS" "$REQUESTS" "$ONE" <<'PY'
import csv, statistics, sys, datetime, platform, os, subprocess
results, idle, mem, write, rounds, requests, one = sys.argv[1:8]
rows = list(csv.DictReader(open(results)))
lead = []

def per_round(pick, a, b):
    """The median over rounds of pick(a's row)/pick(b's row), with the
    range: both ran seconds apart in each round."""
    rs = []
    for r in a:
        base = [x for x in b if x["round"] == r["round"]]
        if base and pick(base[0]) > 0:
            rs.append(pick(r) / pick(base[0]))
    if not rs:
        return None, ""
    m = statistics.median(rs)
    return m, f"{m:.2f}" if len(rs) == 1 else f"{m:.2f} ({min(rs):.2f}–{max(rs):.2f})"

def verdict(value, goal):
    return "—" if value is None else ("met" if value <= goal else "not met")

# 1. Latency added at one client, over direct Redis, per round.
ones = list(csv.DictReader(open(one)))
def one_rows(target, test):
    return [r for r in ones if r["target"] == target and r["test"] == test]
def added(target, test, q):
    out = {}
    direct = {r["round"]: float(r[q]) for r in one_rows("redis", test)}
    for r in one_rows(target, test):
        if r["round"] in direct:
            out[r["round"]] = float(r[q]) - direct[r["round"]]
    return out
lead.append("| target (issue 23) | keyway | twemproxy or Redis | keyway ÷ it | goal | |")
lead.append("|---|---:|---:|---:|---:|---|")
for test in ["get", "set"]:
    for q, goal in [("p50", 0.5), ("p99", 1.0)]:
        k, t = added("keyway-redis", test, q), added("twemproxy", test, q)
        rounds_ = [r for r in k if r in t and t[r] > 0]
        if not rounds_:
            continue
        ratios = [k[r] / t[r] for r in rounds_]
        m = statistics.median(ratios)
        rng = "" if len(ratios) == 1 else f" ({min(ratios):.2f}–{max(ratios):.2f})"
        lead.append(f"| 1 client, {test.upper()}: latency added at {q} | +{statistics.median(k.values()):.1f} µs | +{statistics.median(t.values()):.1f} µs (twemproxy) | {m:.2f}{rng} | ≤ {goal} | {verdict(m, goal)} |")

# 2. CPU per request at 50 clients.
cpu = lambda r: float(r["cpu_us"])
def cpu_row(label, pipeline, test, target, base, goal):
    a = groups.get((pipeline, test, target))
    b = groups.get((pipeline, test, base))
    if not a or not b:
        return
    m, text = per_round(cpu, a, b)
    lead.append(f"| {label} | {med(a, 'cpu_us'):.2f} µs | {med(b, 'cpu_us'):.2f} µs ({base}) | {text} | ≤ {goal} | {verdict(m, goal)} |")

groups = {}
for r in rows:
    groups.setdefault((r["pipeline"], r["test"], r["target"]), []).append(r)
med = lambda rs, k: statistics.median(float(r[k]) for r in rs)

def ratio(rs, base):
    # Per round: the two targets ran seconds apart, so the machine's drift
    # between rounds cancels. The median of those, and their range.
    by_round = {r["round"]: float(r["rps"]) for r in base}
    rs = [float(r["rps"]) / by_round[r["round"]] for r in rs if by_round.get(r["round"])]
    if not rs:
        return ""
    if len(rs) == 1:
        return f"{rs[0]:.2f}"
    return f"{statistics.median(rs):.2f} ({min(rs):.2f}–{max(rs):.2f})"
for pipeline, goal in [("1", 0.8), ("16", 0.5)]:
    for test in ["set", "get", "mset"]:
        cpu_row(f"CPU per request, keyway→Redis, {test.upper()} P{pipeline}, 50 clients", pipeline, test, "keyway-redis", "twemproxy", goal)
for pipeline in ["1", "16"]:
    for test in ["set", "get", "mset"]:
        cpu_row(f"CPU per request, memory backend, {test.upper()} P{pipeline}", pipeline, test, "keyway-memory", "redis", 1.0)
for pipeline in ["1", "16"]:
    for test in ["set", "get"]:
        cpu_row(f"CPU per request, memcached backend, {test.upper()} P{pipeline}", pipeline, test, "keyway-memcached", "keyway-redis", 1.2)
idle_rows = {r["target"]: r for r in csv.DictReader(open(idle))}
if "keyway-memory" in idle_rows and "twemproxy" in idle_rows:
    k = int(idle_rows["keyway-memory"]["with_10k_idle_kb"])
    t = int(idle_rows["twemproxy"]["with_10k_idle_kb"])
    lead.append(f"| RSS with 10,000 idle clients | {k/1024:.1f} MB | {t/1024:.1f} MB (twemproxy) | {k/t:.2f} | ≤ 2 | {verdict(k/t, 2)} |")
lead.append("")
lead.append("| 1 client, 1 request in flight | p50 µs | p90 µs | p99 µs | p99.9 µs | proxy CPU µs/req |")
lead.append("|---|---:|---:|---:|---:|---:|")
for test in ["get", "set"]:
    for target in ["redis", "twemproxy", "keyway-redis", "keyway-memory"]:
        rs = one_rows(target, test)
        if rs:
            c = "" if target == "redis" else f"{med(rs, 'cpu_us'):.1f}"
            lead.append(f"| {test.upper()} {target} | {med(rs, 'p50'):.1f} | {med(rs, 'p90'):.1f} | {med(rs, 'p99'):.1f} | {med(rs, 'p999'):.1f} | {c} |")
lead.append("")

targets = ["redis", "twemproxy", "keyway-redis", "keyway-memory", "keyway-memcached"]
out = []
out.append("| test | target | req/s | p50 ms | p99 ms | proxy CPU µs/req | ÷ redis | ÷ twemproxy |")
out.append("|---|---|---:|---:|---:|---:|---:|---:|")
for pipeline in ["1", "16"]:
    for test in ["set", "get", "mset"]:
        base = groups.get((pipeline, test, "redis"))
        tw = groups.get((pipeline, test, "twemproxy"))
        for t in targets:
            rs = groups.get((pipeline, test, t))
            if not rs:
                continue
            rps = med(rs, "rps")
            vs_redis = ratio(rs, base) if base and t != "redis" else ""
            vs_tw = ratio(rs, tw) if tw and t.startswith("keyway") else ""
            cpu = f"{med(rs, 'cpu_us'):.2f}" if t != "redis" else f"({med(rs, 'cpu_us'):.2f} server)"
            out.append(f"| {test.upper()} P{pipeline} | {t} | {rps:,.0f} | {med(rs, 'p50'):.3f} | {med(rs, 'p99'):.3f} | {cpu} | {vs_redis} | {vs_tw} |")
out.append("")
out.append("| idle clients | RSS before | RSS with 10,000 idle connections |")
out.append("|---|---:|---:|")
for r in csv.DictReader(open(idle)):
    out.append(f"| {r['target']} | {int(r['before_kb'])/1024:.1f} MB | {int(r['with_10k_idle_kb'])/1024:.1f} MB |")
out.append("")
out.append("| 1,000,000 keys, 64-byte values | RSS |")
out.append("|---|---:|")
for r in csv.DictReader(open(mem)):
    out.append(f"| {r['target']} | {int(r['rss_kb_1m_keys'])/1024:.0f} MB |")
table = "\n".join(lead + out)
print(table)
if write == "1":
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    header = (f"Measured {datetime.date.today()} on {platform.machine()}, {os.cpu_count()} cores ({cpu}); "
              f"redis-benchmark, client, proxies and servers share the cores. "
              f"Medians of {rounds} round(s): one client with one request in flight (examples/latency), then {requests} requests ({int(requests) * 10} at pipeline 16), 50 clients, 64-byte values, 100,000 keys. "
              f"Ratios are the median of the per-round ratios (in a round every target runs seconds after the last), with their range.")
    text = open("BENCHMARKS.md").read()
    start, end = "<!-- table:start -->", "<!-- table:end -->"
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    open("BENCHMARKS.md", "w").write(f"{before}{start}\n{header}\n\n{table}\n{end}{after}")
    print("BENCHMARKS.md updated", file=sys.stderr)
PY
