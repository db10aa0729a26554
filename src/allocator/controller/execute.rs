//! Phase 6: the plan carried out. In `dry_run` mode a decision is only logged (once while it
//! stays the same); while launches are paused after failed boots a launch is skipped. An
//! action that fails backs off — 2 s, 4 s, 8 s … capped at 5 minutes, per kind of action —
//! and the pool shows it degraded with the error; one decision is logged per attempt, not per
//! tick. A success ends the back-off.

use std::collections::HashMap;

use super::log::{Key, Repeat};
use super::{Controller, Env, LoggedDecision, Outcome, Pending, Track};
use crate::allocator::Mode;
use crate::allocator::plan::{Action, Phase, Plan};
use crate::hypervisor::{CloneSpec, HvError, Network, VmInfo, VmState};

const BACKOFF_FIRST_US: u64 = 2_000_000;
const BACKOFF_MAX_US: u64 = 300_000_000;

/// Grace a guest gets to shut down before it is forced off.
const STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Kinds of action, for back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(super) enum Kind {
    Launch,
    Resume,
    Resize,
    Drain,
    Stop,
    Migrate,
}

impl Kind {
    pub(super) fn of(a: &Action) -> Self {
        match a {
            Action::Launch { .. } => Self::Launch,
            Action::Resume { .. } => Self::Resume,
            Action::Suspend { .. } => Self::Stop,
            Action::SetVcpus { .. } | Action::SetCap { .. } | Action::SetMemory { .. } | Action::SetWeight { .. } => {
                Self::Resize
            }
            Action::Drain { .. } => Self::Drain,
            Action::Stop { .. } => Self::Stop,
            Action::Migrate { .. } => Self::Migrate,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Self::Launch => "launch",
            Self::Resume => "resume",
            Self::Resize => "resize",
            Self::Drain => "drain",
            Self::Stop => "stop",
            Self::Migrate => "migrate",
        }
    }
}

/// A kind of action that keeps failing.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Failing {
    pub failures: u32,
    pub retry_at_us: u64,
    pub error: String,
}

/// Failing kinds of action and when each may be tried again.
#[derive(Debug, Default)]
pub(crate) struct Backoff(HashMap<Kind, Failing>);

impl Backoff {
    fn waiting(&self, k: Kind, now_us: u64) -> bool {
        self.0.get(&k).is_some_and(|f| now_us < f.retry_at_us)
    }

    fn failed(&mut self, k: Kind, now_us: u64, error: &str) -> u64 {
        let f = self.0.entry(k).or_insert(Failing { failures: 0, retry_at_us: 0, error: String::new() });
        f.failures += 1;
        let wait = BACKOFF_FIRST_US.saturating_mul(1 << (f.failures - 1).min(20)).min(BACKOFF_MAX_US);
        f.retry_at_us = now_us + wait;
        f.error = error.to_string();
        wait
    }

    fn succeeded(&mut self, k: Kind) {
        self.0.remove(&k);
    }

    /// The pool's degraded message, when an action keeps failing.
    pub(crate) fn describe(&self, now_us: u64) -> Option<String> {
        let mut v: Vec<(&Kind, &Failing)> = self.0.iter().collect();
        v.sort_by_key(|(k, _)| **k);
        let parts: Vec<String> = v
            .iter()
            .map(|(k, f)| {
                format!(
                    "{} failed {} time{} in a row ({}); next attempt in {} s",
                    k.word(),
                    f.failures,
                    if f.failures == 1 { "" } else { "s" },
                    f.error,
                    f.retry_at_us.saturating_sub(now_us).div_ceil(1_000_000)
                )
            })
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    }
}

