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

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{self, ConfigError, Settings};
use crate::hypervisor::libvirt::Libvirt;
use crate::hypervisor::{CloneSpec, HostInfo, HvResult, Hypervisor, VmInfo, stats::DomainStats};

/// A clock running `speed` times faster than the real one from `origin_us` on. It stands at
/// `origin_us` until [`ScaledClock::start`] (the demo starts it when its first VMs answer, so
/// the seeded history runs straight into live traffic with no minutes of zeros between).
#[derive(Debug)]
pub struct ScaledClock {
    origin_us: u64,
    real_origin: std::sync::OnceLock<std::time::Instant>,
    speed: f64,
}

impl ScaledClock {
    /// A clock already running.
    pub fn new(origin_us: u64, speed: f64) -> Self {
        let c = Self::paused(origin_us, speed);
        c.start();
        c
    }

    /// A clock standing at `origin_us` until started.
    pub fn paused(origin_us: u64, speed: f64) -> Self {
        Self { origin_us, real_origin: std::sync::OnceLock::new(), speed }
    }

    pub fn start(&self) {
        let _ = self.real_origin.set(std::time::Instant::now());
    }
}

impl Clock for ScaledClock {
    fn now_us(&self) -> u64 {
        let elapsed = self.real_origin.get().map_or(0.0, |o| o.elapsed().as_secs_f64());
        self.origin_us + (elapsed * 1e6 * self.speed) as u64
    }
}

/// Where the demo's virtual day starts: 06:00 UTC of the latest weekday at or before `now_s`,
/// an hour before the morning ramp, so a run of a few minutes shows the scale-out before the
/// afternoon peak and the scale-in after it.
pub fn virtual_start(now_s: u64) -> u64 {
    let mut day = now_s / 86_400;
    if now_s % 86_400 < 6 * 3600 {
        day -= 1;
    }
    // 1970-01-01 was a Thursday: (day + 4) % 7 is 5 on Saturdays and 6 on Sundays.
    while (day + 4) % 7 >= 5 {
        day -= 1;
    }
    day * 86_400 + 6 * 3600
}

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

/// Calls per minute of the generated pattern at virtual time `t` (seconds): a daily cycle
/// peaking mid-afternoon UTC, quieter weekends, a small deterministic wobble and, on some days,
/// a half-hour burst.
pub fn pattern(endpoint: &str, t: u64) -> f64 {
    let (base, peak, phase) = match endpoint {
        "orders" => (12.0, 110.0, 0.0),
        "search" => (8.0, 40.0, 1.5),
        _ => (3.0, 12.0, -2.0),
    };
    let day = t / 86_400;
    let hour = (t % 86_400) as f64 / 3600.0;
    let daily = (-((hour - 14.0 - phase).powi(2)) / 18.0).exp();
    let weekday = (day + 4) % 7; // 1970-01-01 was a Thursday: 5, 6 are Saturday and Sunday
    let week = if weekday >= 5 { 0.6 } else { 1.0 };
    let wobble = 1.0 + 0.08 * ((t / 60) as f64 * 0.7).sin() * ((t / 60) as f64 * 0.13).cos();
    let burst = if endpoint == "orders" && day % 3 == 1 && (10.0..10.5).contains(&hour) { 1.8 } else { 1.0 };
    (base + (peak - base) * daily * week) * wobble * burst
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

/// The test driver's node: 32 CPUs, 64 GiB, the shut-off template.
fn node_xml() -> String {
    r#"<node>
  <cpu><mhz>2000</mhz><model>i686</model><active>32</active><max>32</max><nodes>1</nodes><sockets>1</sockets><cores>32</cores><threads>1</threads></cpu>
  <memory>67108864</memory>
  <domain type="test">
    <name>orders-template</name>
    <memory unit="MiB">1024</memory>
    <currentMemory unit="MiB">512</currentMemory>
    <vcpu current="2">4</vcpu>
    <os><type>hvm</type></os>
    <test:runstate xmlns:test="http://libvirt.org/schemas/domain/test/1.0">5</test:runstate>
  </domain>
</node>"#
        .into()
}

// ---------------------------------------------------------------------------------------------
// Demo VMs: an in-process HTTP server per running test-driver domain.

/// A server standing in for a VM: `vcpus` slots, each request holds one for `work_ms`.
struct Backend {
    slots: Arc<Semaphore>,
    vcpus: u32,
    stop: CancellationToken,
    /// CPU time "used", ns: busy slot-time, for the domain stats.
    busy_ns: Arc<AtomicU64>,
}

/// Starts a backend on `addr` after `boot` (the VM's boot time).
fn spawn_backend(
    rt: &tokio::runtime::Handle,
    name: String,
    addr: SocketAddr,
    vcpus: u32,
    work: Duration,
    boot: Duration,
    speed: f64,
) -> Backend {
    let slots = Arc::new(Semaphore::new(vcpus as usize));
    let stop = CancellationToken::new();
    let busy_ns = Arc::new(AtomicU64::new(0));
    let (s, st, b) = (slots.clone(), stop.clone(), busy_ns.clone());
    rt.spawn(async move {
        tokio::select! {
            _ = st.cancelled() => return,
            _ = tokio::time::sleep(boot) => {}
        }
        let Ok(listener) = tokio::net::TcpListener::bind(addr).await else {
            tracing::warn!(%addr, "demo VM could not bind its address");
            return;
        };
        let name: Arc<str> = Arc::from(name);
        loop {
            let stream = tokio::select! {
                _ = st.cancelled() => return,
                a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
            };
            let (s, b, name, st2) = (s.clone(), b.clone(), name.clone(), st.clone());
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let (s, b, name) = (s.clone(), b.clone(), name.clone());
                    async move { Ok::<_, Infallible>(vm_answer(&name, &s, &b, work, speed, req).await) }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::select! { _ = conn => {}, _ = st2.cancelled() => {} }
            });
        }
    });
    Backend { slots, vcpus, stop, busy_ns }
}

