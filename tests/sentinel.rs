//! The redis backend behind Redis Sentinel: a master, its replica and a
//! sentinel of the test's own; keyway follows a failover.

mod common;
use std::time::{Duration, Instant};

use common::{Keyway, RedisServer, free_port, until};
use redis::AsyncCommands;

/// A sentinel process watching `master` as "mymaster"; killed on drop.
struct SentinelProcess {
    port: u16,
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for SentinelProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sentinel(master_port: u16) -> SentinelProcess {
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("keyway-sentinel-{port}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let conf = dir.join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {port}\nbind 127.0.0.1\ndir {}\n\
             sentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 5000\n",
            dir.display()
        ),
    )
    .expect("write sentinel.conf");
    let child = std::process::Command::new("redis-server")
        .arg(&conf)
        .arg("--sentinel")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed (scripts/test.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "sentinel did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    SentinelProcess { port, child, dir }
}

async fn conn(port: u16) -> redis::aio::MultiplexedConnection {
    common::connect(&format!("redis://127.0.0.1:{port}/"))
        .await
        .unwrap()
}

#[tokio::test]
async fn follows_the_master_through_a_failover() {
    let master = RedisServer::start();
    let replica = RedisServer::with_args(&["--replicaof", "127.0.0.1", &master.port.to_string()]);
    until("the replica to sync", 10, || async {
        let info: String = redis::cmd("INFO")
            .arg("replication")
            .query_async(&mut replica.direct().await)
            .await
            .unwrap();
        info.contains("master_link_status:up")
    })
    .await;
    let s = sentinel(master.port);
    let sc = conn(s.port).await;
    let kw = Keyway::with_toml(&format!(
        r#"
[server]
listen = "127.0.0.1:0"
[backends.main]
type = "redis"
url = "redis://localhost"
sentinel_master = "mymaster"
sentinels = ["127.0.0.1:1", "127.0.0.1:{}"]
connect_timeout_ms = 500
command_timeout_ms = 1000
[[namespaces]]
name = "all"
prefix = ""
backend = "main"
"#,
        s.port
    ))
    .await;
    let mut c = kw.client().await;
    // The first sentinel listed is down: the next one answers.
    let _: () = c.set("before", "1").await.unwrap();
    let on_master: Option<String> = master.direct().await.get("before").await.unwrap();
    assert_eq!(on_master.as_deref(), Some("1"));
    until("the replica to have the write", 10, || async {
        let v: Option<String> = replica.direct().await.get("before").await.unwrap();
        v.as_deref() == Some("1")
    })
    .await;

    // Until the sentinel has talked to the replica, it has none to promote
    // (NOGOODSLAVE).
    until("the sentinel to start a failover", 20, || {
        let mut sc = sc.clone();
        async move {
            redis::cmd("SENTINEL")
                .arg("FAILOVER")
                .arg("mymaster")
                .query_async::<()>(&mut sc)
                .await
                .is_ok()
        }
    })
    .await;
    let replica_port = replica.port.to_string();
    until("the sentinel to promote the replica", 20, || {
        let mut sc = sc.clone();
        let want = replica_port.clone();
        async move {
            let addr: Option<(String, String)> = redis::cmd("SENTINEL")
                .arg("GET-MASTER-ADDR-BY-NAME")
                .arg("mymaster")
                .query_async(&mut sc)
                .await
                .unwrap_or(None);
            addr.is_some_and(|(_, p)| p == want)
        }
    })
    .await;
    // keyway's connections to the old master are closed by the sentinel;
    // it asks again and writes reach the new master. Writes that land on
    // the old master while it turns into a replica fail, as they would
    // for any client.
    let mut raw = kw.raw().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if raw.line("SET after 2").await == "+OK\r\n" {
            let v: Option<String> = replica.direct().await.get("after").await.unwrap();
            if v.as_deref() == Some("2") {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no write through keyway reached the new master"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let info: String = redis::cmd("INFO").query_async(&mut c).await.unwrap();
    let health = format!(
        "health=up (1/1 connections; master 127.0.0.1 port {} from the sentinels)",
        replica.port
    );
    assert!(info.contains(&health), "{info}");
    let before: Option<String> = c.get("before").await.unwrap();
    assert_eq!(
        before.as_deref(),
        Some("1"),
        "replicated before the failover"
    );
}
