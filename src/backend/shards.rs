//! The `redis-shards` backend: keys spread over standalone Redis (or
//! Valkey) servers by consistent hashing, each key on the server twemproxy
//! would pick for it with the same `hash`, `distribution`, `hash_tag`,
//! weights and names. A namespace served by twemproxy today moves to keyway
//! without moving a key.
//!
//! The routing is the redis-cluster backend's (see [`super::cluster`]), with
//! a fixed map from key to server instead of one read from a cluster:
//! batches are split per server and run concurrently, MGET, MSET, DEL,
//! UNLINK, EXISTS and TOUCH over several servers are split and merged, and
//! whole-keyspace commands go to every server. A standalone server does not
//! know its keys are spread, so keyway itself refuses a command, a
//! transaction or a script whose keys are on different servers, where a
//! cluster would answer CROSSSLOT. Servers are never ejected: a key always
//! belongs to one server, and while that server is down its keys get an
//! error rather than a stale or empty answer from another.

use std::sync::Arc;

use serde::Deserialize;

use super::cluster::{ClusterBackend, Ejection, FixedMap, Placement};
use super::redis::{
    connection_problems, default_command_timeout, default_connect_timeout, parse_url, url_server,
    with_login,
};
use super::{Backend, BackendConfig, BackendSpec};

/// Points per server on the ketama circle, as twemproxy and libmemcached.
const KETAMA_POINTS: u32 = 160;
/// twemproxy hashes at most this many bytes of "name-index" per point.
const KETAMA_MAX_HOSTLEN: usize = 85;
/// twemproxy leaves the port out of a server's name when it is memcached's.
const KETAMA_DEFAULT_PORT: u16 = 11211;

fn default_hash() -> String {
    "fnv1a_64".into()
}
fn default_distribution() -> String {
    "ketama".into()
}
fn one() -> u32 {
    1
}
fn default_failure_limit() -> u32 {
    2
}
fn default_retry_timeout() -> u64 {
    30_000
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardsConfig {
    /// The servers, in twemproxy's order (it matters for `modula`).
    pub servers: Vec<Server>,
    /// twemproxy's key hash: fnv1a_64 (its default), fnv1_64, fnv1a_32,
    /// fnv1_32, md5, crc16, crc32, crc32a, murmur or one_at_a_time.
    #[serde(default = "default_hash")]
    pub hash: String,
    /// `ketama` (consistent: adding a server moves about 1/n of the keys)
    /// or `modula` (hash modulo the total weight).
    #[serde(default = "default_distribution")]
    pub distribution: String,
    /// Two characters, as twemproxy's `hash_tag`: "{}" hashes only what is
    /// between the first `{` and the next `}` when that is not empty.
    #[serde(default)]
    pub hash_tag: String,
    /// As twemproxy's: a server that fails `server_failure_limit` times in
    /// a row leaves the ring for `server_retry_timeout_ms`, and its keys go
    /// to the others meanwhile. For caches; off, its keys get errors.
    #[serde(default)]
    pub auto_eject_hosts: bool,
    #[serde(default = "default_failure_limit")]
    pub server_failure_limit: u32,
    #[serde(default = "default_retry_timeout")]
    pub server_retry_timeout_ms: u64,
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    #[serde(default = "default_command_timeout")]
    pub command_timeout_ms: u64,
    /// PEM file of the CAs to trust for rediss:// servers.
    pub tls_ca_file: Option<String>,
}

/// One server: its url, or a table that also gives its weight and name.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(
    untagged,
    expecting = "servers: each entry is a redis:// url, or a table with url and optionally \
                 weight and name ({ url = \"redis://...\", weight = 1, name = \"...\" }), \
                 and nothing else"
)]
pub enum Server {
    Url(String),
    Table(ServerTable),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerTable {
    pub url: String,
    /// Share of the keys, relative to the other servers' weights.
    #[serde(default = "one")]
    pub weight: u32,
    /// What the server's place on the circle is hashed from, as twemproxy's
    /// optional name after the weight; "host:port" without one.
    pub name: Option<String>,
}

impl Server {
    pub fn url(&self) -> &str {
        match self {
            Server::Url(u) => u,
            Server::Table(t) => &t.url,
        }
    }

    fn weight(&self) -> u32 {
        match self {
            Server::Url(_) => 1,
            Server::Table(t) => t.weight,
        }
    }