pub(super) fn run(
    c: &mut Controller,
    env: &mut Env<'_>,
    vms: &[VmInfo],
    plan: &Plan,
    now_us: u64,
    out: &mut Vec<LoggedDecision>,
) {
    let now = now_us / 1_000_000;
    let paused = c.launches_paused_until_us.is_some_and(|u| now_us < u);
    if !paused {
        c.dedup.forget(Repeat::Paused);
    }
    for d in &plan.decisions {
        let mut logged = LoggedDecision {
            t: now,
            pool: c.p.name.clone(),
            mode: c.p.settings.mode,
            action: d.action.clone(),
            reason: d.reason.clone(),
            reactive: d.reactive,
            inputs: plan.inputs.clone(),
            outcome: Outcome::Held,
            duration_ms: None,
        };
        let Some(a) = &d.action else {
            // Logged when the kind of reason changes, not every tick.
            let key = Key::Reason(d.reason.split(':').next().unwrap_or("").to_string());
            if c.dedup.fresh(Repeat::Hold, key) {
                out.push(logged);
            }
            continue;
        };
        let kind = Kind::of(a);
        if paused && kind == Kind::Launch {
            logged.outcome = Outcome::LaunchesPaused;
            if c.dedup.fresh(Repeat::Paused, Key::Nothing) {
                out.push(logged);
            }
            continue;
        }
        if c.p.settings.mode == Mode::DryRun {
            logged.outcome = Outcome::DryRun;
            if c.dedup.fresh(Repeat::DryRun, Key::Action(a.clone())) {
                out.push(logged);
            }
            continue;
        }
        if c.backoff.waiting(kind, now_us) {
            continue;
        }
        if let Some(f) = env.fence
            && let Err(e) = f.check(a)
        {
            tracing::warn!(pool = %c.p.name, action = %a, "{e}");
            logged.outcome = Outcome::Fenced(e);
            out.push(logged);
            // Nothing more this tick: the next one sees who leads.
            break;
        }
        let started = c.now_us();
        let result = execute(c, env, vms, a, now_us);
        logged.duration_ms = Some(c.now_us().saturating_sub(started) / 1000);
        match result {
            Ok(()) => {
                c.backoff.succeeded(kind);
                logged.outcome = Outcome::Done;
                match a {
                    Action::Launch { .. } | Action::Resume { .. } | Action::SetVcpus { .. } => {
                        c.state.last_scale_out = Some(now)
                    }
                    Action::SetCap { from, to, .. } if to > from => c.state.last_scale_out = Some(now),
                    Action::Drain { .. } | Action::SetCap { .. } => c.state.last_scale_in = Some(now),
                    _ => {}
                }
            }
            Err(e) => {
                let unsupported = matches!(e, HvError::Unsupported(_));
                let e = e.to_string();
                if unsupported && matches!(a, Action::SetCap { .. }) {
                    tracing::warn!(pool = %c.p.name, "CPU caps refused ({e}): scale-in drains whole VMs only");
                    c.caps_refused = Some(e.clone());
                }
                let wait = c.backoff.failed(kind, now_us, &e);
                logged.reason.push_str(&format!("; failed, next attempt in {} s", wait / 1_000_000));
                tracing::warn!(pool = %c.p.name, action = %a, error = %e, "scaling action failed");
                logged.outcome = Outcome::Failed(e);
            }
        }
        out.push(logged);
    }
}

/// An operator's action (admin POST): carried out now, whatever the plan says.
pub(super) fn manual(c: &mut Controller, env: &mut Env<'_>, a: &Action, now_us: u64) -> (Outcome, u64) {
    if let Some(f) = env.fence
        && let Err(e) = f.check(a)
    {
        return (Outcome::Fenced(e), 0);
    }
    let vms = c.last_vms.clone();
    let started = c.now_us();
    let outcome = match execute(c, env, &vms, a, now_us) {
        Ok(()) => {
            c.backoff.succeeded(Kind::of(a));
            Outcome::Done
        }
        Err(e) => Outcome::Failed(e.to_string()),
    };
    (outcome, c.now_us().saturating_sub(started) / 1000)
}

