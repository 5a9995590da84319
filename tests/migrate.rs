//! Moving a namespace with its data (KEYWAY MIGRATE): backfill under
//! writes, verification, cut-over and roll-back by reload, with every
//! acknowledged write accounted for; between the memory backend and a
//! redis-server of the test's own, both ways, and to memcached.

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Keyway, MemcachedServer, RedisServer};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

fn config(redis_port: u16, backend: &str, mirror: Option<&str>) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.mem]
type = "memory"
[backends.red]
type = "redis"
url = "redis://127.0.0.1:{redis_port}"
command_timeout_ms = 5000
{}"#,
        namespace("app", backend, mirror)
    )
}

/// A namespace `name` of every key on `backend`, mirrored to `mirror`.
fn namespace(name: &str, backend: &str, mirror: Option<&str>) -> String {
    let mirror = mirror
        .map(|m| format!("mirror = \"{m}\"\n"))
        .unwrap_or_default();
    format!("[[namespaces]]\nname = \"{name}\"\nprefix = \"\"\nbackend = \"{backend}\"\n{mirror}")
}

/// The status of a namespace's move, as text per field.
async fn status(c: &mut MultiplexedConnection, ns: &str) -> HashMap<String, String> {
    let v: redis::Value = redis::cmd("KEYWAY")
        .arg("MIGRATE")
        .arg(ns)
        .arg("STATUS")
        .query_async(c)
        .await
        .expect("STATUS");
    let items = match v {
        redis::Value::Array(items) => items,
        redis::Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
        other => panic!("STATUS answered {other:?}"),
    };
    items
        .chunks(2)
        .map(|kv| {
            let text = |v: &redis::Value| match v {
                redis::Value::Array(a) => format!("{a:?}"),
                v => redis::from_redis_value::<String>(v.clone()).unwrap_or_default(),
            };
            (text(&kv[0]), text(&kv[1]))
        })
        .collect()
}

async fn run(c: &mut MultiplexedConnection, ns: &str, args: &[&str]) -> HashMap<String, String> {
    let mut cmd = redis::cmd("KEYWAY");
    cmd.arg("MIGRATE").arg(ns).arg(args);
    let _: () = cmd.query_async(c).await.expect("KEYWAY MIGRATE");
    wait_for(c, ns, |s| s["running"].is_empty()).await
}

/// Polls the status until `done` holds (60 s at most).
async fn wait_for(
    c: &mut MultiplexedConnection,
    ns: &str,
    done: impl Fn(&HashMap<String, String>) -> bool,
) -> HashMap<String, String> {
    for _ in 0..3000 {
        let s = status(c, ns).await;
        if done(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out: {:?}", status(c, ns).await);
}

/// What the writers were told was done: per key, the increments and the
/// pushes acknowledged.
#[derive(Default)]
struct Acked {
    incr: HashMap<String, i64>,
    pushed: HashMap<String, Vec<String>>,
}

/// Writers that keep writing hard until told to stop: INCR (a copy must
/// not count one twice or lose one), RPUSH (order), HSET, SADD and ZADD on
/// keys the backfill copies at the same time, expiries, DEL and RENAME.
fn writers(kw: &Keyway, n: usize, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<Acked>> {
    (0..n)
        .map(|w| {
            let addr = kw.addr;
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = common::connect(&format!("redis://{addr}")).await.unwrap();
                let mut acked = Acked::default();
                let mut k = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let counter = format!("c:{}", k % 50);
                    let _: i64 = c.incr(&counter, 1).await.expect("INCR");
                    *acked.incr.entry(counter).or_default() += 1;
                    let list = format!("l:{w}:{}", k % 20);
                    let _: i64 = c.rpush(&list, k).await.expect("RPUSH");
                    acked.pushed.entry(list).or_default().push(k.to_string());
                    let _: i64 = c
                        .hset(format!("h:{}", k % 300), format!("w{w}"), k)
                        .await
                        .expect("HSET");
                    let _: i64 = c
                        .sadd(format!("s:{}", k % 300), format!("{w}:{k}"))
                        .await
                        .expect("SADD");
                    let _: i64 = c
                        .zadd(format!("z:{}", k % 300), format!("{w}"), k)
                        .await
                        .expect("ZADD");
                    if k % 7 == 0 {
                        let _: () = c
                            .set_ex(format!("t:{}", k % 40), "v", 100)
                            .await
                            .expect("SET EX");
                    }
                    if k % 11 == 0 {
                        let _: i64 = c.del(format!("t:{}", (k + 3) % 40)).await.expect("DEL");
                        // Moved between keys: the mirror must follow.
                        let from = format!("p:{}", (k * 7 + w) % 2000);
                        let _: redis::RedisResult<()> =
                            c.rename(&from, format!("moved:{w}:{k}")).await;
                    }
                    k += 1;
                }
                acked
            })
        })
        .collect()
}

