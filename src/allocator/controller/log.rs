//! Phase 7: the decision records. Every decision with an action is kept; a hold (no action),
//! a dry run and an action waiting out a back-off or a launch pause are kept when they change,
//! not every tick.

use serde::{Serialize, Serializer};

use crate::allocator::Mode;
use crate::allocator::plan::{self, Action};

/// What became of a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The action was carried out (or the note recorded).
    Done,
    /// `dry_run` mode: logged, not done.
    DryRun,
    /// A decision to hold: nothing to do.
    Held,
    /// Launches are paused after VMs that never became healthy.
    LaunchesPaused,
    /// An operator's scale-in found no idle serving VM to drain.
    NothingToDrain,
    /// The action failed; the error as the hypervisor gave it.
    Failed(String),
    /// Not carried out: this instance could not prove it still leads the pool (`[cluster]`).
    Fenced(String),
}

impl Outcome {
    /// The outcome as written in the decision log and shown on the page.
    pub fn as_text(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Self::Done => "ok".into(),
            Self::DryRun => "dry_run".into(),
            Self::Held => "skipped".into(),
            Self::LaunchesPaused => "skipped: launches paused after failed boots".into(),
            Self::NothingToDrain => "skipped: no idle serving VM to drain".into(),
            Self::Failed(e) => format!("error: {e}").into(),
            Self::Fenced(e) => format!("refused: {e}").into(),
        }
    }

    /// The outcome's class, one word (a metrics label).
    pub fn class(&self) -> &'static str {
        match self {
            Self::Done => "ok",
            Self::DryRun => "dry_run",
            Self::Held | Self::LaunchesPaused | Self::NothingToDrain => "skipped",
            Self::Failed(_) => "error",
            Self::Fenced(_) => "refused",
        }
    }
}

impl Serialize for Outcome {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_text())
    }
}

impl<'de> serde::Deserialize<'de> for Outcome {
    /// The text written to the log read back (a leader's decisions shown by followers).
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(match s.as_str() {
            "ok" => Self::Done,
            "dry_run" => Self::DryRun,
            "skipped" => Self::Held,
            "skipped: launches paused after failed boots" => Self::LaunchesPaused,
            "skipped: no idle serving VM to drain" => Self::NothingToDrain,
            _ => match (s.strip_prefix("error: "), s.strip_prefix("refused: ")) {
                (Some(e), _) => Self::Failed(e.to_string()),
                (_, Some(e)) => Self::Fenced(e.to_string()),
                _ => Self::Failed(s),
            },
        })
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.as_text())
    }
}

/// A logged decision.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct LoggedDecision {
    /// Epoch seconds (the controller's clock).
    pub t: u64,
    pub pool: String,
    pub mode: Mode,
    /// `null` for a decision to hold (every record has the key, so readers need no guesswork).
    pub action: Option<Action>,
    pub reason: String,
    pub reactive: bool,
    pub inputs: plan::Inputs,
    /// `"ok"`, `"dry_run"`, `"skipped"` (`"skipped: why"`), or `"error: …"`.
    pub outcome: Outcome,
    /// How long the action took, when it ran.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub duration_ms: Option<u64>,
}

impl LoggedDecision {
    /// A decision of `pool` at `t` without planner inputs: done, no action, not reactive.
    pub(crate) fn note(pool: &str, mode: Mode, t: u64, reason: String) -> Self {
        LoggedDecision {
            t,
            pool: pool.to_string(),
            mode,
            action: None,
            reason,
            reactive: false,
            inputs: Default::default(),
            outcome: Outcome::Done,
            duration_ms: None,
        }
    }
}

/// What kind of repeated record is being held back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Repeat {
    Hold,
    DryRun,
    Paused,
}

/// What makes a repeated record the same as the last: the kind of a hold's reason (its text
/// before the numbers), or the action a dry run would have taken.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Key {
    Reason(String),
    Action(Action),
    Nothing,
}

/// The last record of each repeated kind: a repeat is not logged again.
#[derive(Debug, Default)]
pub(crate) struct Dedup(std::collections::HashMap<Repeat, Key>);

impl Dedup {
    /// True when `key` differs from the last one of `kind` (and remembers it).
    pub(crate) fn fresh(&mut self, kind: Repeat, key: Key) -> bool {
        if self.0.get(&kind) == Some(&key) {
            return false;
        }
        self.0.insert(kind, key);
        true
    }

    pub(crate) fn forget(&mut self, kind: Repeat) {
        self.0.remove(&kind);
    }
}
