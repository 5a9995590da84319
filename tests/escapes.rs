//! A namespace is a security boundary: no argument outside the command
//! table's key positions (SORT patterns and STOREs, XREAD's STREAMS,
//! GEORADIUS's STORE, COPY's DB, the *STORE forms, SCAN and KEYS
//! patterns...) reaches a key of another namespace, or of none.
//!
//! The tenants of issue 18: A (`a:` → `tenantA:`), B (`b:` → `tenantB:`)
//! and R (`ro:` → `tenantR:`, read-only), on one redis-server that also
//! holds a raw key `secret`; and the same namespaces on one memory backend.

mod common;

use common::{Keyway, Raw, RedisServer};

fn tenants(backend: &str) -> String {
    format!(
        "{backend}\n\
         [[namespaces]]\nname = \"A\"\nprefix = \"a:\"\nstrip_prefix = true\nkey_prefix = \"tenantA:\"\nbackend = \"shared\"\n\
         [[namespaces]]\nname = \"B\"\nprefix = \"b:\"\nstrip_prefix = true\nkey_prefix = \"tenantB:\"\nbackend = \"shared\"\n\
         [[namespaces]]\nname = \"R\"\nprefix = \"ro:\"\nstrip_prefix = true\nkey_prefix = \"tenantR:\"\nread_only = true\nbackend = \"shared\"\n"
    )
}

/// keyway in front of a redis-server holding `secret`, B's `tenantB:v` and
/// R's `tenantR:x`; and a direct connection to that server.
async fn on_redis() -> (RedisServer, Keyway, Raw) {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(&tenants(&format!(
        "[backends.shared]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"",
        redis.port
    )))
    .await;
    let mut direct = Raw(tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .expect("connect"));
    direct.check("SET secret S3CRET", "+OK\r\n").await;
    direct.check("SET tenantB:v Bvalue", "+OK\r\n").await;
    direct.check("SET tenantR:x keep", "+OK\r\n").await;
    (redis, kw, direct)
}

async fn on_memory() -> Keyway {
    Keyway::with_toml(&tenants("[backends.shared]\ntype = \"memory\"")).await
}

async fn list_in_a(c: &mut Raw) {
    c.check("RPUSH a:list 2 1 3", ":3\r\n").await;
    for (k, v) in [("1", "one"), ("2", "two"), ("3", "three")] {
        c.check(&format!("SET a:w_{k} {k}"), "+OK\r\n").await;
        c.check(&format!("HSET a:h_{k} f {v}"), ":1\r\n").await;
    }
}

/// Every escape through SORT, on a backend where `c` is a keyway client.
async fn sort_cannot_escape(c: &mut Raw) {
    list_in_a(c).await;
    // BY and GET patterns of the issue: refused, not answered from outside.
    c.check(
        "SORT a:list BY nosort GET secre*",
        "-ERR SORT pattern 'secre*' names keys no namespace owns\r\n",
    )
    .await;
    c.check(
        "SORT a:list BY nosort GET tenantB:*",
        "-ERR SORT pattern 'tenantB:*' names keys no namespace owns\r\n",
    )
    .await;
    c.check(
        "SORT_RO a:list BY secre*",
        "-ERR SORT_RO pattern 'secre*' names keys no namespace owns\r\n",
    )
    .await;
    c.check(
        "SORT a:list GET *",
        "-ERR SORT pattern '*' names keys no namespace owns\r\n",
    )
    .await;
    // Inside the namespace, patterns work and read the namespace's keys.
    c.check(
        "SORT a:list BY a:w_* GET # GET a:h_*->f",
        "*6\r\n$1\r\n1\r\n$3\r\none\r\n$1\r\n2\r\n$3\r\ntwo\r\n$1\r\n3\r\n$5\r\nthree\r\n",
    )
    .await;
    c.check(
        "SORT_RO a:list BY a:w_* DESC GET a:h_*->f",
        "*3\r\n$5\r\nthree\r\n$3\r\ntwo\r\n$3\r\none\r\n",
    )
    .await;
    // No '*': Redis looks nothing up, and neither is anything refused.
    c.check(
        "SORT a:list BY nosort GET secret",
        "*3\r\n$-1\r\n$-1\r\n$-1\r\n",
    )
    .await;
    // The last STORE is the one Redis writes, and it is checked.
    c.check(
        "SORT a:list STORE a:dest STORE secret",
        "-ERR no namespace owns key 'secret'\r\n",
    )
    .await;
    c.check(
        "SORT a:list STORE a:dest STORE ro:x",
        "-READONLY namespace 'R' is read-only (read_only = true)\r\n",
    )
    .await;
    c.check("SORT a:list STORE secret STORE a:dest", ":3\r\n")
        .await;
    c.check(
        "LRANGE a:dest 0 -1",
        "*3\r\n$1\r\n1\r\n$1\r\n2\r\n$1\r\n3\r\n",
    )
    .await;
    // The same inside a transaction: refused when queued.
    c.check("MULTI", "+OK\r\n").await;
    c.check(
        "SORT a:list GET secre*",
        "-ERR SORT pattern 'secre*' names keys no namespace owns\r\n",
    )
    .await;
    c.check(
        "EXEC",
        "-EXECABORT Transaction discarded because of previous errors.\r\n",
    )
    .await;
    c.check("MULTI", "+OK\r\n").await;
    c.check("SORT a:list BY a:w_* GET a:h_*->f", "+QUEUED\r\n")
        .await;
    c.check(
        "EXEC",
        "*1\r\n*3\r\n$3\r\none\r\n$3\r\ntwo\r\n$5\r\nthree\r\n",
    )
    .await;
}

