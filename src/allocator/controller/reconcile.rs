//! Phase 1: what the hypervisor says. Lists the pool's VMs (a hypervisor that fails leaves the
//! pool degraded and the tick ends there: nothing is planned on stale state, so nothing is
//! launched twice), adopts VMs whose metadata names the pool, and lets the hypervisor's truth
//! win over stale tracking: a VM destroyed or shut off behind prescale's back leaves the
//! upstream pool and is logged, so the planner replaces it on this same tick.

use super::{Controller, Env, LoggedDecision, Pending, Track};
use crate::allocator::plan::{Action, Phase};
use crate::hypervisor::{VmInfo, VmState};

/// A pending action older than this is forgotten (never stuck forever).
const PENDING_MAX_US: u64 = 600_000_000;

pub(super) fn run(
    c: &mut Controller,
    env: &mut Env<'_>,
    now_us: u64,
    out: &mut Vec<LoggedDecision>,
) -> Option<Vec<VmInfo>> {
    let now = now_us / 1_000_000;
    let vms = match c.p.hypervisor.list(&c.p.name) {
        Ok(v) => {
            if let Some(e) = c.hv_error.take() {
                let reason = format!("hypervisor reachable again (was: {e})");
                tracing::info!(pool = %c.p.name, "{reason}");
                out.push(LoggedDecision::note(&c.p.name, c.p.settings.mode, now, reason));
            }
            v
        }
        Err(e) => {
            let e = e.to_string();
            if c.hv_error.as_deref() != Some(e.as_str()) {
                tracing::warn!(pool = %c.p.name, error = %e, "hypervisor failing");
            }
            c.hv_error = Some(e);
            return None;
        }
    };
    let mode = c.p.settings.mode;
    // Tracked VMs the hypervisor no longer has: destroyed (undefined) outside prescale.
    let gone: Vec<String> = c.tracks.keys().filter(|n| !vms.iter().any(|v| &v.name == *n)).cloned().collect();
    for name in gone {
        let t = c.tracks.remove(&name).expect("listed above");
        if let Some(a) = &t.addr {
            env.membership.remove(a);
        }
        if t.phase != Phase::Stopped {
            let reason = format!("{name} disappeared from the hypervisor (removed outside prescale); out of the pool");
            tracing::warn!(pool = %c.p.name, "{reason}");
            out.push(LoggedDecision::note(&c.p.name, mode, now, reason));
        }
    }
    for v in &vms {
        // A running guest adopted from elsewhere (a restart, a fleet leader gone) may carry a
        // CPU cap nobody tracks: lift it, so its capacity is what it shows.
        if mode == crate::allocator::Mode::Enabled
            && v.state == VmState::Running
            && !c.tracks.contains_key(&v.name)
            && let Err(e) = c.p.hypervisor.set_cpu_cap(&v.name, None)
        {
            tracing::warn!(pool = %c.p.name, vm = %v.name, "lifting an adopted VM's CPU cap: {e}");
        }
        let t = c.tracks.entry(v.name.clone()).or_insert_with(|| Track {
            phase: match v.state {
                VmState::Running if v.addr.as_deref().is_some_and(|a| env.membership.in_flight(a).is_some()) => {
                    Phase::Serving
                }
                VmState::Running => Phase::Booting,
                VmState::Paused => Phase::Suspended,
                _ => Phase::Stopped,
            },
            pending: None,
            drain_started_us: None,
            launched_us: None,
            weight: v.vcpus.max(1),
            addr: v.addr.clone(),
            cap: None,
        });
        if v.addr.is_some() {
            t.addr.clone_from(&v.addr);
        }
        // The hypervisor's truth wins over stale tracking.
        match (v.state, t.phase) {
            // Suspended elsewhere (by the fleet's leader, or by hand): out of the pool, a spare.
            (VmState::Paused, Phase::Serving | Phase::Booting | Phase::Draining) if t.pending.is_none() => {
                let was = format!("{:?}", t.phase).to_lowercase();
                t.phase = Phase::Suspended;
                t.drain_started_us = None;
                if let Some(a) = &t.addr {
                    env.membership.remove(a);
                }
                out.push(LoggedDecision::note(
                    &c.p.name,
                    mode,
                    now,
                    format!("{} is suspended (it was {was}): out of the pool, a warm spare", v.name),
                ));
            }
            (VmState::Shutoff, Phase::Serving | Phase::Booting | Phase::Draining) if t.pending.is_none() => {
                let was = t.phase;
                t.phase = Phase::Stopped;
                t.drain_started_us = None;
                t.launched_us = None;
                if let Some(a) = &t.addr {
                    env.membership.remove(a);
                }
                if was != Phase::Booting || mode == crate::allocator::Mode::Enabled {
                    let was = match was {
                        Phase::Serving => "serving",
                        Phase::Draining => "draining",
                        _ => "booting",
                    };
                    let reason = format!("{} was shut off outside prescale (it was {was}); out of the pool", v.name);
                    tracing::warn!(pool = %c.p.name, "{reason}");
                    out.push(LoggedDecision {
                        action: Some(Action::Stop { vm: v.name.clone() }),
                        ..LoggedDecision::note(&c.p.name, mode, now, reason)
                    });
                }
            }
            (VmState::Running, Phase::Suspended | Phase::Stopped) if t.pending.is_none() => {
                t.phase = Phase::Booting;
                t.cap = None;
            }
            _ => {}
        }
        // Vertical changes finish when the hypervisor shows them.
        if let Some((Pending::SetVcpus(n), since)) = t.pending
            && v.vcpus == n
        {
            c.hotplugs.push(now_us.saturating_sub(since) as f64 / 1000.0);
            t.pending = None;
        }
        if t.pending.is_some_and(|(_, since)| now_us.saturating_sub(since) > PENDING_MAX_US) {
            t.pending = None;
        }
    }
    Some(vms)
}
