//! Databases (SELECT): on the memory backend sixteen keyspaces with MOVE,
//! SWAPDB, FLUSHDB and FLUSHALL, compared byte for byte with a real
//! redis-server; on a redis backend the server's database of the same
//! number, for pipelined, blocking and watched commands alike; backends
//! without databases refuse any but 0 by name.

mod common;

use common::{Keyway, MemcachedServer, RedisServer, same_replies};

#[tokio::test]
async fn sixteen_databases_on_the_memory_backend_as_in_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    same_replies(
        &mut r,
        &mut k,
        &[
            &[b"SET", b"k", b"zero"],
            &[b"SELECT", b"9"],
            &[b"GET", b"k"],
            &[b"SET", b"k", b"nine"],
            &[b"RPUSH", b"list", b"a", b"b"],
            &[b"DBSIZE"],
            &[b"KEYS", b"l*"],
            &[b"SELECT", b"0"],
            &[b"GET", b"k"],
            &[b"DBSIZE"],
            // The bounds of SELECT: 0 to databases - 1.
            &[b"SELECT", b"15"],
            &[b"SELECT", b"16"],
            &[b"SELECT", b"-1"],
            &[b"SELECT", b"x"],
            &[b"SELECT", b"9"],
            // MOVE, with Redis's checks in Redis's order.
            &[b"MOVE", b"k", b"0"],
            &[b"MOVE", b"k", b"3"],
            &[b"MOVE", b"k", b"9"],
            &[b"MOVE", b"k", b"16"],
            &[b"MOVE", b"k", b"x"],
            &[b"MOVE", b"nokey", b"3"],
            &[b"EXISTS", b"k"],
            &[b"EXPIRE", b"list", b"100"],
            &[b"MOVE", b"list", b"3"],
            &[b"SELECT", b"3"],
            &[b"GET", b"k"],
            &[b"TTL", b"list"],
            // SWAPDB exchanges whole databases.
            &[b"SWAPDB", b"0", b"3"],
            &[b"GET", b"k"],
            &[b"SELECT", b"0"],
            &[b"GET", b"k"],
            &[b"SWAPDB", b"0", b"16"],
            &[b"SWAPDB", b"x", b"1"],
            &[b"SWAPDB", b"1", b"x"],
            &[b"SWAPDB", b"2", b"2"],
            // FLUSHDB empties one, FLUSHALL all.
            &[b"SELECT", b"3"],
            &[b"FLUSHDB"],
            &[b"DBSIZE"],
            &[b"SELECT", b"0"],
            &[b"DBSIZE"],
            &[b"SELECT", b"5"],
            &[b"SET", b"x", b"1"],
            &[b"FLUSHALL"],
            &[b"DBSIZE"],
            &[b"SELECT", b"0"],
            &[b"DBSIZE"],
            // WATCH in one database, a write there from another client
            // shows at EXEC; RESET goes back to 0.
            &[b"SELECT", b"4"],
            &[b"SET", b"w", b"1"],
            &[b"WATCH", b"w"],
            &[b"MULTI"],
            &[b"GET", b"w"],
            &[b"EXEC"],
            &[b"RESET"],
            &[b"GET", b"w"],
        ],
    )
    .await;
    // CLIENT LIST shows the database.
    let mut c = kw.raw().await;
    c.check("SELECT 7", "+OK\r\n").await;
    c.send(b"CLIENT INFO\r\n").await;
    let list = String::from_utf8_lossy(&c.reply().await).into_owned();
    assert!(list.contains(" db=7 "), "{list}");
}

#[tokio::test]
async fn a_redis_backend_serves_the_database_of_the_same_number() {
    let redis = RedisServer::start();
    let kw = Keyway::with_toml(&format!(
        "[backends.r]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"r\"\n",
        redis.port
    ))
    .await;
    let mut c = kw.raw().await;
    c.check("SET k zero", "+OK\r\n").await;
    c.check("SELECT 5", "+OK\r\n").await;
    c.check("GET k", "$-1\r\n").await;
    // Pipelined writes and reads stay in database 5.
    c.send(b"SET k five\r\nRPUSH l a\r\nGET k\r\nDBSIZE\r\n")
        .await;
    c.expect("+OK\r\n:1\r\n$4\r\nfive\r\n:2\r\n").await;
    // A blocking command on a connection of its own, in database 5 too.
    c.check("BLPOP l 1", "*2\r\n$1\r\nl\r\n$1\r\na\r\n").await;
    // WATCH and MULTI on a pinned connection.
    c.check("WATCH k", "+OK\r\n").await;
    c.check("MULTI", "+OK\r\n").await;
    c.check("GET k", "+QUEUED\r\n").await;
    c.check("EXEC", "*1\r\n$4\r\nfive\r\n").await;
    c.check("MOVE k 6", ":1\r\n").await;
    c.check("FLUSHDB", "+OK\r\n").await;
    c.check("SELECT 0", "+OK\r\n").await;
    c.check("GET k", "$4\r\nzero\r\n").await;
    // On the server: each key in the database of its client.
    let mut direct = redis.raw().await;
    direct.check("GET k", "$4\r\nzero\r\n").await;
    direct.check("SELECT 6", "+OK\r\n").await;
    direct.check("GET k", "$4\r\nfive\r\n").await;
    direct.check("SELECT 5", "+OK\r\n").await;
    direct.check("DBSIZE", ":0\r\n").await;
    // FLUSHALL empties every database the clients can select.
    c.check("FLUSHALL", "+OK\r\n").await;
    direct.check("SELECT 6", "+OK\r\n").await;
    direct.check("DBSIZE", ":0\r\n").await;
    // The namespace holds the whole server: FLUSHALL queues in MULTI and
    // runs there, in its place.
    c.check("SET a 1", "+OK\r\n").await;
    c.check("MULTI", "+OK\r\n").await;
    c.check("SET b 1", "+QUEUED\r\n").await;
    c.check("FLUSHALL", "+QUEUED\r\n").await;
    c.check("SET c 1", "+QUEUED\r\n").await;
    c.check("EXEC", "*3\r\n+OK\r\n+OK\r\n+OK\r\n").await;
    c.check("MGET a b c", "*3\r\n$-1\r\n$-1\r\n$1\r\n1\r\n")
        .await;
}

