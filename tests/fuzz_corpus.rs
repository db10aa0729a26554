//! Replays the fuzz corpus (`fuzz/seeds`, the kept `fuzz/corpus`, and `fuzz/regressions`: every
//! input that once crashed) through the same checks the fuzz targets run, on stable Rust, so a
//! regression fails CI without the fuzzer.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["seeds", "corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(target)) else { continue };
        for e in entries.flatten() {
            let data = std::fs::read(e.path()).unwrap();
            let r = std::panic::catch_unwind(|| check(&data));
            assert!(r.is_ok(), "{target}: {} fails its check again", e.path().display());
            n += 1;
        }
    }
    n
}

#[test]
fn the_fuzz_corpus_passes_every_check() {
    let counts: Vec<(&str, usize)> = [
        ("config", prescale::fuzzing::config as fn(&[u8])),
        ("import", prescale::fuzzing::import),
        ("segment", prescale::fuzzing::segment),
        ("admin_query", prescale::fuzzing::admin_query),
        ("request_target", prescale::fuzzing::request_target),
    ]
    .into_iter()
    .map(|(t, f)| (t, replay(t, f)))
    .collect();
    for (t, n) in &counts {
        assert!(*n >= 2, "{t}: the seeds are there ({n} inputs)");
    }
}
