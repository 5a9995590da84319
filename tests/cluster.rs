//! The redis-cluster backend against a real Redis Cluster of three masters
//! started by each test.

mod common;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{Keyway, Raw, RedisCluster};
use redis::AsyncCommands;
use redis_protocol::redis_keyslot;

/// Two namespaces share the cluster, each under a key prefix of its own, so
/// that slots are those of the rewritten keys.
fn config(c: &RedisCluster) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.c]
type = "redis-cluster"
nodes = ["redis://127.0.0.1:{}"]
command_timeout_ms = 1000
[[namespaces]]
name = "app"
prefix = ""
key_prefix = "app:"
backend = "c"
[[namespaces]]
name = "tenant"
prefix = "t:"
strip_prefix = true
key_prefix = "tenant1:"
backend = "c"
"#,
        c.nodes[1].port
    )
}

async fn get_on(c: &RedisCluster, node: usize, key: &str) -> Option<String> {
    c.nodes[node].direct().await.get(key).await.unwrap()
}

#[tokio::test]
async fn keys_land_on_the_master_of_their_slot() {
    let cluster = RedisCluster::start(3).await;
    let kw = Keyway::with_toml(&config(&cluster)).await;
    let mut c = kw.client().await;
    let keys: Vec<String> = (0..60).map(|i| format!("user:{i}")).collect();
    for k in &keys {
        let _: () = c.set(k, format!("v-{k}")).await.unwrap();
    }
    // Each key is on the master owning its slot, and on no other.
    let mut used = HashSet::new();
    for k in &keys {
        let stored = format!("app:{k}");
        let owner = cluster.owner(redis_keyslot(stored.as_bytes()));
        used.insert(owner);
        assert_eq!(
            get_on(&cluster, owner, &stored).await,
            Some(format!("v-{k}"))
        );
        let other = (owner + 1) % 3;
        let direct: redis::RedisResult<Option<String>> =
            cluster.nodes[other].direct().await.get(&stored).await;
        assert!(direct.is_err(), "{k} answered by a master not owning it");
    }
    assert_eq!(used.len(), 3, "the keys did not spread over the masters");
    let _: () = c.set("t:42", "tenant").await.unwrap();
    let owner = cluster.owner(redis_keyslot(b"tenant1:42"));
    assert_eq!(
        get_on(&cluster, owner, "tenant1:42").await.as_deref(),
        Some("tenant")
    );

    // Multi-key commands over many slots are split and merged in order.
    let mut ask: Vec<String> = keys[..20].to_vec();
    ask.insert(5, "missing".into());
    let got: Vec<Option<String>> = c.mget(&ask).await.unwrap();
    let want: Vec<Option<String>> = ask
        .iter()
        .map(|k| (k != "missing").then(|| format!("v-{k}")))
        .collect();
    assert_eq!(got, want);
    let _: () = c.mset(&[("a", "1"), ("b", "2"), ("c", "3")]).await.unwrap();
    let abc: Vec<String> = c.mget(&["a", "b", "c"]).await.unwrap();
    assert_eq!(abc, ["1", "2", "3"]);
    let n: i64 = c.exists(&["a", "b", "c", "nope"]).await.unwrap();
    assert_eq!(n, 3);
    let n: i64 = c.del(&["a", "b", "c", "nope"]).await.unwrap();
    assert_eq!(n, 3);

    // Whole-keyspace commands cover every master.
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 61);
    let mut all: Vec<String> = c.keys("user:*").await.unwrap();
    all.sort();
    let mut want = keys.clone();
    want.sort();
    assert_eq!(all, want);
    let mut seen = HashSet::new();
    for k in common::scan_all(&mut c, 7).await {
        assert!(seen.insert(k.clone()), "SCAN returned {k} twice");
    }
    assert_eq!(seen.len(), 61);
    assert!(seen.contains("t:42"));

    // Other multi-key commands are the cluster's to refuse, or to run when
    // a hash tag keeps their keys in one slot.
    let mut raw = kw.raw().await;
    let slots: HashSet<u16> = ["app:out", "app:s1", "app:s2"]
        .iter()
        .map(|k| redis_keyslot(k.as_bytes()))
        .collect();
    assert_eq!(slots.len(), 3);
    raw.check(
        "SUNIONSTORE out s1 s2",
        "-CROSSSLOT Keys in request don't hash to the same slot\r\n",
    )
    .await;
    raw.check("SADD {s}1 a b", ":2\r\n").await;
    raw.check("SADD {s}2 b c", ":2\r\n").await;
    raw.check("SUNIONSTORE {s}out {s}1 {s}2", ":3\r\n").await;
    raw.check("FLUSHDB", "+OK\r\n").await;
    raw.check("DBSIZE", ":0\r\n").await;
    let info: redis::InfoDict = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    assert_eq!(
        info.get::<String>("backend_c").as_deref(),
        Some("type=redis-cluster,health=up (3/3 masters reachable  16384/16384 slots served)")
    );
}

