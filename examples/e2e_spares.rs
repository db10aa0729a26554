//! End-to-end on real qemu guests under libvirtd (run through `scripts/e2e-guests e2e_spares`,
//! which builds the guest and defines the template `e2e-tpl`): scale to zero, warm spares and
//! held requests (issue 18).
//!
//! The pool starts empty (`min_vms = 0`, `warm_spares = 1`) on an idle history; its endpoint
//! holds a request up to 60 s while no member is ready. The run prints a timeline and checks:
//!
//! 1. cold start: one request is held while the reactive path clones and boots a guest — then
//!    served (its latency is the cold start's);
//! 2. idle: the guest is drained and **suspended** — a warm spare, paused, billed no vCPU — and
//!    nothing runs;
//! 3. a burst no forecast saw, from nothing: 4 clients × 2 requests/s for 30 s. The first
//!    requests are held while the spare resumes and passes its health check: their added latency
//!    (target under 2 s); no request fails, no guest is cloned or booted for it, nothing is
//!    drained, stopped or suspended while it lasts (a CPU cap that still covers the measured
//!    load — `vcpu_quota` on the real guest — is right-sizing, and is printed).
//!
//! Usage: `scripts/e2e-guests e2e_spares` (needs root, libvirtd, qemu; about two minutes).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prescale::hypervisor::Hypervisor;
use prescale::hypervisor::libvirt::Libvirt;

mod common;
use common::json;

const POOL: &str = "e2e";
const URI: &str = "qemu:///system";

/// One GET that may be held up to a minute: status and how long it took.
fn timed_get(addr: SocketAddr, path: &str) -> (Option<u16>, f64) {
    let t0 = Instant::now();
    let status = common::http_get_waiting(addr, path, Duration::from_secs(90)).map(|(s, _)| s);
    (status, t0.elapsed().as_secs_f64())
}

/// One request of the burst: when it was sent (s from the start), its status, how long it took.
type Sample = (f64, Option<u16>, f64);

fn vms(admin: SocketAddr) -> Vec<serde_json::Value> {
    json(admin, "/admin/api/pools")[0]["vms"].as_array().cloned().unwrap_or_default()
}

