//! Test harness: keyway in-process on a free port, and a raw client that
//! asserts replies byte for byte.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use keyway::ops::Instance;
use keyway::ops::config::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// A running keyway; dropping it shuts the server down.
pub struct Keyway {
    pub addr: SocketAddr,
    pub shared: std::sync::Arc<keyway::server::shared::Shared>,
    /// Reloads and what they work on.
    pub ops: std::sync::Arc<keyway::ops::reload::Operations>,
    stop: Option<oneshot::Sender<()>>,
}

impl Drop for Keyway {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

impl Keyway {
    /// Starts keyway with the built-in default config (one memory namespace).
    pub async fn start() -> Keyway {
        Keyway::with_config(Config::default()).await
    }

    /// Starts keyway from config text; its listen address is replaced by port 0.
    pub async fn with_toml(text: &str) -> Keyway {
        let config = Config::parse(text, "test.toml").expect("test config is valid");
        Keyway::with_config(config).await
    }

    /// Starts keyway from a config file, which reloads re-read. The file's
    /// listen address should be 127.0.0.1:0, as keyway runs with it here.
    pub async fn from_file(path: &std::path::Path) -> Keyway {
        let config = Config::load(path).expect("test config is valid");
        let kw = Keyway::with_config(config).await;
        kw.ops.set_source(keyway::ops::reload::Source {
            path: Some(path.to_path_buf()),
            listen_override: None,
        });
        kw
    }

    pub async fn with_config(config: Config) -> Keyway {
        Keyway::with_config_at(config, "127.0.0.1:0").await
    }

    /// Starts keyway listening on `listen` (`0.0.0.0:0` to be reached from
    /// other addresses of this host).
    pub async fn with_config_at(mut config: Config, listen: &str) -> Keyway {
        config.server.listen = listen.into();
        let instance = Instance::bind(config).await.expect("bind");
        let addr = instance.local_addr();
        let shared = instance.shared();
        let ops = instance.operations();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(instance.run(async {
            let _ = rx.await;
        }));
        Keyway {
            addr,
            shared,
            ops,
            stop: Some(tx),
        }
    }

    pub async fn raw(&self) -> Raw {
        Raw(TcpStream::connect(self.addr).await.expect("connect"))
    }

    pub async fn client(&self) -> redis::aio::MultiplexedConnection {
        connect(&format!("redis://{}/", self.addr))
            .await
            .expect("redis crate connects")
    }
}

/// A plain TCP client speaking RESP by hand.
pub struct Raw(pub TcpStream);

/// Encodes words as a RESP multibulk.
/// A redis-crate connection whose replies may take as long as a loaded CI
/// machine needs: the crate's default gives up after 500 ms, and a CLUSTER
/// SETSLOT (which fsyncs nodes.conf) or a first reply under two busy cores
/// can take longer.
pub async fn connect(url: &str) -> redis::RedisResult<redis::aio::MultiplexedConnection> {
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&patient())
        .await
}

/// The connection settings tests use: see [`connect`].
pub fn patient() -> redis::AsyncConnectionConfig {
    redis::AsyncConnectionConfig::new()
        .set_response_timeout(Some(Duration::from_secs(30)))
        .set_connection_timeout(Some(Duration::from_secs(10)))
}

pub fn resp(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for w in words {
        out.extend_from_slice(format!("${}\r\n{w}\r\n", w.len()).as_bytes());
    }
    out
}