#[tokio::test]
async fn a_resharded_slot_is_followed_through_ask_and_moved() {
    let cluster = RedisCluster::start(3).await;
    let kw = Keyway::with_toml(&config(&cluster)).await;
    let mut c = kw.client().await;
    let slot = redis_keyslot(b"{mover}");
    let from = cluster.owner(slot);
    let to = (from + 1) % 3;
    let _: () = c.set("{mover}old", "before").await.unwrap();
    let mut src = cluster.nodes[from].direct().await;
    let mut dst = cluster.nodes[to].direct().await;
    let setslot = |how: &str, id: &str| {
        let mut cmd = redis::cmd("CLUSTER");
        cmd.arg("SETSLOT").arg(slot).arg(how).arg(id);
        cmd
    };
    let _: () = setslot("IMPORTING", &cluster.ids[from])
        .query_async(&mut dst)
        .await
        .unwrap();
    let _: () = setslot("MIGRATING", &cluster.ids[to])
        .query_async(&mut src)
        .await
        .unwrap();
    // Mid-migration, a new key of the slot belongs to the importing node:
    // the source answers ASK, and keyway follows it.
    let _: () = c.set("{mover}new", "fresh").await.unwrap();
    let on_dst: i64 = redis::cmd("CLUSTER")
        .arg("COUNTKEYSINSLOT")
        .arg(slot)
        .query_async(&mut dst)
        .await
        .unwrap();
    assert_eq!(on_dst, 1);
    let v: String = c.get("{mover}new").await.unwrap();
    assert_eq!(v, "fresh");
    let v: String = c.get("{mover}old").await.unwrap();
    assert_eq!(v, "before");
    // The old key moves, then the slot: keyway's map is now stale, and the
    // source answers MOVED.
    let _: () = redis::cmd("MIGRATE")
        .arg("127.0.0.1")
        .arg(cluster.nodes[to].port)
        .arg("")
        .arg(0)
        .arg(5000)
        .arg("KEYS")
        .arg("app:{mover}old")
        .query_async(&mut src)
        .await
        .unwrap();
    cluster.give_slot(slot, to).await;
    let v: Vec<String> = c.mget(&["{mover}old", "{mover}new"]).await.unwrap();
    assert_eq!(v, ["before", "fresh"]);
    let _: () = c.set("{mover}old", "after").await.unwrap();
    let direct: String = dst.get("app:{mover}old").await.unwrap();
    assert_eq!(direct, "after");
    // Operators see the resharding in the metrics.
    let text = keyway::wire::metrics::metrics().encode();
    for kind in ["ask", "moved"] {
        let line = format!("keyway_cluster_redirects_total{{backend=\"c\",kind=\"{kind}\"}} ");
        assert!(text.contains(&line), "no {kind} redirects counted:\n{text}");
    }

    // A transaction on a slot that moved behind keyway's back is aborted
    // whole, as a cluster aborts it: its redirected command is not run
    // elsewhere. Sent again, it runs where the slot now is.
    let slot = redis_keyslot(b"{tx}");
    let owner = cluster.owner(slot);
    let next = (owner + 1) % 3;
    cluster.give_slot(slot, next).await;
    let mut raw = kw.raw().await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET {tx}k 1", "+QUEUED\r\n").await;
    raw.check(
        "EXEC",
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    )
    .await;
    raw.check("GET {tx}k", "$-1\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("SET {tx}k 1", "+QUEUED\r\n").await;
    raw.check("EXEC", "*1\r\n+OK\r\n").await;
    assert_eq!(
        get_on(&cluster, next, "app:{tx}k").await.as_deref(),
        Some("1")
    );
}

#[tokio::test]
async fn transactions_blocking_pops_and_pubsub_on_a_cluster() {
    let cluster = RedisCluster::start(3).await;
    // Two namespaces share the cluster: "app" gets a Redis ACL user of its
    // own, so that its scripts may run (Redis bounds them to app:*).
    for node in &cluster.nodes {
        let mut direct = Raw(tokio::net::TcpStream::connect(("127.0.0.1", node.port))
            .await
            .expect("connect"));
        direct
            .check("ACL SETUSER app on >pw ~app:* &* +@all", "+OK\r\n")
            .await;
    }
    let kw = Keyway::with_toml(&config(&cluster).replace(
        "key_prefix = \"app:\"\n",
        "key_prefix = \"app:\"\nusername = \"app\"\npassword = \"pw\"\n",
    ))
    .await;
    let mut raw = kw.raw().await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("INCR {acct}balance", "+QUEUED\r\n").await;
    raw.check("RPUSH {acct}log credit", "+QUEUED\r\n").await;
    raw.check("EXEC", "*2\r\n:1\r\n:1\r\n").await;
    raw.check("WATCH {acct}balance", "+OK\r\n").await;
    raw.check("MULTI", "+OK\r\n").await;
    raw.check("INCR {acct}balance", "+QUEUED\r\n").await;
    raw.check("EXEC", "*1\r\n:2\r\n").await;

    // Scripts load on every master, so EVALSHA runs wherever its key is.
    let sha = "6a935716be7afd629d740d55c8ec5faf2298e9d5";
    raw.check(
        "SCRIPT LOAD return(redis.call('INCR',KEYS[1]))",
        &format!("${}\r\n{sha}\r\n", sha.len()),
    )
    .await;
    for key in ["{a}n", "{b}n", "{c}n", "{d}n"] {
        raw.check(&format!("EVALSHA {sha} 1 {key}"), ":1\r\n").await;
    }
    raw.check(&format!("SCRIPT EXISTS {sha} nosuch"), "*2\r\n:1\r\n:0\r\n")
        .await;
    let mut c = kw.client().await;
    let key: String = redis::cmd("RANDOMKEY").query_async(&mut c).await.unwrap();
    assert!(key.ends_with('n') || key.starts_with("{acct}"), "{key}");

    // A blocked pop is woken by another client's push.
    let mut waiter = kw.client().await;
    let pop = tokio::spawn(async move {
        let got: Option<(String, String)> = waiter.blpop("jobs", 5.0).await.unwrap();
        got
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _: () = c.rpush("jobs", "job-1").await.unwrap();
    let started = Instant::now();
    let got = pop.await.unwrap();
    assert_eq!(got, Some(("jobs".to_string(), "job-1".to_string())));
    assert!(started.elapsed() < Duration::from_secs(2));

    // Messages published through keyway reach a subscriber through keyway.
    let mut sub = kw.raw().await;
    sub.check(
        "SUBSCRIBE news",
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n",
    )
    .await;
    raw.check("PUBLISH news hello", ":1\r\n").await;
    sub.expect("*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n")
        .await;

    // Shard channels live on their slot's master: each is subscribed
    // there, and SPUBLISH (routed by slot) reaches it.
    let mut ssub = kw.raw().await;
    let channels = ["{a}s", "{b}s", "{c}s", "{d}s"];
    for (i, ch) in channels.iter().enumerate() {
        ssub.check(
            &format!("SSUBSCRIBE {ch}"),
            &format!("*3\r\n$10\r\nssubscribe\r\n$4\r\n{ch}\r\n:{}\r\n", i + 1),
        )
        .await;
    }
    for ch in channels {
        raw.check(&format!("SPUBLISH {ch} hi"), ":1\r\n").await;
        ssub.expect(&format!(
            "*3\r\n$8\r\nsmessage\r\n$4\r\n{ch}\r\n$2\r\nhi\r\n"
        ))
        .await;
    }
}

#[tokio::test]
async fn a_master_down_fails_only_its_slots_and_recovers() {
    let mut cluster = RedisCluster::start(3).await;
    let kw = Keyway::with_toml(&config(&cluster)).await;
    let mut c = kw.client().await;
    // One key per master.
    let mut on: Vec<String> = vec![String::new(); 3];
    for i in 0.. {
        let k = format!("k{i}");
        let owner = cluster.owner(redis_keyslot(format!("app:{k}").as_bytes()));
        if on[owner].is_empty() {
            let _: () = c.set(&k, owner).await.unwrap();
            on[owner] = k;
        }
        if on.iter().all(|k| !k.is_empty()) {
            break;
        }
    }
    cluster.nodes[2].kill();
    let started = Instant::now();
    let lost: redis::RedisResult<String> = c.get(&on[2]).await;
    let err = lost.unwrap_err().to_string();
    let node = format!("(node 127.0.0.1:{})", cluster.nodes[2].port);
    assert!(
        err.contains("backend 'c' unavailable") && err.contains(&node),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    for (i, k) in on.iter().enumerate().take(2) {
        let v: usize = c.get(k).await.unwrap();
        assert_eq!(v, i);
    }
    // Back (empty: it kept nothing), the master serves its slots again
    // without keyway restarting.
    cluster.nodes[2].restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r: redis::RedisResult<Option<String>> = c.get(&on[2]).await;
        if let Ok(v) = r {
            assert_eq!(v, None);
            break;
        }
        assert!(Instant::now() < deadline, "no recovery: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // With no node to ask for the slot map, every command says so.
    let dead = common::free_port();
    let kw = Keyway::with_toml(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.c]
type = "redis-cluster"
nodes = ["redis://127.0.0.1:{dead}"]
[[namespaces]]
name = "app"
prefix = ""
backend = "c"
"#
    ))
    .await;
    let mut raw = kw.raw().await;
    raw.check(
        "GET x",
        &format!("-ERR backend 'c' unavailable: no node gave the slot map (127.0.0.1:{dead}: connection refused)\r\n"),
    )
    .await;
}

#[tokio::test]
async fn a_silent_seed_fails_every_client_within_one_timeout() {
    // Accepts connections (the kernel does) but never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let kw = Keyway::with_toml(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.c]
type = "redis-cluster"
nodes = ["redis://127.0.0.1:{port}"]
command_timeout_ms = 300
[[namespaces]]
name = "app"
prefix = ""
backend = "c"
"#
    ))
    .await;
    let started = Instant::now();
    let mut clients = Vec::new();
    for i in 0..8 {
        let mut c = kw.client().await;
        clients.push(tokio::spawn(async move {
            let r: redis::RedisResult<Option<String>> = c.get(format!("k{i}")).await;
            r.unwrap_err().to_string()
        }));
    }
    for c in clients {
        let err = c.await.unwrap();
        assert!(
            err.contains("no node gave the slot map") && err.contains("no reply within 300 ms"),
            "{err}"
        );
    }
    // One slot-map attempt answers all eight, not one attempt each.
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_replica_promoted_after_its_master_died_takes_over() {
    let mut cluster = RedisCluster::start(3).await;
    let replica = cluster.add_replica(2).await;
    let kw = Keyway::with_toml(&config(&cluster)).await;
    let mut c = kw.client().await;
    // A key on master 2, replicated before the master dies.
    let key = (0..)
        .map(|i| format!("k{i}"))
        .find(|k| cluster.owner(redis_keyslot(format!("app:{k}").as_bytes())) == 2)
        .unwrap();
    let _: () = c.set(&key, "kept").await.unwrap();
    replicated(&cluster, 2, replica).await;
    cluster.nodes[2].kill();
    // Failed while the cluster elects the replica, then served by it,
    // without keyway restarting.
    let deadline = Instant::now() + Duration::from_secs(20);
    let value = loop {
        let r: redis::RedisResult<Option<String>> = c.get(&key).await;
        if let Ok(v) = r {
            break v;
        }
        assert!(Instant::now() < deadline, "no failover: {r:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(value.as_deref(), Some("kept"));
    let _: () = c.set(&key, "after").await.unwrap();
    let on_replica: String = cluster.nodes[replica]
        .direct()
        .await
        .get(format!("app:{key}"))
        .await
        .unwrap();
    assert_eq!(on_replica, "after");
}

/// Waits until `replica` holds as many keys as `master`. WAIT would not do:
/// it waits for the writes of its own connection, and keyway wrote on
/// another.
async fn replicated(cluster: &RedisCluster, master: usize, replica: usize) {
    let size = |n: usize| {
        let node = &cluster.nodes[n];
        async move {
            redis::cmd("DBSIZE")
                .query_async::<i64>(&mut node.direct().await)
                .await
                .unwrap()
        }
    };
    let want = size(master).await;
    common::until("the replica to catch up", 10, || async {
        size(replica).await == want
    })
    .await;
}

/// GET calls a node has served since its stats were reset.
async fn gets_served(node: &common::RedisServer) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut node.direct().await)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn reads_go_to_replicas_and_fall_back_to_the_master() {
    let mut cluster = RedisCluster::start(3).await;
    let replica = cluster.add_replica(0).await;
    // The seed keyway asks learns of the replica by gossip.
    let seed = cluster.nodes[1].direct().await;
    common::until("the seed to list the replica", 10, || {
        let mut seed = seed.clone();
        async move {
            let slots: Vec<Vec<redis::Value>> = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async(&mut seed)
                .await
                .unwrap();
            slots.iter().any(|range| range.len() > 3)
        }
    })
    .await;
    let toml = config(&cluster).replace(
        "command_timeout_ms = 1000",
        "command_timeout_ms = 1000\nread_from_replicas = true",
    );
    let kw = Keyway::with_toml(&toml).await;
    let mut c = kw.client().await;
    let keys: Vec<String> = (0..60).map(|i| format!("r{i}")).collect();
    for k in &keys {
        let _: () = c.set(k, format!("v-{k}")).await.unwrap();
    }
    let on_0 = keys
        .iter()
        .filter(|k| cluster.owner(redis_keyslot(format!("app:{k}").as_bytes())) == 0)
        .count() as u64;
    assert!(on_0 > 0);
    replicated(&cluster, 0, replica).await;
    for n in [0, replica] {
        let _: () = redis::cmd("CONFIG")
            .arg("RESETSTAT")
            .query_async(&mut cluster.nodes[n].direct().await)
            .await
            .unwrap();
    }
    for k in &keys {
        let v: String = c.get(k).await.unwrap();
        assert_eq!(v, format!("v-{k}"));
    }
    // Master 0's keys were read from its replica; the others' masters have
    // no replica and serve their own.
    assert_eq!(gets_served(&cluster.nodes[replica]).await, on_0);
    assert_eq!(gets_served(&cluster.nodes[0]).await, 0);
    let all: Vec<String> = c.mget(&keys).await.unwrap();
    assert_eq!(all.len(), 60);
    // Writes still go to the master.
    let _: () = c.set(&keys[0], "new").await.unwrap();

    // With the replica gone, its master answers.
    cluster.nodes[replica].kill();
    for k in &keys {
        let v: String = c.get(k).await.unwrap();
        let want = if k == &keys[0] {
            "new".to_string()
        } else {
            format!("v-{k}")
        };
        assert_eq!(v, want);
    }
    assert!(gets_served(&cluster.nodes[0]).await >= on_0);
}

#[tokio::test]
async fn a_cluster_over_tls_with_auth_on_every_node() {
    // As a managed cluster with in-transit encryption: every node speaks
    // TLS and wants the `app` user. The plain port's default user can only
    // administer the cluster, so a node keyway did not AUTH on refuses SET.
    let dir = std::env::temp_dir().join(format!(
        "keyway-cluster-tls-{}-{}",
        std::process::id(),
        common::free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    common::test_certs(&dir);
    let p = |f: &str| dir.join(f).display().to_string();
    let cluster = RedisCluster::start_with(3, || {
        let mut args = common::tls_args(&dir);
        args.extend(
            [
                "--tls-port",
                &common::free_port().to_string(),
                "--tls-cluster",
                "yes",
                "--user",
                "default",
                "on",
                "nopass",
                "-@all",
                "+cluster",
                "+config",
                "+ping",
                "+info",
                "+client",
                "+hello",
                "--user",
                "app",
                "on",
                ">s3cret",
                "~*",
                "&*",
                "+@all",
            ]
            .map(String::from),
        );
        args
    })
    .await;
    let tls_port: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("tls-port")
        .query_async(&mut cluster.nodes[1].direct().await)
        .await
        .unwrap();
    let kw = Keyway::with_toml(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.c]
type = "redis-cluster"
nodes = ["rediss://app:s3cret@localhost:{}"]
tls_ca_file = "{}"
[[namespaces]]
name = "app"
prefix = ""
backend = "c"
"#,
        tls_port[1],
        p("ca.crt")
    ))
    .await;
    let mut c = kw.client().await;
    // One key per master: each master learned from the slot map is reached
    // over TLS, as `app`.
    let mut on = [false; 3];
    for i in 0.. {
        let k = format!("k{i}");
        let owner = cluster.owner(redis_keyslot(k.as_bytes()));
        if !on[owner] {
            let _: () = c.set(&k, i).await.unwrap();
            let v: i64 = c.get(&k).await.unwrap();
            assert_eq!(v, i);
            on[owner] = true;
        }
        if on.iter().all(|&o| o) {
            break;
        }
    }
    let size: i64 = redis::cmd("DBSIZE").query_async(&mut c).await.unwrap();
    assert_eq!(size, 3);
    let _ = std::fs::remove_dir_all(&dir);
}

/// SCRIPT KILL reaches a cluster node busy with a runaway script past the
/// shared connection the script holds, as on a single server.
#[tokio::test]
async fn script_kill_stops_a_runaway_script_on_a_cluster() {
    let cluster = RedisCluster::start_with(3, || {
        vec!["--busy-reply-threshold".to_string(), "100".to_string()]
    })
    .await;
    // One namespace with the cluster to itself, where scripts may run.
    let kw = Keyway::with_toml(&format!(
        "[backends.c]\ntype = \"redis-cluster\"\nnodes = [\"redis://127.0.0.1:{}\"]\n\
         command_timeout_ms = 3000\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"c\"\n",
        cluster.nodes[0].port
    ))
    .await;
    let mut runner = kw.raw().await;
    runner
        .send(&common::resp(&["EVAL", "while true do end", "1", "{s}k"]))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut killer = kw.raw().await;
    killer.check("SCRIPT KILL", "+OK\r\n").await;
    let ended = String::from_utf8_lossy(&runner.reply().await).into_owned();
    assert!(ended.contains("Script killed by user"), "{ended}");
    runner.check("SET {s}k v", "+OK\r\n").await;
}
