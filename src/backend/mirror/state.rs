//! Where each mirrored namespace's move stands, kept in a file
//! (`server.migration_state`) so that a backfill interrupted by a restart
//! of keyway resumes from its cursor (`KEYWAY MIGRATE ns BACKFILL RESUME`)
//! and INFO still says a namespace was verified or cut over.
//!
//! One line per namespace, tab-separated: phase, cursor, keys done, bytes
//! done, then the name (last, so it may hold anything but a tab or a line
//! break; such names are not saved). Written whole to a temporary file
//! and renamed over the old one, so a crash leaves one or the other.

use std::path::PathBuf;
use std::sync::Mutex;

use super::MigrationStatus;

static FILE: Mutex<Option<PathBuf>> = Mutex::new(None);

/// Sets the file from the config, at start and on reload.
pub fn set_file(path: Option<PathBuf>) {
    *FILE.lock().unwrap_or_else(|e| e.into_inner()) = path;
}

fn file() -> Option<PathBuf> {
    FILE.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// What a namespace's line says, as a status: a task that was running
/// when keyway stopped is `stopped`, with its cursor kept.
pub fn load(namespace: &str) -> Option<MigrationStatus> {
    let text = std::fs::read_to_string(file()?).ok()?;
    let line = text
        .lines()
        .find(|l| l.rsplit('\t').next() == Some(namespace))?;
    let f: Vec<&str> = line.split('\t').collect();
    let [phase, cursor, keys, bytes, _] = f[..] else {
        return None;
    };
    let phase = crate::wire::metrics::MIGRATION_PHASES
        .iter()
        .copied()
        .find(|p| *p == phase)?;
    Some(MigrationStatus {
        phase: match phase {
            "backfilling" | "verifying" => "stopped",
            p => p,
        },
        cursor: cursor.to_string(),
        keys_done: keys.parse().unwrap_or(0),
        bytes_done: bytes.parse().unwrap_or(0),
        ..MigrationStatus::default()
    })
}

/// Writes a namespace's line, keeping the others'.
pub fn save(namespace: &str, s: &MigrationStatus) {
    let Some(path) = file() else { return };
    if namespace.contains(['\t', '\n', '\r']) || s.cursor.contains(['\t', '\n', '\r']) {
        return;
    }
    let old = std::fs::read_to_string(&path).unwrap_or_default();
    let mut out: String = old
        .lines()
        .filter(|l| l.rsplit('\t').next() != Some(namespace))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!(
        "{}\t{}\t{}\t{}\t{namespace}\n",
        s.phase, s.cursor, s.keys_done, s.bytes_done
    ));
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, out).and_then(|_| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        tracing::warn!(file = %path.display(), error = %e, "cannot save the migration state");
    }
}