async fn vm_answer(
    name: &str,
    slots: &Semaphore,
    busy: &AtomicU64,
    work: Duration,
    speed: f64,
    req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    if req.uri().path() == "/health" {
        return Response::new(Full::new(Bytes::from_static(b"ok\n")));
    }
    // `report=full` costs five times as much as the rest (request classes).
    let heavy = req.uri().query().is_some_and(|q| q.split('&').any(|kv| kv == "report=full"));
    let work = if heavy { work * 5 } else { work };
    let Ok(_slot) = slots.acquire().await else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"stopping\n")));
        *r.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
        return r;
    };
    tokio::time::sleep(work).await;
    // CPU time on the demo's clock (the allocator reads rates on it): real busy time × speed.
    busy.fetch_add((work.as_nanos() as f64 * speed) as u64, Relaxed);
    let body = format!("{{\"vm\":\"{name}\",\"path\":\"{}\"}}\n", req.uri().path().escape_default());
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

/// The test driver's domains, each running one backed by an in-process server: what the demo
/// gives the allocator as its hypervisor. Calls go to libvirt's test driver first (so its rules
/// — maxima, states, metadata — apply), then to the servers.
pub struct DemoHypervisor {
    lv: Libvirt,
    pool: String,
    rt: tokio::runtime::Handle,
    backends: Arc<Mutex<HashMap<String, Backend>>>,
    work: Duration,
    /// Real time a VM takes to answer after start.
    boot: Duration,
    speed: f64,
}

impl DemoHypervisor {
    pub fn new(uri: &str, pool: &str, rt: tokio::runtime::Handle, work: Duration, boot: Duration, speed: f64) -> Self {
        Self {
            lv: Libvirt::new(&[uri.to_string()]),
            pool: pool.into(),
            rt,
            backends: Default::default(),
            work,
            boot,
            speed,
        }
    }

    fn info(&mut self, vm: &str) -> Option<VmInfo> {
        let pool = self.pool.clone();
        self.lv.list(&pool).ok()?.into_iter().find(|v| v.name == vm)
    }

    fn stop_backend(&mut self, vm: &str) {
        if let Some(b) = self.backends.lock().unwrap_or_else(|e| e.into_inner()).remove(vm) {
            b.stop.cancel();
            b.slots.close();
        }
    }
}