/// Data that was there before the mirror: what the backfill must copy.
async fn preload(c: &mut MultiplexedConnection) {
    let mut pipe = redis::pipe();
    for i in 0..2000 {
        pipe.set(format!("p:{i}"), format!("value-{i}")).ignore();
        if i % 3 == 0 {
            pipe.pexpire(format!("p:{i}"), 600_000).ignore();
        }
    }
    for i in 0..300 {
        pipe.hset_multiple(format!("h:{i}"), &[("a", "1"), ("b", "2")])
            .ignore();
        pipe.sadd(format!("s:{i}"), &["x", "y", "z"]).ignore();
        pipe.zadd(format!("z:{i}"), "m", i).ignore();
    }
    for i in 0..50 {
        pipe.set(format!("c:{i}"), 1000).ignore();
    }
    pipe.cmd("XADD").arg(&["stream", "1-1", "f", "v"]).ignore();
    let _: () = pipe.query_async(c).await.expect("preload");
}

async fn check_acked(c: &mut MultiplexedConnection, all: &[Acked], writers: usize) {
    let mut incr: HashMap<&str, i64> = HashMap::new();
    for a in all {
        for (k, n) in &a.incr {
            *incr.entry(k).or_default() += n;
        }
    }
    for (k, n) in incr {
        let v: i64 = c.get(k).await.expect("GET");
        assert_eq!(v, 1000 + n, "{k}: an acknowledged INCR was lost or doubled");
    }
    for (w, a) in all.iter().enumerate().take(writers) {
        for (k, pushed) in &a.pushed {
            let got: Vec<String> = c.lrange(k, 0, -1).await.expect("LRANGE");
            assert_eq!(&got, pushed, "{k} (writer {w})");
        }
    }
}

fn merge(into: &mut Vec<Acked>, more: Vec<Acked>) {
    if into.is_empty() {
        *into = more;
        return;
    }
    for (a, b) in into.iter_mut().zip(more) {
        for (k, n) in b.incr {
            *a.incr.entry(k).or_default() += n;
        }
        for (k, p) in b.pushed {
            a.pushed.entry(k).or_default().extend(p);
        }
    }
}

async fn write_for(kw: &Keyway, n: usize, d: Duration, acked: &mut Vec<Acked>) {
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(kw, n, stop.clone());
    tokio::time::sleep(d).await;
    stop.store(true, Ordering::Relaxed);
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("writer"));
    }
    merge(acked, out);
}

