//! Clones of a template with a file-backed serial console, on real qemu guests (run through
//! `scripts/e2e-guests e2e_console`, which builds the guest and defines the template `e2e-tpl`).
//!
//! The run defines `e2e-tpl-console`: `e2e-tpl` with its serial port and console writing to
//! `/var/log/libvirt/qemu/e2e-tpl-console.console.log`. prescale runs in-process over
//! `qemu:///system` with `min_vms = 2` on that template. Before issue 16 the second clone kept
//! the template's log path and failed to start ("Cannot open log file … Device or resource
//! busy"), retried every second without back-off. Now each clone writes its own log: the run
//! waits for both guests to serve, checks each clone has its own console file, and prints the launch
//! decisions.
//!
//! Usage: `scripts/e2e-guests e2e_console` (needs root, libvirtd, qemu; about two minutes).

use std::time::{Duration, Instant};

mod common;
use common::json;

const POOL: &str = "e2econ";
const URI: &str = "qemu:///system";
const TEMPLATE: &str = "e2e-tpl-console";

fn virsh(args: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("virsh").arg("-c").arg(URI).args(args).output()?;
    anyhow::ensure!(out.status.success(), "virsh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn main() -> anyhow::Result<()> {
    let (run, _hv) = common::fresh_run(POOL, URI)?;
    // The template with a file-backed serial console.
    let log_dir = "/var/log/libvirt/qemu";
    let xml = virsh(&["dumpxml", "e2e-tpl"])?
        .replace("<name>e2e-tpl</name>", &format!("<name>{TEMPLATE}</name>"))
        .lines()
        .filter(|l| !l.trim_start().starts_with("<uuid>"))
        .collect::<Vec<_>>()
        .join("\n");
    let serial = format!(
        "<serial type='file'><source path='{log_dir}/{TEMPLATE}.console.log'/><target port='0'/></serial>\
         <console type='file'><source path='{log_dir}/{TEMPLATE}.console.log'/><target type='serial' port='0'/></console>"
    );
    let start = xml.find("<serial").ok_or_else(|| anyhow::anyhow!("e2e-tpl has no <serial>"))?;
    let end = xml
        .find("</console>")
        .map(|e| e + "</console>".len())
        .or_else(|| xml[start..].find("</serial>").map(|e| start + e + "</serial>".len()));
    let end = end.ok_or_else(|| anyhow::anyhow!("e2e-tpl: unterminated <serial>"))?;
    let xml = format!("{}{serial}{}", &xml[..start], &xml[end..]);
    let _ = virsh(&["undefine", TEMPLATE]);
    let tpl = run.join("tpl-console.xml");
    std::fs::write(&tpl, &xml)?;
    virsh(&["define", tpl.to_str().unwrap_or_default()])?;

    let cfg = run.join("p.toml");
    let text = common::scaled_pool_config(POOL, URI, "capacity_rps_per_vcpu = 50.0\n")
        .replace("template = \"e2e-tpl\"", &format!("template = \"{TEMPLATE}\""))
        .replace("min_vms = 1\nmax_vms = 2", "min_vms = 2\nmax_vms = 2")
        .replace("ports = [18410, 18450]", "ports = [18460, 18499]");
    std::fs::write(&cfg, text)?;
    let t0 = Instant::now();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let app = rt.block_on(prescale::app::App::start(prescale::config::load(&cfg)?))?;
    let admin = app.admin_addr;
    let serving = || common::serving(admin);
    let mut result = Ok(());
    while serving().len() < 2 {
        if t0.elapsed() > Duration::from_secs(300) {
            result = Err(anyhow::anyhow!("two clones never served: {}", json(admin, "/admin/api/pools")));
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let names = serving();
    println!("t={:>5.1} s  clones serving: {names:?}", t0.elapsed().as_secs_f64());
    let decisions = json(admin, "/admin/api/decisions?pool=e2econ");
    let launches: Vec<String> = decisions
        .as_array()
        .map(|d| {
            d.iter()
                .filter(|d| d["action"]["kind"] == "launch")
                .map(|d| format!("{} {}", d["outcome"], d["reason"]))
                .collect()
        })
        .unwrap_or_default();
    println!("launch decisions: {launches:#?}");
    if result.is_ok() {
        for n in &names {
            let f = format!("{log_dir}/{n}.console.log");
            // (The guest boots `quiet`: the file may hold nothing yet; it must be its own.)
            match std::fs::metadata(&f) {
                Ok(m) => println!("{f}: its own console log ({} bytes)", m.len()),
                Err(e) => result = Err(anyhow::anyhow!("{f}: {e}")),
            }
        }
        let failed = launches.iter().filter(|l| l.contains("error")).count();
        println!("failed launches: {failed}");
    }
    rt.block_on(app.stop());
    for n in names {
        let _ = virsh(&["destroy", &n]);
    }
    let mut hv = prescale::hypervisor::libvirt::Libvirt::new(&[URI.to_string()]);
    use prescale::hypervisor::Hypervisor;
    for v in hv.list(POOL)? {
        let _ = hv.delete(&v.name);
    }
    let _ = virsh(&["undefine", TEMPLATE]);
    result
}
