//! Namespaces: prefix routing, key rewriting, default TTLs, and multi-key
//! commands across backends (three memory backends stand in for servers).

mod common;
use common::Keyway;
use redis::AsyncCommands;

const CONFIG: &str = r#"
[backends.one]
type = "memory"
[backends.two]
type = "memory"
[backends.three]
type = "memory"

[[namespaces]]
name = "rest"
prefix = ""
backend = "one"

[[namespaces]]
name = "sessions"
prefix = "sess:"
backend = "two"
strip_prefix = true
key_prefix = "app1:"

[[namespaces]]
name = "confirm"
prefix = "confirm:"
backend = "three"
default_ttl = 900

[[namespaces]]
name = "shared"
prefix = "shared:"
backend = "one"
key_prefix = "ns:"
"#;

#[tokio::test]
async fn keys_are_rewritten_on_the_way_in_and_out() {
    let kw = Keyway::with_toml(CONFIG).await;
    let mut c = kw.raw().await;
    c.check("SET sess:42 alice", "+OK\r\n").await;
    c.check("GET sess:42", "$5\r\nalice\r\n").await;
    // shared: lives on backend "one" beside the catch-all, as ns:shared:x.
    c.check("SET shared:x 1", "+OK\r\n").await;
    // The catch-all shares backend "one" but cannot reach shared:'s keys
    // by their stored names: they are another namespace's.
    c.check(
        "GET ns:shared:x",
        "-ERR key 'ns:shared:x' of namespace 'rest' is where namespace 'shared' keeps its keys on their shared backend\r\n",
    )
    .await;
    c.check("KEYS shared:*", "*1\r\n$8\r\nshared:x\r\n").await;
    c.check("KEYS sess:*", "*1\r\n$7\r\nsess:42\r\n").await;
    // ns:shared:x is listed once, by its namespace's name for it.
    let mut con = kw.client().await;
    let mut all: Vec<String> = con.keys("*").await.unwrap();
    all.sort();
    assert_eq!(all, vec!["sess:42", "shared:x"]);
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(n, 2);
    c.check("RENAME sess:42 sess:43", "+OK\r\n").await;
    c.check("GET sess:43", "$5\r\nalice\r\n").await;
}

#[tokio::test]
async fn multi_key_commands_split_across_backends() {
    let kw = Keyway::with_toml(CONFIG).await;
    let mut c = kw.raw().await;
    c.check("MSET a 1 sess:s 2 confirm:c 3 b 4", "+OK\r\n")
        .await;
    c.check(
        "MGET confirm:c a nosuch sess:s b",
        "*5\r\n$1\r\n3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n$1\r\n4\r\n",
    )
    .await;
    c.check("EXISTS a sess:s confirm:c nosuch a", ":4\r\n")
        .await;
    c.check("TOUCH a sess:s", ":2\r\n").await;
    c.check("DEL a sess:s confirm:c nosuch", ":3\r\n").await;
    c.check(
        "MGET a sess:s confirm:c b",
        "*4\r\n$-1\r\n$-1\r\n$-1\r\n$1\r\n4\r\n",
    )
    .await;
    c.check(
        "MSETNX a 1 sess:s 2",
        "-ERR 'MSETNX' spans namespaces 'rest', 'sessions' on different backends; keyway cannot run it atomically\r\n",
    )
    .await;
    c.check(
        "RENAME b confirm:b",
        "-ERR 'RENAME' spans namespaces 'confirm', 'rest' on different backends; keyway cannot run it atomically\r\n",
    )
    .await;
    // Same backend, different namespaces: runs as one command.
    c.check("MSETNX x 1 shared:y 2", ":1\r\n").await;
    c.check("GET shared:y", "$1\r\n2\r\n").await;
}

#[tokio::test]
async fn default_ttl_applies_to_writes_without_one() {
    let kw = Keyway::with_toml(CONFIG).await;
    let mut c = kw.raw().await;
    c.check("SET confirm:1 x", "+OK\r\n").await;
    c.check("TTL confirm:1", ":900\r\n").await;
    c.check("SET confirm:2 x EX 60", "+OK\r\n").await;
    c.check("TTL confirm:2", ":60\r\n").await;
    c.check("HSET confirm:h f v", ":1\r\n").await;
    c.check("TTL confirm:h", ":900\r\n").await;
    c.check("PERSIST confirm:1", ":1\r\n").await;
    c.check("TTL confirm:1", ":-1\r\n").await;
    c.check("MSET confirm:3 a other b", "+OK\r\n").await;
    c.check("TTL confirm:3", ":900\r\n").await;
    c.check("TTL other", ":-1\r\n").await;
    c.check("SET plain x", "+OK\r\n").await;
    c.check("TTL plain", ":-1\r\n").await;
}

