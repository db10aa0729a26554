//! The demo's VMs: libvirt's test driver, each running domain backed by an in-process HTTP
//! server whose capacity is real (slots per vCPU, each request holding one for `work_ms`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
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

use crate::hypervisor::libvirt::Libvirt;
use crate::hypervisor::{CloneSpec, HostInfo, HvResult, Hypervisor, VmInfo, stats::DomainStats};

/// The test driver's node: 32 CPUs, 64 GiB, the shut-off template.
pub(super) fn node_xml() -> String {
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

/// A server standing in for a VM: `vcpus` slots, each request holds one for `work_ms`.
pub(super) struct Backend {
    slots: Arc<Semaphore>,
    vcpus: u32,
    stop: CancellationToken,
    /// CPU time "used", ns: busy slot-time, for the domain stats.
    busy_ns: Arc<AtomicU64>,
}

/// Starts a backend on `addr` after `boot` (the VM's boot time).
pub(super) fn spawn_backend(
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

pub(super) async fn vm_answer(
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

    /// The backend of `vm` serves `n` requests at once from now on (its vCPUs' worth).
    fn set_slots(&mut self, vm: &str, n: u32) {
        if let Some(b) = self.backends.lock().unwrap_or_else(|e| e.into_inner()).get_mut(vm) {
            if n > b.vcpus {
                b.slots.add_permits((n - b.vcpus) as usize);
            } else {
                b.slots.forget_permits((b.vcpus - n) as usize);
            }
            b.vcpus = n;
        }
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
        self.set_slots(vm, n);
        Ok(())
    }
    fn set_memory(&mut self, vm: &str, mib: u64) -> HvResult<()> {
        self.lv.set_memory(vm, mib)
    }
    /// The test driver has no `vcpu_quota`: the cap is the backend's, its slots become the
    /// vCPUs' worth the cap allows (a capped demo VM serves less, as a capped guest would).
    fn set_cpu_cap(&mut self, vm: &str, percent: Option<u32>) -> HvResult<()> {
        let plugged = self.info(vm).map_or(1, |v| v.vcpus).max(1);
        let worth = percent.map_or(plugged, |p| (plugged * p).div_ceil(100).clamp(1, plugged));
        self.set_slots(vm, worth);
        Ok(())
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

/// A static backend (the `search` pool's member): 4 slots.
pub(super) async fn start_static(
    rt: &tokio::runtime::Handle,
    work: Duration,
) -> std::io::Result<(SocketAddr, Backend)> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = l.local_addr()?;
    drop(l);
    Ok((addr, spawn_backend(rt, "search-1".into(), addr, 4, work, Duration::ZERO, 1.0)))
}