impl Raw {
    pub async fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).await.expect("write");
    }

    /// Reads exactly `expected.len()` bytes and compares them.
    pub async fn expect(&mut self, expected: &str) {
        let mut got = vec![0u8; expected.len()];
        tokio::time::timeout(Duration::from_secs(5), self.0.read_exact(&mut got))
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {expected:?}"))
            .unwrap_or_else(|e| panic!("reading {expected:?}: {e}"));
        assert_eq!(String::from_utf8_lossy(&got), expected);
    }

    /// Sends a command and reads a one-line reply (status, error, integer).
    pub async fn line(&mut self, cmd: &str) -> String {
        let words: Vec<&str> = cmd.split(' ').collect();
        self.send(&resp(&words)).await;
        self.line_within(Duration::from_secs(5)).await
    }

    /// Reads one line (a status, error or integer reply), waiting up to
    /// `wait` for it.
    pub async fn line_within(&mut self, wait: Duration) -> String {
        let mut got = Vec::new();
        let mut b = [0u8; 1];
        while !got.ends_with(b"\r\n") {
            let n = tokio::time::timeout(wait, self.0.read(&mut b))
                .await
                .expect("a reply in time")
                .expect("read");
            assert_eq!(n, 1, "connection closed");
            got.push(b[0]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Reads one whole RESP2 reply and returns its bytes.
    pub async fn reply(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.frame(&mut out).await;
        out
    }

    async fn head_line(&mut self, out: &mut Vec<u8>) -> String {
        let start = out.len();
        let mut b = [0u8; 1];
        while !out[start..].ends_with(b"\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(5), self.0.read(&mut b))
                .await
                .expect("reply within 5 s")
                .expect("read");
            assert_eq!(n, 1, "connection closed");
            out.push(b[0]);
        }
        String::from_utf8_lossy(&out[start..out.len() - 2]).into_owned()
    }

    fn frame<'a>(
        &'a mut self,
        out: &'a mut Vec<u8>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + 'a>> {
        Box::pin(async move {
            let head = self.head_line(out).await;
            let n: i64 = head[1..].parse().unwrap_or(0);
            match head.as_bytes()[0] {
                b'$' if n >= 0 => {
                    let mut body = vec![0u8; n as usize + 2];
                    self.0.read_exact(&mut body).await.expect("bulk body");
                    out.extend_from_slice(&body);
                }
                b'*' | b'~' | b'>' => {
                    for _ in 0..n.max(0) {
                        self.frame(out).await;
                    }
                }
                b'%' => {
                    for _ in 0..n.max(0) * 2 {
                        self.frame(out).await;
                    }
                }
                _ => {}
            }
        })
    }

    /// Reads until what arrived ends with `end`, for replies too deep for
    /// [`Raw::reply`].
    pub async fn read_until(&mut self, end: &[u8]) -> Vec<u8> {
        let mut got = Vec::new();
        let mut b = [0u8; 65536];
        while !got.ends_with(end) {
            let n = tokio::time::timeout(Duration::from_secs(10), self.0.read(&mut b))
                .await
                .expect("reply within 10 s")
                .expect("read");
            assert!(n > 0, "connection closed after {} bytes", got.len());
            got.extend_from_slice(&b[..n]);
        }
        got
    }

    /// Reads whatever arrives within `wait`, as text.
    pub async fn read_for(&mut self, wait: Duration) -> String {
        let mut got = Vec::new();
        let deadline = tokio::time::Instant::now() + wait;
        let mut b = [0u8; 4096];
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.0.read(&mut b)).await {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Sends a command (split on spaces) and checks the whole reply.
    pub async fn check(&mut self, cmd: &str, expected: &str) {
        let words: Vec<&str> = cmd.split(' ').collect();
        self.send(&resp(&words)).await;
        self.expect(expected).await;
    }

    /// Waits for the server to close the connection.
    pub async fn expect_closed(&mut self) {
        let mut b = [0u8; 1];
        let n = tokio::time::timeout(Duration::from_secs(5), self.0.read(&mut b))
            .await
            .expect("server closes the connection")
            .unwrap_or(0);
        assert_eq!(n, 0, "connection still open");
    }
}

/// Every key one full SCAN returns (COUNT `count`), in order, with any
/// duplicates kept for the caller to check.
pub async fn scan_all(c: &mut redis::aio::MultiplexedConnection, count: usize) -> Vec<String> {
    let mut seen = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(count)
            .query_async(c)
            .await
            .expect("SCAN");
        seen.extend(batch);
        if next == 0 {
            return seen;
        }
        cursor = next;
    }
}

/// Polls `check` every 20 ms until it holds; fails the test after `secs`
/// seconds, naming `what` it waited for.
pub async fn until<F, Fut>(what: &str, secs: u64, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free TCP port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A redis-server process of the test's own on a free port; killed on drop.
pub struct RedisServer {
    pub port: u16,
    args: Vec<String>,
    child: Option<std::process::Child>,
    /// Its working directory, its own: a `dump.rdb` left in the tests'
    /// directory must not load into it.
    dir: std::path::PathBuf,
}

impl RedisServer {
    pub fn start() -> RedisServer {
        RedisServer::with_args(&[])
    }

    /// Starts with extra arguments; `{port}` in them is the chosen port.
    pub fn with_args(extra: &[&str]) -> RedisServer {
        // A port found free can be taken again before redis-server binds it:
        // then it exits, and another port is tried.
        for _ in 0..5 {
            let port = free_port();
            let mut server = RedisServer {
                dir: std::env::temp_dir()
                    .join(format!("keyway-test-redis-{}-{port}", std::process::id())),
                port,
                args: extra
                    .iter()
                    .map(|a| a.replace("{port}", &port.to_string()))
                    .collect(),
                child: None,
            };
            if server.launch() {
                return server;
            }
            server.kill();
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// (Re)starts the process on the same port.
    pub fn restart(&mut self) {
        assert!(
            self.launch(),
            "redis-server did not start on port {}",
            self.port
        );
    }

    /// Starts the process; true once it accepts connections and is still
    /// running (one that lost its port exits at once).
    fn launch(&mut self) -> bool {
        let has_port = self.args.iter().any(|a| a == "--port");
        let mut cmd = std::process::Command::new("redis-server");
        if !has_port {
            cmd.args(["--port", &self.port.to_string()]);
        }
        if !self.args.iter().any(|a| a == "--dir") {
            let _ = std::fs::create_dir_all(&self.dir);
            cmd.arg("--dir").arg(&self.dir);
        }
        cmd.args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(&self.args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = cmd
            .spawn()
            .expect("redis-server is installed (scripts/test.sh installs it)");
        let probe = self
            .args
            .iter()
            .position(|a| a == "--port")
            .and_then(|i| self.args.get(i + 1))
            .and_then(|p| p.parse::<u16>().ok())
            .filter(|&p| p != 0)
            .unwrap_or(self.port);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let up = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break false;
            }
            if std::net::TcpStream::connect(("127.0.0.1", probe)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                break matches!(child.try_wait(), Ok(None));
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = Some(child);
        up
    }

    /// Sends a signal to the process (STOP and CONT freeze and thaw it).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            assert!(ok, "kill -{sig} failed");
            if sig == "STOP" {
                wait_stopped(c.id());
            }
        }
    }

    /// Kills the process (SIGKILL: no goodbye to connected clients).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A raw connection straight to the server.
    pub async fn raw(&self) -> Raw {
        Raw(tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect to redis-server"))
    }

    /// A direct connection, bypassing keyway.
    pub async fn direct(&self) -> redis::aio::MultiplexedConnection {
        connect(&format!("redis://127.0.0.1:{}/", self.port))
            .await
            .expect("direct connection to redis-server")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis Cluster of the test's own: masters on free ports, the slots
/// split evenly between them, no replicas. Its node files live in a
/// directory removed on drop.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Each node's cluster id, in the order of `nodes`.
    pub ids: Vec<String>,
    dir: std::path::PathBuf,
    buses: Vec<String>,
    /// The first `masters` nodes are the masters that `start` made.
    masters: usize,
}

/// A cluster-enabled redis-server. A node that stops answering is failed
/// over after a second, not Redis's default 15.
fn cluster_node(file: &str, bus: &str, extra: &[String]) -> RedisServer {
    let mut args = vec![
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        file,
        "--cluster-port",
        bus,
        "--cluster-node-timeout",
        "1000",
    ];
    args.extend(extra.iter().map(String::as_str));
    RedisServer::with_args(&args)
}

impl RedisCluster {
    pub async fn start(masters: usize) -> RedisCluster {
        RedisCluster::start_with(masters, Vec::new).await
    }

    /// As `start`, each node started with the arguments `extra` gives.
    pub async fn start_with(masters: usize, extra: impl Fn() -> Vec<String>) -> RedisCluster {
        let dir = std::env::temp_dir().join(format!(
            "keyway-cluster-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).expect("cluster directory");
        let mut nodes = Vec::new();
        let mut buses = Vec::new();
        for _ in 0..masters {
            let bus = free_port().to_string();
            let file = dir.join("nodes-{port}.conf").display().to_string();
            nodes.push(cluster_node(&file, &bus, &extra()));
            buses.push(bus);
        }
        let mut conns = Vec::new();
        for n in &nodes {
            conns.push(n.direct().await);
        }
        let per = 16384 / masters;
        let mut ids = Vec::new();
        for (i, c) in conns.iter_mut().enumerate() {
            let last = if i + 1 == masters {
                16383
            } else {
                (i + 1) * per - 1
            };
            let _: () = redis::cmd("CLUSTER")
                .arg("ADDSLOTSRANGE")
                .arg(i * per)
                .arg(last)
                .query_async(c)
                .await
                .expect("CLUSTER ADDSLOTSRANGE");
            let id: String = redis::cmd("CLUSTER")
                .arg("MYID")
                .query_async(c)
                .await
                .expect("CLUSTER MYID");
            ids.push(id);
        }
        for (n, bus) in nodes.iter().zip(&buses).skip(1) {
            let _: () = redis::cmd("CLUSTER")
                .arg("MEET")
                .arg("127.0.0.1")
                .arg(n.port)
                .arg(bus)
                .query_async(&mut conns[0])
                .await
                .expect("CLUSTER MEET");
        }
        // Gossip takes a moment: every node must know every slot's master.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        'wait: loop {
            assert!(
                std::time::Instant::now() < deadline,
                "the cluster did not come up"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            for c in conns.iter_mut() {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query_async(c)
                    .await
                    .expect("CLUSTER INFO");
                if !info.contains("cluster_state:ok")
                    || !info.contains(&format!("cluster_known_nodes:{masters}"))
                {
                    continue 'wait;
                }
            }
            break;
        }
        RedisCluster {
            nodes,
            ids,
            dir,
            buses,
            masters,
        }
    }

    /// Starts a replica of master `of`, once it has copied the master's
    /// data; returns its index in `nodes`.
    pub async fn add_replica(&mut self, of: usize) -> usize {
        let bus = free_port().to_string();
        let file = self.dir.join("nodes-{port}.conf").display().to_string();
        let node = cluster_node(&file, &bus, &[]);
        let mut first = self.nodes[0].direct().await;
        let _: () = redis::cmd("CLUSTER")
            .arg("MEET")
            .arg("127.0.0.1")
            .arg(node.port)
            .arg(&bus)
            .query_async(&mut first)
            .await
            .expect("CLUSTER MEET");
        let mut c = node.direct().await;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            // REPLICATE fails until the replica has heard of the master.
            let r: redis::RedisResult<()> = redis::cmd("CLUSTER")
                .arg("REPLICATE")
                .arg(&self.ids[of])
                .query_async(&mut c)
                .await;
            if r.is_ok() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "REPLICATE: {r:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        loop {
            let info: String = redis::cmd("INFO")
                .arg("replication")
                .query_async(&mut c)
                .await
                .expect("INFO");
            if info.contains("master_link_status:up") {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "replica never synced");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let id: String = redis::cmd("CLUSTER")
            .arg("MYID")
            .query_async(&mut c)
            .await
            .expect("CLUSTER MYID");
        self.nodes.push(node);
        self.ids.push(id);
        self.buses.push(bus);
        self.nodes.len() - 1
    }

    /// Tells every node that `slot` now belongs to node `to` (CLUSTER
    /// SETSLOT ... NODE), as a resharding's last step does.
    pub async fn give_slot(&self, slot: u16, to: usize) {
        for n in &self.nodes {
            let _: () = redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("NODE")
                .arg(&self.ids[to])
                .query_async(&mut n.direct().await)
                .await
                .expect("CLUSTER SETSLOT NODE");
        }
    }

    /// The index in `nodes` of the master `start` gave `slot` to.
    pub fn owner(&self, slot: u16) -> usize {
        let per = 16384 / self.masters;
        (slot as usize / per).min(self.masters - 1)
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A memcached process of the test's own on a free port; killed on drop.
pub struct MemcachedServer {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl MemcachedServer {
    pub fn start() -> MemcachedServer {
        // A port found free can be taken again before memcached binds it (by
        // a parallel test's server or an outgoing connection): then try
        // another.
        for _ in 0..5 {
            let mut server = MemcachedServer {
                port: free_port(),
                child: None,
            };
            if server.launch() {
                return server;
            }
            server.kill();
        }
        panic!("memcached did not start on any of 5 free ports");
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the process on the same port.
    pub fn restart(&mut self) {
        assert!(
            self.launch(),
            "memcached did not start on port {}",
            self.port
        );
    }

    /// Starts the process; true once it, not some other process, answers
    /// on the port.
    fn launch(&mut self) -> bool {
        let mut child = std::process::Command::new("memcached")
            // -u: memcached refuses to run as root without it (CI runs as root).
            .args(["-u", "nobody", "-l", "127.0.0.1", "-U", "0", "-m", "64"])
            .args(["-p", &self.port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("memcached is installed (scripts/test.sh installs it)");
        let pid = child.id();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let answered = loop {
            if let Ok(Some(_)) = child.try_wait() {
                break false;
            }
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                break stats_pid(&mut s) == Some(pid);
            }
            if std::time::Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = Some(child);
        answered
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal to the process (STOP and CONT freeze and thaw it).
    pub fn signal(&self, sig: &str) {
        if let Some(c) = &self.child {
            let ok = std::process::Command::new("kill")
                .args([&format!("-{sig}"), &c.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "kill -{sig} failed");
            if sig == "STOP" {
                wait_stopped(c.id());
            }
        }
    }

    /// Sends one text-protocol line (e.g. a meta `mg`) directly and returns
    /// the answer up to and including `end`.
    pub fn ask(&self, line: &str, end: &str) -> String {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).expect("connect memcached");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("{line}\r\n").as_bytes()).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 1024];
        while !String::from_utf8_lossy(&got).ends_with(end) {
            let n = s.read(&mut b).expect("memcached answers");
            assert!(n > 0, "memcached closed");
            got.extend_from_slice(&b[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    }
}

impl Drop for MemcachedServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// SIGSTOP takes effect asynchronously, thread by thread: wait until every
/// thread of `pid` is stopped, so that a test's next request meets a stalled
/// server rather than one still finishing its work.
fn wait_stopped(pid: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc");
        let all_stopped = tasks.flatten().all(|t| {
            std::fs::read_to_string(t.path().join("stat")).is_ok_and(|stat| {
                // The state follows the parenthesised command name.
                stat.rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('T'))
            })
        });
        if all_stopped {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not stop"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pid a memcached reports in `stats`.
fn stats_pid(s: &mut std::net::TcpStream) -> Option<u32> {
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"stats\r\n").ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"END\r\n") {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got)
        .lines()
        .find_map(|l| l.strip_prefix("STAT pid "))
        .and_then(|p| p.trim().parse().ok())
}

/// A CA and a server certificate for localhost, made with openssl.
pub fn test_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=keyway test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
    ]);
}

/// A client certificate (client.crt, client.key) signed by the CA that
/// `test_certs` made in `dir`.
pub fn client_cert(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=keyway test client",
    ]);
    // Extensions make it X.509 v3, which TLS libraries require.
    std::fs::write(dir.join("client.cnf"), "extendedKeyUsage=clientAuth\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.crt",
        "-days",
        "2",
        "-extfile",
        "client.cnf",
    ]);
}

/// An address of this host other than loopback, to connect from as
/// another host would.
pub fn outside_address() -> std::net::IpAddr {
    let udp = std::net::UdpSocket::bind("0.0.0.0:0").expect("udp");
    // No packet is sent: connecting only picks the route's source address.
    if udp.connect("203.0.113.1:9").is_ok() {
        if let Ok(a) = udp.local_addr() {
            if !a.ip().is_loopback() && !a.ip().is_unspecified() {
                return a.ip();
            }
        }
    }
    let out = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname -I");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<std::net::IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback())
        .expect("this host has an address other than loopback")
}

/// redis-server arguments for TLS with the certificates `test_certs` made
/// in `dir`; clients need no certificate of their own.
pub fn tls_args(dir: &std::path::Path) -> Vec<String> {
    let p = |f: &str| dir.join(f).display().to_string();
    vec![
        "--tls-cert-file".into(),
        p("server.crt"),
        "--tls-key-file".into(),
        p("server.key"),
        "--tls-ca-cert-file".into(),
        p("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
    ]
}

/// A RESP request of binary arguments.
pub fn request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Sends each command to redis-server (`r`) and to keyway (`k`) and
/// asserts the replies are the same bytes.
pub async fn same_replies(r: &mut Raw, k: &mut Raw, commands: &[&[&[u8]]]) {
    for args in commands {
        r.send(&request(args)).await;
        k.send(&request(args)).await;
        let (want, got) = (r.reply().await, k.reply().await);
        let shown: Vec<String> = args.iter().map(|a| a.escape_ascii().to_string()).collect();
        assert_eq!(
            got.escape_ascii().to_string(),
            want.escape_ascii().to_string(),
            "{}",
            shown.join(" ")
        );
    }
}

/// [`same_replies`] for commands written as words separated by spaces.
pub async fn same_replies_words<S: AsRef<str>>(r: &mut Raw, k: &mut Raw, commands: &[S]) {
    let words: Vec<Vec<&[u8]>> = commands
        .iter()
        .map(|c| c.as_ref().split(' ').map(str::as_bytes).collect())
        .collect();
    let commands: Vec<&[&[u8]]> = words.iter().map(Vec::as_slice).collect();
    same_replies(r, k, &commands).await;
}
