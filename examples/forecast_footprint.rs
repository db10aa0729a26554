//! The forecast thread's workload for 100 endpoints with 14 days of 1-minute history each
//! (20,160 points, generated: daily and weekly cycle, noise, a different seed per endpoint), on
//! one core: one Holt–Winters refit each, one re-estimation of the chosen model each (what a
//! scheduled refit does), one full automatic choice each (what `select_every` does), and the
//! memory the 100 fitted models hold (resident set growth while they are alive).
//!
//! Usage: `cargo run --release --example forecast_footprint`

use std::time::Instant;

use prescale::forecast::auto::AutoSpec;
use prescale::forecast::hw::HwSpec;

fn series(seed: u64) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let scale = 50.0 + 500.0 * rng.f64();
    (0..14 * 1440)
        .map(|t| {
            let day = (t % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
            let week = if (t / 1440) % 7 >= 5 { 0.6 } else { 1.0 };
            (scale * (1.0 + 0.6 * day.sin()) * week * (0.9 + 0.2 * rng.f64())).round()
        })
        .collect()
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn main() {
    let n = 100;
    let data: Vec<Vec<f64>> = (0..n).map(|i| series(i as u64)).collect();
    let t = Instant::now();
    for y in &data {
        std::hint::black_box(HwSpec::additive(1440, 60).fit(y).unwrap());
    }
    let hw = t.elapsed().as_secs_f64();
    let before = rss_kib();
    let t = Instant::now();
    let fits: Vec<_> = data.iter().map(|y| AutoSpec::new(60, 60).fit(y).unwrap()).collect();
    let auto = t.elapsed().as_secs_f64();
    let after = rss_kib();
    let t = Instant::now();
    for (f, y) in fits.iter().zip(&data) {
        std::hint::black_box(f.refit(y).unwrap());
    }
    let refit = t.elapsed().as_secs_f64();
    let mut chosen: Vec<String> = fits.iter().map(|f| f.model()).collect();
    chosen.sort();
    chosen.dedup_by(|a, b| a == b);
    println!("{n} endpoints x 14 d of 1-min data, one core:");
    println!("  Holt-Winters fit, all endpoints:        {hw:.2} s ({:.1} ms each)", hw * 1000.0 / n as f64);
    println!("  re-estimate chosen model, all:          {refit:.2} s ({:.1} ms each)", refit * 1000.0 / n as f64);
    println!("  automatic choice (backtest), all:       {auto:.2} s ({:.1} ms each)", auto * 1000.0 / n as f64);
    println!(
        "  memory of the 100 fitted models:        {:.1} MiB ({:.0} KiB each)",
        after.saturating_sub(before) as f64 / 1024.0,
        after.saturating_sub(before) as f64 / n as f64
    );
    println!("  models chosen: {}", chosen.join(", "));
}