#[tokio::test]
async fn sort_patterns_and_stores_stay_in_the_namespace_on_redis() {
    let (_redis, kw, mut direct) = on_redis().await;
    let mut c = kw.raw().await;
    sort_cannot_escape(&mut c).await;
    // What reached the server: A's keys only, under A's key_prefix.
    direct.check("GET secret", "$6\r\nS3CRET\r\n").await;
    direct.check("TYPE tenantA:dest", "+list\r\n").await;
    direct.check("EXISTS tenantR:x", ":1\r\n").await;
    direct.check("GET tenantR:x", "$4\r\nkeep\r\n").await;
    // A pattern into B (same server, a namespace the client may use) reads
    // B's keys under B's key_prefix.
    c.check("SET b:w_1 Bone", "+OK\r\n").await;
    c.check("RPUSH a:one 1", ":1\r\n").await;
    c.check("SORT a:one BY nosort GET b:w_*", "*1\r\n$4\r\nBone\r\n")
        .await;
}

#[tokio::test]
async fn sort_patterns_and_stores_stay_in_the_namespace_on_memory() {
    let kw = on_memory().await;
    let mut c = kw.raw().await;
    sort_cannot_escape(&mut c).await;
}

#[tokio::test]
async fn a_pattern_on_another_backend_is_refused() {
    let kw = Keyway::with_toml(
        "[backends.m]\ntype = \"memory\"\n[backends.n]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"A\"\nprefix = \"a:\"\nbackend = \"m\"\n\
         [[namespaces]]\nname = \"C\"\nprefix = \"c:\"\nbackend = \"n\"\n",
    )
    .await;
    let mut c = kw.raw().await;
    c.check("RPUSH a:l 1", ":1\r\n").await;
    c.check("SET c:w_1 x", "+OK\r\n").await;
    c.check(
        "SORT a:l GET c:w_*",
        "-ERR SORT pattern 'c:w_*' names keys of namespace 'C', on another backend than namespace 'A'\r\n",
    )
    .await;
}

#[tokio::test]
async fn command_getkeys_names_the_last_store() {
    let kw = on_memory().await;
    let mut c = kw.raw().await;
    c.check(
        "COMMAND GETKEYS sort abc store invalid store stillbad store def",
        "*2\r\n$3\r\nabc\r\n$3\r\ndef\r\n",
    )
    .await;
}