    /// The name twemproxy hashes for this server's points.
    fn ring_name(&self) -> String {
        if let Server::Table(ServerTable { name: Some(n), .. }) = self {
            return n.clone();
        }
        match parse_url(self.url()) {
            Ok(u) if u.port == KETAMA_DEFAULT_PORT => u.host,
            Ok(u) => format!("{}:{}", u.host, u.port),
            Err(_) => self.url().to_string(),
        }
    }
}

impl BackendSpec for ShardsConfig {
    fn kind(&self) -> &'static str {
        "redis-shards"
    }

    fn servers(&self) -> Vec<String> {
        self.servers
            .iter()
            .filter_map(|s| url_server(s.url()))
            .collect()
    }

    fn with_credentials(&self, username: Option<&str>, password: &str) -> Option<BackendConfig> {
        let servers = self
            .servers
            .iter()
            .map(|s| match s {
                Server::Url(u) => Server::Url(with_login(u, username, password)),
                // The ring is hashed from host:port (or the name), never
                // the login: the keys keep their servers.
                Server::Table(t) => Server::Table(ServerTable {
                    url: with_login(&t.url, username, password),
                    ..t.clone()
                }),
            })
            .collect();
        Some(BackendConfig::RedisShards(ShardsConfig {
            servers,
            ..self.clone()
        }))
    }

    fn build(&self, name: &str) -> Arc<dyn Backend> {
        let urls = self
            .servers
            .iter()
            .filter_map(|s| parse_url(s.url()).ok())
            .collect();
        let ring = Ring::new(self, &vec![true; self.servers.len()]);
        let map = FixedMap {
            urls,
            placement: Arc::new(Placed {
                config: self.clone(),
                ring,
            }),
            ejection: Ejection {
                enabled: self.auto_eject_hosts,
                failure_limit: self.server_failure_limit,
                retry_timeout_ms: self.server_retry_timeout_ms,
            },
            tls_ca_file: self.tls_ca_file.clone(),
            connect_timeout_ms: self.connect_timeout_ms,
            command_timeout_ms: self.command_timeout_ms,
        };
        Arc::new(ClusterBackend::fixed(name, map))
    }

    fn limits(&self) -> Option<&'static str> {
        Some(
            "commands, transactions and scripts whose keys are on different servers \
             (keys sharing a hash tag stay together)",
        )
    }

    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if self.servers.is_empty() {
            out.push((
                "servers".into(),
                "must list at least one redis://host:port".into(),
            ));
        }
        let mut seen: Vec<(String, u16)> = Vec::new();
        let mut names: Vec<String> = Vec::new();
        let mut tls_any = false;
        for (i, s) in self.servers.iter().enumerate() {
            let mut twice = false;
            let field = match s {
                Server::Url(_) => format!("servers[{i}]"),
                Server::Table(_) => format!("servers[{i}].url"),
            };
            match parse_url(s.url()) {
                Ok(u) => {
                    tls_any |= u.tls;
                    let at = (u.host.clone(), u.port);
                    if seen.contains(&at) {
                        out.push((field, format!("{}:{} is listed twice", u.host, u.port)));
                        twice = true;
                    }
                    seen.push(at);
                }
                Err(e) => out.push((field, e)),
            }
            if let Server::Table(t) = s {
                if t.weight == 0 {
                    out.push((format!("servers[{i}].weight"), "must be at least 1".into()));
                }
                if t.name.as_deref() == Some("") {
                    out.push((format!("servers[{i}].name"), "must not be empty".into()));
                }
            }
            let name = s.ring_name();
            if !twice && names.contains(&name) {
                out.push((
                    format!("servers[{i}]"),
                    format!("'{name}' names two servers; each needs its own place on the ring"),
                ));
            }
            names.push(name);
        }
        if Hash::parse(&self.hash).is_none() {
            out.push((
                "hash".into(),
                format!("'{}' is not one of {}", self.hash, Hash::NAMES.join(", ")),
            ));
        }
        if !matches!(self.distribution.as_str(), "ketama" | "modula") {
            out.push((
                "distribution".into(),
                format!("'{}' is not ketama or modula", self.distribution),
            ));
        }
        if !self.hash_tag.is_empty() && self.hash_tag.len() != 2 {
            out.push((
                "hash_tag".into(),
                format!(
                    "'{}' must be two characters, like \"{{}}\", or empty",
                    self.hash_tag
                ),
            ));
        }
        if self.server_failure_limit == 0 {
            out.push(("server_failure_limit".into(), "must be at least 1".into()));
        }
        if self.server_retry_timeout_ms == 0 {
            out.push((
                "server_retry_timeout_ms".into(),
                "must be at least 1".into(),
            ));
        }
        out.extend(connection_problems(
            self.connect_timeout_ms,
            self.command_timeout_ms,
            self.tls_ca_file.as_deref(),
            (!self.servers.is_empty() && !tls_any).then_some("the servers are"),
        ));
        out
    }
}

