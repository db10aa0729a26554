//! End-to-end on real qemu guests under libvirtd (run through `scripts/e2e-guests e2e_burst`,
//! which builds the guest and defines the template `e2e-tpl`): a burst that no forecast saw,
//! arriving at a pool that is already serving and holds a warm spare (issue 18).
//!
//! The pool (`min_vms = 1`, `max_vms = 2`, `warm_spares = 1`, 6 requests/s per vCPU) has a noisy
//! history of 1–5 requests/s: the forecast plans one vCPU and leaves room for a spare. The run
//! prints a timeline and checks:
//!
//! 1. a first surge (16 requests/s for 25 s) launches a second guest; when the load falls back
//!    to 4 requests/s that guest is drained and **suspended** — the warm spare — and the serving
//!    guest is capped to one vCPU (`vcpu_quota`) with its balloon shrunk (128 of 256 MiB);
//! 2. the burst (16 requests/s for 30 s): the reactive path lifts the cap and **resumes** the
//!    spare; no request fails, no guest is cloned or booted for it, nothing is taken away while
//!    it lasts;
//! 3. after it, scale-in takes seconds: the time to the first step back (a cap), and until the
//!    pool is back where it was (one guest capped and ballooned, the other a spare again).
//!
//! Usage: `scripts/e2e-guests e2e_burst` (needs root, libvirtd, qemu; about three minutes).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prescale::hypervisor::Hypervisor;
use prescale::hypervisor::libvirt::Libvirt;

mod common;
use common::json;

const POOL: &str = "e2eb";
const URI: &str = "qemu:///system";
const CLIENTS: usize = 8;

/// One request: when it was sent (s from the start), its status, how long it took.
type Sample = (f64, Option<u16>, f64);

fn vms(admin: SocketAddr) -> Vec<serde_json::Value> {
    json(admin, "/admin/api/pools")[0]["vms"].as_array().cloned().unwrap_or_default()
}