/// XREAD, GEORADIUS, COPY, OBJECT, MEMORY and the *STORE forms.
async fn other_commands_cannot_escape(c: &mut Raw) {
    // A group named "streams" is not the STREAMS keyword: the key is a:s.
    c.check("XADD a:s 1-1 f v", "$3\r\n1-1\r\n").await;
    c.check("XGROUP CREATE a:s streams 0", "+OK\r\n").await;
    c.check(
        "XREADGROUP GROUP streams c STREAMS a:s >",
        "*1\r\n*2\r\n$3\r\na:s\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\nf\r\n$1\r\nv\r\n",
    )
    .await;
    c.check(
        "XREAD COUNT 1 STREAMS secret 0",
        "-ERR no namespace owns key 'secret'\r\n",
    )
    .await;
    // GEORADIUS: the last STORE or STOREDIST is written, and checked.
    c.check("GEOADD a:g 13.361389 38.115556 p", ":1\r\n").await;
    c.check(
        "GEORADIUS a:g 15 37 200 km STORE a:gd STOREDIST secret",
        "-ERR no namespace owns key 'secret'\r\n",
    )
    .await;
    c.check(
        "GEORADIUSBYMEMBER a:g p 10 km STORE ro:g",
        "-READONLY namespace 'R' is read-only (read_only = true)\r\n",
    )
    .await;
    c.check(
        "GEORADIUS a:g 15 37 200 km STORE secret STORE a:gd",
        ":1\r\n",
    )
    .await;
    c.check("ZCARD a:gd", ":1\r\n").await;
    // COPY into another database keeps the key in its namespace there.
    c.check("SET a:c v", "+OK\r\n").await;
    c.check("COPY a:c a:d DB 1", ":1\r\n").await;
    c.check(
        "COPY a:c secret DB 1",
        "-ERR no namespace owns key 'secret'\r\n",
    )
    .await;
    c.check("SELECT 1", "+OK\r\n").await;
    c.check("GET a:d", "$1\r\nv\r\n").await;
    c.check("SELECT 0", "+OK\r\n").await;
    c.check("COPY a:c a:d DB 0", ":1\r\n").await;
    c.check(
        "COPY a:c ro:d",
        "-READONLY namespace 'R' is read-only (read_only = true)\r\n",
    )
    .await;
    // Keys named after a subcommand are routed too.
    c.check(
        "OBJECT ENCODING secret",
        "-ERR no namespace owns key 'secret'\r\n",
    )
    .await;
    c.check(
        "MEMORY USAGE secret",
        "-ERR no namespace owns key 'secret'\r\n",
    )
    .await;
    c.check(
        "XINFO STREAM secret",
        "-ERR no namespace owns key 'secret'\r\n",
    )
    .await;
    // The *STORE forms: destination and sources checked alike.
    c.check("SADD a:set x", ":1\r\n").await;
    for cmd in [
        "SUNIONSTORE secret a:set",
        "SINTERSTORE a:d secret",
        "ZUNIONSTORE secret 1 a:set",
        "ZRANGESTORE secret a:set 0 -1",
        "GEOSEARCHSTORE secret a:g FROMMEMBER p BYRADIUS 1 km",
        "BITOP OR secret a:c",
        "PFMERGE secret a:c",
        "LMOVE a:list secret LEFT LEFT",
        "RENAME a:c secret",
        "LMPOP 1 secret LEFT",
        "EVAL x 1 secret",
    ] {
        c.check(cmd, "-ERR no namespace owns key 'secret'\r\n")
            .await;
    }
    for cmd in [
        "SUNIONSTORE ro:d a:set",
        "ZUNIONSTORE ro:d 1 a:set",
        "RENAME a:c ro:d",
    ] {
        c.check(
            cmd,
            "-READONLY namespace 'R' is read-only (read_only = true)\r\n",
        )
        .await;
    }
    // MIGRATE would move a key to another server: it does not exist here.
    let cmd = "MIGRATE 127.0.0.1 1 a:c 0 1000";
    c.send(&common::resp(&cmd.split(' ').collect::<Vec<_>>()))
        .await;
    let e = c.line_within(std::time::Duration::from_secs(5)).await;
    assert!(e.starts_with("-ERR unknown command"), "{cmd}: {e}");
    // MOVE keeps the key in its namespace, in another database.
    c.check("MOVE a:c 1", ":1\r\n").await;
    c.check("SELECT 1", "+OK\r\n").await;
    c.check("EXISTS a:c", ":1\r\n").await;
    c.check("SELECT 0", "+OK\r\n").await;
    // SWAPDB would swap the other tenants' keys too.
    let e = c.line("SWAPDB 0 1").await;
    assert!(
        e.starts_with("-ERR SWAPDB would move other namespaces' keys: namespace "),
        "{e}"
    );
}

#[tokio::test]
async fn other_commands_stay_in_the_namespace_on_redis() {
    let (_redis, kw, mut direct) = on_redis().await;
    let mut c = kw.raw().await;
    other_commands_cannot_escape(&mut c).await;
    direct.check("GET secret", "$6\r\nS3CRET\r\n").await;
    direct.check("GET tenantR:x", "$4\r\nkeep\r\n").await;
    direct.check("EXISTS tenantR:d tenantR:g", ":0\r\n").await;
    direct.check("TYPE tenantA:gd", "+zset\r\n").await;
}

