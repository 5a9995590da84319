//! The per-command hot path, without sockets: decoding a pipelined batch,
//! routing it, running it on the memory backend and encoding the replies;
//! and the prefix router with many namespaces.

use std::hint::black_box;

use bytes::BytesMut;
use criterion::{Criterion, criterion_group, criterion_main};
use keyway::backend::Command;
use keyway::backend::memory::{MemoryBackend, MemoryConfig};
use keyway::ops::config::Config;
use keyway::wire::command;
use keyway::wire::protocol::RequestCodec;
use tokio_util::codec::Decoder;

fn pipeline_of_16() -> Vec<u8> {
    let mut out = Vec::new();
    for i in 0..8 {
        let key = format!("key:{i:08}");
        let value = "x".repeat(64);
        out.extend(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$64\r\n{value}\r\n",
                key.len()
            )
            .bytes(),
        );
        out.extend(format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).bytes());
    }
    out
}

fn decode_route_execute_encode(c: &mut Criterion) {
    let input = pipeline_of_16();
    let backend = MemoryBackend::new(&MemoryConfig::default());
    let router = keyway::ops::reload::build(&Config::default(), &Default::default()).0;
    c.bench_function("pipeline16_set_get_memory", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&input[..]);
            let mut codec = RequestCodec::default();
            let mut batch = Vec::with_capacity(16);
            while let Ok(Some(req)) = codec.decode(&mut buf) {
                let spec = command::lookup(&req.args[0]).expect("known");
                let ns = router.route(&req.args[1]).expect("routed");
                black_box(ns);
                batch.push(Command {
                    spec,
                    args: req.args,
                    raw: Some(req.raw),
                    resp3: false,
                    inspect: false,
                    scope: None,
                    db: 0,
                    unblock: None,
                });
            }
            let mut out = BytesMut::new();
            for r in backend.run(&batch) {
                r.encode(false, &mut out);
            }
            black_box(out)
        })
    });
}

fn memory_get_set(c: &mut Criterion) {
    let backend = MemoryBackend::new(&MemoryConfig::default());
    let set = Command::internal(
        command::known("set"),
        vec!["SET".into(), "key:1".into(), vec![b'x'; 64].into()],
    );
    let get = Command::internal(command::known("get"), vec!["GET".into(), "key:1".into()]);
    c.bench_function("memory_set", |b| {
        b.iter(|| black_box(backend.run(std::slice::from_ref(&set))))
    });
    c.bench_function("memory_get", |b| {
        b.iter(|| black_box(backend.run(std::slice::from_ref(&get))))
    });
}

fn router_with_100_namespaces(c: &mut Criterion) {
    let mut text = String::from("[backends.m]\ntype = \"memory\"\n");
    for i in 0..100 {
        text.push_str(&format!(
            "[[namespaces]]\nname = \"n{i}\"\nprefix = \"app{i}:part{}:\"\nbackend = \"m\"\n",
            i % 7
        ));
    }
    text.push_str("[[namespaces]]\nname = \"all\"\nprefix = \"\"\nbackend = \"m\"\n");
    let router = keyway::ops::reload::build(
        &Config::parse(&text, "bench.toml").expect("valid"),
        &Default::default(),
    )
    .0;
    let keys: Vec<Vec<u8>> = (0..100)
        .map(|i| format!("app{i}:part{}:user:{i}", i % 7).into_bytes())
        .chain((0..10).map(|i| format!("unmatched:{i}").into_bytes()))
        .collect();
    c.bench_function("route_110_keys_100_namespaces", |b| {
        b.iter(|| {
            for k in &keys {
                black_box(router.route(k));
            }
        })
    });
}

criterion_group!(
    benches,
    decode_route_execute_encode,
    memory_get_set,
    router_with_100_namespaces
);
criterion_main!(benches);
