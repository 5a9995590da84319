//! Snapshots of the memory backend in Redis's RDB file format (version
//! 10, as Redis 7.0 writes), built on the value encoding of `dump.rs`:
//! SAVE and BGSAVE write one, keyway writes one when it stops and reads
//! it when it starts, when the backend names a file (`snapshot`). A
//! redis-server loads keyway's file, and keyway loads a redis-server's
//! `dump.rdb` (its keys, TTLs and functions).
//!
//! A snapshot is one instant of every database: the databases' gates are
//! held while their values are copied, then the copy is written (on a
//! thread of its own for BGSAVE) to a temporary file renamed into place,
//! so that a crash never leaves half a file.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::{Bytes, BytesMut};

use super::dump::{self, Loader};
use super::rdb::{self, put_len, put_string};
use super::store::{Entry, Value, ValueRef, now_ms};
use super::{Memory, MemoryBackend};

const OP_FUNCTION2: u8 = 245;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
const OP_EOF: u8 = 255;

/// Where a backend's snapshot lives, and how its saving goes.
pub struct Snapshot {
    pub path: PathBuf,
    /// Unix seconds of the last snapshot written (LASTSAVE).
    pub last_save: AtomicU64,
    /// A BGSAVE is writing.
    pub saving: AtomicBool,
}

impl Snapshot {
    pub fn new(path: &str) -> Snapshot {
        Snapshot {
            path: PathBuf::from(path),
            last_save: AtomicU64::new(now_ms() / 1000),
            saving: AtomicBool::new(false),
        }
    }
}

/// One database's keys, copied: key, value, expiry (Unix ms, 0: none).
type Copied = Vec<(Bytes, Value, u64)>;

/// What a snapshot file holds.
pub struct Loaded {
    pub databases: Vec<(u8, Vec<(Bytes, Entry)>)>,
    pub functions: Vec<Bytes>,
}

/// Every database's keys at one instant, and the functions.
fn copy(backend: &MemoryBackend) -> (Vec<(u8, Copied)>, Vec<Bytes>) {
    let dbs: Vec<(u8, &Arc<Memory>)> = (0..=u8::MAX)
        .filter_map(|n| backend.existing(n).map(|m| (n, m)))
        .collect();
    // Every gate at once, in index order: no write lands in between.
    let _gates: Vec<_> = dbs
        .iter()
        .map(|(_, m)| m.gate.write().unwrap_or_else(|e| e.into_inner()))
        .collect();
    let copied = dbs
        .iter()
        .map(|(n, m)| {
            let mut keys = Vec::new();
            m.store.for_each_entry(|k, v, expires_at| {
                keys.push((Bytes::copy_from_slice(k), v.to_value(), expires_at));
            });
            (*n, keys)
        })
        .filter(|(_, keys)| !keys.is_empty())
        .collect();
    (copied, backend.inner.functions.codes())
}

fn value_ref(v: &Value) -> ValueRef<'_> {
    match v {
        Value::Str(s) => ValueRef::Str(s),
        Value::List(l) => ValueRef::List(l),
        Value::Set(s) => ValueRef::Set(s),
        Value::ZSet(z) => ValueRef::ZSet(z),
        Value::Hash(h) => ValueRef::Hash(h),
        Value::Stream(st) => ValueRef::Stream(st),
    }
}