/// `(name, phase, state, vcpus, cap, memory MiB)` of every VM, for the timeline.
fn describe(admin: SocketAddr) -> String {
    vms(admin)
        .iter()
        .map(|v| {
            format!(
                "{} {}/{} {} vCPU{} {} MiB",
                v["name"].as_str().unwrap_or("?"),
                v["phase"].as_str().unwrap_or("?"),
                v["state"].as_str().unwrap_or("?"),
                v["vcpus"],
                v["cap_vcpus"].as_u64().map_or(String::new(), |c| format!(" (capped to {c})")),
                v["memory_mib"]
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Waits up to `secs` for `cond` on the VM list; the seconds it took.
fn wait_for(admin: SocketAddr, secs: u64, cond: impl Fn(&[serde_json::Value]) -> bool) -> Option<f64> {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        if cond(&vms(admin)) {
            return Some(t0.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn main() -> anyhow::Result<()> {
    let (run, _) = common::fresh_run(POOL, URI)?;
    let start = Instant::now();
    let now_s = prescale::clock::now_us() / 1_000_000;
    // Three days of 1–5 requests/s, minute by minute (a fixed pseudo-random sequence).
    let mut csv = String::from("timestamp,value\n");
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for m in now_s / 60 - 3 * 1440..now_s / 60 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        csv.push_str(&format!("{},{}\n", m * 60, 60 + x % 241));
    }
    std::fs::write(run.join("h.csv"), csv)?;
    let cfg = run.join("p.toml");
    std::fs::write(
        &cfg,
        common::scaled_pool_config(
            POOL,
            URI,
            "capacity_rps_per_vcpu = 6.0\ntarget_utilization = 1.0\nheadroom = 0.0\nwindow = \"1m\"\n\
             cooldown = \"5s\"\nscale_in_stabilization = \"10s\"\ndrain_timeout = \"5s\"\nwarm_spares = 1\n\
             stats_interval = \"1h\"\n",
        )
        .replace("pool = \"e2eb\"\n", "pool = \"e2eb\"\nhold = \"30s\"\n"),
    )?;
    common::import_history(&cfg, &run.join("h.csv"))?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let app = rt.block_on(prescale::app::App::start(prescale::config::load(&cfg)?))?;
    let (proxy, admin) = (app.proxy_addr, app.admin_addr);
    let t = move || start.elapsed().as_secs_f64();
    println!("t={:>5.1} s  prescale started (min_vms = 1, warm_spares = 1)", t());

    let done = Arc::new(AtomicBool::new(false));
    // Decisions, printed as they come: `(t, kind, reason)` kept for the checks.
    let decisions: Arc<Mutex<Vec<(f64, String, String)>>> = Arc::default();
    let watcher = {
        let (done, decisions) = (done.clone(), decisions.clone());
        std::thread::spawn(move || {
            let mut seen = 0;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let d = json(admin, "/admin/api/decisions?limit=1000");
                let list: Vec<serde_json::Value> =
                    d.as_array().cloned().unwrap_or_default().into_iter().rev().collect();
                for x in list.iter().skip(seen) {
                    let kind = x["action"]["kind"].as_str().unwrap_or("-").to_string();
                    let reason = x["reason"].as_str().unwrap_or("").to_string();
                    let at = start.elapsed().as_secs_f64();
                    println!("t={at:>5.1} s  {kind:<10} {:<8} {reason}", x["outcome"].as_str().unwrap_or(""));
                    decisions.lock().unwrap().push((at, kind, reason));
                }
                seen = seen.max(list.len());
            }
        })
    };

    // Load: `level` of the CLIENTS clients each send a GET every 500 ms (2 requests/s each).
    let level = Arc::new(AtomicUsize::new(0));
    let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (level, samples, done) = (level.clone(), samples.clone(), done.clone());
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(60 * i as u64));
                while !done.load(Ordering::Relaxed) {
                    if i >= level.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(50));
                        continue;
                    }
                    let sent = start.elapsed().as_secs_f64();
                    let status = common::http_get_waiting(proxy, "/health", Duration::from_secs(60)).map(|(s, _)| s);
                    let took = start.elapsed().as_secs_f64() - sent;
                    samples.lock().unwrap().push((sent, status, took));
                    std::thread::sleep(Duration::from_millis(500).saturating_sub(Duration::from_secs_f64(took)));
                }
            })
        })
        .collect();
    let running = |v: &[serde_json::Value]| v.iter().filter(|v| v["state"] == "running").count();
    let suspended = |v: &[serde_json::Value]| v.iter().filter(|v| v["phase"] == "suspended").count();

    // The first guest (min_vms), then the first surge.
    let first = wait_for(admin, 120, |v| v.iter().any(|v| v["in_pool"] == true));
    println!("t={:>5.1} s  first guest serving ({first:?} s): {}", t(), describe(admin));
    level.store(2, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(10));
    println!("t={:>5.1} s  surge: 16 requests/s for 25 s", t());
    level.store(CLIENTS, Ordering::Relaxed);
    std::thread::sleep(Duration::from_secs(25));
    level.store(2, Ordering::Relaxed);
    println!("t={:>5.1} s  back to 4 requests/s: {}", t(), describe(admin));
    let spare_in = wait_for(admin, 150, |v| {
        suspended(v) == 1
            && running(v) == 1
            && v.iter().any(|v| v["state"] == "running" && v["cap_vcpus"].as_u64() == Some(1) && v["memory_mib"] == 128)
    });
    println!("t={:>5.1} s  spare and cap ({spare_in:?} s): {}", t(), describe(admin));
    let before: Vec<String> = vms(admin).iter().filter_map(|v| v["name"].as_str().map(String::from)).collect();
    std::thread::sleep(Duration::from_secs(5));

    // The burst.
    let burst_at = t();
    let n_before_burst = samples.lock().unwrap().len();
    let d_before_burst = decisions.lock().unwrap().len();
    println!("t={burst_at:>5.1} s  burst: 16 requests/s for 30 s");
    level.store(CLIENTS, Ordering::Relaxed);
    let resumed_in = wait_for(admin, 30, |v| running(v) == 2 && v.iter().filter(|v| v["in_pool"] == true).count() == 2);
    println!("t={:>5.1} s  both serving ({resumed_in:?} s after the burst began): {}", t(), describe(admin));
    let whole = wait_for(admin, 5, |v| {
        v.iter().all(|v| v["state"] != "running" || !v["cap_vcpus"].is_null() || v["memory_mib"] == 256)
    });
    println!("t={:>5.1} s  uncapped running guests at 256 MiB: {whole:?}", t());
    std::thread::sleep(Duration::from_secs_f64((burst_at + 30.0 - t()).max(0.0)));
    let burst_end = t();
    level.store(2, Ordering::Relaxed);
    let burst: Vec<Sample> = samples.lock().unwrap()[n_before_burst..].to_vec();
    let during: Vec<(f64, String, String)> =
        decisions.lock().unwrap()[d_before_burst..].iter().filter(|d| d.0 <= burst_end).cloned().collect();
    println!("t={:>5.1} s  burst over, back to 4 requests/s: {}", t(), describe(admin));

    // Scale-in after it: the first step back (a cap, in seconds), then all the way back — one
    // guest running capped to 1 vCPU with its balloon at 128 MiB, the other a spare again.
    let d_after_burst = decisions.lock().unwrap().len();
    let first_in = {
        let t0 = Instant::now();
        loop {
            let hit = decisions.lock().unwrap()[d_after_burst..]
                .iter()
                .find(|d| matches!(d.1.as_str(), "set_cap" | "set_memory" | "drain"))
                .map(|d| (d.0 - burst_end, d.1.clone(), d.2.clone()));
            if hit.is_some() || t0.elapsed() > Duration::from_secs(90) {
                break hit;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    println!("t={:>5.1} s  first step back after the burst: {first_in:?}", t());
    let back_in = wait_for(admin, 120, |v| {
        suspended(v) == 1
            && v.iter().any(|v| v["state"] == "running" && v["cap_vcpus"].as_u64() == Some(1) && v["memory_mib"] == 128)
    })
    .map(|_| t() - burst_end);
    println!("t={:>5.1} s  back where it was ({back_in:?} s after the burst): {}", t(), describe(admin));
    done.store(true, Ordering::Relaxed);
    let _ = watcher.join();
    for c in clients {
        let _ = c.join();
    }
    let after: Vec<String> = vms(admin).iter().filter_map(|v| v["name"].as_str().map(String::from)).collect();
    let all = samples.lock().unwrap().clone();
    let failed_all = all.iter().filter(|s| s.1 != Some(200)).count();
    let failed = burst.iter().filter(|s| s.1 != Some(200)).count();
    let mut lat: Vec<f64> = burst.iter().map(|s| s.2).collect();
    lat.sort_by(f64::total_cmp);
    let q = |f: f64| lat.get(((lat.len().max(1) - 1) as f64 * f).round() as usize).copied().unwrap_or(0.0);
    let first_reactive = during.iter().find(|d| d.1 != "-").map(|d| d.0 - burst_at);
    println!(
        "burst: {} requests, {failed} failed (whole run: {} requests, {failed_all} failed); latency median {:.3} s, \
         p99 {:.3} s, max {:.3} s; first action {first_reactive:?} s after it began; both guests serving after \
         {resumed_in:?} s; VMs before {before:?}, after {after:?}",
        burst.len(),
        all.len(),
        q(0.5),
        q(0.99),
        q(1.0)
    );
    rt.block_on(app.stop());
    let mut hv = Libvirt::new(&[URI.to_string()]);
    for v in hv.list(POOL)? {
        hv.delete(&v.name)?;
    }
    anyhow::ensure!(spare_in.is_some(), "no warm spare and capped guest before the burst");
    anyhow::ensure!(failed == 0 && failed_all == 0, "{failed} requests of the burst failed ({failed_all} in all)");
    anyhow::ensure!(resumed_in.is_some(), "the spare did not serve during the burst");
    anyhow::ensure!(whole.is_some(), "a resumed guest did not get its memory back");
    anyhow::ensure!(
        during.iter().any(|d| d.1 == "resume") && !during.iter().any(|d| d.1 == "launch"),
        "the burst was met by a launch, not the spare: {during:?}"
    );
    anyhow::ensure!(
        !during.iter().any(|d| matches!(d.1.as_str(), "drain" | "stop" | "suspend")),
        "capacity taken away during the burst: {during:?}"
    );
    anyhow::ensure!(after == before, "a guest was cloned: {before:?} → {after:?}");
    anyhow::ensure!(first_in.is_some() && back_in.is_some(), "no scale-in after the burst");
    println!("e2e: PASS");
    Ok(())
}
