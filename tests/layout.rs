//! The dependency order stated in `src/lib.rs` holds: a module's code (tests aside) names only
//! modules below it. Checked on the source, so a new arrow pointing up fails here.

use std::collections::BTreeSet;
use std::path::Path;

/// Bottom first, as `src/lib.rs` states it.
const ORDER: [&str; 16] = [
    "clock",
    "trace",
    "historian",
    "feedback",
    "forecast",
    "hypervisor",
    "proxy",
    "allocator",
    "fleet",
    "simulate",
    "admin",
    "config",
    "app",
    "fuzzing",
    "demo",
    "cli",
];

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The modules `m`'s non-test code names as `crate::x`.
fn uses(src: &Path, m: &str) -> BTreeSet<String> {
    let mut files = Vec::new();
    if src.join(m).is_dir() {
        sources(&src.join(m), &mut files);
    } else {
        files.push(src.join(format!("{m}.rs")));
    }
    let mut out = BTreeSet::new();
    for f in files {
        for line in std::fs::read_to_string(&f).unwrap().lines() {
            let l = line.trim();
            if l.starts_with("#[cfg(test)]") {
                break;
            }
            if l.starts_with("//") {
                continue;
            }
            for (i, _) in l.match_indices("crate::") {
                let name: String = l[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if name != m && ORDER.contains(&name.as_str()) {
                    out.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn every_module_uses_only_modules_below_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let mut up = Vec::new();
    for (i, m) in ORDER.iter().enumerate() {
        assert!(lib.contains(&format!("pub mod {m};")), "src/lib.rs has no module {m}");
        for used in uses(&src, m) {
            let j = ORDER.iter().position(|o| *o == used).unwrap();
            if j > i {
                up.push(format!("{m} uses {used}, which is above it"));
            }
        }
    }
    assert!(up.is_empty(), "{up:#?}");
}
