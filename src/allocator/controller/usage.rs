//! Phase 3: what the pool's VMs use. Every `stats_interval` the hypervisor's domain stats of
//! the running VMs are read; cores (from CPU-time deltas) against the cost-weighted request
//! rate feed the cost model, host RSS against requests in flight the memory model.

use super::{Controller, Env, PoolUsage};
use crate::hypervisor::stats::{DomainStats, Usage};
use crate::hypervisor::{VmInfo, VmState};

pub(super) fn run(c: &mut Controller, env: &Env<'_>, vms: &[VmInfo], now_us: u64) {
    let every = c.p.settings.stats_interval.as_micros() as u64;
    if c.last_sample_us.is_some_and(|t| now_us < t + every) {
        return;
    }
    c.last_sample_us = Some(now_us);
    let stats = c.p.hypervisor.stats(&c.p.name);
    let poll_ms = c.now_us().saturating_sub(now_us) as f64 / 1e3;
    let Ok(stats) = stats else { return };
    let at = now_us * 1000;
    let running: Vec<&DomainStats> =
        stats.iter().filter(|s| vms.iter().any(|v| v.name == s.name && v.state == VmState::Running)).collect();
    let mut per_vm = Vec::new();
    let mut complete = !running.is_empty();
    for s in &running {
        match c.readings.get(&s.name) {
            Some((prev, t0)) if at > *t0 => {
                per_vm.push(crate::hypervisor::stats::usage(prev, s, (at - t0) as f64 / 1e9))
            }
            _ => complete = false,
        }
    }
    c.readings = running.iter().map(|s| (s.name.clone(), ((*s).clone(), at))).collect();
    let cores: f64 = per_vm.iter().filter_map(|u| u.cores).sum();
    complete &= per_vm.iter().all(|u| u.cores.is_some());
    let total = |f: fn(&Usage) -> Option<f64>| -> Option<f64> {
        let v: Vec<f64> = per_vm.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| v.iter().sum())
    };
    let measured = env.signals.measured_rps();
    let (concurrency, weighted_rps) = env.signals.load_detail();
    let u = PoolUsage {
        t: now_us / 1_000_000,
        cores,
        rss_mib: total(|u| u.rss_mib),
        balloon_mib: total(|u| u.balloon_mib),
        block_bytes_per_s: total(|u| u.block_bytes_per_s),
        net_bytes_per_s: total(|u| u.net_bytes_per_s),
        measured_rps: measured,
        weighted_rps,
        concurrency,
        poll_ms,
        vms: per_vm,
    };
    if complete {
        c.cost.observe(weighted_rps, cores);
        c.last_cores = cores;
        // Per VM: a VM's fixed footprint is the intercept, the slope is per request in flight
        // (the pool's VM count changes; per-VM values do not confound it).
        let n = u.vms.len() as f64;
        if let Some(mem) = u.rss_mib {
            c.memory.observe(concurrency / n, mem / n);
        }
        c.usage = Some(u);
    }
}
