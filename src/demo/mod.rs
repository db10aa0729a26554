//! `prescale demo`: the embedded default of the Quick start. No configuration, no root, no
//! daemon. It
//!
//! - seeds a week of 1-minute history for three endpoints (daily and weekly cycles, noise,
//!   occasional bursts — or a trace the user names), into a temporary data directory;
//! - runs prescale on an accelerated clock (default ×144: a day in ten minutes) in front of
//!   VMs on **libvirt's built-in test driver**, each running domain backed by an in-process
//!   HTTP server whose capacity is real — `capacity_per_vcpu` requests at a time per vCPU, each
//!   holding its slot for `work_ms`, so an overloaded VM queues and slows down;
//! - starts the virtual day at 06:00 UTC of the latest weekday (the seeded history ends there),
//!   holds the clock until the first VMs answer, then replays the day through the proxy with a
//!   built-in load generator following the same pattern (or the trace), so the morning ramp,
//!   scale-outs ahead of the 14:00 peak and scale-ins after it come within a few minutes;
//!   prints the admin URL, every scaling step on its own line, and on a terminal a one-line
//!   status every second.
//!
//! The VMs are simulated: nothing boots. Pointing prescale at real libvirt is a matter of the
//! `[pool.scaling]` section of `proxy.toml` (see the README).

mod clock;
mod history;
mod load;
mod status;
mod vms;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::config::{self, ConfigError};
use crate::hypervisor::Hypervisor;

pub use clock::{ScaledClock, virtual_start};
use history::seed;
pub use load::{LoadStats, pattern};
use load::{load, weekday_name};
use status::status_line;
pub use vms::DemoHypervisor;
use vms::{node_xml, start_static};

/// Demo settings (command-line flags).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub listen: String,
    pub admin: String,
    /// Virtual seconds per real second.
    pub speed: f64,
    /// A `timestamp,value` trace to seed (and replay) `orders` with, instead of the generated one.
    pub trace: Option<PathBuf>,
    /// Real milliseconds a request holds one vCPU slot in a demo VM.
    pub work_ms: u64,
    /// Stop after this long (real); `None`: until Ctrl-C.
    pub duration: Option<Duration>,
}

impl Default for DemoOptions {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            admin: "127.0.0.1:9901".into(),
            speed: 144.0,
            trace: None,
            work_ms: 20,
            duration: None,
        }
    }
}

/// The demo's configuration; `{…}` are filled in.
const CONFIG: &str = r#"
[listen]
addr = "{LISTEN}"

[admin]
addr = "{ADMIN}"

[historian]
data_dir = "{DATA}"
# On the accelerated clock a request's real milliseconds are virtual seconds: buckets wait
# ten virtual minutes (about 4 s real) for late calls, so queued calls still count.
close_after = "10m"

[forecast]
horizon = "1h"
refit_every = "30m"
select_every = "12h"
history = "14d"
cpu_ms_per_request = {CPU_MS}

[[endpoint]]
name = "orders"
path_prefix = "/api/orders"
pool = "orders"

[[endpoint]]
name = "reports"
path_prefix = "/api/reports"
pool = "orders"
class_param = "report"

[[endpoint]]
name = "search"
path_prefix = "/api/search"
methods = ["GET"]
pool = "search"

[[pool]]
name = "orders"
members = []
health_check = { path = "/health", interval = "1s", timeout = "500ms" }

[pool.scaling]
uri = "{URI}"
template = "orders-template"
mode = "enabled"
min_vms = 2
max_vms = 8
vcpus = [1, 4]
memory_mib = [256, 1024]
launch_vcpus = 2
capacity_rps_per_vcpu = {CAP}
target_utilization = 0.7
headroom = 0.1
lead_time = "10m"
window = "20m"
cooldown = "3m"
scale_in_stabilization = "30m"
max_step = 2
ports = [{PORT_LO}, {PORT_HI}]
health_path = "/health"
drain_timeout = "5s"
stats_interval = "2s"

[[pool]]
name = "search"
members = ["{SEARCH}"]
"#;

