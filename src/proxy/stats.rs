//! Counters the proxy bumps per call and the admin listener reads for `/metrics`.
//!
//! Per-call counters are kept per worker ([`Sharded`]): each worker writes only its own shard
//! (its own cache line), so no line is written by two cores per request; readers add the
//! shards up. Nothing here allocates or locks on the request path.

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

/// One `T` per worker (and one for every other thread), each on its own cache line.
#[derive(Debug)]
pub struct Sharded<T> {
    shards: Box<[Padded<T>]>,
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded<T>(T);

impl<T: Default> Sharded<T> {
    /// One shard per data-plane worker plus one for other threads.
    pub fn new() -> Self {
        Self { shards: (0..super::worker::shards()).map(|_| Padded::default()).collect() }
    }
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Sharded<T> {
    /// The calling thread's shard.
    #[inline]
    pub fn local(&self) -> &T {
        self.local_indexed().1
    }

    /// The calling thread's shard and its index (for [`Sharded::at`]).
    #[inline]
    pub fn local_indexed(&self) -> (usize, &T) {
        let i = super::worker::index();
        let i = if i < self.shards.len() { i } else { 0 };
        (i, &self.shards[i].0)
    }

    /// Shard `i` (from [`Sharded::local_indexed`]).
    pub fn at(&self, i: usize) -> &T {
        &self.shards[i].0
    }

    /// Every shard, for readers to add up.
    pub fn all(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|p| &p.0)
    }

    /// The sum over shards of one counter.
    pub fn sum(&self, f: impl Fn(&T) -> &AtomicU64) -> u64 {
        self.all().map(|s| f(s).load(Relaxed)).sum()
    }
}

/// One worker's counters for one endpoint.
#[derive(Debug, Default)]
pub struct EndpointShard {
    /// Responses by status class 1xx..5xx.
    pub by_class: [AtomicU64; 5],
    pub cancelled: AtomicU64,
    pub upstream_aborted: AtomicU64,
    /// Cumulative-free histogram: `buckets[i]` counts latencies ≤ bound i (and > bound i−1);
    /// the last slot is +Inf.
    pub buckets: [AtomicU64; LATENCY_BOUNDS_US.len() + 1],
    pub latency_sum_us: AtomicU64,
}

/// Counters for one endpoint (kept across reloads by name), per worker.
#[derive(Debug, Default)]
pub struct EndpointStats {
    shards: Sharded<EndpointShard>,
    /// Requests held now while no member was ready, and how held requests ended (rare: not
    /// sharded).
    pub held_now: std::sync::atomic::AtomicUsize,
    pub held_served: AtomicU64,
    pub held_timed_out: AtomicU64,
    pub held_refused: AtomicU64,
}

/// An endpoint's counters summed over the workers.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct EndpointTotals {
    pub by_class: [u64; 5],
    pub cancelled: u64,
    pub upstream_aborted: u64,
    pub buckets: [u64; LATENCY_BOUNDS_US.len() + 1],
    pub latency_sum_us: u64,
}

impl EndpointStats {
    pub fn record(&self, status: u16, latency: Duration, outcome: Outcome) {
        // Atomic adds on this worker's own cache line: uncontended, so cheap; atomic still,
        // because threads beyond the shard count share one.
        let s = self.shards.local();
        let class = (status / 100).clamp(1, 5) as usize - 1;
        s.by_class[class].fetch_add(1, Relaxed);
        match outcome {
            Outcome::Complete => {}
            Outcome::Cancelled => {
                s.cancelled.fetch_add(1, Relaxed);
            }
            Outcome::UpstreamAborted => {
                s.upstream_aborted.fetch_add(1, Relaxed);
            }
        }
        let us = latency.as_micros().min(u64::MAX as u128) as u64;
        s.buckets[bucket(us)].fetch_add(1, Relaxed);
        s.latency_sum_us.fetch_add(us, Relaxed);
    }

    /// The counters summed over the workers.
    pub fn totals(&self) -> EndpointTotals {
        let mut t = EndpointTotals::default();
        for s in self.shards.all() {
            for (a, b) in t.by_class.iter_mut().zip(&s.by_class) {
                *a += b.load(Relaxed);
            }
            for (a, b) in t.buckets.iter_mut().zip(&s.buckets) {
                *a += b.load(Relaxed);
            }
            t.cancelled += s.cancelled.load(Relaxed);
            t.upstream_aborted += s.upstream_aborted.load(Relaxed);
            t.latency_sum_us += s.latency_sum_us.load(Relaxed);
        }
        t
    }

    pub fn requests_total(&self) -> u64 {
        self.totals().by_class.iter().sum()
    }
}

fn bucket(us: u64) -> usize {
    LATENCY_BOUNDS_US.iter().position(|b| us <= *b).unwrap_or(LATENCY_BOUNDS_US.len())
}

/// Process-wide data-plane counters (per connection or rare events: plain shared atomics).
#[derive(Debug, Default)]
pub struct GlobalStats {
    /// Client connections open now, upgraded tunnels included.
    pub connections_active: AtomicU64,
    pub connections_total: AtomicU64,
    /// Idle HTTP/1.1 connections parked now: open, without hyper's state or buffers.
    pub connections_parked: AtomicU64,
    /// Times a connection was parked.
    pub parks_total: AtomicU64,
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
        let t = s.totals();
        assert_eq!(t.by_class[1], 2);
        assert_eq!(t.by_class[4], 1);
        assert_eq!(t.buckets[0], 1);
        assert_eq!(t.buckets[2], 1);
        assert_eq!(t.buckets[LATENCY_BOUNDS_US.len()], 1);
        assert_eq!(t.cancelled, 1);
        assert_eq!(s.requests_total(), 3);
    }

    #[test]
    fn workers_write_their_own_shards_and_readers_see_the_sum() {
        let s = std::sync::Arc::new(EndpointStats::default());
        let shards = super::super::worker::shards();
        assert!(shards >= 2, "one shard per worker plus one");
        let threads: Vec<_> = (1..shards.min(4))
            .map(|w| {
                let s = s.clone();
                std::thread::spawn(move || {
                    super::super::worker::set_index(w);
                    for _ in 0..1000 {
                        s.record(200, Duration::from_millis(2), Outcome::Complete);
                    }
                })
            })
            .collect();
        for _ in 0..500 {
            s.record(404, Duration::from_millis(2), Outcome::Complete);
        }
        for t in threads {
            t.join().unwrap();
        }
        let t = s.totals();
        assert_eq!(t.by_class[1], 1000 * (shards.min(4) as u64 - 1));
        assert_eq!(t.by_class[3], 500);
        assert_eq!(t.buckets[1], t.by_class[1] + 500);
        // Each worker's counts sit in its own shard.
        let per: Vec<u64> = s.shards.all().map(|x| x.by_class[1].load(Relaxed)).collect();
        assert_eq!(per[0], 0);
        assert!(per[1..shards.min(4)].iter().all(|&n| n == 1000), "{per:?}");
    }
}
