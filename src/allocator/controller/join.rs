//! Phase 2: booting VMs become serving ones. A VM prescale started that is not healthy within
//! `boot_timeout` is deleted (logged); after two of them in a row, launches
//! pause for a boot timeout and the pool shows why. A booting VM whose guest passes the health
//! check ([`super::Prober`]) joins the upstream pool — timing start → healthy, which the learned
//! lead time is made of. Drains finish when nothing is in flight (or on `drain_timeout`).

use super::{BOOT_FAILURES_PAUSE, Controller, Env, LoggedDecision, Outcome};
use crate::allocator::Mode;
use crate::allocator::plan::{Action, Phase};
use crate::hypervisor::{VmInfo, VmState};

pub(super) fn run(c: &mut Controller, env: &mut Env<'_>, vms: &[VmInfo], now_us: u64, out: &mut Vec<LoggedDecision>) {
    let now = now_us / 1_000_000;
    let mode = c.p.settings.mode;
    let timeout = c.p.settings.boot_timeout;
    let timeout_us = timeout.as_micros() as u64;
    let failed: Vec<String> = c
        .tracks
        .iter()
        .filter(|(_, t)| {
            t.phase == Phase::Booting && t.launched_us.is_some_and(|l| now_us.saturating_sub(l) > timeout_us)
        })
        .map(|(n, _)| n.clone())
        .collect();
    for name in failed {
        let outcome = match c.p.hypervisor.delete(&name) {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Failed(e.to_string()),
        };
        c.tracks.remove(&name);
        c.boot_failures += 1;
        let mut reason = format!("{name} did not become healthy within {} s of its launch: deleted", timeout.as_secs());
        if c.boot_failures >= BOOT_FAILURES_PAUSE {
            c.launches_paused_until_us = Some(now_us + timeout_us);
            reason.push_str(&format!(
                "; {} launches in a row failed, launches paused for {} s",
                c.boot_failures,
                timeout.as_secs()
            ));
        }
        out.push(LoggedDecision {
            action: Some(Action::Stop { vm: name }),
            outcome,
            ..LoggedDecision::note(&c.p.name, mode, now, reason)
        });
    }
    for v in vms {
        let Some(t) = c.tracks.get_mut(&v.name) else { continue };
        let Some(addr) = v.addr.as_deref() else { continue };
        if t.phase == Phase::Booting
            && v.state == VmState::Running
            && env.prober.healthy(addr, &c.p.settings.health_path)
        {
            if mode == Mode::Enabled {
                env.membership.join(addr, v.vcpus.max(1));
            }
            t.phase = Phase::Serving;
            t.weight = v.vcpus.max(1);
            c.boot_failures = 0;
            let took = t.launched_us.take().map(|s| now_us.saturating_sub(s));
            if let Some(d) = took {
                c.launches.push(d as f64 / 1e6);
            }
            t.pending = None;
            let reason = format!(
                "{} healthy at {addr}{}; joined the upstream pool",
                v.name,
                took.map_or(String::new(), |d| format!(" {:.1} s after launch", d as f64 / 1e6))
            );
            out.push(LoggedDecision {
                duration_ms: took.map(|d| d / 1000),
                ..LoggedDecision::note(&c.p.name, mode, now, reason)
            });
        }
        // Serving VMs are members in enabled mode (after a switch from dry-run, for one).
        if t.phase == Phase::Serving && mode == Mode::Enabled && env.membership.in_flight(addr).is_none() {
            env.membership.join(addr, t.weight);
        }
    }
}

/// Draining VMs with nothing in flight any more, or past `drain_timeout`.
pub(super) fn drained(c: &Controller, env: &Env<'_>, vms: &[VmInfo], now_us: u64) -> Vec<String> {
    let limit = c.p.settings.drain_timeout.as_micros() as u64;
    vms.iter()
        .filter(|v| {
            let Some(t) = c.tracks.get(&v.name) else { return false };
            if t.phase != Phase::Draining {
                return false;
            }
            let idle = v.addr.as_deref().is_none_or(|a| env.membership.in_flight(a).is_none_or(|n| n == 0));
            idle || t.drain_started_us.is_some_and(|s| now_us.saturating_sub(s) > limit)
        })
        .map(|v| v.name.clone())
        .collect()
}