#[tokio::test]
async fn scan_visits_each_key_once_across_namespaces() {
    let kw = Keyway::with_toml(CONFIG).await;
    let mut con = kw.client().await;
    let mut expected = Vec::new();
    for i in 0..300 {
        for prefix in ["", "sess:", "confirm:", "shared:"] {
            let k = format!("{prefix}k{i}");
            let _: () = con.set(&k, i).await.unwrap();
            expected.push(k);
        }
    }
    let mut seen = common::scan_all(&mut con, 100).await;
    let total = seen.len();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), total, "a key was returned twice");
    expected.sort();
    assert_eq!(seen, expected);
    let (_, matched): (u64, Vec<String>) = redis::cmd("SCAN")
        .arg(1u64 << 48)
        .arg("MATCH")
        .arg("sess:k1?")
        .arg("COUNT")
        .arg(1000)
        .query_async(&mut con)
        .await
        .unwrap();
    assert_eq!(matched.len(), 10);
    let _: () = redis::cmd("FLUSHDB").query_async(&mut con).await.unwrap();
    let n: i64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn keys_no_namespace_owns() {
    let kw = Keyway::with_toml(
        r#"
[backends.m]
type = "memory"
[[namespaces]]
name = "users"
prefix = "user:"
backend = "m"
"#,
    )
    .await;
    let mut c = kw.raw().await;
    c.check("GET order:1", "-ERR no namespace owns key 'order:1'\r\n")
        .await;
    c.check("SET user:1 x", "+OK\r\n").await;
    c.check("DBSIZE", ":1\r\n").await;
}

#[tokio::test]
async fn namespace_limits_refuse_writes_before_the_backend() {
    let kw = Keyway::with_toml(
        r#"
[backends.one]
type = "memory"

[[namespaces]]
name = "rest"
prefix = ""
backend = "one"

[[namespaces]]
name = "catalog"
prefix = "cat:"
backend = "one"
read_only = true

[[namespaces]]
name = "small"
prefix = "small:"
backend = "one"
max_value_size = 8
"#,
    )
    .await;
    let mut c = kw.raw().await;
    let big = "x".repeat(9);
    for (cmd, reply) in [
        // Reads of a read-only namespace work; writes do not.
        ("GET cat:a", "$-1\r\n"),
        (
            "SET cat:a 1",
            "-READONLY namespace 'catalog' is read-only (read_only = true)\r\n",
        ),
        (
            "DEL cat:a rest:b",
            "-READONLY namespace 'catalog' is read-only (read_only = true)\r\n",
        ),
        ("SET small:a 12345678", "+OK\r\n"),
        (
            &format!("SET small:a {big}"),
            "-ERR value of 9 bytes is over namespace 'small' limit of 8 bytes (max_value_size)\r\n",
        ),
        // Every argument but the keys: fields, members, and MSET's values
        // with keys in other namespaces too (the strictest limit applies).
        (
            &format!("HSET small:h f1 v {big} v"),
            "-ERR value of 9 bytes is over namespace 'small' limit of 8 bytes (max_value_size)\r\n",
        ),
        (
            &format!("MSET rest:a {big} small:b 1"),
            "-ERR value of 9 bytes is over namespace 'small' limit of 8 bytes (max_value_size)\r\n",
        ),
        // A long key is a key, not a value; options are small.
        (&format!("SET small:{big} v EX 100"), "+OK\r\n"),
        (&format!("GET small:{big}"), "$1\r\nv\r\n"),
        // Refused at queueing time, as Redis refuses a command it cannot
        // queue: EXEC then aborts.
        ("MULTI", "+OK\r\n"),
        ("SET rest:ok 1", "+QUEUED\r\n"),
        (
            "SET cat:a 1",
            "-READONLY namespace 'catalog' is read-only (read_only = true)\r\n",
        ),
        (
            "EXEC",
            "-EXECABORT Transaction discarded because of previous errors.\r\n",
        ),
        ("GET rest:ok", "$-1\r\n"),
        // Nothing is flushed while a namespace may not be written.
        (
            "FLUSHALL",
            "-READONLY namespace 'catalog' is read-only (read_only = true)\r\n",
        ),
        ("GET small:a", "$8\r\n12345678\r\n"),
    ] {
        c.check(cmd, reply).await;
    }
}