/// twemproxy's key hashes. Its C code reads keys as `char`, signed on
/// the platforms it runs on, so bytes from 0x80 are sign-extended where it
/// widens them; the same is done here, or such keys would land elsewhere.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hash {
    Fnv164,
    Fnv1a64,
    Fnv132,
    Fnv1a32,
    Md5,
    Crc16,
    Crc32,
    Crc32a,
    Murmur,
    OneAtATime,
}

impl Hash {
    const NAMES: [&'static str; 10] = [
        "fnv1a_64",
        "fnv1_64",
        "fnv1a_32",
        "fnv1_32",
        "md5",
        "crc16",
        "crc32",
        "crc32a",
        "murmur",
        "one_at_a_time",
    ];

    fn parse(name: &str) -> Option<Hash> {
        Some(match name {
            "fnv1_64" => Hash::Fnv164,
            "fnv1a_64" => Hash::Fnv1a64,
            "fnv1_32" => Hash::Fnv132,
            "fnv1a_32" => Hash::Fnv1a32,
            "md5" => Hash::Md5,
            "crc16" => Hash::Crc16,
            "crc32" => Hash::Crc32,
            "crc32a" => Hash::Crc32a,
            "murmur" => Hash::Murmur,
            "one_at_a_time" => Hash::OneAtATime,
            _ => return None,
        })
    }

    fn of(self, key: &[u8]) -> u32 {
        // A `char` widened: sign-extended.
        let wide = |b: u8| b as i8 as i32 as u32;
        match self {
            Hash::Fnv164 => {
                let mut h: u64 = 0xcbf2_9ce4_8422_2325;
                for &b in key {
                    h = h.wrapping_mul(0x0100_0000_01b3);
                    h ^= b as i8 as i64 as u64;
                }
                h as u32
            }
            // twemproxy's fnv1a_64 keeps only the low 32 bits of the 64-bit
            // offset and prime, and computes in 32 bits.
            Hash::Fnv1a64 => fnv1a_32(key, 0x8422_2325, 0x0000_01b3),
            Hash::Fnv132 => {
                let mut h: u32 = 0x811c_9dc5;
                for &b in key {
                    h = h.wrapping_mul(0x0100_0193);
                    h ^= wide(b);
                }
                h
            }
            Hash::Fnv1a32 => fnv1a_32(key, 0x811c_9dc5, 0x0100_0193),
            Hash::Md5 => md5_low(key),
            Hash::Crc16 => {
                // Not reduced to 16 bits between bytes: twemproxy keeps the
                // shifted-out bits in a 32-bit value.
                let mut crc: u32 = 0;
                for &b in key {
                    let i = ((crc >> 8) ^ wide(b)) & 0xff;
                    crc = (crc << 8) ^ CRC16[i as usize] as u32;
                }
                crc
            }
            Hash::Crc32 => (!crc32(key) >> 16) & 0x7fff,
            Hash::Crc32a => !crc32(key),
            Hash::Murmur => murmur2(key),
            Hash::OneAtATime => {
                let mut h: u32 = 0;
                for &b in key {
                    h = h.wrapping_add(wide(b));
                    h = h.wrapping_add(h << 10);
                    h ^= h >> 6;
                }
                h = h.wrapping_add(h << 3);
                h ^= h >> 11;
                h.wrapping_add(h << 15)
            }
        }
    }
}

fn fnv1a_32(key: &[u8], offset: u32, prime: u32) -> u32 {
    let mut h = offset;
    for &b in key {
        h ^= b as i8 as i32 as u32;
        h = h.wrapping_mul(prime);
    }
    h
}

/// The first four bytes of the MD5 digest, little-endian, as twemproxy's
/// md5 hash and each ketama point take them (`alignment` picks the group).
fn md5_word(digest: &[u8; 16], alignment: usize) -> u32 {
    let at = alignment * 4;
    u32::from_le_bytes([digest[at], digest[at + 1], digest[at + 2], digest[at + 3]])
}

fn md5_low(key: &[u8]) -> u32 {
    md5_word(&md5::compute(key).0, 0)
}

/// The running CRC-32 (IEEE, reflected) register, before the final xor.
fn crc32(key: &[u8]) -> u32 {
    let mut crc = u32::MAX;
    for &b in key {
        crc = (crc >> 8) ^ CRC32[((crc ^ b as u32) & 0xff) as usize];
    }
    crc
}