impl Hypervisor for DemoHypervisor {
    fn list(&mut self, pool: &str) -> HvResult<Vec<VmInfo>> {
        let mut v = self.lv.list(pool)?;
        let b = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        for vm in &mut v {
            if let Some(be) = b.get(&vm.name) {
                vm.cpu_time_ns = be.busy_ns.load(Relaxed);
            }
        }
        Ok(v)
    }
    fn hosts(&mut self) -> Vec<HostInfo> {
        self.lv.hosts()
    }
    fn set_vcpus(&mut self, vm: &str, n: u32) -> HvResult<()> {
        self.lv.set_vcpus(vm, n)?;
        if let Some(b) = self.backends.lock().unwrap_or_else(|e| e.into_inner()).get_mut(vm) {
            if n > b.vcpus {
                b.slots.add_permits((n - b.vcpus) as usize);
            } else {
                b.slots.forget_permits((b.vcpus - n) as usize);
            }
            b.vcpus = n;
        }
        Ok(())
    }
    fn set_memory(&mut self, vm: &str, mib: u64) -> HvResult<()> {
        self.lv.set_memory(vm, mib)
    }
    fn set_cpu_cap(&mut self, vm: &str, percent: Option<u32>) -> HvResult<()> {
        self.lv.set_cpu_cap(vm, percent)
    }
    fn clone_vm(&mut self, spec: &CloneSpec) -> HvResult<VmInfo> {
        self.lv.clone_vm(spec)
    }
    fn start(&mut self, vm: &str) -> HvResult<()> {
        self.lv.start(vm)?;
        let info = self.info(vm);
        let vcpus = info.as_ref().map_or(1, |v| v.vcpus);
        if let Some(addr) = info.and_then(|v| v.addr?.parse().ok()) {
            let b = spawn_backend(&self.rt, vm.to_string(), addr, vcpus, self.work, self.boot, self.speed);
            self.backends.lock().unwrap_or_else(|e| e.into_inner()).insert(vm.to_string(), b);
        }
        Ok(())
    }
    fn stop(&mut self, vm: &str, grace: Duration) -> HvResult<()> {
        self.stop_backend(vm);
        self.lv.stop(vm, grace)
    }
    fn delete(&mut self, vm: &str) -> HvResult<()> {
        self.stop_backend(vm);
        self.lv.delete(vm)
    }
    fn suspend(&mut self, vm: &str) -> HvResult<()> {
        self.lv.suspend(vm)
    }
    fn resume(&mut self, vm: &str) -> HvResult<()> {
        self.lv.resume(vm)
    }
    fn migrate(&mut self, vm: &str, to_uri: &str) -> HvResult<()> {
        self.lv.migrate(vm, to_uri)
    }
    fn stats(&mut self, pool: &str) -> HvResult<Vec<DomainStats>> {
        // The test driver reports only states: CPU time is the servers' busy time.
        let b = self.backends.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self
            .lv
            .list(pool)?
            .into_iter()
            .map(|v| DomainStats {
                cpu_time_ns: Some(b.get(&v.name).map_or(0, |b| b.busy_ns.load(Relaxed))),
                vcpus: Some(v.vcpus as u64),
                balloon_current_kib: Some(v.memory_mib * 1024),
                rss_kib: Some(v.memory_mib * 1024 / 2),
                name: v.name,
                ..Default::default()
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------------
// Set-up and the run.

/// A static backend (the `search` pool's member): 4 slots.
async fn start_static(rt: &tokio::runtime::Handle, work: Duration) -> std::io::Result<(SocketAddr, Backend)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    drop(l);
    Ok((addr, spawn_backend(rt, "search-1".into(), addr, 4, work, Duration::ZERO, 1.0)))
}

/// Writes a week of generated history (or the user's trace, shifted to end now) and imports
/// it; returns what `orders` will be replayed from: `(t, calls/min)` by minute, if a trace.
fn seed(dir: &Path, settings: &Settings, now_s: u64, trace: Option<&Path>) -> anyhow::Result<Option<Vec<(u64, f64)>>> {
    let h = settings.historian.as_ref().expect("the demo config has a historian");
    std::fs::create_dir_all(dir)?;
    let mut replay = None;
    for ep in ["orders", "reports", "search"] {
        let csv = dir.join(format!("{ep}.csv"));
        if ep == "orders"
            && let Some(t) = trace
        {
            let r = crate::historian::import::import(
                t,
                ep,
                dir,
                &h.store.tiers,
                &crate::historian::import::ImportOptions {
                    shift_to_s: Some(now_s),
                    skip_bad: true,
                    ..Default::default()
                },
            )?;
            anyhow::ensure!(r.calls > 0, "{}: no calls imported", t.display());
            let series = crate::historian::import::recorded_series(dir, ep)?;
            let per_min = series.step_s as f64 / 60.0;
            replay = Some(
                series
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        (series.start_s + i as u64 * series.step_s, if v.is_finite() { v / per_min } else { 0.0 })
                    })
                    .collect(),
            );
            continue;
        }
        let mut text = String::from("timestamp,value\n");
        let start = (now_s / 60 - 7 * 1440) * 60;
        let mut rng = fastrand::Rng::with_seed(ep.len() as u64);
        for m in 0..7 * 1440u64 {
            let t = start + m * 60;
            let mean = pattern(ep, t);
            let noise = 1.0 + 0.1 * (rng.f64() * 2.0 - 1.0);
            text.push_str(&format!("{t},{}\n", (mean * noise).round() as u64));
        }
        std::fs::write(&csv, text)?;
        crate::historian::import::import(&csv, ep, dir, &h.store.tiers, &Default::default())?;
    }
    Ok(replay)
}

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

#[derive(Default)]
pub struct LoadStats {
    pub ok: AtomicU64,
    pub failed: AtomicU64,
    /// Sum of latencies (µs) and count over the last status period.
    lat_us: AtomicU64,
    lat_n: AtomicU64,
}

/// The load generator: every 100 ms (real), the calls the pattern (or the replayed trace) asks
/// for in the virtual time that passed, open-loop, at most 2,000 in flight.
/// Calls per minute the demo sends to `ep` at virtual second `t`: the generated pattern, or for
/// `orders` with `--trace` the trace a week earlier at the same minute (the replayed "next day").
fn demo_rate(replay: &Option<Vec<(u64, f64)>>, ep: &str, t: u64) -> f64 {
    match (replay, ep) {
        (Some(r), "orders") => {
            let i = r.partition_point(|x| x.0 + 7 * 86_400 <= t);
            r.get(i.saturating_sub(1)).map_or(0.0, |x| x.1)
        }
        _ => pattern(ep, t),
    }
}

fn weekday_name(t: u64) -> &'static str {
    ["Thursday", "Friday", "Saturday", "Sunday", "Monday", "Tuesday", "Wednesday"][((t / 86_400) % 7) as usize]
}

