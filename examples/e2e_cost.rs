//! The feedback loop on a real qemu guest (run through `scripts/e2e-guests e2e_cost`, which
//! builds the guest — its `/cgi-bin/burn?n=N` spins N shell iterations — and defines the
//! template `e2e-tpl`).
//!
//! One guest is cloned and started through prescale's libvirt layer. Requests that burn CPU in
//! the guest are sent at three rates in turn; every `INTERVAL` the guest's usage is read with
//! libvirt domain stats (prescale's decoding) and fed, with the measured request rate, to the
//! allocator's online cost model (RLS with forgetting), started from a prior 2.5× off. Printed:
//! every sample (rate, cores, the model's cores per request/s), the samples it took to come
//! within 10 % of the least-squares slope over all samples, and the stats call's duration.
//! Checks: cores follow the rate; the model ends within 10 % of the least-squares slope.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prescale::feedback::cost::LinearCost;
use prescale::hypervisor::libvirt::Libvirt;
use prescale::hypervisor::stats::usage;
use prescale::hypervisor::{CloneSpec, Hypervisor};

const POOL: &str = "cost";
const URI: &str = "qemu:///system";
const PORT: u16 = 18_460;
const INTERVAL: Duration = Duration::from_secs(3);

fn get(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: e2e\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.get(9..12)?.parse().ok()
}

fn main() -> anyhow::Result<()> {
    let mut hv = Libvirt::new(&[URI.to_string()]);
    for v in hv.list(POOL)? {
        hv.delete(&v.name)?;
    }
    let spec = CloneSpec {
        owner: String::new(),
        template: "e2e-tpl".into(),
        name: "cost-1".into(),
        pool: POOL.into(),
        port: PORT,
        network: prescale::hypervisor::Network::User,
        host: None,
    };
    hv.clone_vm(&spec)?;
    hv.start("cost-1")?;
    let addr: SocketAddr = format!("127.0.0.1:{PORT}").parse()?;
    let t0 = Instant::now();
    while get(addr, "/health") != Some(200) {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(60), "the guest did not answer /health in 60 s");
        std::thread::sleep(Duration::from_millis(300));
    }
    println!("guest healthy after {:.1} s", t0.elapsed().as_secs_f64());
    anyhow::ensure!(
        get(addr, "/cgi-bin/burn?n=10") == Some(200),
        "the guest has no /cgi-bin/burn (rebuild the initrd)"
    );
    // One request's cost, alone.
    let n = 3000;
    let t = Instant::now();
    for _ in 0..3 {
        get(addr, &format!("/cgi-bin/burn?n={n}"));
    }
    let one = t.elapsed().as_secs_f64() / 3.0;
    println!("one burn request (n={n}): {:.0} ms", one * 1000.0);

    // Load generator: `rate` requests/s (open loop, a thread per request, bounded).
    let rate_milli = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let generator = {
        let (rate_milli, done, stop) = (rate_milli.clone(), done.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut next = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                let r = rate_milli.load(Ordering::Relaxed) as f64 / 1000.0;
                if r <= 0.0 {
                    std::thread::sleep(Duration::from_millis(50));
                    next = Instant::now();
                    continue;
                }
                next += Duration::from_secs_f64(1.0 / r);
                if let Some(w) = next.checked_duration_since(Instant::now()) {
                    std::thread::sleep(w);
                }
                let done = done.clone();
                std::thread::spawn(move || {
                    if get(addr, &format!("/cgi-bin/burn?n={n}")) == Some(200) {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        })
    };

    // Rates at about 15 … 55 % of one vCPU (by the single-request cost), alternating so that
    // the per-request slope and the idle intercept can be told apart.
    let rates: Vec<f64> = [0.15, 0.55, 0.35, 0.15, 0.45].iter().map(|u| u / one).collect();
    let prior = 2.5 * one; // cores per request/s, deliberately 2.5× off
    let mut model = LinearCost::prior(prior); // as the allocator starts it
    let mut samples: Vec<(f64, f64)> = Vec::new();
    let mut slopes: Vec<f64> = Vec::new();
    let mut poll_ms: Vec<f64> = Vec::new();
    let mut prev = hv.stats(POOL)?.pop().ok_or_else(|| anyhow::anyhow!("no stats for cost-1"))?;
    let mut prev_at = Instant::now();
    let mut prev_done = 0;
    println!("{:>6} {:>8} {:>8} {:>10}", "t s", "rps", "cores", "model c/rps");
    for r in &rates {
        rate_milli.store((r * 1000.0) as u64, Ordering::Relaxed);
        let phase = Instant::now();
        while phase.elapsed() < Duration::from_secs(36) {
            std::thread::sleep(INTERVAL);
            let p = Instant::now();
            let s = hv.stats(POOL)?.pop().ok_or_else(|| anyhow::anyhow!("no stats"))?;
            poll_ms.push(p.elapsed().as_secs_f64() * 1000.0);
            let secs = prev_at.elapsed().as_secs_f64();
            let d = done.load(Ordering::Relaxed);
            let rps = (d - prev_done) as f64 / secs;
            let cores = usage(&prev, &s, secs).cores.unwrap_or(0.0);
            (prev, prev_at, prev_done) = (s, Instant::now(), d);
            // The first sample of a phase mixes two rates: skip it.
            if phase.elapsed() < INTERVAL * 2 {
                continue;
            }
            model.observe(rps, cores);
            samples.push((rps, cores));
            slopes.push(model.per_request);
            println!("{:>6.0} {rps:>8.2} {cores:>8.3} {:>10.4}", t0.elapsed().as_secs_f64(), model.per_request);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = generator.join();
    hv.delete("cost-1")?;

    // Least squares over every sample: the slope the data supports.
    let k = samples.len() as f64;
    let (mx, my) = (samples.iter().map(|s| s.0).sum::<f64>() / k, samples.iter().map(|s| s.1).sum::<f64>() / k);
    let sxy: f64 = samples.iter().map(|s| (s.0 - mx) * (s.1 - my)).sum();
    let sxx: f64 = samples.iter().map(|s| (s.0 - mx).powi(2)).sum();
    let ols = sxy / sxx;
    let within = slopes.iter().position(|s| (s - ols).abs() <= 0.1 * ols.abs());
    poll_ms.sort_by(|a, b| a.total_cmp(b));
    println!(
        "least-squares slope {ols:.4} cores per request/s (intercept {:.3}); model {:.4}; prior {prior:.4}; \
         within 10 % after {} samples; stats call median {:.1} ms [{:.1}–{:.1}]",
        my - ols * mx,
        model.per_request,
        within.map_or("never".into(), |i| (i + 1).to_string()),
        poll_ms[poll_ms.len() / 2],
        poll_ms[0],
        poll_ms[poll_ms.len() - 1]
    );
    // Cores follow the rate: the busiest phase used more than the quietest.
    let per_phase: Vec<f64> = samples
        .chunks((samples.len() / 5).max(1))
        .map(|c| c.iter().map(|s| s.1).sum::<f64>() / c.len() as f64)
        .collect();
    println!("mean cores per phase: {per_phase:.3?}");
    anyhow::ensure!(per_phase[1] > 2.0 * per_phase[0], "cores did not follow the rate: {per_phase:?}");
    anyhow::ensure!((model.per_request - ols).abs() <= 0.1 * ols.abs(), "the model did not converge");
    println!("PASS");
    Ok(())
}
