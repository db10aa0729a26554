//! An upstream VM killed under load, on real qemu guests (run through
//! `scripts/e2e-guests e2e_vm_kill`, which builds the guest and defines the template `e2e-tpl`).
//!
//! prescale runs in-process in `enabled` mode over `qemu:///system` with one scaled pool of two
//! guests (`min_vms = 2`). Once both serve, four clients loop GETs through the proxy while one
//! guest is destroyed (`virsh destroy`: its qemu process killed). The run prints how many
//! requests failed, over how long errors lasted, and what the allocator did about the lost VM.
//!
//! Usage: `scripts/e2e-guests e2e_vm_kill` (needs root, libvirtd, qemu; about two minutes).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prescale::hypervisor::Hypervisor;

mod common;
use common::{http_get, json};

const POOL: &str = "e2e";
const URI: &str = "qemu:///system";

fn main() -> anyhow::Result<()> {
    let (run, mut hv) = common::fresh_run(POOL, URI)?;
    let cfg = run.join("p.toml");
    let extra = "capacity_rps_per_vcpu = 50.0\nstats_interval = \"2s\"\n";
    let text =
        common::scaled_pool_config(POOL, URI, extra).replace("min_vms = 1\nmax_vms = 2", "min_vms = 2\nmax_vms = 3");
    std::fs::write(&cfg, text)?;
    let start = Instant::now();
    let t = move || start.elapsed().as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let app = rt.block_on(prescale::app::App::start(prescale::config::load(&cfg)?))?;
    let (proxy, admin) = (app.proxy_addr, app.admin_addr);
    let serving = || common::serving(admin);
    let t0 = Instant::now();
    while serving().len() < 2 {
        anyhow::ensure!(t0.elapsed() < Duration::from_secs(240), "two guests never served");
        std::thread::sleep(Duration::from_millis(250));
    }
    let before = serving();
    println!("t={:>5.1} s  guests {before:?} serving", t());

    // Four clients; every outcome with its time.
    let log: Arc<Mutex<Vec<(f64, bool)>>> = Arc::default();
    let until = t() + 40.0;
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let log = log.clone();
            std::thread::spawn(move || {
                while t() < until {
                    let ok = matches!(http_get(proxy, "/health"), Some((200, _)));
                    log.lock().unwrap().push((t(), ok));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(10));
    let decisions_before = json(admin, "/admin/api/decisions?limit=1000").as_array().map_or(0, |a| a.len());
    let victim = before[1].clone();
    let st = std::process::Command::new("virsh").args(["-c", URI, "destroy", &victim]).status()?;
    anyhow::ensure!(st.success(), "virsh destroy {victim} failed");
    let killed_at = t();
    println!("t={killed_at:>5.1} s  guest {victim} destroyed (its qemu process killed)");
    for c in clients {
        let _ = c.join();
    }
    let log = log.lock().unwrap().clone();
    let failed: Vec<f64> = log.iter().filter(|(_, ok)| !ok).map(|(at, _)| *at).collect();
    let window = match (failed.first(), failed.last()) {
        (Some(a), Some(b)) => {
            format!("{:.2} s (from +{:.2} s to +{:.2} s after the kill)", b - a, a - killed_at, b - killed_at)
        }
        _ => "none".into(),
    };
    println!("requests: {} ok, {} failed; errors lasted {window}", log.len() - failed.len(), failed.len());
    let decisions: Vec<serde_json::Value> =
        json(admin, "/admin/api/decisions?limit=1000").as_array().cloned().unwrap_or_default();
    for d in decisions.iter().rev().skip(decisions_before) {
        println!(
            "         decision: {} {} {}",
            d["action"]["kind"].as_str().unwrap_or("-"),
            d["outcome"].as_str().unwrap_or(""),
            d["reason"].as_str().unwrap_or("")
        );
    }
    println!("guests serving at the end: {:?}", serving());
    rt.block_on(app.stop());
    for v in hv.list(POOL)? {
        hv.delete(&v.name)?;
    }
    anyhow::ensure!(failed.is_empty(), "{} GETs failed", failed.len());
    println!("e2e_vm_kill: PASS");
    Ok(())
}
