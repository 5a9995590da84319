#!/usr/bin/env python3
"""Moves a namespace of a million keys while clients write, and checks
every acknowledged write: run by scripts/migrate-at-scale.sh, which starts
the servers and keyway and passes their ports.

Two moves, each: load the keys on the source behind keyway's back, start
writers through keyway (each acknowledged INCR, RPUSH and SET recorded),
mirror (reload), backfill, verify, cut over (reload), roll back (reload),
stop the writers, verify again and compare every counter and list with
what the writers were told. Prints the figures; exits 1 on any lost or
doubled write, any difference, or any client error.
"""
import argparse
import os
import signal
import socket
import sys
import threading
import time

import redis

p = argparse.ArgumentParser()
p.add_argument("--keys", type=int, default=1_000_000)
p.add_argument("--keyway", type=int, required=True)
p.add_argument("--keyway-pid", type=int, required=True)
p.add_argument("--config", required=True)
p.add_argument("--src", type=int, required=True)
p.add_argument("--dst", type=int, required=True)
p.add_argument("--cluster", required=True, help="host:port,host:port,...")
p.add_argument("--memcached", type=int, required=True)
p.add_argument("--writers", type=int, default=4)
args = p.parse_args()

kw = redis.Redis(port=args.keyway, socket_timeout=30)
failed = []


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def config(big_backend, big_mirror, mc_backend, mc_mirror):
    nodes = ", ".join(f'"redis://{n}"' for n in args.cluster.split(","))

    def ns(name, prefix, backend, mirror):
        m = f'mirror = "{mirror}"\n' if mirror else ""
        return f'[[namespaces]]\nname = "{name}"\nprefix = "{prefix}"\nbackend = "{backend}"\n{m}'

    text = f"""[server]
listen = "127.0.0.1:{args.keyway}"
migration_state = "{args.config}.state"
[backends.src]
type = "redis"
url = "redis://127.0.0.1:{args.src}"
command_timeout_ms = 10000
[backends.dst]
type = "redis"
url = "redis://127.0.0.1:{args.dst}"
command_timeout_ms = 10000
[backends.cluster]
type = "redis-cluster"
nodes = [{nodes}]
command_timeout_ms = 10000
[backends.mc]
type = "memcached"
servers = ["127.0.0.1:{args.memcached}"]
command_timeout_ms = 10000
{ns("big", "big:", big_backend, big_mirror)}
{ns("mc", "mc:", mc_backend, mc_mirror)}"""
    return text


def reload(text, what, ns, backend, mirror):
    with open(args.config, "w") as f:
        f.write(text)
    os.kill(args.keyway_pid, signal.SIGHUP)
    # Applied once INFO shows the namespace on its new backend.
    deadline = time.time() + 10
    while time.time() < deadline:
        info = kw.info("keyway")
        line = info.get(f"namespace_{ns}")
        on = isinstance(line, dict) and line.get("backend") == backend
        mirrored = f"migration_{ns}" in info
        if on and mirrored == (mirror is not None):
            log(f"reloaded: {what}")
            return
        time.sleep(0.1)
    sys.exit(f"the reload ({what}) did not apply: see keyway's log")


def status(ns):
    r = kw.execute_command("KEYWAY", "MIGRATE", ns, "STATUS")
    if isinstance(r, dict):
        items = list(r.items())
    else:
        items = list(zip(r[0::2], r[1::2]))
    out = {}
    for k, v in items:
        k = k.decode() if isinstance(k, bytes) else k
        if isinstance(v, bytes):
            v = v.decode()
        out[k] = v
    return out


def run(ns, *opts):
    kw.execute_command("KEYWAY", "MIGRATE", ns, *opts)
    while True:
        time.sleep(0.5)
        s = status(ns)
        if not s["running"]:
            return s