/// The whole move under writes: memory to redis-server, backfilled while
/// four clients write hard, verified, cut over, written, rolled back,
/// written again, verified; every acknowledged write is where it belongs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_moves_with_its_data_under_writes_and_rolls_back() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("keyway-migrate-{}", common::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyway.toml");
    let cfg = |backend: &str, mirror: Option<&str>| {
        config(redis.port, backend, mirror).replace("name = \"app\"", "name = \"moving\"")
    };
    std::fs::write(&path, cfg("mem", None)).unwrap();
    let kw = Keyway::from_file(&path).await;
    let mut c = kw.client().await;
    preload(&mut c).await;
    let reload = |text: String| {
        std::fs::write(&path, text).unwrap();
        assert_eq!(kw.ops.reload(), keyway::ops::reload::Outcome::Applied);
    };

    // Not mirrored yet: nothing to move to.
    let e = redis::cmd("KEYWAY")
        .arg("MIGRATE")
        .arg("moving")
        .arg("BACKFILL")
        .query_async::<()>(&mut c)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("has no mirror"), "{e}");

    reload(cfg("mem", Some("red")));
    let mut acked = Vec::new();
    let stop = Arc::new(AtomicBool::new(false));
    let tasks = writers(&kw, 4, stop.clone());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let done = run(&mut c, "moving", &["BACKFILL", "BATCH", "50"]).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        acked.push(t.await.expect("writer"));
    }
    eprintln!("backfill under writes: {done:?}");
    assert_eq!(done["phase"], "backfilled", "{done:?}");
    assert_eq!(done["errors"], "0", "{done:?}");
    assert!(
        done["keys_done"].parse::<u64>().unwrap() >= 2000,
        "{done:?}"
    );

    let verified = run(&mut c, "moving", &["VERIFY"]).await;
    assert_eq!(verified["phase"], "verified", "{verified:?}");
    assert_eq!(verified["differences"], "0", "{verified:?}");
    // INFO and the metrics show where the move stands.
    let info: String = redis::cmd("INFO")
        .arg("keyway")
        .query_async(&mut c)
        .await
        .unwrap();
    let line = info
        .lines()
        .find(|l| l.starts_with("migration_moving:"))
        .expect("a migration line");
    assert!(
        line.starts_with("migration_moving:mirror_type=redis,phase=verified,running=none,"),
        "{line}"
    );
    assert!(
        line.ends_with(",errors=0,differences=0,mirror_dropped=0"),
        "{line}"
    );
    let exported = keyway::wire::metrics::metrics().encode();
    for want in [
        "keyway_migration_phase{namespace=\"moving\",phase=\"verified\"} 1",
        "keyway_migration_phase{namespace=\"moving\",phase=\"backfilling\"} 0",
        "keyway_migration_keys{namespace=\"moving\",count=\"differences\"} 0",
    ] {
        assert!(exported.contains(want), "{want} in {exported}");
    }
    let mut direct = redis.direct().await;
    check_acked(&mut direct, &acked, 4).await;
    let v: String = direct.get("p:1999").await.unwrap_or_default();
    let moved = v.is_empty();
    if !moved {
        assert_eq!(v, "value-1999");
    }
    let ttl: i64 = direct.pttl("p:3").await.unwrap();
    assert!(ttl == -2 || (500_000..=600_000).contains(&ttl), "{ttl}");
    let stream: i64 = redis::cmd("XLEN")
        .arg("stream")
        .query_async(&mut direct)
        .await
        .unwrap();
    assert_eq!(stream, 1);

    // Cut over: redis serves, the memory backend is kept up to date.
    reload(cfg("red", Some("mem")));
    let s = status(&mut c, "moving").await;
    assert_eq!(s["phase"], "cut over");
    write_for(&kw, 2, Duration::from_millis(500), &mut acked).await;
    check_acked(&mut c, &acked, 2).await;

    // Roll back: nothing written since the cut-over is lost.
    reload(cfg("mem", Some("red")));
    write_for(&kw, 2, Duration::from_millis(300), &mut acked).await;
    check_acked(&mut c, &acked, 2).await;
    let verified = run(&mut c, "moving", &["VERIFY", "TOLERANCE", "2000"]).await;
    assert_eq!(verified["differences"], "0", "{verified:?}");
    check_acked(&mut direct, &acked, 2).await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The other way, redis-server to the memory backend, with a rate limit,
