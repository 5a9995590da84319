//! Scripts keep their namespace's bounds (issue 18). On the memory backend
//! each `redis.call` of a script run for a namespace may touch only that
//! namespace's keys (and, with `strict_scripts`, only those it declared);
//! `read_only` and `max_value_size` hold inside scripts; KEYS, SCAN,
//! DBSIZE and RANDOMKEY see only the namespace's keys.

mod common;

use common::{Keyway, Raw};

const SUFFIX_RE: &str = " script: ";

/// A (`a:` → `tenantA:`, values up to 1 KB), B (`b:` → `tenantB:`), R
/// (`ro:` → `tenantR:`, read-only), S (`s:`, strict scripts) and a
/// catch-all holding `secret`, all on one memory backend.
async fn tenants() -> Keyway {
    Keyway::with_toml(
        "[backends.shared]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"A\"\nprefix = \"a:\"\nstrip_prefix = true\nkey_prefix = \"tenantA:\"\nmax_value_size = \"1kb\"\nbackend = \"shared\"\n\
         [[namespaces]]\nname = \"B\"\nprefix = \"b:\"\nstrip_prefix = true\nkey_prefix = \"tenantB:\"\nbackend = \"shared\"\n\
         [[namespaces]]\nname = \"R\"\nprefix = \"ro:\"\nstrip_prefix = true\nkey_prefix = \"tenantR:\"\nread_only = true\nbackend = \"shared\"\n\
         [[namespaces]]\nname = \"S\"\nprefix = \"s:\"\nstrict_scripts = true\nbackend = \"shared\"\n\
         [[namespaces]]\nname = \"rest\"\nprefix = \"\"\nbackend = \"shared\"\n",
    )
    .await
}

/// Sends EVAL and returns the reply's first line, the script's digest
/// trailer cut off.
async fn eval(c: &mut Raw, script: &str, keys: &[&str]) -> String {
    let n = keys.len().to_string();
    let mut words = vec!["EVAL", script, &n];
    words.extend_from_slice(keys);
    c.send(&common::resp(&words)).await;
    let reply = String::from_utf8_lossy(&c.reply().await).into_owned();
    match reply.find(SUFFIX_RE) {
        Some(at) => format!("{}\r\n", &reply[..at]),
        None => reply,
    }
}

const NO_KEY: &str = "-ERR The user executing the script can't access at least one of the keys mentioned in the command arguments\r\n";

#[tokio::test]
async fn a_script_touches_only_its_namespace() {
    let kw = tenants().await;
    let mut c = kw.raw().await;
    c.check("SET secret S3CRET", "+OK\r\n").await;
    c.check("SET b:v Bvalue", "+OK\r\n").await;
    c.check("SET a:mine 1", "+OK\r\n").await;

    // The escapes: another namespace's keys, or none's.
    assert_eq!(
        eval(&mut c, "return redis.call('GET','secret')", &["a:x"]).await,
        NO_KEY
    );
    assert_eq!(
        eval(&mut c, "return redis.call('GET','tenantB:v')", &["a:x"]).await,
        NO_KEY
    );
    assert_eq!(
        eval(&mut c, "return redis.call('SET','tenantR:x','v')", &["a:x"]).await,
        NO_KEY
    );
    // Every key of a command is checked, not only the first.
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('MGET', KEYS[1], 'secret')",
            &["a:x"]
        )
        .await,
        NO_KEY
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('RENAME', KEYS[1], 'secret')",
            &["a:mine"]
        )
        .await,
        NO_KEY
    );
    // pcall gets the error as a table, as in Redis.
    assert_eq!(
        eval(
            &mut c,
            "return redis.pcall('GET','secret')['err']",
            &["a:x"]
        )
        .await,
        format!("$106\r\n{}\r\n", &NO_KEY[1..NO_KEY.len() - 2])
    );
    // SORT patterns and PUBLISH channels are bounded too.
    c.check("RPUSH a:l 1", ":1\r\n").await;
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('SORT', KEYS[1], 'GET', 'secre*')",
            &["a:l"]
        )
        .await,
        NO_KEY
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('SORT', KEYS[1], 'BY', 'tenantA:w_*')",
            &["a:l"]
        )
        .await,
        "*1\r\n$1\r\n1\r\n"
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('PUBLISH', 'secretchan', 'x')",
            &["a:x"]
        )
        .await,
        "-ERR The user executing the script can't publish to the channel mentioned in the command\r\n"
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('PUBLISH', 'tenantA:chan', 'x')",
            &["a:x"]
        )
        .await,
        ":0\r\n"
    );
    // Its own keys, declared or not, under their backend names.
    assert_eq!(
        eval(&mut c, "return redis.call('GET', KEYS[1])", &["a:mine"]).await,
        "$1\r\n1\r\n"
    );
    assert_eq!(
        eval(
            &mut c,
            "redis.call('SET', 'tenantA:other', 'v') return redis.call('GET', 'tenantA:other')",
            &["a:x"]
        )
        .await,
        "$1\r\nv\r\n"
    );
    // Listing sees the namespace's keys only.
    assert_eq!(
        eval(
            &mut c,
            "local k = redis.call('KEYS', '*') table.sort(k) return k",
            &["a:x"]
        )
        .await,
        "*3\r\n$9\r\ntenantA:l\r\n$12\r\ntenantA:mine\r\n$13\r\ntenantA:other\r\n"
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('SCAN', '0', 'COUNT', '1000')[2]",
            &["a:x"]
        )
        .await
        .matches("tenantA:")
        .count(),
        3
    );
    assert_eq!(
        eval(&mut c, "return redis.call('DBSIZE')", &["a:x"]).await,
        ":3\r\n"
    );
    let random = eval(&mut c, "return redis.call('RANDOMKEY')", &["a:x"]).await;
    assert!(random.contains("tenantA:"), "{random}");
    assert_eq!(
        eval(&mut c, "return redis.call('FLUSHALL')", &["a:x"]).await,
        "-ERR The user executing the script can't run this command or subcommand\r\n"
    );
    // acl_check_cmd answers for the namespace.
    assert_eq!(
        eval(
            &mut c,
            "return redis.acl_check_cmd('GET', 'secret')",
            &["a:x"]
        )
        .await,
        "$-1\r\n"
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.acl_check_cmd('GET', KEYS[1])",
            &["a:x"]
        )
        .await,
        ":1\r\n"
    );
    // Nothing outside was touched.
    c.check("GET secret", "$6\r\nS3CRET\r\n").await;
    c.check("EXISTS ro:x", ":0\r\n").await;
    // The catch-all keeps names as they are, so its names could land on
    // the tenants' backend keys: refused, for its scripts, its commands
    // and its SORT patterns; and KEYS shows A's keys once, by A's names.
    assert_eq!(
        eval(&mut c, "return redis.call('GET','tenantA:mine')", &["x"]).await,
        NO_KEY
    );
    c.check(
        "GET tenantA:mine",
        "-ERR key 'tenantA:mine' of namespace 'rest' is where namespace 'A' keeps its keys on their shared backend\r\n",
    )
    .await;
    c.check("RPUSH list 1", ":1\r\n").await;
    c.check(
        "SORT list GET tenant*",
        "-ERR SORT pattern 'tenant*' can reach namespace 'A' from namespace 'rest' on their shared backend\r\n",
    )
    .await;
    c.send(&common::resp(&["KEYS", "*"])).await;
    let keys = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(
        keys.contains("a:mine") && !keys.contains("tenantA"),
        "{keys}"
    );
}