fn main() -> anyhow::Result<()> {
    let (run, _) = common::fresh_run(POOL, URI)?;
    let start = Instant::now();
    let now_s = prescale::clock::now_us() / 1_000_000;
    // Three idle days of history: the forecast expects nothing.
    let mut csv = String::from("timestamp,value\n");
    for m in now_s / 60 - 3 * 1440..now_s / 60 {
        csv.push_str(&format!("{},0\n", m * 60));
    }
    std::fs::write(run.join("h.csv"), csv)?;
    let cfg = run.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"{POOL}\"\nhold = \"60s\"\n\
             [[pool]]\nname = \"{POOL}\"\nmembers = []\n\
             [pool.scaling]\nuri = \"{URI}\"\ntemplate = \"e2e-tpl\"\nmode = \"enabled\"\nmin_vms = 0\nmax_vms = 2\n\
             vcpus = [1, 2]\nmemory_mib = [128, 256]\nports = [18410, 18450]\nhealth_path = \"/health\"\n\
             capacity_rps_per_vcpu = 20.0\ntarget_utilization = 1.0\nheadroom = 0.0\nwindow = \"1m\"\n\
             cooldown = \"5s\"\nscale_in_stabilization = \"10s\"\ndrain_timeout = \"5s\"\nwarm_spares = 1\n"
        ),
    )?;
    common::import_history(&cfg, &run.join("h.csv"))?;

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let app = rt.block_on(prescale::app::App::start(prescale::config::load(&cfg)?))?;
    let (proxy, admin) = (app.proxy_addr, app.admin_addr);
    let t = || start.elapsed().as_secs_f64();
    println!("t={:>5.1} s  prescale started: no VM (min_vms = 0)", t());

    // Decisions, printed as they come, in a thread.
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut seen = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                let d = json(admin, "/admin/api/decisions?limit=1000");
                let list: Vec<serde_json::Value> =
                    d.as_array().cloned().unwrap_or_default().into_iter().rev().collect();
                for x in list.iter().skip(seen) {
                    println!(
                        "t={:>5.1} s  {:<10} {:<8} {}",
                        start.elapsed().as_secs_f64(),
                        x["action"]["kind"].as_str().unwrap_or("-"),
                        x["outcome"].as_str().unwrap_or(""),
                        x["reason"].as_str().unwrap_or("")
                    );
                }
                seen = seen.max(list.len());
            }
        })
    };

    // 1. Cold start: no VM, no spare.
    std::thread::sleep(Duration::from_secs(3));
    let (cold, cold_s) = timed_get(proxy, "/health");
    println!("t={:>5.1} s  cold start: first request answered {cold:?} after {cold_s:.2} s (held)", t());

    // 2. Idle: wait for the guest to become a warm spare.
    let deadline = Instant::now() + Duration::from_secs(180);
    let spare = loop {
        let v = vms(admin);
        let spare = v.iter().find(|v| v["phase"] == "suspended").and_then(|v| v["name"].as_str().map(String::from));
        let running = v.iter().any(|v| v["state"] == "running");
        if let Some(s) = spare.filter(|_| !running) {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let paused = spare.as_ref().map(|s| {
        let v = vms(admin);
        let x = v.iter().find(|v| v["name"] == s.as_str()).cloned().unwrap_or_default();
        (x["state"].as_str().unwrap_or("").to_string(), x["vcpus"].as_u64().unwrap_or(0))
    });
    println!("t={:>5.1} s  idle: warm spare {spare:?} ({paused:?}), nothing running", t());
    std::thread::sleep(Duration::from_secs(5));
    let calls_before: Vec<String> = vms(admin).iter().filter_map(|v| v["name"].as_str().map(String::from)).collect();

    // 3. A burst from nothing: 4 clients × 2 requests/s for 30 s.
    let burst_at = t();
    let burst_epoch = prescale::clock::now_us() / 1_000_000;
    println!("t={burst_at:>5.1} s  burst: 4 clients × 2 requests/s for 30 s");
    let results: Arc<Mutex<Vec<Sample>>> = Arc::default();
    let clients: Vec<_> = (0..4)
        .map(|i| {
            let results = results.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(125 * i));
                let end = Instant::now() + Duration::from_secs(30);
                while Instant::now() < end {
                    let sent = start.elapsed().as_secs_f64();
                    let (st, took) = timed_get(proxy, "/health");
                    results.lock().unwrap().push((sent, st, took));
                    std::thread::sleep(Duration::from_millis(500).saturating_sub(Duration::from_secs_f64(took)));
                }
            })
        })
        .collect();
    for c in clients {
        let _ = c.join();
    }
    let results = results.lock().unwrap().clone();
    let burst_end_epoch = prescale::clock::now_us() / 1_000_000;
    let taken_away: Vec<String> = json(admin, "/admin/api/decisions?limit=1000")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|d| d["t"].as_u64().is_some_and(|t| (burst_epoch..=burst_end_epoch).contains(&t)))
        .filter(|d| matches!(d["action"]["kind"].as_str(), Some("drain" | "stop" | "suspend")))
        .map(|d| d["reason"].as_str().unwrap_or("").to_string())
        .collect();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = watcher.join();
    let failed = results.iter().filter(|r| r.1 != Some(200)).count();
    let first: Vec<f64> = results.iter().filter(|r| r.0 < burst_at + 1.0).map(|r| r.2).collect();
    let first_max = first.iter().cloned().fold(0.0, f64::max);
    let mut rest: Vec<f64> = results.iter().filter(|r| r.0 >= burst_at + 5.0).map(|r| r.2).collect();
    rest.sort_by(f64::total_cmp);
    let median_rest = rest.get(rest.len() / 2).copied().unwrap_or(0.0);
    let after: Vec<String> = vms(admin).iter().filter_map(|v| v["name"].as_str().map(String::from)).collect();
    println!(
        "burst: {} requests, {failed} failed; the first second's {} requests took at most {first_max:.2} s \
         (held while the spare resumed); later ones median {:.3} s; VMs before {calls_before:?}, after {after:?}",
        results.len(),
        first.len(),
        median_rest
    );
    rt.block_on(app.stop());
    let mut hv = Libvirt::new(&[URI.to_string()]);
    for v in hv.list(POOL)? {
        hv.delete(&v.name)?;
    }
    anyhow::ensure!(cold == Some(200), "the cold-start request was not served: {cold:?}");
    anyhow::ensure!(spare.is_some(), "the idle guest did not become a warm spare");
    anyhow::ensure!(paused.as_ref().is_some_and(|p| p.0 == "paused"), "the spare is not paused: {paused:?}");
    anyhow::ensure!(failed == 0, "{failed} requests of the burst failed");
    anyhow::ensure!(taken_away.is_empty(), "capacity taken away during the burst: {taken_away:?}");
    anyhow::ensure!(after == calls_before, "a guest was cloned for the burst: {calls_before:?} → {after:?}");
    anyhow::ensure!(first_max < 2.0, "the first requests waited {first_max:.2} s (target: under 2 s)");
    println!("e2e: PASS");
    Ok(())
}