async fn load(
    proxy: SocketAddr,
    clock: Arc<ScaledClock>,
    replay: Arc<Option<Vec<(u64, f64)>>>,
    stats: Arc<LoadStats>,
    stop: CancellationToken,
) {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).pool_max_idle_per_host(256).build_http();
    let inflight = Arc::new(Semaphore::new(2000));
    let mut owed: HashMap<&str, f64> = HashMap::new();
    let mut last = clock.now_us();
    let mut n = 0u64;
    let rate = |ep: &str, t: u64| demo_rate(&replay, ep, t);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = clock.now_us();
        let dt_min = (now - last) as f64 / 60e6;
        last = now;
        for ep in ["orders", "reports", "search"] {
            let due = owed.entry(ep).or_default();
            *due += rate(ep, now / 1_000_000) * dt_min;
            while *due >= 1.0 {
                *due -= 1.0;
                n += 1;
                let path = match ep {
                    "orders" => format!("/api/orders/{}", n % 1000),
                    "reports" => {
                        format!("/api/reports?report={}", if n.is_multiple_of(5) { "full" } else { "summary" })
                    }
                    _ => format!("/api/search?q=item{}", n % 97),
                };
                let Ok(permit) = inflight.clone().try_acquire_owned() else {
                    stats.failed.fetch_add(1, Relaxed);
                    continue;
                };
                let (client, stats) = (client.clone(), stats.clone());
                let uri: http::Uri = match format!("http://{proxy}{path}").parse() {
                    Ok(u) => u,
                    Err(_) => continue,
                };
                tokio::spawn(async move {
                    let t = std::time::Instant::now();
                    let ok = matches!(
                        tokio::time::timeout(Duration::from_secs(10), client.get(uri)).await,
                        Ok(Ok(r)) if r.status().is_success()
                    );
                    stats.lat_us.fetch_add(t.elapsed().as_micros() as u64, Relaxed);
                    stats.lat_n.fetch_add(1, Relaxed);
                    if ok {
                        stats.ok.fetch_add(1, Relaxed)
                    } else {
                        stats.failed.fetch_add(1, Relaxed)
                    };
                    drop(permit);
                });
            }
        }
    }
}