#[tokio::test]
async fn limits_hold_inside_scripts() {
    let kw = tenants().await;
    let mut c = kw.raw().await;
    // max_value_size: 1 KB for A, also for what a script writes.
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('SET', KEYS[1], string.rep('x', 5000))",
            &["a:k"]
        )
        .await,
        "-ERR value of 5000 bytes is over namespace 'A' limit of 1024 bytes (max_value_size)\r\n"
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('SET', KEYS[1], string.rep('x', 1024))",
            &["a:k"]
        )
        .await,
        "+OK\r\n"
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('SET', KEYS[1], string.rep('x', 1025))",
            &["a:k"]
        )
        .await,
        "-ERR value of 1025 bytes is over namespace 'A' limit of 1024 bytes (max_value_size)\r\n"
    );
    c.check("STRLEN a:k", ":1024\r\n").await;
    // read_only: R's scripts may read (EVAL_RO) but never write.
    c.check("SET a:k v", "+OK\r\n").await;
    c.send(&common::resp(&["EVAL", "return 1", "1", "ro:x"]))
        .await;
    c.expect("-READONLY namespace 'R' is read-only (read_only = true)\r\n")
        .await;
    c.send(&common::resp(&[
        "EVAL_RO",
        "return redis.call('GET', KEYS[1])",
        "1",
        "ro:x",
    ]))
    .await;
    c.expect("$-1\r\n").await;
}

#[tokio::test]
async fn strict_scripts_touch_only_declared_keys() {
    let kw = tenants().await;
    let mut c = kw.raw().await;
    c.check("SET s:a 1", "+OK\r\n").await;
    c.check("SET s:b 2", "+OK\r\n").await;
    assert_eq!(
        eval(&mut c, "return redis.call('GET', KEYS[1])", &["s:a"]).await,
        "$1\r\n1\r\n"
    );
    assert_eq!(
        eval(&mut c, "return redis.call('GET', 's:b')", &["s:a"]).await,
        NO_KEY
    );
    assert_eq!(
        eval(
            &mut c,
            "return redis.call('SORT', KEYS[1], 'BY', 's:*')",
            &["s:a"]
        )
        .await,
        NO_KEY
    );
}

#[tokio::test]
async fn a_namespace_alone_on_its_backend_keeps_every_key() {
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    c.check("SET other 1", "+OK\r\n").await;
    assert_eq!(
        eval(&mut c, "return redis.call('GET', 'other')", &["k"]).await,
        "$1\r\n1\r\n"
    );
    assert_eq!(
        eval(&mut c, "return redis.call('DBSIZE')", &[]).await,
        ":1\r\n"
    );
    assert_eq!(
        eval(&mut c, "return redis.call('FLUSHALL')", &[]).await,
        "+OK\r\n"
    );
}
