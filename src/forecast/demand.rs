//! Demand: calls/s with bands become CPU cores, memory and I/O through the cost model; request
//! classes split an endpoint's calls by cost.

use std::collections::HashMap;
use std::sync::Arc;

use crate::feedback::classes::{self, ClassSplit};

use super::published::{Demand, DemandPoint, RatePoint};
use super::settings::CostModel;

/// Mean latency (ms) and bytes per call by endpoint, from the most recent calls.
pub(super) fn call_costs(snap: &crate::historian::store::Snapshot) -> HashMap<Arc<str>, (f64, f64)> {
    let mut acc: HashMap<Arc<str>, (f64, f64, u64)> = HashMap::new();
    for c in snap.recent.iter().take(20_000) {
        let e = acc.entry(c.endpoint.clone()).or_default();
        e.0 += c.latency_us as f64 / 1000.0;
        e.1 += (c.bytes_in + c.bytes_out) as f64;
        e.2 += 1;
    }
    acc.into_iter().map(|(k, (l, b, n))| (k, (l / n as f64, b / n as f64))).collect()
}

/// Request classes per endpoint from the recent calls (the last minute's are the current mix).
pub(super) fn class_splits(
    snap: &crate::historian::store::Snapshot,
    configured: &HashMap<String, String>,
    now_us: u64,
) -> HashMap<String, ClassSplit> {
    let mut by: HashMap<&str, Vec<classes::Call>> = HashMap::new();
    for c in snap.recent.iter() {
        by.entry(&c.endpoint).or_default().push(classes::Call {
            query: c.params(),
            latency_us: c.latency_us,
            recent: c.start_us + 60_000_000 >= now_us,
        });
    }
    by.into_iter()
        .filter_map(|(e, calls)| {
            classes::detect(&calls, configured.get(e).map(String::as_str)).map(|s| (e.to_string(), s))
        })
        .collect()
}

pub(super) fn demand(cost: CostModel, latency_ms: f64, bytes: f64, points: &[RatePoint]) -> Demand {
    let cpu = |r: f64| r * cost.cpu_ms_per_request / 1000.0;
    let mem = |r: f64| r * latency_ms / 1000.0 * cost.memory_mib_per_request;
    Demand {
        cpu_ms_per_request: cost.cpu_ms_per_request,
        memory_mib_per_request: cost.memory_mib_per_request,
        latency_ms,
        bytes_per_request: bytes,
        points: points
            .iter()
            .map(|p| DemandPoint {
                t: p.t,
                cpu_cores: cpu(p.rate),
                cpu_cores_hi80: cpu(p.hi80),
                cpu_cores_hi95: cpu(p.hi95),
                memory_mib: mem(p.rate),
                memory_mib_hi95: mem(p.hi95),
                io_bytes_per_s: p.rate * bytes,
                io_bytes_per_s_hi95: p.hi95 * bytes,
            })
            .collect(),
    }
}
