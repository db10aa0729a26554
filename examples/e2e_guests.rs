//! End-to-end on real qemu guests under libvirtd (run through `scripts/e2e-guests`, which
//! builds the guest and defines the template `e2e-tpl`).
//!
//! prescale runs in-process in `enabled` mode over `qemu:///system` with one scaled pool. Its
//! history (imported) has a daily peak starting 90 s from now and lasting 3 minutes. The run
//! checks and prints, with times relative to the start:
//!
//! - min_vms launches the first guest, which joins the pool only once `/health` answers;
//! - the forecast ramp makes the planner hot-add a vCPU (seen by the guest) and launch a second
//!   guest, both **before** the ramp's first request;
//! - traffic through the proxy during the peak: no failed request;
//! - after the peak, scale-in drains the newest guest and stops it: still no failed request.
//!
//! Usage: `scripts/e2e-guests` (needs root, libvirtd, qemu; about six minutes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prescale::hypervisor::Hypervisor;
use prescale::hypervisor::libvirt::Libvirt;

mod common;
use common::{http_get, json};

const POOL: &str = "e2e";
const URI: &str = "qemu:///system";

fn main() -> anyhow::Result<()> {
    let (run, _) = common::fresh_run(POOL, URI)?;

    let start = Instant::now();
    let now_s = prescale::clock::now_us() / 1_000_000;
    let now_min = now_s / 60;
    let ramp_at = now_s + 90;
    let (peak_from, peak_to) = (ramp_at, ramp_at + 180);
    let mut csv = String::from("timestamp,value\n");
    for m in now_min - 3 * 1440..now_min {
        let tod = (m * 60) % 86_400;
        let (a, b) = (peak_from % 86_400, peak_to % 86_400);
        let in_peak = if a < b { tod + 60 > a && tod < b } else { tod + 60 > a || tod < b };
        csv.push_str(&format!("{},{}\n", m * 60, if in_peak { 600 } else { 30 }));
    }
    std::fs::write(run.join("h.csv"), csv)?;
    let cfg = run.join("p.toml");
    std::fs::write(
        &cfg,
        common::scaled_pool_config(
            POOL,
            URI,
            "capacity_rps_per_vcpu = 4.0\ntarget_utilization = 1.0\nheadroom = 0.0\nlead_time = \"auto\"\n\
             window = \"2m\"\ncooldown = \"5s\"\nscale_in_stabilization = \"20s\"\nmax_step = 2\ndrain_timeout = \"10s\"\n",
        ),
    )?;
    common::import_history(&cfg, &run.join("h.csv"))?;
    anyhow::ensure!(start.elapsed() < Duration::from_secs(20), "set-up took too long for the timeline");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let app = rt.block_on(prescale::app::App::start(prescale::config::load(&cfg)?))?;
    let (proxy, admin) = (app.proxy_addr, app.admin_addr);
    let t = |i: Instant| i.duration_since(start).as_secs_f64();
    println!("t=0.0 s  prescale started; forecast ramp (history) at t={:.1} s", (ramp_at - now_s) as f64);

    // Traffic: 8 requests/s from the ramp to its end + 60 s, then 1/s; every status counted.
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let stop = Arc::new(AtomicBool::new(false));
    let first_request = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (ok, failed, stop, first) = (ok.clone(), failed.clone(), stop.clone(), first_request.clone());
        std::thread::spawn(move || {
            while prescale::clock::now_us() / 1_000_000 < ramp_at {
                std::thread::sleep(Duration::from_millis(100));
            }
            first.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                let now = prescale::clock::now_us() / 1_000_000;
                let gap = if now < peak_to + 60 { 125 } else { 1000 };
                match http_get(proxy, "/health") {
                    Some((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(gap));
            }
        })
    };

    // Watch: print every new decision; measure hot-plug→visible in the guest.
    let mut seen = 0usize;
    let mut hotplug_seen: Option<f64> = None;
    let mut hotplug_at: Option<(f64, String, u32)> = None;
    let mut stopped_at = None;
    let deadline = start + Duration::from_secs(90 + 180 + 150);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let d = json(admin, "/admin/api/decisions?limit=1000");
        let list: Vec<serde_json::Value> = d.as_array().cloned().unwrap_or_default().into_iter().rev().collect();
        for x in list.iter().skip(seen) {
            let rel = x["t"].as_u64().unwrap_or(0) as f64 - now_s as f64;
            println!(
                "t={rel:>5.0} s  {:<10} {:<8} {}",
                x["action"]["kind"].as_str().unwrap_or("-"),
                x["outcome"].as_str().unwrap_or(""),
                x["reason"].as_str().unwrap_or("")
            );
            if x["action"]["kind"] == "set_vcpus" && x["outcome"] == "ok" {
                let vm = x["action"]["vm"].as_str().unwrap_or("").to_string();
                hotplug_at = Some((t(Instant::now()), vm, x["action"]["to"].as_u64().unwrap_or(0) as u32));
            }
            if x["action"]["kind"] == "stop" && x["outcome"] == "ok" {
                stopped_at = Some(t(Instant::now()));
            }
        }
        seen = list.len();
        if let (Some((at, vm, to)), None) = (&hotplug_at, hotplug_seen) {
            let pools = json(admin, "/admin/api/pools");
            let addr = pools[0]["vms"]
                .as_array()
                .and_then(|v| v.iter().find(|v| v["name"] == vm.as_str()))
                .and_then(|v| v["addr"].as_str().and_then(|a| a.parse::<SocketAddr>().ok()));
            if let Some(a) = addr
                && let Some((200, body)) = http_get(a, "/cpus")
                && body.trim().parse::<u32>().ok() == Some(*to)
            {
                let dt = t(Instant::now()) - at;
                hotplug_seen = Some(dt);
                println!("         guest {vm} sees {to} CPUs {:.2} s after the hot-plug", dt);
            }
        }
        if stopped_at.is_some() && t(Instant::now()) > stopped_at.unwrap_or(0.0) + 5.0 {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = traffic.join();
    let pools = json(admin, "/admin/api/pools");
    println!("\npool at the end: {}", serde_json::to_string_pretty(&pools[0]["lead"])?);
    let first = first_request.load(Ordering::Relaxed) as f64 / 1000.0;
    let healthy: Vec<f64> = json(admin, "/admin/api/decisions?limit=1000")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|d| d["reason"].as_str().is_some_and(|r| r.contains("healthy")))
        .map(|d| d["t"].as_u64().unwrap_or(0) as f64 - now_s as f64)
        .collect();
    println!(
        "timeline: ramp (forecast) t={:.0} s; first request t={first:.1} s; VMs healthy at t={healthy:?} s; \
         hot-plug seen by the guest after {hotplug_seen:?} s; scale-in stop at t={stopped_at:?} s",
        (ramp_at - now_s) as f64
    );
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    println!("requests through the proxy: {ok} ok, {failed} failed");
    rt.block_on(app.stop());
    let mut hv = Libvirt::new(&[URI.to_string()]);
    for v in hv.list(POOL)? {
        hv.delete(&v.name)?;
    }
    anyhow::ensure!(healthy.len() >= 2, "expected two guests to become healthy");
    anyhow::ensure!(healthy.iter().all(|h| *h < (ramp_at - now_s) as f64), "a guest became healthy after the ramp");
    anyhow::ensure!(hotplug_seen.is_some(), "no vCPU hot-plug seen by a guest");
    anyhow::ensure!(stopped_at.is_some(), "no scale-in");
    anyhow::ensure!(failed == 0, "{failed} requests failed");
    println!("e2e: PASS");
    Ok(())
}