/// Carries out one action (enabled mode).
fn execute(c: &mut Controller, env: &mut Env<'_>, vms: &[VmInfo], a: &Action, now_us: u64) -> Result<(), HvError> {
    let addr_of = |vm: &str| vms.iter().find(|v| v.name == vm).and_then(|v| v.addr.clone());
    let hv = &mut c.p.hypervisor;
    match a {
        Action::SetVcpus { vm, to, .. } => {
            hv.set_vcpus(vm, *to)?;
            if let Some(t) = c.tracks.get_mut(vm) {
                t.pending = Some((Pending::SetVcpus(*to), now_us));
            }
            Ok(())
        }
        Action::SetCap { vm, to, .. } => {
            let vcpus = vms.iter().find(|v| v.name == *vm).map_or(*to, |v| v.vcpus).max(1);
            // libvirt's quota is per vCPU thread: `to` vCPUs' worth spread over all of them.
            let percent = (*to < vcpus).then(|| (100 * *to).div_ceil(vcpus));
            hv.set_cpu_cap(vm, percent)?;
            if let Some(t) = c.tracks.get_mut(vm) {
                t.cap = percent.map(|_| *to);
            }
            Ok(())
        }
        Action::SetMemory { vm, to_mib, .. } => hv.set_memory(vm, *to_mib),
        Action::Resume { vm } => {
            hv.resume(vm)?;
            // A cap survives a suspend: a spare comes back whole.
            if let Err(e) = hv.set_cpu_cap(vm, None) {
                tracing::warn!(pool = %c.p.name, vm = %vm, "lifting a resumed VM's CPU cap: {e}");
            }
            if let Some(t) = c.tracks.get_mut(vm) {
                t.phase = Phase::Booting;
                t.cap = None;
                t.launched_us = Some(now_us);
            }
            Ok(())
        }
        Action::Launch { count, vcpus } => {
            let mut taken: Vec<u16> = Vec::new();
            for _ in 0..*count {
                // A stopped VM of the pool starts faster than a clone.
                let stopped = vms.iter().find(|v| {
                    v.state == VmState::Shutoff
                        && c.tracks.get(&v.name).is_some_and(|t| t.phase == Phase::Stopped && t.pending.is_none())
                });
                let name = match stopped {
                    // Restarted at the launch size, not at what it had grown to before it
                    // stopped (offline: a configuration change, no hot-plug).
                    Some(v) => {
                        if v.vcpus != *vcpus {
                            hv.set_vcpus(&v.name, (*vcpus).min(v.max_vcpus))?;
                        }
                        v.name.clone()
                    }
                    None => {
                        let name = (1..)
                            .map(|n| format!("{}-{n}", c.p.name))
                            .find(|n| !vms.iter().any(|v| &v.name == n) && !c.tracks.contains_key(n))
                            .unwrap_or_default();
                        let network = c.p.settings.network.clone();
                        // A forwarded port only for user networking; on a bridge the VM's own
                        // address is discovered once it runs.
                        let port = match network {
                            Network::User => {
                                let used: Vec<u16> = vms
                                    .iter()
                                    .filter_map(|v| v.addr.as_deref()?.rsplit(':').next()?.parse().ok())
                                    .chain(taken.iter().copied())
                                    .collect();
                                let (lo, hi) = c.p.settings.ports;
                                (lo..=hi)
                                    .find(|p| {
                                        !used.contains(p) && std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok()
                                    })
                                    .ok_or_else(|| HvError::Other("no free port left in ports".into()))?
                            }
                            Network::Bridge { port, .. } => port,
                        };
                        let spec = CloneSpec {
                            template: c.p.settings.template.clone(),
                            name: name.clone(),
                            pool: c.p.name.clone(),
                            port,
                            network,
                            host: None,
                            owner: env.fence.map_or(String::new(), |f| f.owner()),
                        };
                        taken.push(port);
                        let v = hv.clone_vm(&spec)?;
                        if v.vcpus < *vcpus {
                            // Offline VM: the config's count (within the template's maximum).
                            let _ = hv.set_vcpus(&name, (*vcpus).min(v.max_vcpus));
                        }
                        name
                    }
                };
                hv.start(&name)?;
                c.tracks.insert(
                    name,
                    Track {
                        phase: Phase::Booting,
                        pending: Some((Pending::Launch, now_us)),
                        drain_started_us: None,
                        launched_us: Some(now_us),
                        weight: (*vcpus).max(1),
                        addr: None,
                        cap: None,
                    },
                );
            }
            Ok(())
        }
        Action::Drain { vm } => {
            if let Some(a) = addr_of(vm) {
                env.membership.drain(&a);
            }
            if let Some(t) = c.tracks.get_mut(vm) {
                t.phase = Phase::Draining;
                t.drain_started_us = Some(now_us);
            }
            Ok(())
        }
        Action::Suspend { vm } => {
            // Out of the upstream pool first, then paused: a warm spare.
            if let Some(a) = addr_of(vm) {
                env.membership.remove(&a);
            }
            hv.suspend(vm)?;
            if let Some(t) = c.tracks.get_mut(vm) {
                t.phase = Phase::Suspended;
                t.drain_started_us = None;
            }
            Ok(())
        }
        Action::Stop { vm } => {
            // Out of the upstream pool first, then stopped.
            if let Some(a) = addr_of(vm) {
                env.membership.remove(&a);
            }
            hv.stop(vm, STOP_GRACE)?;
            if let Some(t) = c.tracks.get_mut(vm) {
                t.phase = Phase::Stopped;
                t.drain_started_us = None;
            }
            Ok(())
        }
        Action::Migrate { vm, to, .. } => {
            if let Some(t) = c.tracks.get_mut(vm) {
                t.pending = Some((Pending::Migrate, now_us));
            }
            let res = hv.migrate(vm, to);
            if let Some(t) = c.tracks.get_mut(vm) {
                t.pending = None;
            }
            c.force_hosts_check();
            res
        }
        Action::SetWeight { vm, weight } => {
            if let Some(a) = addr_of(vm) {
                env.membership.set_weight(&a, *weight);
            }
            if let Some(t) = c.tracks.get_mut(vm) {
                t.weight = *weight;
            }
            Ok(())
        }
    }
}