#[tokio::test]
async fn backends_without_databases_refuse_all_but_the_first() {
    let m = MemcachedServer::start();
    let kw = Keyway::with_toml(&format!(
        "[backends.local]\ntype = \"memory\"\n\
         [backends.mc]\ntype = \"memcached\"\nservers = [\"{}\"]\n\
         [[namespaces]]\nname = \"default\"\nprefix = \"\"\nbackend = \"local\"\n\
         [[namespaces]]\nname = \"cache\"\nprefix = \"mc:\"\nbackend = \"mc\"\n",
        m.addr()
    ))
    .await;
    let mut c = kw.raw().await;
    c.check("SET mc:a 1", "+OK\r\n").await;
    c.check("SELECT 2", "+OK\r\n").await;
    c.check(
        "GET mc:a",
        "-ERR this key's namespace is on a memcached backend, which has only database 0 (the client selected 2)\r\n",
    )
    .await;
    // The memory namespace has its database 2; the keyspace skips memcached.
    c.check("SET a 2", "+OK\r\n").await;
    c.check("DBSIZE", ":1\r\n").await;
    c.check("FLUSHDB", "+OK\r\n").await;
    c.check("SELECT 0", "+OK\r\n").await;
    c.check("GET mc:a", "$1\r\n1\r\n").await;
    // The memory namespace alone on its backend swaps its databases; the
    // memcached one has none to swap.
    c.check("SWAPDB 0 1", "+OK\r\n").await;
    c.check("GET mc:a", "$1\r\n1\r\n").await;
}

#[tokio::test]
async fn swapdb_is_refused_where_it_would_move_another_namespaces_keys() {
    let kw = Keyway::with_toml(
        "[backends.local]\ntype = \"memory\"\n\
         [[namespaces]]\nname = \"a\"\nprefix = \"a:\"\nbackend = \"local\"\n\
         [[namespaces]]\nname = \"b\"\nprefix = \"b:\"\nbackend = \"local\"\n",
    )
    .await;
    let mut c = kw.raw().await;
    c.check("SET b:x 1", "+OK\r\n").await;
    c.check(
        "SWAPDB 0 1",
        "-ERR SWAPDB would move other namespaces' keys: namespace 'a' shares its memory backend\r\n",
    )
    .await;
    c.check("GET b:x", "$1\r\n1\r\n").await;
}

const ONE: &str = "[backends.local]\ntype = \"memory\"\n\
    [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"local\"\n";

#[tokio::test]
async fn the_number_of_databases_is_checked_in_the_config() {
    for (n, ok) in [(0, false), (1, true), (256, true), (257, false)] {
        let text = format!("{ONE}[server]\ndatabases = {n}\n");
        let parsed = keyway::ops::config::Config::parse(&text, "t.toml");
        assert_eq!(parsed.is_ok(), ok, "databases = {n}: {parsed:?}");
        if let Err(e) = parsed {
            assert!(e.to_string().contains("server.databases"), "{e}");
        }
    }
    // One database: SELECT 1 is out of range.
    let kw = Keyway::with_toml(&format!("{ONE}[server]\ndatabases = 1\n")).await;
    let mut c = kw.raw().await;
    c.check("SELECT 1", "-ERR DB index is out of range\r\n")
        .await;
    c.check("SELECT 0", "+OK\r\n").await;
}

#[tokio::test]
async fn copy_into_another_database_as_in_redis() {
    let redis = RedisServer::start();
    let kw = Keyway::start().await;
    let (mut r, mut k) = (redis.raw().await, kw.raw().await);
    common::same_replies_words(
        &mut r,
        &mut k,
        &[
            "RPUSH l a b",
            "COPY l l DB 0",
            "COPY l l DB 1",
            "COPY l l DB 1",
            "COPY l l DB 1 REPLACE",
            "COPY l m DB 16",
            "COPY l m DB x",
            "COPY l m DB",
            "COPY nosuch m DB 1",
            "SELECT 1",
            "LRANGE l 0 -1",
            "COPY l l2 DB 0",
            "SELECT 0",
            "LRANGE l2 0 -1",
            // Both indexes read before either is range-checked.
            "SWAPDB -1 x",
            "SWAPDB x -1",
            "SWAPDB 0 99",
        ],
    )
    .await;
}