/// One status line a second: virtual time, orders' rate vs forecast, VMs, requests.
async fn status_line(
    admin: SocketAddr,
    clock: Arc<ScaledClock>,
    replay: Arc<Option<Vec<(u64, f64)>>>,
    stats: Arc<LoadStats>,
    stop: CancellationToken,
) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let mut printed_decisions = 0u64;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &str| {
        let client = client.clone();
        let uri: http::Uri = format!("http://{admin}{path}").parse().expect("valid admin URI");
        async move {
            use http_body_util::BodyExt;
            let fetch = async {
                let r = client.get(uri).await.ok()?;
                r.into_body().collect().await.ok().map(|b| b.to_bytes())
            };
            let b = tokio::time::timeout(Duration::from_secs(2), fetch).await.ok()??;
            serde_json::from_slice::<serde_json::Value>(&b).ok()
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = clock.now_us() / 1_000_000;
        let f = get("/admin/api/forecast?endpoint=orders").await;
        let pools = get("/admin/api/pools").await;
        let fc = f.as_ref().and_then(|f| f["points"].get(0).map(|p| p["rate"].as_f64().unwrap_or(0.0) * 60.0));
        let model = f.as_ref().and_then(|f| f["model"].as_str().map(String::from)).unwrap_or_else(|| "-".into());
        let pool = pools.as_ref().and_then(|p| p.as_array()?.iter().find(|p| p["pool"] == "orders").cloned());
        let vms = pool.as_ref().and_then(|p| p["vms"].as_array().cloned()).unwrap_or_default();
        let vcpus: u64 = vms.iter().filter_map(|v| v["vcpus"].as_u64()).sum();
        let (n, lat) = (stats.lat_n.swap(0, Relaxed), stats.lat_us.swap(0, Relaxed));
        // Every scaling action once, on its own line, with the virtual time it was taken.
        if let Some(ds) = get("/admin/api/decisions?pool=orders&limit=50").await.and_then(|d| d.as_array().cloned()) {
            let mut new: Vec<&serde_json::Value> = ds
                .iter()
                .filter(|d| d["t"].as_u64().is_some_and(|dt| dt > printed_decisions) && !d["action"].is_null())
                .collect();
            new.reverse();
            for d in new {
                let dt = d["t"].as_u64().unwrap_or(0);
                printed_decisions = printed_decisions.max(dt);
                let what = match d["action"]["kind"].as_str() {
                    Some("launch" | "resume") => "scale-out",
                    Some("set_vcpus") if d["action"]["to"].as_u64() > d["action"]["from"].as_u64() => "scale-up",
                    Some("set_vcpus") => "scale-down",
                    Some("drain" | "stop") => "scale-in",
                    // Memory and weight follow the vCPUs: not part of the story.
                    _ => continue,
                };
                let clear = if tty { "\r\x1b[K" } else { "" };
                eprintln!(
                    "{clear}{:02}:{:02} UTC  {what}: {} — {}",
                    dt % 86_400 / 3600,
                    dt % 3600 / 60,
                    action_words(&d["action"]),
                    d["reason"].as_str().unwrap_or("")
                );
            }
        }
        if !tty {
            // A pipe gets the decisions only (no carriage-return status line).
            continue;
        }
        eprint!(
            "\r\x1b[K{} {:02}:{:02} UTC | orders now {:>4.0}/min, forecast {} ({model}) | VMs {} ({vcpus} vCPUs), capacity {:.0}/min | ok {} failed {} | latency {:.0} ms",
            &weekday_name(t)[..3],
            t % 86_400 / 3600,
            t % 3600 / 60,
            demo_rate(&replay, "orders", t),
            fc.map_or("-".into(), |v| format!("{v:.0}/min")),
            vms.len(),
            pool.as_ref().and_then(|p| p["capacity_rps"].as_f64()).unwrap_or(0.0) * 60.0,
            stats.ok.load(Relaxed),
            stats.failed.load(Relaxed),
            if n > 0 { lat as f64 / n as f64 / 1000.0 } else { 0.0 }
        );
    }
}

/// A decision's action (as the API gives it) in words.
fn action_words(a: &serde_json::Value) -> String {
    serde_json::from_value::<crate::allocator::plan::Action>(a.clone())
        .map(|a| a.to_string())
        .unwrap_or_else(|_| a.to_string())
}