/// MurmurHash2 with twemproxy's seed, 0xdeadbeef times the length.
fn murmur2(key: &[u8]) -> u32 {
    const M: u32 = 0x5bd1_e995;
    let len = key.len() as u32;
    let mut h = 0xdead_beef_u32.wrapping_mul(len) ^ len;
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M) ^ k;
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        for (i, &b) in rest.iter().enumerate() {
            h ^= (b as u32) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^ (h >> 15)
}

const CRC32: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-16/XMODEM, Redis Cluster's table.
const CRC16: [u16; 256] = {
    let mut t = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = (i as u16) << 8;
        let mut k = 0;
        while k < 8 {
            c = if c & 0x8000 != 0 {
                (c << 1) ^ 0x1021
            } else {
                c << 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// A ring with the settings that build it again over fewer servers: the
/// placement the cluster routing follows for this backend.
struct Placed {
    config: ShardsConfig,
    ring: Ring,
}

impl Placement for Placed {
    fn shard(&self, key: &[u8]) -> u16 {
        self.ring.shard(key)
    }

    fn tag(&self) -> Option<(char, char)> {
        self.ring.tag()
    }

    fn over(&self, live: &[bool]) -> Arc<dyn Placement> {
        Arc::new(Placed {
            config: self.config.clone(),
            ring: Ring::new(&self.config, live),
        })
    }
}

/// Which server a key belongs to.
#[derive(Debug)]
pub struct Ring {
    hash: Hash,
    tag: Option<(u8, u8)>,
    /// ketama: (point, server) sorted by point.
    points: Vec<(u32, u16)>,
    /// modula: each server's index, once per unit of its weight.
    modula: Vec<u16>,
}

impl Ring {
    /// Built from validated settings over the servers `live` marks (all
    /// but the ejected), as twemproxy builds it over its live servers; a
    /// bad hash name falls back to the default rather than failing, since
    /// validation reports it first.
    pub fn new(c: &ShardsConfig, live: &[bool]) -> Ring {
        let hash = Hash::parse(&c.hash).unwrap_or(Hash::Fnv1a64);
        let tag = match c.hash_tag.as_bytes() {
            [a, b] => Some((*a, *b)),
            _ => None,
        };
        let up = |i: usize| live.get(i).copied().unwrap_or(false);
        let total: u32 = (0..c.servers.len())
            .filter(|&i| up(i))
            .map(|i| c.servers[i].weight())
            .sum();
        let n = (0..c.servers.len()).filter(|&i| up(i)).count();
        // twemproxy sorts its servers by name (shorter first, then bytewise)
        // when it checks them for duplicates, and modula counts in that
        // order, not the config's.
        let names: Vec<String> = c.servers.iter().map(Server::ring_name).collect();
        let mut order: Vec<usize> = (0..c.servers.len()).filter(|&i| up(i)).collect();
        order.sort_by(|&a, &b| {
            let (a, b) = (&names[a], &names[b]);
            a.len().cmp(&b.len()).then_with(|| a.cmp(b))
        });
        let mut points = Vec::new();
        let mut modula = Vec::new();
        if c.distribution == "modula" {
            for &i in &order {
                let weight = c.servers[i].weight() as usize;
                modula.extend(std::iter::repeat_n(i as u16, weight));
            }
        } else {
            for &i in &order {
                let s = &c.servers[i];
                // twemproxy's float arithmetic, step by step, so that uneven
                // weights give the same number of points.
                let pct = s.weight() as f32 / total.max(1) as f32;
                let x = pct * KETAMA_POINTS as f32 / 4.0 * n as f32;
                let per_server = ((x as f64 + 1e-10) as f32).floor() as u32 * 4;
                for p in 0..per_server / 4 {
                    let mut host = format!("{}-{p}", names[i]).into_bytes();
                    host.truncate(KETAMA_MAX_HOSTLEN);
                    let digest = md5::compute(&host).0;
                    for a in 0..4 {
                        points.push((md5_word(&digest, a), i as u16));
                    }
                }
            }
            points.sort_by_key(|p| p.0);
        }
        Ring {
            hash,
            tag,
            points,
            modula,
        }
    }

    /// The part of a key that is hashed: what the hash tag encloses, when
    /// the key has a non-empty one.
    fn hashed<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        let Some((open, close)) = self.tag else {
            return key;
        };
        let Some(start) = key.iter().position(|&b| b == open) else {
            return key;
        };
        match key[start + 1..].iter().position(|&b| b == close) {
            Some(len) if len > 0 => &key[start + 1..start + 1 + len],
            _ => key,
        }
    }

    /// The index of the server that holds `key`.
    pub fn shard(&self, key: &[u8]) -> u16 {
        // twemproxy hashes an empty key to 0 rather than hashing nothing.
        let h = match self.hashed(key) {
            [] => 0,
            part => self.hash.of(part),
        };
        if !self.modula.is_empty() {
            return self.modula[(h as usize) % self.modula.len()];
        }
        let at = self.points.partition_point(|p| p.0 < h);
        self.points
            .get(at)
            .or_else(|| self.points.first())
            .map_or(0, |p| p.1)
    }

    /// The hash tag's characters, for error texts.
    pub fn tag(&self) -> Option<(char, char)> {
        self.tag.map(|(a, b)| (a as char, b as char))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml: &str) -> ShardsConfig {
        toml::from_str(toml).expect("config")
    }

    fn ring(c: &ShardsConfig) -> Ring {
        Ring::new(c, &vec![true; c.servers.len()])
    }

    #[test]
    fn an_ejected_server_leaves_the_ring() {
        let c = config("servers = [\"redis://a:1\", \"redis://b:1\", \"redis://c:1\"]");
        let all = ring(&c);
        let without_b = Ring::new(&c, &[true, false, true]);
        assert_eq!(without_b.points.len(), 2 * 160);
        for i in 0..3_000 {
            let k = format!("key:{i}");
            let (before, after) = (all.shard(k.as_bytes()), without_b.shard(k.as_bytes()));
            assert_ne!(after, 1);
            // Consistent: only b's keys move.
            if before != 1 {
                assert_eq!(before, after, "{k}");
            }
        }
    }

    #[test]
    fn hashes_match_their_published_values() {
        // Plain (unsigned) inputs, where twemproxy's functions agree with
        // the published algorithms.
        assert_eq!(Hash::Fnv1a32.of(b"a"), 0xe40c_292c);
        assert_eq!(Hash::Fnv132.of(b"a"), 0x050c_5d7e);
        assert_eq!(Hash::Fnv164.of(b"a"), 0x8601_b7be);
        assert_eq!(Hash::Crc32a.of(b"123456789"), 0xcbf4_3926);
        assert_eq!(Hash::Crc16.of(b"123456789") & 0xffff, 0x31c3);
        assert_eq!(md5_low(b""), u32::from_le_bytes([0xd4, 0x1d, 0x8c, 0xd9]));
    }

    #[test]
    fn the_hash_tag_picks_what_is_hashed() {
        let r = ring(&config("servers = [\"redis://a:1\"]\nhash_tag = \"{}\""));
        assert_eq!(r.hashed(b"user:{42}:name"), b"42");
        assert_eq!(r.hashed(b"{}x"), b"{}x");
        assert_eq!(r.hashed(b"x{y"), b"x{y");
        assert_eq!(r.hashed(b"a}b{c}"), b"c");
    }

    #[test]
    fn ketama_spreads_keys_and_weights_count() {
        let r = ring(&config(
            "servers = [\"redis://a:1\", \"redis://b:1\", { url = \"redis://c:1\", weight = 2 }]",
        ));
        // 160 points per server on average, shared by weight: 120, 120, 240.
        assert_eq!(r.points.len(), 480);
        let mut counts = [0usize; 3];
        for i in 0..40_000 {
            counts[r.shard(format!("key:{i}").as_bytes()) as usize] += 1;
        }
        // About a quarter, a quarter and a half.
        assert!((7_000..13_000).contains(&counts[0]), "{counts:?}");
        assert!((7_000..13_000).contains(&counts[1]), "{counts:?}");
        assert!((16_000..24_000).contains(&counts[2]), "{counts:?}");
    }

    #[test]
    fn modula_follows_weights_in_twemproxys_order() {
        // By name: "b:1" before "aa:1" (shorter), then "aa:1" before "ab:1".
        let r = ring(&config(
            "servers = [\"redis://ab:1\", { url = \"redis://aa:1\", weight = 2 }, \"redis://b:1\"]\n\
             distribution = \"modula\"",
        ));
        assert_eq!(r.modula, vec![2, 1, 1, 0]);
    }

    #[test]
    fn config_problems_are_all_reported() {
        let c = config(
            "servers = [\"http://a:1\", { url = \"redis://b:1\", weight = 0, name = \"\" }, \"redis://b:1\"]\n\
             hash = \"sha1\"\ndistribution = \"random\"\nhash_tag = \"{\"\nserver_failure_limit = 0\n\
             command_timeout_ms = 0",
        );
        let fields: Vec<String> = c.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            [
                "servers[0]",
                "servers[1].weight",
                "servers[1].name",
                "servers[2]",
                "hash",
                "distribution",
                "hash_tag",
                "server_failure_limit",
                "command_timeout_ms",
            ]
        );
    }
}