/// The RDB file of a copy.
fn encode(dbs: &[(u8, Copied)], functions: &[Bytes]) -> Vec<u8> {
    let mut out = BytesMut::new();
    out.extend_from_slice(format!("REDIS{:04}", rdb::RDB_VERSION).as_bytes());
    let aux = [
        ("redis-ver", crate::wire::command::REDIS_VERSION.to_string()),
        ("redis-bits", "64".to_string()),
        ("ctime", (now_ms() / 1000).to_string()),
        ("used-mem", crate::wire::alloc::allocated().to_string()),
        ("aof-base", "0".to_string()),
    ];
    for (k, v) in aux {
        out.extend_from_slice(&[OP_AUX]);
        put_string(&mut out, k.as_bytes());
        put_string(&mut out, v.as_bytes());
    }
    for code in functions {
        out.extend_from_slice(&[OP_FUNCTION2]);
        put_len(&mut out, code.len());
        out.extend_from_slice(code);
    }
    for (n, keys) in dbs {
        out.extend_from_slice(&[OP_SELECTDB]);
        put_len(&mut out, usize::from(*n));
        out.extend_from_slice(&[OP_RESIZEDB]);
        put_len(&mut out, keys.len());
        put_len(&mut out, keys.iter().filter(|k| k.2 != 0).count());
        for (key, value, expires_at) in keys {
            if *expires_at != 0 {
                out.extend_from_slice(&[OP_EXPIRETIME_MS]);
                out.extend_from_slice(&expires_at.to_le_bytes());
            }
            let v = value_ref(value);
            out.extend_from_slice(&[dump::kind_of(v)]);
            put_string(&mut out, key);
            dump::write_body(&mut out, v);
        }
    }
    out.extend_from_slice(&[OP_EOF]);
    let crc = rdb::crc64(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out.to_vec()
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
fn write_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    if let Err(e) = std::fs::rename(&tmp, path) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(())
}

/// SAVE: the snapshot written before the reply.
pub fn save(backend: &MemoryBackend, snap: &Snapshot) -> Result<(), String> {
    let (dbs, functions) = copy(backend);
    let bytes = encode(&dbs, &functions);
    write_file(&snap.path, &bytes).map_err(|e| format!("{}: {e}", snap.path.display()))?;
    snap.last_save.store(now_ms() / 1000, Ordering::Relaxed);
    Ok(())
}

/// BGSAVE: the copy now, the writing on a thread of its own; false when
/// one is already writing.
pub fn bgsave(backend: &MemoryBackend, snap: &Arc<Snapshot>) -> bool {
    if snap.saving.swap(true, Ordering::AcqRel) {
        return false;
    }
    let (dbs, functions) = copy(backend);
    let snap = snap.clone();
    std::thread::spawn(move || {
        let bytes = encode(&dbs, &functions);
        match write_file(&snap.path, &bytes) {
            Ok(()) => {
                snap.last_save.store(now_ms() / 1000, Ordering::Relaxed);
                tracing::info!(path = %snap.path.display(), bytes = bytes.len(), "snapshot written");
            }
            Err(e) => tracing::error!(path = %snap.path.display(), "snapshot not written: {e}"),
        }
        snap.saving.store(false, Ordering::Release);
    });
    true
}

/// Reads a snapshot file (keyway's or a redis-server's); the error says
/// what is wrong and where.
pub fn load(bytes: &[u8]) -> Result<Loaded, String> {
    let header = bytes.get(..9).ok_or("too short to be an RDB file")?;
    let version: u16 = header
        .strip_prefix(b"REDIS")
        .and_then(|v| std::str::from_utf8(v).ok())
        .and_then(|v| v.parse().ok())
        .ok_or("not an RDB file (no REDIS header)")?;
    if version > rdb::RDB_VERSION_READ {
        return Err(format!(
            "RDB version {version} is newer than keyway reads ({})",
            rdb::RDB_VERSION_READ
        ));
    }
    let mut l = Loader::new(&bytes[9..]);
    let mut out = Loaded {
        databases: Vec::new(),
        functions: Vec::new(),
    };
    let mut db: u8 = 0;
    let mut expires_at = 0u64;
    let bad = |what: &str, at: usize| format!("{what} at byte {at}");
    loop {
        let at = bytes.len() - l.r.0.len();
        let op =
            l.r.byte()
                .ok_or_else(|| bad("file ends before its end mark", at))?;
        match op {
            OP_EOF => {
                let rest = l.r.0;
                // Version 5 and later end with a CRC64 (0 when disabled).
                if version >= 5 && rest.len() == 8 {
                    let crc = u64::from_le_bytes(rest.try_into().map_err(|_| "bad checksum")?);
                    if crc != 0 && crc != rdb::crc64(&bytes[..bytes.len() - 8]) {
                        return Err("checksum does not match the file (damaged?)".into());
                    }
                }
                return Ok(out);
            }
            OP_AUX => {
                l.string().ok_or_else(|| bad("bad AUX field", at))?;
                l.string().ok_or_else(|| bad("bad AUX field", at))?;
            }
            OP_RESIZEDB => {
                l.count().ok_or_else(|| bad("bad RESIZEDB", at))?;
                l.count().ok_or_else(|| bad("bad RESIZEDB", at))?;
            }
            OP_SELECTDB => {
                let n = l.count().ok_or_else(|| bad("bad SELECTDB", at))?;
                db = u8::try_from(n).map_err(|_| bad(&format!("database {n} out of range"), at))?;
            }
            OP_EXPIRETIME_MS => {
                let b = l.r.take(8).ok_or_else(|| bad("bad expiry", at))?;
                expires_at = u64::from_le_bytes(b.try_into().map_err(|_| "bad expiry")?);
            }
            OP_EXPIRETIME => {
                let b = l.r.take(4).ok_or_else(|| bad("bad expiry", at))?;
                let secs = u32::from_le_bytes(b.try_into().map_err(|_| "bad expiry")?);
                expires_at = u64::from(secs) * 1000;
            }
            OP_IDLE => {
                l.count().ok_or_else(|| bad("bad IDLE", at))?;
            }
            OP_FREQ => {
                l.r.byte().ok_or_else(|| bad("bad FREQ", at))?;
            }
            OP_FUNCTION2 => {
                out.functions
                    .push(l.string().ok_or_else(|| bad("bad function", at))?);
            }
            OP_MODULE_AUX => return Err(bad("module data (keyway loads no modules)", at)),
            kind => {
                l.reset_budget();
                let key = l.string().ok_or_else(|| bad("bad key", at))?;
                let value = dump::load(&mut l, kind).ok_or_else(|| {
                    bad(
                        &format!(
                            "value of key '{}' (type {kind}) not readable",
                            String::from_utf8_lossy(&key)
                        ),
                        at,
                    )
                })?;
                let entry = Entry { value, expires_at };
                expires_at = 0;
                match out.databases.last_mut() {
                    Some((n, keys)) if *n == db => keys.push((key, entry)),
                    _ => out.databases.push((db, vec![(key, entry)])),
                }
            }
        }
    }
}

/// Fills a new backend from its snapshot file, when there is one.
pub fn restore_into(backend: &MemoryBackend, snap: &Snapshot) -> Result<usize, String> {
    let bytes = match std::fs::read(&snap.path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(format!("{}: {e}", snap.path.display())),
    };
    let loaded = load(&bytes).map_err(|e| format!("{}: {e}", snap.path.display()))?;
    let now = now_ms();
    let mut keys = 0;
    for code in loaded.functions {
        backend
            .inner
            .functions
            .load_code(code)
            .map_err(|e| format!("{}: a function library: {e}", snap.path.display()))?;
    }
    for (n, entries) in loaded.databases {
        let db = backend.db(n);
        for (key, entry) in entries {
            // Keys that expired while keyway was down are not loaded.
            if entry.expires_at != 0 && entry.expires_at <= now {
                continue;
            }
            db.store.write(&key, |slot| *slot = Some(entry));
            keys += 1;
        }
    }
    Ok(keys)
}

/// Checks a snapshot file that exists, for `--check-config`.
pub fn check(path: &str) -> Result<(), String> {
    match std::fs::read(path) {
        Ok(bytes) => load(&bytes).map(|_| ()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty());
            match dir {
                Some(d) if !d.is_dir() => Err(format!("directory {} does not exist", d.display())),
                _ => Ok(()),
            }
        }
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(bytes: &[u8]) -> String {
        match load(bytes) {
            Err(e) => e,
            Ok(_) => String::new(),
        }
    }

    #[test]
    fn damaged_files_are_refused_with_where() {
        assert!(load(b"").err().unwrap_or_default().contains("too short"));
        assert!(error_of(b"NOTREDIS0010").contains("no REDIS header"));
        assert!(
            load(b"REDIS0099\xff")
                .err()
                .unwrap_or_default()
                .contains("newer")
        );
        let dbs = vec![(
            0u8,
            vec![(
                Bytes::from_static(b"k"),
                Value::Str(Bytes::from_static(b"v")),
                0u64,
            )],
        )];
        let good = encode(&dbs, &[]);
        assert_eq!(error_of(&good), "", "keyway reads its own file");
        assert!(load(&good).is_ok_and(|l| l.databases.len() == 1));
        let mut bad = good.clone();
        let at = bad.len() - 12;
        bad[at] ^= 1;
        assert!(load(&bad).is_err());
        assert!(error_of(&good[..good.len() - 9]).contains("ends before"));
    }
}
