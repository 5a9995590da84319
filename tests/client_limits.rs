//! What clients make keyway hold, measured with the allocator's own count:
//! buffers grow only as data arrives, a client that does not read is held
//! back or closed at its output limit, client memory has a bound of its
//! own, and no client buffer counts against the store's `max_memory`.
//!
//! One test, run step by step, because it reads the process's allocated
//! memory: tests running beside it would blur the figures.

mod common;

use std::time::Duration;

use common::{Keyway, resp};
use keyway::wire::alloc::{allocated, clients, data};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedReadHalf;

const MB: usize = 1 << 20;

fn memory_config(server: &str, backend: &str) -> String {
    format!(
        "[server]\n{server}\n[backends.m]\ntype = \"memory\"\n{backend}\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n"
    )
}

async fn info(kw: &Keyway, section: &str) -> String {
    let mut c = kw.raw().await;
    c.send(&resp(&["INFO", section])).await;
    String::from_utf8_lossy(&c.reply().await).into_owned()
}

fn field(info: &str, name: &str) -> u64 {
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

/// A client that sends and never reads: its read half, kept open, and
/// the task writing its requests (closed with it).
struct Deaf(OwnedReadHalf, tokio::task::AbortHandle);

impl Drop for Deaf {
    fn drop(&mut self) {
        self.1.abort();
    }
}

impl Deaf {
    /// Sends `bytes` (in the background: the write stalls once keyway
    /// stops reading) and never reads a reply.
    async fn new(kw: &Keyway, bytes: Vec<u8>) -> Deaf {
        let stream = TcpStream::connect(kw.addr).await.unwrap();
        let (rd, mut wr) = stream.into_split();
        let task = tokio::spawn(async move {
            let _ = wr.write_all(&bytes).await;
            // Half-closing would look like a client leaving.
            std::future::pending::<()>().await;
            drop(wr);
        });
        Deaf(rd, task.abort_handle())
    }

    /// Whether keyway closed the connection within `wait`. Reads nothing
    /// until then (a client that reads is not deaf), then drains what
    /// keyway wrote before closing.
    async fn closed_within(&mut self, wait: Duration) -> bool {
        tokio::time::sleep(wait).await;
        let mut b = vec![0u8; 1 << 20];
        loop {
            match tokio::time::timeout(Duration::from_millis(500), self.0.read(&mut b)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

fn repeated(words: &[&str], n: usize) -> Vec<u8> {
    let one = resp(words);
    let mut all = Vec::with_capacity(one.len() * n);
    for _ in 0..n {
        all.extend_from_slice(&one);
    }
    all
}

/// Waits for what earlier steps freed to be freed, so that a step's
/// figures are its own: the allocated count holds still for 200 ms.
async fn settle() -> usize {
    let mut last = allocated();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = allocated();
        if now.abs_diff(last) < 256 * 1024 {
            return now;
        }
        last = now;
    }
    last
}

async fn set(kw: &Keyway, key: &str, value: &str) {
    let mut c = kw.raw().await;
    c.send(&resp(&["SET", key, value])).await;
    c.expect("+OK\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_balloon_keyway() {
    let value = "x".repeat(MB);

    // 0. What a client costs is counted as client memory, within a few
    //    hundred bytes (the test's own end of each socket is not).
    let kw = Keyway::start().await;
    let (a0, c0) = (allocated(), clients());
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(kw.raw().await);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a1, c1) = (allocated() - a0, clients() - c0);
    assert!(
        c1 <= a1 + 500 * 400 && a1 <= c1 + 500 * 400,
        "idle: {a1} allocated, {c1} counted"
    );
    for c in idle.iter_mut() {
        c.check("PING", "+PONG\r\n").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (a1, c1) = (allocated() - a0, clients() - c0);
    assert!(
        c1 <= a1 + 500 * 2048 && a1 <= c1 + 500 * 2048,
        "served: {a1} allocated, {c1} counted"
    );
    drop(idle);
    drop(kw);

    // 1. A bulk header announcing 500 MB reserves nothing; the bytes that
    //    come are held, and no more.
    let kw = Keyway::start().await;
    let mut c = kw.raw().await;
    let before = allocated();
    c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$500000000\r\n")
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grew = allocated().saturating_sub(before);
    assert!(grew < 4 * MB, "a bulk header reserved {grew} bytes");
    c.send(&vec![b'a'; 8 * MB]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let grew = allocated().saturating_sub(before);
    assert!(grew < 20 * MB, "8 MB of a bulk took {grew} bytes");
    drop(c);

    // 2. A client that never reads its replies is held back: keyway stops
    //    reading from it instead of buffering 2,000 replies of 1 MB.
    set(&kw, "big", &value).await;
    let before = settle().await;
    let deaf = Deaf::new(&kw, repeated(&["GET", "big"], 2000)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grew = allocated().saturating_sub(before);
    eprintln!("a client not reading 2,000 GETs of 1 MB: keyway holds {grew} bytes");
    assert!(
        grew < 24 * MB,
        "a client not reading made keyway hold {grew} bytes"
    );
    // It is still served (nothing set a limit), and others are too.
    set(&kw, "other", "v").await;
    drop(deaf);
    drop(kw);

    // 2b. The same through a redis backend: replies come from Redis in
    //     segments, not all at once.
    let redis = common::RedisServer::start();
    let kw = Keyway::with_toml(&format!(
        "[backends.r]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:{}\"\n\
         [[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"r\"\n",
        redis.port
    ))
    .await;
    set(&kw, "big", &value).await;
    let before = settle().await;
    let deaf = Deaf::new(&kw, repeated(&["GET", "big"], 2000)).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grew = allocated().saturating_sub(before);
    eprintln!("the same through a redis backend: {grew} bytes");
    assert!(
        grew < 24 * MB,
        "through redis, a client not reading made keyway hold {grew} bytes"
    );
    set(&kw, "other", "v").await;
    drop(deaf);
    drop(kw);
    drop(redis);

    // 3. client_output_buffer_limit: past the soft limit for its seconds,
    //    the client is closed, as Redis closes it; a single reply over the
    //    hard limit closes it unanswered.
    let kw = Keyway::with_toml(&memory_config(
        "client_output_buffer_limit = { normal = \"0 256kb 1\" }",
        "",
    ))
    .await;
    set(&kw, "big", &value).await;
    let mut deaf = Deaf::new(&kw, repeated(&["GET", "big"], 200)).await;
    assert!(
        deaf.closed_within(Duration::from_secs(3)).await,
        "a client over the soft limit stays"
    );
    let stats = info(&kw, "stats").await;
    assert_eq!(
        field(&stats, "client_output_buffer_limit_disconnections"),
        1
    );
    drop(kw);
    let kw = Keyway::with_toml(&memory_config(
        "client_output_buffer_limit = { normal = \"100000 0 0\" }",
        "",
    ))
    .await;
    set(&kw, "k", &"y".repeat(200_000)).await;
    let mut c = kw.raw().await;
    c.send(&resp(&["GET", "k"])).await;
    c.expect_closed().await;
    let mut c = kw.raw().await;
    c.check("CONFIG GET client-output-buffer-limit", "*2\r\n$26\r\nclient-output-buffer-limit\r\n$72\r\nnormal 100000 0 0 slave 268435456 67108864 60 pubsub 33554432 8388608 60\r\n").await;
    drop(kw);

    // 4. A subscriber that does not read is closed at the pubsub class's
    //    limit (Redis's default: 32 MB), and its queue is freed.
    let kw = Keyway::start().await;
    let before = clients();
    let mut sub = Deaf::new(&kw, resp(&["SUBSCRIBE", "ch"])).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut publisher = kw.raw().await;
    for _ in 0..80 {
        publisher.send(&resp(&["PUBLISH", "ch", &value])).await;
        publisher.reply().await;
    }
    assert!(
        sub.closed_within(Duration::from_secs(1)).await,
        "a subscriber over its limit stays"
    );
    common::until("the subscriber's queue to be freed", 5, || async {
        clients() <= before + 8 * MB
    })
    .await;
    drop(kw);

    // 5. max_memory_clients: clients holding the most are closed once all
    //    of them hold more; the others are served.
    let kw = Keyway::with_toml(&memory_config("max_memory_clients = \"8mb\"", "")).await;
    set(&kw, "big", &value).await;
    let mut flood = Vec::new();
    for _ in 0..8 {
        flood.push(Deaf::new(&kw, repeated(&["GET", "big"], 100)).await);
    }
    common::until("clients to be evicted", 10, || async {
        field(&info(&kw, "stats").await, "evicted_clients") > 0
    })
    .await;
    set(&kw, "still", "served").await;
    let memory = info(&kw, "memory").await;
    assert_eq!(field(&memory, "maxmemory_clients"), 8 * MB as u64);
    drop(flood);
    drop(kw);

    // 6. Half-sent requests hold about their own size.
    let kw = Keyway::start().await;
    let before = settle().await;
    let mut halves = Vec::new();
    for _ in 0..500 {
        let mut c = kw.raw().await;
        c.send(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$10\r\nabc").await;
        halves.push(c);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let each = allocated().saturating_sub(before) / 500;
    eprintln!("a half-sent request holds {each} bytes (with its connection)");
    assert!(each < 10 * 1024, "a half-sent request holds {each} bytes");
    drop(halves);
    drop(kw);

    // 7. Client buffers never count against max_memory: with the store
    //    full, clients that have not authenticated pile up buffers, and an
    //    authenticated client's write still fits.
    let max = data() + 24 * MB;
    let kw = Keyway::with_toml(&memory_config(
        "password = \"pw\"",
        &format!("max_memory = {max}"),
    ))
    .await;
    let mut owner = kw.raw().await;
    owner.check("AUTH pw", "+OK\r\n").await;
    let chunk = "z".repeat(64 * 1024);
    let mut stored = 0;
    loop {
        owner
            .send(&resp(&["SET", &format!("fill{stored}"), &chunk]))
            .await;
        if owner.reply().await != b"+OK\r\n" {
            break;
        }
        stored += 1;
        assert!(stored < 10_000, "max_memory never reached");
    }
    // Room for a few more values.
    owner
        .check(
            "DEL fill0 fill1 fill2 fill3 fill4 fill5 fill6 fill7 fill8 fill9",
            ":10\r\n",
        )
        .await;
    let mut strangers = Vec::new();
    let field16k = "p".repeat(16 * 1024);
    let mut partial = resp(&[
        "AUTH", &field16k, &field16k, &field16k, &field16k, &field16k, &field16k, &field16k,
        &field16k, &field16k,
    ]);
    partial.truncate(partial.len() - 100);
    for _ in 0..300 {
        let mut c = kw.raw().await;
        c.send(&partial).await;
        strangers.push(c);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(clients() > 30 * MB, "strangers hold {} bytes", clients());
    owner.send(&resp(&["SET", "mine", &chunk])).await;
    owner.expect("+OK\r\n").await;
    owner.send(&resp(&["INFO", "memory"])).await;
    let memory = String::from_utf8_lossy(&owner.reply().await).into_owned();
    assert!(field(&memory, "mem_clients_normal") > 30 * MB as u64);
    drop(strangers);
}