/// a stop and a resume; a verification that finds what differs.
#[tokio::test]
async fn backfill_stops_resumes_and_verify_names_what_differs() {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(&config(redis.port, "red", None)).await;
    drop(kw);
    let mut direct = redis.direct().await;
    let mut pipe = redis::pipe();
    for i in 0..3000 {
        pipe.set(format!("k:{i}"), i).ignore();
    }
    pipe.rpush("list", &[1, 2, 3]).ignore();
    let _: () = pipe.query_async(&mut direct).await.unwrap();
    let kw = Keyway::with_toml(&config(redis.port, "red", Some("mem"))).await;
    let mut c = kw.client().await;

    let _: () = redis::cmd("KEYWAY")
        .arg(&["MIGRATE", "app", "BACKFILL", "RATE", "2000", "BATCH", "100"])
        .query_async(&mut c)
        .await
        .unwrap();
    // A second task on the same namespace is refused while one runs.
    let e = redis::cmd("KEYWAY")
        .arg(&["MIGRATE", "app", "VERIFY"])
        .query_async::<()>(&mut c)
        .await
        .unwrap_err();
    assert!(e.to_string().contains("already running"), "{e}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped: i64 = redis::cmd("KEYWAY")
        .arg(&["MIGRATE", "app", "STOP"])
        .query_async(&mut c)
        .await
        .unwrap();
    assert_eq!(stopped, 1);
    let s = wait_for(&mut c, "app", |s| s["phase"] == "stopped").await;
    let part: u64 = s["keys_done"].parse().unwrap();
    assert!(part > 0 && part < 3001, "rate-limited: {s:?}");
    assert_ne!(s["cursor"], "", "{s:?}");

    let done = run(&mut c, "app", &["BACKFILL", "RESUME", "BATCH", "500"]).await;
    assert_eq!(done["phase"], "backfilled", "{done:?}");
    let resumed: u64 = done["keys_done"].parse().unwrap();
    assert!(resumed < 3001, "resumed, not started over: {done:?}");
    let v = run(&mut c, "app", &["VERIFY"]).await;
    assert_eq!(v["differences"], "0", "{v:?}");

    // Changed behind keyway's back on the source: reported by name.
    let _: () = direct.set("k:7", "changed").await.unwrap();
    let _: () = direct.rpush("list", 4).await.unwrap();
    let _: () = direct.expire("k:8", 1000).await.unwrap();
    let v = run(&mut c, "app", &["VERIFY", "SAMPLE", "1"]).await;
    assert_eq!(v["phase"], "differs", "{v:?}");
    assert_eq!(v["differences"], "3", "{v:?}");
    assert!(v["differing"].contains("k:7: value"), "{v:?}");
    assert!(v["differing"].contains("ttl"), "{v:?}");

    // Bad arguments are refused before anything starts.
    for (args, want) in [
        (
            vec!["MIGRATE", "nope", "STATUS"],
            "no namespace named 'nope'",
        ),
        (vec!["MIGRATE", "app", "VERIFY", "SAMPLE", "0"], "SAMPLE"),
        (
            vec!["MIGRATE", "app", "BACKFILL", "BATCH", "100001"],
            "BATCH",
        ),
        (vec!["MIGRATE", "app", "BACKFILL", "FAST"], "syntax error"),
        (vec!["NOPE"], "KEYWAY HELP"),
    ] {
        let e = redis::cmd("KEYWAY")
            .arg(&args)
            .query_async::<()>(&mut c)
            .await
            .unwrap_err();
        assert!(e.to_string().contains(want), "{args:?}: {e}");
    }
}

/// memcached holds strings only: a backfill into it copies those with
/// their expiry and counts the rest as skipped; as a source, its keys are
/// listed by its LRU crawler.
#[tokio::test]
async fn memcached_both_ways() {
    let mc = MemcachedServer::start();
    let toml = format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.mem]
type = "memory"
[backends.mc]
type = "memcached"
servers = ["{}"]
[[namespaces]]
name = "app"
prefix = ""
backend = "mem"
mirror = "mc"
[[namespaces]]
name = "back"
prefix = "back:"
backend = "mc"
mirror = "mem"
"#,
        mc.addr()
    );
    let kw = Keyway::with_toml(&toml).await;
    let mut c = kw.client().await;
    let only_mc = format!(
        "[backends.mc]\ntype = \"memcached\"\nservers = [\"{}\"]\n{}",
        mc.addr(),
        namespace("app", "mc", None)
    );
    let mc_side = Keyway::with_toml(&only_mc).await;
    let mut m = mc_side.client().await;
    // Written before the mirror could see them: straight into the store.
    let mut pipe = redis::pipe();
    for i in 0..100 {
        pipe.set(format!("str:{i}"), i).ignore();
    }
    pipe.set_ex("ttl", "v", 100).ignore();
    pipe.hset("hash", "f", "v").ignore();
    let _: () = pipe.query_async(&mut c).await.unwrap();
    // Once the mirror replayed them (the last is "ttl"), they are removed.
    common::until("the mirror to replay the writes", 5, || {
        let mut m = m.clone();
        async move { m.exists::<_, bool>("ttl").await.unwrap() }
    })
    .await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut m).await.unwrap();
    let none: Option<String> = m.get("str:42").await.unwrap();
    assert_eq!(none, None);
    let done = run(&mut c, "app", &["BACKFILL"]).await;
    assert_eq!(done["phase"], "backfilled", "{done:?}");
    assert_eq!(done["skipped"], "1", "the hash: {done:?}");
    let v: Option<i64> = m.get("str:42").await.unwrap();
    assert_eq!(v, Some(42));
    let ttl: i64 = m.ttl("ttl").await.unwrap();
    assert!((98..=100).contains(&ttl), "{ttl}");
    let v = run(&mut c, "app", &["VERIFY", "TOLERANCE", "2000"]).await;
    assert_eq!(v["differences"], "1", "only the hash: {v:?}");
    assert!(
        v["differing"].contains("hash: type hash here, none"),
        "{v:?}"
    );

    // The other way: memcached lists its keys with its LRU crawler.
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.set(format!("back:{i}"), i).ignore();
    }
    pipe.set_ex("back:ttl", "v", 100).ignore();
    let _: () = pipe.query_async(&mut m).await.unwrap();
    let done = run(&mut c, "back", &["BACKFILL", "BATCH", "64"]).await;
    assert_eq!(done["phase"], "backfilled", "{done:?}");
    assert_eq!(done["keys_done"], "201", "{done:?}");
    let v = run(&mut c, "back", &["VERIFY", "TOLERANCE", "2000"]).await;
    assert_eq!(v["differences"], "0", "{v:?}");
    // Read from the memory side directly: a keyway whose "back" is there.
    let mem_side = kw.shared.router.load().namespaces[1]
        .mirrored
        .clone()
        .unwrap();
    let got = mem_side
        .target()
        .execute(vec![keyway::backend::Command::internal(
            keyway::wire::command::known("get"),
            vec!["GET".into(), "back:199".into()],
        )])
        .await;
    assert_eq!(got, vec![keyway::wire::reply::Reply::Bulk("199".into())]);
}