class Writers:
    """Clients writing through keyway; what keyway acknowledged is kept."""

    def __init__(self, prefix, lists=True):
        self.prefix = prefix
        self.lists = lists
        self.stop = threading.Event()
        self.incr = {}
        self.pushed = {}
        self.sets = {}
        self.ops = 0
        self.errors = []
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self.loop, args=(w,), daemon=True)
            for w in range(args.writers)
        ]
        for t in self.threads:
            t.start()

    def loop(self, w):
        c = redis.Redis(port=args.keyway, socket_timeout=30)
        k = 0
        while not self.stop.is_set():
            ctr = f"{self.prefix}ctr:{w}:{k % 100}"
            try:
                c.incr(ctr)
                with self.lock:
                    self.incr[ctr] = self.incr.get(ctr, 0) + 1
                if self.lists:
                    lst = f"{self.prefix}log:{w}:{k % 50}"
                    c.rpush(lst, k)
                    with self.lock:
                        self.pushed.setdefault(lst, []).append(str(k))
                key = f"{self.prefix}w:{w}:{k % 1000}"
                c.set(key, k)
                with self.lock:
                    self.sets[key] = str(k)
                    self.ops += 3 if self.lists else 2
            except Exception as e:  # a client error fails the run
                with self.lock:
                    self.errors.append(f"{type(e).__name__}: {e}")
                time.sleep(0.01)
            k += 1

    def rate(self, seconds):
        start = self.ops
        time.sleep(seconds)
        return (self.ops - start) / seconds

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join()

    def check(self, c, where):
        lost = 0
        for key, n in self.incr.items():
            v = int(c.get(key) or 0)
            if v != n:
                lost += 1
                if lost < 5:
                    log(f"  {where}: {key} = {v}, acknowledged {n}")
        for key, pushed in self.pushed.items():
            got = [x.decode() for x in c.lrange(key, 0, -1)]
            if got != pushed:
                lost += 1
                if lost < 5:
                    log(f"  {where}: {key} has {len(got)} items, acknowledged {len(pushed)}")
        for key, v in self.sets.items():
            got = c.get(key)
            if got is None or got.decode() != v:
                lost += 1
                if lost < 5:
                    log(f"  {where}: {key} = {got}, acknowledged {v}")
        keys = len(self.incr) + len(self.pushed) + len(self.sets)
        log(f"  {where}: {keys} written keys checked, {lost} wrong")
        if lost:
            failed.append(f"{where}: {lost} keys lost or changed an acknowledged write")


def load_redis(port, n):
    c = redis.Redis(port=port)
    pipe = c.pipeline(transaction=False)
    value = "x" * 64
    for i in range(n):
        kind = i % 10
        if kind < 7:
            pipe.set(f"big:s:{i}", value)
        elif kind == 7:
            pipe.hset(f"big:h:{i}", mapping={"a": i, "b": value, "c": "z"})
        elif kind == 8:
            pipe.rpush(f"big:l:{i}", i, value, "z")
        else:
            pipe.zadd(f"big:z:{i}", {"a": 1, "b": i, value: 3})
        if i % 10 == 3:
            pipe.expire(f"big:s:{i}", 3600)
        if i % 10000 == 9999:
            pipe.execute()
    pipe.execute()


def load_memcached(port, n):
    s = socket.create_connection(("127.0.0.1", port))
    value = b"y" * 64
    batch = []
    for i in range(n):
        ttl = 3600 if i % 10 == 3 else 0
        batch.append(b"set mc:s:%d 0 %d %d noreply\r\n%s\r\n" % (i, ttl, len(value), value))
        if len(batch) == 10000:
            s.sendall(b"".join(batch))
            batch = []
    s.sendall(b"".join(batch) + b"mn\r\n")
    buf = b""
    while not buf.endswith(b"MN\r\n"):
        buf += s.recv(65536)
    s.close()


