//! The floors of `src/` import only from floors below their own: a test
//! that reads every `crate::` path in the source and fails on one that
//! reaches up. The order is `keyway::FLOORS`, written once in lib.rs.

use std::path::Path;

fn floor_of(name: &str) -> Option<usize> {
    keyway::FLOORS.iter().position(|f| *f == name)
}

fn files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).expect("src is readable").flatten() {
        let p = e.path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn no_floor_imports_from_one_above() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let mut wrong = Vec::new();
    let mut checked = 0;
    for path in all {
        let rel = path.strip_prefix(&src).expect("under src");
        let top = rel.components().next().and_then(|c| c.as_os_str().to_str());
        let Some(own) = top.and_then(floor_of) else {
            // lib.rs and main.rs sit above every floor.
            continue;
        };
        checked += 1;
        let text = std::fs::read_to_string(&path).expect("readable");
        for (n, line) in text.lines().enumerate() {
            let mut rest = line;
            while let Some(at) = rest.find("crate::") {
                rest = &rest[at + "crate::".len()..];
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                match floor_of(&name) {
                    Some(f) if f > own => wrong.push(format!(
                        "{}:{}: the {} floor uses crate::{name}, a floor above it",
                        rel.display(),
                        n + 1,
                        keyway::FLOORS[own]
                    )),
                    Some(_) => {}
                    None => wrong.push(format!(
                        "{}:{}: crate::{name} is on no floor (floors: {:?})",
                        rel.display(),
                        n + 1,
                        keyway::FLOORS
                    )),
                }
            }
        }
    }
    assert!(checked > 40, "only {checked} files found under src/");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A file's module path under `src/` (`backend::memory::store`); a
/// folder's `mod.rs` is the folder's module.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .with_extension("")
        .components()
        .filter_map(|c| c.as_os_str().to_str().map(str::to_string))
        .collect();
    if parts.last().is_some_and(|l| l == "mod") {
        parts.pop();
    }
    parts
}

/// The modules a file names through `crate::` or `super::` paths, outside
/// comments and its tests, resolved to the longest path that is a file.
fn uses(text: &str, own: &[String], modules: &[Vec<String>]) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let code = text.split("#[cfg(test)]").next().unwrap_or_default();
    let mut out = Vec::new();
    for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line
            .match_indices("crate::")
            .chain(line.match_indices("super::"))
        {
            if line[..at].ends_with(|c: char| ident(c) || c == ':') {
                continue;
            }
            let path: Vec<&str> = line[at..]
                .split(|c: char| !(ident(c) || c == ':'))
                .next()
                .unwrap_or_default()
                .split("::")
                .filter(|s| !s.is_empty())
                .collect();
            // Each `super` is the module above (a mod.rs is its folder's
            // module, so its `super` is the folder above).
            let mut base: Vec<String> = own.to_vec();
            let mut rest = &path[..];
            if rest.first() == Some(&"crate") {
                base.clear();
                rest = &rest[1..];
            }
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
            base.extend(rest.iter().map(|s| s.to_string()));
            while !base.is_empty() {
                if modules.contains(&base) && base != own {
                    out.push(base.clone());
                    break;
                }
                base.pop();
            }
        }
    }
    out
}

/// Files of one folder may use each other, but not in a circle: the one
/// circle left is the memory store and the nodes it keeps, two halves of
/// one table.
#[test]
fn no_cycle_between_files_of_a_folder_but_the_store_and_its_nodes() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut all = Vec::new();
    files(&src, &mut all);
    let modules: Vec<Vec<String>> = all
        .iter()
        .map(|p| module_of(p.strip_prefix(&src).expect("under src")))
        .collect();
    let edges: Vec<Vec<usize>> = all
        .iter()
        .zip(&modules)
        .map(|(p, m)| {
            let text = std::fs::read_to_string(p).expect("readable");
            uses(&text, m, &modules)
                .iter()
                .filter_map(|u| modules.iter().position(|x| x == u))
                .collect()
        })
        .collect();
    // Two modules are in a circle when each reaches the other.
    let reach = |from: usize| {
        let mut seen = vec![false; modules.len()];
        let mut todo = vec![from];
        while let Some(v) = todo.pop() {
            for &w in &edges[v] {
                if !seen[w] {
                    seen[w] = true;
                    todo.push(w);
                }
            }
        }
        seen
    };
    let reaches: Vec<Vec<bool>> = (0..modules.len()).map(reach).collect();
    let allowed = [
        vec!["backend", "memory", "node"],
        vec!["backend", "memory", "store"],
    ];
    let mut circles = Vec::new();
    for a in 0..modules.len() {
        for b in a + 1..modules.len() {
            if reaches[a][b] && reaches[b][a] {
                let (ma, mb) = (&modules[a], &modules[b]);
                let ok = allowed.iter().any(|x| x == ma) && allowed.iter().any(|x| x == mb);
                if !ok {
                    circles.push(format!("{} <-> {}", ma.join("::"), mb.join("::")));
                }
            }
        }
    }
    assert!(circles.is_empty(), "{}", circles.join("\n"));
}
