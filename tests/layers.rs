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