#[tokio::test]
async fn other_commands_stay_in_the_namespace_on_memory() {
    let kw = on_memory().await;
    let mut c = kw.raw().await;
    other_commands_cannot_escape(&mut c).await;
}

#[tokio::test]
async fn keys_and_scan_patterns_list_only_namespaced_keys() {
    let (redis, kw, mut direct) = on_redis().await;
    let mut c = kw.raw().await;
    c.check("SET a:k 1", "+OK\r\n").await;
    // `secret` and the backend names of A's keys are not shown; B's and R's
    // keys appear under the client's names.
    c.send(&common::resp(&["KEYS", "*"])).await;
    let mut keys = String::from_utf8_lossy(&c.reply().await).into_owned();
    for hidden in ["secret", "tenant"] {
        assert!(!keys.contains(hidden), "{keys}");
    }
    for shown in ["a:k", "b:v", "ro:x"] {
        assert!(keys.contains(shown), "{keys}");
    }
    c.send(&common::resp(&[
        "SCAN", "0", "MATCH", "*e*", "COUNT", "1000",
    ]))
    .await;
    keys = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(!keys.contains("secret"), "{keys}");
    c.check("KEYS secre*", "*0\r\n").await;
    c.check("KEYS tenantB:*", "*0\r\n").await;
    c.check("EXISTS secret", "-ERR no namespace owns key 'secret'\r\n")
        .await;
    // FLUSHALL: nothing while a namespace is read-only, and otherwise only
    // the keys keyway's namespaces own.
    c.check(
        "FLUSHALL",
        "-READONLY namespace 'R' is read-only (read_only = true)\r\n",
    )
    .await;
    direct.check("DBSIZE", ":4\r\n").await;
    let only_a = Keyway::with_toml(&format!(
        "[backends.shared]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\
         [[namespaces]]\nname = \"A\"\nprefix = \"a:\"\nstrip_prefix = true\nkey_prefix = \"tenantA:\"\nbackend = \"shared\"\n",
        redis.port
    ))
    .await;
    only_a.raw().await.check("FLUSHALL", "+OK\r\n").await;
    direct.check("EXISTS tenantA:k", ":0\r\n").await;
    direct
        .check("EXISTS secret tenantB:v tenantR:x", ":3\r\n")
        .await;
}

#[tokio::test]
async fn channels_of_other_applications_stay_hidden() {
    let (redis, kw, mut direct) = on_redis().await;
    // Subscribers of the server's own: another application's channel, and
    // B's under its backend name.
    let mut other = Raw(tokio::net::TcpStream::connect(("127.0.0.1", redis.port))
        .await
        .expect("connect"));
    other
        .send(&common::resp(&["SUBSCRIBE", "secretchan", "tenantB:news"]))
        .await;
    other.reply().await;
    other.reply().await;
    let mut c = kw.raw().await;
    c.check("PUBSUB CHANNELS", "*1\r\n$6\r\nb:news\r\n").await;
    c.check("PUBSUB CHANNELS secret*", "*0\r\n").await;
    c.check("PUBSUB CHANNELS *news", "*1\r\n$6\r\nb:news\r\n")
        .await;
    c.check(
        "PUBSUB NUMSUB secretchan b:news tenantB:news",
        "*6\r\n$10\r\nsecretchan\r\n:0\r\n$6\r\nb:news\r\n:1\r\n$12\r\ntenantB:news\r\n:0\r\n",
    )
    .await;
    c.check("PUBSUB NUMPAT", ":0\r\n").await;

    // A namespace that keeps its names on the server (no key_prefix): its
    // pattern subscription never shows a channel outside its prefix.
    let kw = Keyway::with_toml(&format!(
        "[backends.shared]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\
         [[namespaces]]\nname = \"X\"\nprefix = \"x:\"\nbackend = \"shared\"\n",
        redis.port
    ))
    .await;
    let mut s = kw.raw().await;
    s.send(&common::resp(&["PSUBSCRIBE", "x*"])).await;
    s.expect("*3\r\n$10\r\npsubscribe\r\n$2\r\nx*\r\n:1\r\n")
        .await;
    direct.check("PUBLISH xsecret leaked", ":1\r\n").await;
    direct.check("PUBLISH x:news fine", ":1\r\n").await;
    s.expect("*4\r\n$8\r\npmessage\r\n$2\r\nx*\r\n$6\r\nx:news\r\n$4\r\nfine\r\n")
        .await;
}
