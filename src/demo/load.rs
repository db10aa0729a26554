//! The demo's traffic: the generated daily pattern (or a replayed trace) and the load
//! generator that sends it through the proxy.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

use super::clock::ScaledClock;

/// Calls per minute of the generated pattern at virtual time `t` (seconds): a daily cycle
/// peaking mid-afternoon UTC, quieter weekends, a small deterministic wobble and, on some days,
/// a half-hour burst.
pub fn pattern(endpoint: &str, t: u64) -> f64 {
    let (base, peak, phase) = match endpoint {
        "orders" => (12.0, 110.0, 0.0),
        "search" => (8.0, 40.0, 1.5),
        _ => (3.0, 12.0, -2.0),
    };
    let day = t / 86_400;
    let hour = (t % 86_400) as f64 / 3600.0;
    let daily = (-((hour - 14.0 - phase).powi(2)) / 18.0).exp();
    let weekday = (day + 4) % 7; // 1970-01-01 was a Thursday: 5, 6 are Saturday and Sunday
    let week = if weekday >= 5 { 0.6 } else { 1.0 };
    let wobble = 1.0 + 0.08 * ((t / 60) as f64 * 0.7).sin() * ((t / 60) as f64 * 0.13).cos();
    let burst = if endpoint == "orders" && day % 3 == 1 && (10.0..10.5).contains(&hour) { 1.8 } else { 1.0 };
    (base + (peak - base) * daily * week) * wobble * burst
}

#[derive(Default)]
pub struct LoadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Sum of latencies (µs) and count over the last status period.
    pub(super) lat_us: AtomicU64,
    pub(super) lat_n: AtomicU64,
}

/// The load generator: every 100 ms (real), the calls the pattern (or the replayed trace) asks
/// for in the virtual time that passed, open-loop, at most 2,000 in flight.
/// Calls per minute the demo sends to `ep` at virtual second `t`: the generated pattern, or for
/// `orders` with `--trace` the trace a week earlier at the same minute (the replayed "next day").
pub(super) fn demo_rate(replay: &Option<Vec<(u64, f64)>>, ep: &str, t: u64) -> f64 {
    match (replay, ep) {
        (Some(r), "orders") => {
            let i = r.partition_point(|x| x.0 + 7 * 86_400 <= t);
            r.get(i.saturating_sub(1)).map_or(0.0, |x| x.1)
        }
        _ => pattern(ep, t),
    }
}

pub(super) fn weekday_name(t: u64) -> &'static str {
    ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"][((t / 86_400) % 7) as usize]
}

pub(super) async fn load(
    proxy: SocketAddr,
    clock: Arc<ScaledClock>,
    replay: Arc<Option<Vec<(u64, f64)>>>,
    stats: Arc<LoadStats>,
    stop: CancellationToken,
) {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
    let inflight = Arc::new(Semaphore::new(2000));
    let mut owed: HashMap<&str, f64> = HashMap::new();
    let mut last = clock.now_us();
    let mut n = 0u64;
    let rate = |ep: &str, t: u64| demo_rate(&replay, ep, t);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = clock.now_us();
        let dt_min = (now - last) as f64 / 60e6;
        last = now;
        for ep in ["orders", "reports", "search"] {
            let due = owed.entry(ep).or_default();
            *due += rate(ep, now / 1_000_000) * dt_min;
            while *due >= 1.0 {
                *due -= 1.0;
                n += 1;
                let path = match ep {
                    "orders" => format!("/api/orders/{}", n % 1000),
                    "reports" => {
                        format!("/api/reports?report={}", if n.is_multiple_of(5) { "full" } else { "summary" })
                    }
                    _ => format!("/api/search?q=item{}", n % 97),
                };
                let Ok(permit) = inflight.clone().try_acquire_owned() else {
                    stats.failed.fetch_add(1, Relaxed);
                    continue;
                };
                let (client, stats) = (client.clone(), stats.clone());
                let uri: http::Uri = match format!("http://{proxy}{path}").parse() {
                    Ok(u) => u,
                    Err(_) => continue,
                };
                tokio::spawn(async move {
                    let t = std::time::Instant::now();
                    let ok = matches!(
                        tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await,
                        Ok(Ok(r)) if r.status().is_success()
                    );
                    stats.lat_us.fetch_add(t.elapsed().as_micros() as u64, Relaxed);
                    stats.lat_n.fetch_add(1, Relaxed);
                    if ok {
                        stats.ok.fetch_add(1, Relaxed)
                    } else {
                        stats.failed.fetch_add(1, Relaxed)
                    };
                    drop(permit);
                });
            }
        }
    }
}