/// A cut-over while the mirror is behind: the new primary serves nothing
/// until the old queue is replayed, or a write would land before older
/// ones (an INCR on a counter the mirror has not caught up with).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_over_waits_for_the_mirror_to_catch_up() {
    let redis = RedisServer::start();
    let dir = std::env::temp_dir().join(format!("keyway-cutover-{}", common::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyway.toml");
    std::fs::write(&path, config(redis.port, "mem", Some("red"))).unwrap();
    let kw = Keyway::from_file(&path).await;
    let mut c = kw.client().await;
    let mut pipe = redis::pipe();
    for _ in 0..3000 {
        pipe.incr("n", 1).ignore();
    }
    let _: () = pipe.query_async(&mut c).await.unwrap();
    // The mirror stalls with more writes queued for it than it replays
    // in one batch.
    redis.signal("STOP");
    let mut more = redis::pipe();
    for _ in 0..10_000 {
        more.incr("n", 1).ignore();
    }
    let _: () = more.query_async(&mut c).await.unwrap();
    std::fs::write(&path, config(redis.port, "red", Some("mem"))).unwrap();
    assert_eq!(kw.ops.reload(), keyway::ops::reload::Outcome::Applied);
    let mut c2 = c.clone();
    let after = tokio::spawn(async move { c2.incr::<_, _, i64>("n", 1).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.signal("CONT");
    assert_eq!(after.await.unwrap().unwrap(), 13_001);
    let _ = std::fs::remove_dir_all(&dir);
}

fn shadow_count(ns: &str, result: &str) -> u64 {
    let want = format!("keyway_shadow_reads_total{{namespace=\"{ns}\",result=\"{result}\"}} ");
    keyway::wire::metrics::metrics()
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(&want).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

/// Shadow reads: every read also runs on the mirror and is compared; keys
/// written hard at the same time never count as different, a key changed
/// behind keyway's back does, and the client always gets the primary's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_reads_compare_without_false_alarms() {
    let redis = RedisServer::start();
    let toml = config(redis.port, "mem", Some("red"))
        .replace("name = \"app\"", "name = \"shadowed\"")
        .replace("mirror = \"red\"", "mirror = \"red\"\nshadow_reads = 1.0");
    let kw = Keyway::with_toml(&toml).await;
    let mut c = kw.client().await;
    for i in 0..20 {
        let _: () = c.set(format!("k:{i}"), i).await.unwrap();
        let _: () = c
            .sadd(format!("s:{i}"), &["a", "b", "c", "d"])
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut w = kw.client().await;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _: i64 = w.incr("k:0", 1).await.unwrap();
            }
        })
    };
    for round in 0..50 {
        for i in 0..20 {
            let _: Option<i64> = c.get(format!("k:{i}")).await.unwrap();
            let _: Vec<String> = c.smembers(format!("s:{i}")).await.unwrap();
        }
        if round == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.await.unwrap();
    let same = shadow_count("shadowed", "same");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        shadow_count("shadowed", "same") >= 1500,
        "{same} same, {} skipped",
        shadow_count("shadowed", "skipped")
    );
    let dropped = keyway::wire::metrics::metrics()
        .encode()
        .lines()
        .filter(|l| l.contains("shadowed"))
        .map(|l| format!("{l}\n"))
        .collect::<String>();
    assert_eq!(shadow_count("shadowed", "different"), 0, "{dropped}");

    // Changed on the mirror behind keyway's back: a difference; the
    // client still reads the primary's value.
    let mut direct = redis.direct().await;
    let _: () = direct.set("k:5", "tampered").await.unwrap();
    let v: String = c.get("k:5").await.unwrap();
    assert_eq!(v, "5");
    common::until("the difference to be counted", 5, || async {
        shadow_count("shadowed", "different") == 1
    })
    .await;
}

