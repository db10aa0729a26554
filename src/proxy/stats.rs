//! Lock-free counters the proxy bumps per call and the admin listener reads for `/metrics`.
//! Writers only `fetch_add`; nothing here allocates on the request path.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Upper bounds of the latency histogram, microseconds (Prometheus `le` buckets).
pub const LATENCY_BOUNDS_US: [u64; 13] = [
    1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];

/// How a call ended, from the proxy's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response body was delivered to its end.
    Complete,
    /// The client went away before the response ended.
    Cancelled,
    /// The upstream broke the response body mid-stream.
    UpstreamAborted,
}

/// Counters for one endpoint (kept across reloads by name).
#[derive(Debug, Default)]
pub struct EndpointStats {
    /// Responses by status class 1xx..5xx.
    pub by_class: [AtomicU64; 5],
    pub cancelled: AtomicU64,
    pub upstream_aborted: AtomicU64,
    /// Cumulative-free histogram: `buckets[i]` counts latencies ≤ bound i (and > bound i−1);
    /// the last slot is +Inf.
    pub buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    pub latency_sum_us: AtomicU64,
}

impl EndpointStats {
    pub fn record(&self, status: u16, latency: Duration, outcome: Outcome) {
        let class = (status / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].fetch_add(1, Relaxed);
        match outcome {
            Outcome::Complete => {}
            Outcome::Cancelled => {
                self.cancelled.fetch_add(1, Relaxed);
            }
            Outcome::UpstreamAborted => {
                self.upstream_aborted.fetch_add(1, Relaxed);
            }
        }
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        let i = LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len());
        self.buckets[i].fetch_add(1, Relaxed);
        self.latency_sum_us.fetch_add(us, Relaxed);
    }

    pub fn requests_total(&self) -> u64 {
        self.by_class.iter().map(|c| c.load(Relaxed)).sum()
    }
}

/// Process-wide data-plane counters.
#[derive(Debug, Default)]
pub struct GlobalStats {
    /// Client connections open now, upgraded tunnels included.
    pub connections_active: AtomicU64,
    pub connections_total: AtomicU64,
    /// Upgraded (WebSocket) tunnels open now; each holds a connection slot.
    pub tunnels_active: AtomicU64,
    pub tunnels_total: AtomicU64,
    /// Tunnels closed because no byte moved for `listen.tunnel_idle_timeout`.
    pub tunnels_idle_closed: AtomicU64,
    /// Requests that matched no endpoint (404) or were refused before routing.
    pub unrouted: AtomicU64,
    pub upstream_retries: AtomicU64,
    pub access_log_dropped: AtomicU64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_and_classes() {
        let s = EndpointStats::default();
        s.record(200, Duration::from_micros(900), Outcome::Complete);
        s.record(503, Duration::from_millis(3), Outcome::Complete);
        s.record(200, Duration::from_secs(60), Outcome::Cancelled);
        assert_eq!(s.by_class[1].load(Relaxed), 2);
        assert_eq!(s.by_class[4].load(Relaxed), 1);
        assert_eq!(s.buckets[0].load(Relaxed), 1);
        assert_eq!(s.buckets[2].load(Relaxed), 1);
        assert_eq!(s.buckets[LATENCY_BOUNDS_US.len()].load(Relaxed), 1);
        assert_eq!(s.cancelled.load(Relaxed), 1);
        assert_eq!(s.requests_total(), 3);
    }
}
