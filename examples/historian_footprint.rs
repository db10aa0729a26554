//! Prints the historian's memory and disk footprint: bytes per endpoint-minute, and the total
//! for 100 endpoints × 35 days with the default tiers (1 s × 1 h, 1 min × 35 d, 1 h × 400 d),
//! all rings full. Data is generated (daily cycle, noise, errors, latencies).
//!
//! Usage: `cargo run --release --example historian_footprint`

use std::sync::Arc;

use prescale::historian::disk::Disk;
use prescale::historian::series::{Bucket, FullBucket, Tier};
use prescale::historian::store::default_tiers;

fn bucket(i: u64, rng: &mut fastrand::Rng) -> FullBucket {
    let daily = 1.0 + 0.8 * ((i % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin();
    let calls = (3000.0 * daily * (0.8 + 0.4 * rng.f64())) as u64;
    let p50 = 800 + rng.u64(0..400);
    FullBucket {
        calls,
        e4: calls / 50,
        e5: calls / 500,
        timeouts: calls / 5000,
        bytes_in: calls * 200,
        bytes_out: calls * 2048,
        latency_sum_us: calls * p50,
        lat_us: [p50, p50 * 3, p50 * 8, p50 * 30],
    }
}

fn main() {
    let tiers = default_tiers();
    let mut rng = fastrand::Rng::with_seed(1);
    let endpoints = 100;
    let first_min = 1_800_000_000 / 60;
    let mut memory = 0usize;
    for _ in 0..endpoints {
        for spec in &tiers {
            let mut t = Tier::new(spec.step_s, spec.capacity());
            let start = first_min * 60 / spec.step_s;
            for i in 0..spec.capacity() as u64 {
                t.put(start + i, &bucket(i, &mut rng), Bucket::ZERO);
            }
            memory += t.memory_bytes();
        }
    }
    let minute_buckets_per_endpoint = 35 * 1440;
    println!(
        "in memory: {} bytes per bucket (packed); {endpoints} endpoints × all tiers full = {:.1} MiB",
        std::mem::size_of::<Bucket>(),
        memory as f64 / 1048576.0
    );
    println!(
        "in memory per endpoint-minute (all tiers, amortised over the 35-day minute tier): {:.1} bytes",
        memory as f64 / (endpoints * minute_buckets_per_endpoint) as f64
    );

    // Disk: one endpoint, 35 days of minutes and the matching hours.
    let dir = std::env::temp_dir().join(format!("prescale-footprint-{}", std::process::id()));
    let mut disk = Disk::open(&dir).expect("temp dir");
    let name: Arc<str> = Arc::from("orders");
    let mut rows = Vec::new();
    for i in 0..minute_buckets_per_endpoint {
        rows.push((1usize, name.clone(), first_min + i, bucket(i, &mut rng)));
    }
    let minute_bytes = {
        disk.append(&tiers, rows).map_err(|(e, _)| e).expect("write");
        disk.bytes()
    };
    let hours: Vec<_> =
        (0..35 * 24).map(|h| (2usize, name.clone(), first_min / 60 + h, bucket(h * 60, &mut rng))).collect();
    disk.append(&tiers, hours).map_err(|(e, _)| e).expect("write");
    let total = disk.bytes();
    println!(
        "on disk: {:.1} bytes per endpoint-minute (minute tier); {:.1} bytes per endpoint-minute with the hour tier; {endpoints} endpoints × 35 days = {:.1} MiB",
        minute_bytes as f64 / minute_buckets_per_endpoint as f64,
        total as f64 / minute_buckets_per_endpoint as f64,
        total as f64 * endpoints as f64 / 1048576.0
    );
    let _ = std::fs::remove_dir_all(&dir);
}