def move(ns, prefix, source, target, verify_opts, lists, figures):
    label = f"{source} -> {target}"
    log(f"== {label}: namespace '{ns}'")
    w = Writers(prefix, lists=lists)
    time.sleep(2)
    base = w.rate(5)
    log(f"writes through keyway, no mirror: {base:.0f}/s")
    cfg = {"big": ["src", None], "mc": ["mc", None]}
    cfg[ns] = [source, target]
    reload(config(*cfg["big"], *cfg["mc"]), f"{ns} mirrored to {target}", ns, source, target)
    mirrored = w.rate(5)
    log(f"writes with the mirror on: {mirrored:.0f}/s")
    t0 = time.time()
    kw.execute_command("KEYWAY", "MIGRATE", ns, "BACKFILL", "BATCH", "1000")
    during = []
    while True:
        during.append(w.rate(2))
        s = status(ns)
        log(f"backfill: {s['keys_done']}/{s['keys_total']} keys, {s['keys_per_sec']} keys/s, "
            f"{s['retried']} retried; writes {during[-1]:.0f}/s")
        if not s["running"]:
            break
    took = time.time() - t0
    log(f"backfill {s['phase']}: {s['keys_done']} keys, {int(s['bytes_done']) / 2**20:.0f} MiB "
        f"in {took:.1f} s; retried {s['retried']}, skipped {s['skipped']}, errors {s['errors']}")
    if s["phase"] != "backfilled" or s["errors"] != 0:
        failed.append(f"{label}: backfill ended {s['phase']} with {s['errors']} errors")
    v = run(ns, "VERIFY", *verify_opts)
    log(f"verify under writes: {v['phase']}, {v['keys_done']} keys, {v['differences']} differences "
        f"{v['differing'][:3]}")
    if v["differences"] != 0:
        failed.append(f"{label}: verify under writes found {v['differences']} differences")
    cfg[ns] = [target, source]
    reload(config(*cfg["big"], *cfg["mc"]), f"{ns} cut over to {target}", ns, target, source)
    after = w.rate(5)
    log(f"writes after the cut-over: {after:.0f}/s")
    cfg[ns] = [source, target]
    reload(config(*cfg["big"], *cfg["mc"]), f"{ns} rolled back to {source}", ns, source, target)
    w.rate(5)
    w.finish()
    log(f"writers stopped: {w.ops} acknowledged writes, {len(w.errors)} client errors")
    if w.errors:
        failed.append(f"{label}: {len(w.errors)} client errors, first: {w.errors[0]}")
    time.sleep(1)
    w.check(kw, f"{label}, through keyway")
    v = run(ns, "VERIFY", *verify_opts)
    log(f"verify at rest: {v['phase']}, {v['keys_done']} keys, {v['differences']} differences; "
        f"writes the mirror's queue dropped: {v['mirror_dropped']}")
    if v["differences"] != 0:
        failed.append(f"{label}: verify at rest found {v['differences']} differences")
    figures.append(
        f"| {label} | {s['keys_done']} | {took:.1f} s | {int(s['keys_done']) / took:.0f} | "
        f"{base:.0f} | {mirrored:.0f} | {sum(during) / len(during):.0f} | {v['differences']} | "
        f"{w.ops} | {len(w.errors)} |"
    )


figures = []
log(f"loading {args.keys} keys of mixed types on the source redis-server...")
t = time.time()
load_redis(args.src, args.keys)
log(f"loaded in {time.time() - t:.0f} s")
move("big", "big:", "src", "cluster", [], True, figures)

log(f"loading {args.keys} strings on memcached...")
t = time.time()
load_memcached(args.memcached, args.keys)
log(f"loaded in {time.time() - t:.0f} s")
move("mc", "mc:", "mc", "dst", ["TOLERANCE", "2000"], False, figures)

print()
print("| move | keys copied | backfill time | keys/s | writes/s, no mirror | with mirror | "
      "during backfill | differences | acknowledged writes | client errors |")
print("|---|---|---|---|---|---|---|---|---|---|")
for f in figures:
    print(f)
if failed:
    print("\nFAILED:\n  " + "\n  ".join(failed))
    sys.exit(1)
print("\nOK: no acknowledged write lost, no difference, no client error")
