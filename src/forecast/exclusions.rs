//! Excluded periods: spans of an endpoint's history the models must not learn from (an
//! incident, a load test, a bot) and the scorer must not score. They come from the
//! configuration (`exclude = [...]` on an `[[endpoint]]`) and from operators at run time (the
//! admin action, `prescale exclude`); those are kept in `exclusions.json` in the historian's
//! data_dir so a restart keeps them. The forecast thread treats an excluded bucket as missing
//! when it fits and when it updates, and an endpoint that gets a new exclusion is fitted again.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

/// One excluded span of one endpoint, `[from, to)` in epoch seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exclusion {
    pub endpoint: String,
    pub from: u64,
    pub to: u64,
    pub reason: String,
    /// `"config"` or `"admin"` (added at run time).
    pub source: String,
}

impl Exclusion {
    pub fn covers(&self, t: u64) -> bool {
        self.from <= t && t < self.to
    }
}

/// Why an exclusion was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ExcludeError {
    #[error("to must be after from")]
    Empty,
    #[error("reason: required (a few words, at most 200 bytes)")]
    Reason,
    #[error("at most {0} exclusions are kept")]
    Full(usize),
    #[error("cannot write {0}: {1}")]
    Write(String, String),
}

/// Exclusions added at run time are bounded: each is a line on the admin page.
pub const MAX_ADDED: usize = 1000;

/// Every exclusion in force: readers load the list without a lock; adding one takes the lock
/// and, with a data_dir, rewrites the file before the new list is published.
#[derive(Debug)]
pub struct ExclusionStore {
    list: ArcSwap<Vec<Exclusion>>,
    file: Option<PathBuf>,
    write: Mutex<()>,
}

impl ExclusionStore {
    /// The configured exclusions plus those saved in `data_dir` (a missing or unreadable file
    /// is logged and ignored: the configuration's still apply).
    pub fn open(configured: Vec<Exclusion>, data_dir: Option<PathBuf>) -> Arc<Self> {
        let file = data_dir.map(|d| d.join("exclusions.json"));
        let mut list = configured;
        if let Some(f) = &file {
            match std::fs::read(f) {
                Ok(bytes) => match serde_json::from_slice::<Vec<Exclusion>>(&bytes) {
                    Ok(saved) => list.extend(saved.into_iter().filter(|e| e.source == "admin")),
                    Err(e) => tracing::warn!(path = %f.display(), error = %e, "exclusions file unreadable; ignored"),
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => tracing::warn!(path = %f.display(), error = %e, "cannot read the exclusions file"),
            }
        }
        Arc::new(Self { list: ArcSwap::from_pointee(list), file, write: Mutex::new(()) })
    }

    pub fn all(&self) -> Arc<Vec<Exclusion>> {
        self.list.load_full()
    }

    /// An endpoint's spans.
    pub fn of(&self, endpoint: &str) -> Vec<(u64, u64)> {
        self.list.load().iter().filter(|e| e.endpoint == endpoint).map(|e| (e.from, e.to)).collect()
    }

    /// Adds an operator's exclusion (saved first when there is a data_dir).
    pub fn add(&self, endpoint: &str, from: u64, to: u64, reason: &str) -> Result<(), ExcludeError> {
        if to <= from {
            return Err(ExcludeError::Empty);
        }
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > 200 {
            return Err(ExcludeError::Reason);
        }
        let _g = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (**self.list.load()).clone();
        if next.iter().filter(|e| e.source == "admin").count() >= MAX_ADDED {
            return Err(ExcludeError::Full(MAX_ADDED));
        }
        next.push(Exclusion { endpoint: endpoint.into(), from, to, reason: reason.into(), source: "admin".into() });
        if let Some(f) = &self.file {
            let added: Vec<&Exclusion> = next.iter().filter(|e| e.source == "admin").collect();
            let text = serde_json::to_vec_pretty(&added).unwrap_or_default();
            let tmp = f.with_extension("json.tmp");
            std::fs::write(&tmp, text)
                .and_then(|_| std::fs::rename(&tmp, f))
                .map_err(|e| ExcludeError::Write(f.display().to_string(), e.to_string()))?;
        }
        self.list.store(Arc::new(next));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configured() -> Exclusion {
        Exclusion { endpoint: "api".into(), from: 100, to: 200, reason: "load test".into(), source: "config".into() }
    }

    #[test]
    fn added_exclusions_survive_a_restart_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = ExclusionStore::open(vec![configured()], Some(dir.path().to_path_buf()));
        assert_eq!(s.add("api", 300, 300, "x"), Err(ExcludeError::Empty));
        assert_eq!(s.add("api", 300, 400, "  "), Err(ExcludeError::Reason));
        s.add("api", 300, 400, "incident 42").unwrap();
        s.add("other", 0, 10, "bot").unwrap();
        assert_eq!(s.of("api"), [(100, 200), (300, 400)]);
        // A restart: the configured one from the config, the added ones from the file (once).
        let again = ExclusionStore::open(vec![configured()], Some(dir.path().to_path_buf()));
        assert_eq!(*again.all(), *s.all());
        // A corrupt file loses only what it held.
        std::fs::write(dir.path().join("exclusions.json"), "{").unwrap();
        assert_eq!(ExclusionStore::open(vec![configured()], Some(dir.path().to_path_buf())).all().len(), 1);
        // Without a data_dir they live in memory.
        let mem = ExclusionStore::open(Vec::new(), None);
        mem.add("api", 1, 2, "x").unwrap();
        assert!(mem.all()[0].covers(1) && !mem.all()[0].covers(2));
    }
}