/// The mirror's queue is bounded in commands, not batches: a client that
/// does not pipeline sends one write a batch, and a mirror that stalls for
/// a moment must not lose them (a bound of 1,024 batches did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_mirror_keeps_thousands_of_single_writes() {
    let redis = RedisServer::start();
    let toml = config(redis.port, "mem", Some("red")).replace("name = \"app\"", "name = \"stall\"");
    let kw = Keyway::with_toml(&toml).await;
    let mut c = kw.client().await;
    let _: () = c.set("warm", 1).await.unwrap();
    redis.signal("STOP");
    for i in 0..3000 {
        let _: () = c.set(format!("k:{i}"), i).await.unwrap();
    }
    redis.signal("CONT");
    let mut direct = redis.direct().await;
    common::until("the mirror to replay every write", 10, || {
        let mut d = direct.clone();
        async move { d.exists::<_, bool>("k:2999").await.unwrap() }
    })
    .await;
    let n: usize = redis::cmd("DBSIZE").query_async(&mut direct).await.unwrap();
    assert_eq!(n, 3001);
    let s = status(&mut c, "stall").await;
    assert_eq!(s["mirror_dropped"], "0", "{s:?}");
}

/// redis-server to Redis Cluster, then on to redis-shards, each under
/// writes with a cut-over and a roll-back; copies go to the node or shard
/// that owns each key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moves_to_a_cluster_and_to_shards_under_writes() {
    let redis = RedisServer::start();
    let cluster = common::RedisCluster::start(3).await;
    let (s1, s2) = (RedisServer::start(), RedisServer::start());
    let dir = std::env::temp_dir().join(format!("keyway-migrate-cl-{}", common::free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("keyway.toml");
    let cfg = |backend: &str, mirror: Option<&str>| {
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[backends.red]
type = "redis"
url = "redis://127.0.0.1:{}"
command_timeout_ms = 5000
[backends.cl]
type = "redis-cluster"
nodes = ["redis://127.0.0.1:{}"]
command_timeout_ms = 5000
[backends.sh]
type = "redis-shards"
servers = [{{ url = "redis://127.0.0.1:{}" }}, {{ url = "redis://127.0.0.1:{}" }}]
{}"#,
            redis.port,
            cluster.nodes[0].port,
            s1.port,
            s2.port,
            namespace("clmove", backend, mirror)
        )
    };
    std::fs::write(&path, cfg("red", None)).unwrap();
    let kw = Keyway::from_file(&path).await;
    let mut c = kw.client().await;
    preload(&mut c).await;
    let reload = |text: String| {
        std::fs::write(&path, text).unwrap();
        assert_eq!(kw.ops.reload(), keyway::ops::reload::Outcome::Applied);
    };
    let mut acked = Vec::new();
    for (from, to) in [("red", "cl"), ("cl", "sh")] {
        if from == "cl" {
            // The cluster serves alone, then moves on to the shards.
            reload(cfg("cl", None));
        }
        reload(cfg(from, Some(to)));
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = writers(&kw, 2, stop.clone());
        let done = run(&mut c, "clmove", &["BACKFILL", "BATCH", "200"]).await;
        stop.store(true, Ordering::Relaxed);
        let mut round = Vec::new();
        for t in tasks {
            round.push(t.await.expect("writer"));
        }
        merge(&mut acked, round);
        assert_eq!(done["phase"], "backfilled", "{from} -> {to}: {done:?}");
        assert_eq!(done["errors"], "0", "{from} -> {to}: {done:?}");
        let v = run(&mut c, "clmove", &["VERIFY"]).await;
        assert_eq!(v["differences"], "0", "{from} -> {to}: {v:?}");
        reload(cfg(to, Some(from)));
        write_for(&kw, 2, Duration::from_millis(300), &mut acked).await;
        check_acked(&mut c, &acked, 2).await;
        reload(cfg(from, Some(to)));
        write_for(&kw, 2, Duration::from_millis(300), &mut acked).await;
        check_acked(&mut c, &acked, 2).await;
        let v = run(&mut c, "clmove", &["VERIFY", "TOLERANCE", "2000"]).await;
        assert_eq!(v["differences"], "0", "{from} -> {to} at rest: {v:?}");
        // Forward for good: the target serves with what it was given.
        reload(cfg(to, None));
        check_acked(&mut c, &acked, 2).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A source listed rather than scanned (memcached's LRU crawler may miss an
/// item memcached moves meanwhile): the backfill lists again until a
/// listing brings nothing new, so a key the first listing missed is copied.
mod listed_source {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use keyway::backend::{Backend, BoxFuture, Command, Pushes, Session, Subscriber};
    use keyway::wire::command::CommandSpec;
    use keyway::wire::error::CmdError;
    use keyway::wire::reply::Reply;

    /// Holds "a" and "b" as strings; its first listing misses "b".
    #[derive(Default)]
    struct Forgetful {
        listings: AtomicUsize,
    }

    impl Backend for Forgetful {
        fn kind(&self) -> &'static str {
            "forgetful"
        }
        fn supports(&self, spec: &CommandSpec) -> bool {
            matches!(spec.name, "get" | "pttl" | "set" | "del")
        }
        fn can_list_keys(&self) -> bool {
            true
        }
        fn list_keys(&self, _cursor: u64) -> BoxFuture<'_, Result<(u64, Vec<Bytes>), String>> {
            let first = self.listings.fetch_add(1, Ordering::SeqCst) == 0;
            Box::pin(async move {
                let mut keys = vec![Bytes::from_static(b"a")];
                if !first {
                    keys.push(Bytes::from_static(b"b"));
                }
                Ok((0, keys))
            })
        }
        fn execute(&self, batch: Vec<Command>) -> BoxFuture<'_, Vec<Reply>> {
            Box::pin(async move {
                batch
                    .iter()
                    .map(|c| match c.spec.name {
                        "pttl" => Reply::Int(-1),
                        "get" => Reply::Bulk(Bytes::from(format!(
                            "value of {}",
                            String::from_utf8_lossy(&c.args[1])
                        ))),
                        _ => Reply::ok(),
                    })
                    .collect()
            })
        }
        fn session(&self) -> BoxFuture<'_, Result<Box<dyn Session>, CmdError>> {
            Box::pin(async { Err(CmdError::msg("ERR no sessions")) })
        }
        fn subscriber(
            &self,
            _tag: usize,
            _pushes: Pushes,
        ) -> BoxFuture<'_, Result<Box<dyn Subscriber>, CmdError>> {
            Box::pin(async { Err(CmdError::msg("ERR no subscribers")) })
        }
    }

    #[tokio::test]
    async fn a_key_the_first_listing_missed_is_copied() {
        let source: Arc<dyn Backend> = Arc::new(Forgetful::default());
        let target = keyway::backend::BackendConfig::default_memory().build("listed-target");
        let mut ns = keyway::proxy::router::NamespaceConfig::new("listed", "", "src");
        ns.mirror = Some("dst".into());
        let router = Arc::new(keyway::proxy::router::Router::with_backends(
            &[ns],
            |n| match n {
                "src" => Some(source.clone()),
                "dst" => Some(target.clone()),
                _ => None,
            },
        ));
        keyway::proxy::migrate::start(
            router.clone(),
            "listed",
            keyway::proxy::migrate::Task::Backfill {
                rate: 0,
                batch: 10,
                resume: false,
            },
        )
        .unwrap();
        let mut s = keyway::proxy::migrate::status(&router, "listed").unwrap();
        for _ in 0..500 {
            if s.running.is_none() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            s = keyway::proxy::migrate::status(&router, "listed").unwrap();
        }
        assert_eq!((s.phase, s.keys_done), ("backfilled", 2), "{s:?}");
        let got = target
            .execute(vec![Command::internal(
                keyway::wire::command::known("get"),
                vec![Bytes::from_static(b"GET"), Bytes::from_static(b"b")],
            )])
            .await;
        assert_eq!(got, vec![Reply::Bulk(Bytes::from_static(b"value of b"))]);
    }
}