/// Runs the demo until Ctrl-C (or `duration`).
pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = std::env::temp_dir().join(format!("prescale-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let _cleanup = RemoveOnDrop(dir.clone());
    std::fs::write(dir.join("node.xml"), node_xml())?;
    let rt = tokio::runtime::Handle::current();
    let work = Duration::from_millis(opts.work_ms.max(1));
    let (search_addr, _search) = start_static(&rt, work).await?;
    // Capacity per vCPU in virtual requests/s: one slot serves 1000/work_ms real requests/s.
    let cap_virtual = 1000.0 / work.as_millis() as f64 / opts.speed;
    let port_lo = 20_000 + (std::process::id() % 2000) as u16 * 10;
    let text = CONFIG
        .replace("{LISTEN}", &opts.listen)
        .replace("{ADMIN}", &opts.admin)
        .replace("{DATA}", &dir.join("data").display().to_string())
        .replace("{URI}", &format!("test://{}", dir.join("node.xml").display()))
        .replace("{CAP}", &format!("{cap_virtual:.6}"))
        .replace("{CPU_MS}", &format!("{:.1}", 1000.0 / cap_virtual))
        .replace("{PORT_LO}", &port_lo.to_string())
        .replace("{PORT_HI}", &(port_lo + 9).to_string())
        .replace("{SEARCH}", &search_addr.to_string());
    let settings = config::parse(&text, &dir).map_err(|errs: Vec<ConfigError>| {
        anyhow::anyhow!(errs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))
    })?;
    let now_s = virtual_start(crate::clock::now_us() / 1_000_000);
    let replay = seed(&dir.join("data"), &settings, now_s, opts.trace.as_deref()).context("seeding the history")?;
    // Stands at 06:00 while the first VMs boot; starts with the load.
    let clock = Arc::new(ScaledClock::paused(now_s * 1_000_000, opts.speed));
    let boot = Duration::from_secs_f64((150.0 / opts.speed).max(0.2)); // 150 s of virtual boot
    let uri = format!("test://{}", dir.join("node.xml").display());
    let speed = opts.speed;
    let factory: crate::app::HypervisorFactory = {
        let rt = rt.clone();
        Arc::new(move |pool: &str, _s: &crate::allocator::ScalingSettings| {
            Box::new(DemoHypervisor::new(&uri, pool, rt.clone(), work, boot, speed)) as Box<dyn Hypervisor>
        })
    };
    let app = crate::app::App::start_with(
        settings,
        crate::app::Options { clock: Some(clock.clone()), hypervisor: Some(factory) },
    )
    .await?;
    let (p, a) = (app.proxy_addr, app.admin_addr);
    println!(
        "prescale demo: a week of history seeded up to {} 06:00 UTC; replaying the day from there at ×{} (a day in {:.0} min)",
        weekday_name(now_s),
        opts.speed,
        86_400.0 / opts.speed / 60.0
    );
    println!("  admin page:  http://{a}/admin");
    println!("  proxy:       http://{p}/api/orders/1   (load is generated; try wrk too)");
    println!("  VMs: libvirt test-driver domains, each backed by an in-process server (simulated, nothing boots)");
    println!("  Ctrl-C stops.");

    // Load starts once every pool has a healthy member (the first VM has "booted").
    let ready = async {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
        let uri: http::Uri = format!("http://{a}/ready").parse().expect("valid admin URI");
        loop {
            if let Ok(r) = client.get(uri.clone()).await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), ready).await.is_err() {
        anyhow::bail!("the demo's pools did not become ready in 30 s");
    }
    // The day starts now: history up to 06:00, live traffic from 06:00 on.
    clock.start();
    let stop = CancellationToken::new();
    let stats = Arc::new(LoadStats::default());
    let replay = Arc::new(replay);
    let load = tokio::spawn(load(p, clock.clone(), replay.clone(), stats.clone(), stop.clone()));
    let status = tokio::spawn(status_line(a, clock.clone(), replay, stats.clone(), stop.clone()));
    let started = std::time::Instant::now();
    let r = tokio::select! {
        r = signalled() => r,
        _ = async {
            match opts.duration {
                Some(d) => tokio::time::sleep(d).await,
                None => std::future::pending().await,
            }
        } => Ok(()),
    };
    stop.cancel();
    for task in [load, status] {
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(3), task).await.is_err() {
            abort.abort();
        }
    }
    eprintln!();
    println!(
        "demo: {:.0} s, {} requests ok, {} failed",
        started.elapsed().as_secs_f64(),
        stats.ok.load(Relaxed),
        stats.failed.load(Relaxed)
    );
    app.stop().await;
    r
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn signalled() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
