//! libvirtd stopped and restarted under prescale, on a real qemu guest (run through
//! `scripts/e2e-guests e2e_libvirtd`, which builds the guest, defines the template `e2e-tpl` and
//! starts libvirtd when it is not running).
//!
//! prescale runs in-process in `enabled` mode over `qemu:///system` with one scaled pool
//! (`min_vms = 1`). Once its guest serves in the pool, traffic runs through the proxy while
//! libvirtd is stopped (SIGTERM to the PID in /run/libvirtd.pid; the guest's qemu keeps
//! running) for 30 s and started again. The run checks and prints:
//!
//! - the proxy keeps serving while libvirt is gone: no failed request;
//! - the pool shows as degraded (with libvirt's error) while it is gone;
//! - prescale reconnects after the restart (degraded clears), adopts the same guest, and
//!   launches no duplicate clone.
//!
//! Usage: `scripts/e2e-guests e2e_libvirtd` (needs root, libvirtd, qemu; about three minutes).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prescale::hypervisor::Hypervisor;
use prescale::hypervisor::libvirt::Libvirt;

mod common;
use common::{http_get, json};

const POOL: &str = "e2e";
const URI: &str = "qemu:///system";

fn libvirtd_pid() -> Option<i32> {
    std::fs::read_to_string("/run/libvirtd.pid").ok()?.trim().parse().ok()
}

fn vm_names(pools: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = pools[0]["vms"]
        .as_array()
        .map(|a| a.iter().filter_map(|v| v["name"].as_str().map(String::from)).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn wait_for(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let t = Instant::now();
    while t.elapsed() < limit {
        if f() {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    None
}

fn main() -> anyhow::Result<()> {
    let (run, _) = common::fresh_run(POOL, URI)?;
    let cfg = run.join("p.toml");
    std::fs::write(
        &cfg,
        common::scaled_pool_config(POOL, URI, "capacity_rps_per_vcpu = 50.0\nstats_interval = \"2s\"\n"),
    )?;
    let start = Instant::now();
    let t = || start.elapsed().as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let app = rt.block_on(prescale::app::App::start(prescale::config::load(&cfg)?))?;
    let (proxy, admin) = (app.proxy_addr, app.admin_addr);
    let pools = || json(admin, "/admin/api/pools");
    let in_pool = |p: &serde_json::Value| {
        p[0]["vms"].as_array().is_some_and(|v| v.iter().any(|v| v["in_pool"].as_bool() == Some(true)))
    };
    wait_for(Duration::from_secs(180), || in_pool(&pools()))
        .ok_or_else(|| anyhow::anyhow!("the first guest never joined the pool"))?;
    let before = vm_names(&pools());
    println!("t={:>5.1} s  guest(s) {before:?} serving in the pool", t());

    // Traffic: a request every 50 ms through the proxy; every status counted.
    let (ok, failed, stop) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicBool::new(false)));
    let traffic = {
        let (ok, failed, stop) = (ok.clone(), failed.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match http_get(proxy, "/health") {
                    Some((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    std::thread::sleep(Duration::from_secs(5));
    let decisions_before = json(admin, "/admin/api/decisions?limit=1000").as_array().map_or(0, |a| a.len());

    // Stop libvirtd.
    let pid = libvirtd_pid().ok_or_else(|| anyhow::anyhow!("no /run/libvirtd.pid"))?;
    // SAFETY: plain kill(2) of the daemon's PID.
    anyhow::ensure!(unsafe { libc::kill(pid, libc::SIGTERM) } == 0, "cannot signal libvirtd {pid}");
    let stopped_at = t();
    println!("t={stopped_at:>5.1} s  libvirtd (pid {pid}) stopped");
    let degraded = wait_for(Duration::from_secs(60), || pools()[0]["degraded"].is_string());
    let shown = pools()[0]["degraded"].as_str().unwrap_or("").to_string();
    println!("t={:>5.1} s  pool degraded after {degraded:?}: {shown}", t());
    while t() < stopped_at + 30.0 {
        std::thread::sleep(Duration::from_millis(250));
    }
    let during = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));

    // Start it again.
    let restarted_at = t();
    let st = std::process::Command::new("libvirtd").arg("-d").status()?;
    anyhow::ensure!(st.success(), "libvirtd -d failed");
    println!("t={restarted_at:>5.1} s  libvirtd started again");
    let reconnected = wait_for(Duration::from_secs(90), || {
        let p = pools();
        p[0]["degraded"].is_null() && !vm_names(&p).is_empty()
    });
    println!("t={:>5.1} s  reconnected after {reconnected:?}", t());
    std::thread::sleep(Duration::from_secs(15));
    let after = vm_names(&pools());
    // A fresh connection: this example's own one died with the daemon.
    let mut hv = Libvirt::new(&[URI.to_string()]);
    let domains: Vec<String> = hv.list(POOL)?.into_iter().map(|v| v.name).collect();
    let new_decisions: Vec<serde_json::Value> = json(admin, "/admin/api/decisions?limit=1000")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .rev()
        .skip(decisions_before)
        .collect();
    for d in &new_decisions {
        println!(
            "         decision: {} {} {}",
            d["action"]["kind"].as_str().unwrap_or("-"),
            d["outcome"].as_str().unwrap_or(""),
            d["reason"].as_str().unwrap_or("")
        );
    }
    let launches = new_decisions.iter().filter(|d| d["action"]["kind"] == "launch").count();
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!(
        "requests through the proxy: {ok} ok, {failed} failed ({} ok / {} failed while libvirtd was down)",
        during.0, during.1
    );
    println!("guests before {before:?}, after {after:?}, libvirt domains of the pool {domains:?}, launches {launches}");
    rt.block_on(app.stop());
    for v in hv.list(POOL)? {
        hv.delete(&v.name)?;
    }
    anyhow::ensure!(degraded.is_some(), "the pool never showed as degraded");
    anyhow::ensure!(reconnected.is_some(), "prescale did not reconnect");
    anyhow::ensure!(after == before, "the guest was not adopted: {before:?} → {after:?}");
    anyhow::ensure!(domains.len() == before.len(), "duplicate clones: {domains:?}");
    anyhow::ensure!(launches == 0, "{launches} launches after the restart");
    anyhow::ensure!(failed == 0, "{failed} requests failed");
    println!("e2e_libvirtd: PASS");
    Ok(())
}
