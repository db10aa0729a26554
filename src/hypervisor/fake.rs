//! An in-memory hypervisor on the injected clock — a **fake**, named as such, for the
//! simulator and the controller's unit tests, where no real hypervisor runs. Same contract as
//! libvirt's: maxima enforced, clones need the template, vCPU unplug refused like real qemu's.
//! What real guests do in time is modelled: a started guest answers its health check after a
//! boot delay (with seeded jitter), a hot-plug shows after its delay. Faults can be injected:
//! the whole hypervisor down, the next clones failing, a VM destroyed or shut off behind the
//! controller's back.
//!
//! [`FakeHypervisor`] is a handle: clones share one [`World`], so a test (or the simulator's
//! accounting) can look at and change what the controller's boxed copy sees. [`FakeGuests`]
//! is the matching health prober.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{CloneSpec, HostInfo, HvError, HvResult, Hypervisor, Network, VmInfo, VmState};
use crate::clock::SharedClock;

/// A VM of the fake, with its timing.
#[derive(Debug, Clone)]
pub struct FakeVm {
    pub info: VmInfo,
    /// Clock µs from which its guest answers health checks (while running).
    pub ready_at_us: u64,
    /// A hot-plug in flight: the count it goes to and when it shows.
    pub hotplug: Option<(u32, u64)>,
    /// CPU cap, percent of each vCPU (`None`: uncapped); cleared when the guest stops.
    pub cap_percent: Option<u32>,
}

impl FakeVm {
    /// vCPUs' worth of CPU time it may use (a cap counts; billing follows it).
    pub fn effective_vcpus(&self) -> u32 {
        let v = self.info.vcpus;
        self.cap_percent.map_or(v, |p| (v * p).div_ceil(100).min(v))
    }
}

/// Everything the fake holds.
#[derive(Debug)]
pub struct World {
    pub vms: BTreeMap<String, FakeVm>,
    /// Templates by name (their `pool` is ignored).
    pub templates: BTreeMap<String, VmInfo>,
    /// When set, every call fails as if the host were unreachable.
    pub down: bool,
    /// The next this many clones fail.
    pub failing_clones: u32,
    /// CPU caps refused as libvirt's `test:///` driver refuses them (no `vcpu_quota`).
    pub no_caps: bool,
    /// Calls made, in order (`"start api-1"` …), for tests; `list` is not recorded.
    pub calls: Vec<String>,
    /// Boot delay (seconds) and its relative jitter (uniform ±).
    pub boot_s: f64,
    pub boot_jitter: f64,
    pub hotplug_s: f64,
    rng: fastrand::Rng,
    clock: SharedClock,
    next_addr: u32,
}

impl World {
    fn now_us(&self) -> u64 {
        self.clock.now_us()
    }

    fn up(&self) -> HvResult<()> {
        if self.down {
            return Err(HvError::Connect { uri: "fake:///".into(), message: "down".into() });
        }
        Ok(())
    }

    fn vm(&mut self, name: &str) -> HvResult<&mut FakeVm> {
        self.up()?;
        self.vms.get_mut(name).ok_or_else(|| HvError::NotFound(name.into()))
    }

    /// Hot-plugs that are due show.
    fn settle(&mut self) {
        let now = self.now_us();
        for v in self.vms.values_mut() {
            if let Some((n, at)) = v.hotplug
                && now >= at
            {
                v.info.vcpus = n;
                v.hotplug = None;
            }
        }
    }

    fn boot_delay_us(&mut self) -> u64 {
        let j = self.boot_s * self.boot_jitter * (2.0 * self.rng.f64() - 1.0);
        ((self.boot_s + j).max(0.0) * 1e6) as u64
    }

    /// Adds a running VM of `pool` whose guest is up (what a restart finds, or a starting
    /// fleet), at `addr`.
    pub fn add_running(&mut self, name: &str, pool: &str, vcpus: u32, max_vcpus: u32, addr: &str) {
        let info = VmInfo {
            owner: String::new(),
            name: name.into(),
            pool: pool.into(),
            host: "fake:///".into(),
            state: VmState::Running,
            vcpus,
            max_vcpus,
            memory_mib: 512,
            max_memory_mib: 1024,
            addr: Some(addr.into()),
            created_at: self.now_us() / 1_000_000,
            cpu_time_ns: 0,
        };
        self.vms.insert(name.into(), FakeVm { info, ready_at_us: 0, hotplug: None, cap_percent: None });
    }

    /// Whether the guest at `addr` answers (running, booted).
    pub fn answers(&self, addr: &str) -> bool {
        let now = self.now_us();
        self.vms
            .values()
            .any(|v| v.info.addr.as_deref() == Some(addr) && v.info.state == VmState::Running && now >= v.ready_at_us)
    }

    /// `(vCPUs, VMs)` paid for: every VM running (a suspended one holds memory, not CPU); a
    /// hot-plug is paid from the call, a CPU cap pays only the vCPUs' worth it allows.
    pub fn paid(&self) -> (u32, u32) {
        let on = self.vms.values().filter(|v| v.info.state != VmState::Shutoff);
        on.fold((0, 0), |(c, n), v| {
            let cpu = if v.info.state == VmState::Running {
                v.effective_vcpus().max(v.hotplug.map_or(0, |h| h.0))
            } else {
                0
            };
            (c + cpu, n + 1)
        })
    }
}

/// The in-memory hypervisor (a handle on its [`World`]).
#[derive(Debug, Clone)]
pub struct FakeHypervisor(Arc<Mutex<World>>);

impl FakeHypervisor {
    /// An empty fake on `clock`: boot 120 s ± 25 %, hot-plug 10 s, jitter seeded by `seed`.
    pub fn new(clock: SharedClock, seed: u64) -> Self {
        Self(Arc::new(Mutex::new(World {
            vms: BTreeMap::new(),
            templates: BTreeMap::new(),
            down: false,
            failing_clones: 0,
            no_caps: false,
            calls: Vec::new(),
            boot_s: 120.0,
            boot_jitter: 0.25,
            hotplug_s: 10.0,
            rng: fastrand::Rng::with_seed(seed),
            clock,
            next_addr: 2,
        })))
    }

    /// Adds a template of `vcpus` (maximum `max_vcpus`) vCPUs.
    pub fn with_template(self, name: &str, vcpus: u32, max_vcpus: u32) -> Self {
        let t = VmInfo {
            owner: String::new(),
            name: name.into(),
            pool: String::new(),
            host: "fake:///".into(),
            state: VmState::Shutoff,
            vcpus,
            max_vcpus,
            memory_mib: 512,
            max_memory_mib: 1024,
            addr: None,
            created_at: 0,
            cpu_time_ns: 0,
        };
        self.world().templates.insert(name.into(), t);
        self
    }

    pub fn world(&self) -> MutexGuard<'_, World> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The fake's guests as a health prober (the controller's `Prober`): a guest answers once it
/// has booted.
pub struct FakeGuests(pub FakeHypervisor);

impl Hypervisor for FakeHypervisor {
    fn list(&mut self, pool: &str) -> HvResult<Vec<VmInfo>> {
        let mut w = self.world();
        w.up()?;
        w.settle();
        Ok(w.vms.values().filter(|v| v.info.pool == pool).map(|v| v.info.clone()).collect())
    }
    fn hosts(&mut self) -> Vec<HostInfo> {
        let down = self.world().down;
        vec![HostInfo {
            uri: "fake:///".into(),
            up: !down,
            cpus: 64,
            free_memory_mib: 1 << 20,
            error: down.then(|| "down".into()),
        }]
    }
    fn set_vcpus(&mut self, vm: &str, n: u32) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("set_vcpus {vm} {n}"));
        let at = w.now_us() + (w.hotplug_s * 1e6) as u64;
        let v = w.vm(vm)?;
        if n > v.info.max_vcpus {
            return Err(HvError::AboveMax {
                vm: vm.into(),
                what: "vcpus",
                asked: n.into(),
                max: v.info.max_vcpus.into(),
            });
        }
        if v.info.state != VmState::Running {
            v.info.vcpus = n;
        } else if n < v.info.vcpus {
            return Err(HvError::Libvirt("vcpu unplug request timed out".into()));
        } else {
            v.hotplug = Some((n, at));
        }
        Ok(())
    }
    fn set_memory(&mut self, vm: &str, mib: u64) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("set_memory {vm} {mib}"));
        let v = w.vm(vm)?;
        if mib > v.info.max_memory_mib {
            return Err(HvError::AboveMax {
                vm: vm.into(),
                what: "memory MiB",
                asked: mib,
                max: v.info.max_memory_mib,
            });
        }
        v.info.memory_mib = mib;
        Ok(())
    }
    fn set_cpu_cap(&mut self, vm: &str, percent: Option<u32>) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("set_cpu_cap {vm} {percent:?}"));
        if w.no_caps {
            return Err(HvError::Unsupported("argument unsupported: parameter 'vcpu_period' not supported".into()));
        }
        let v = w.vm(vm)?;
        if v.info.state != VmState::Running {
            return Err(HvError::Libvirt("Requested operation is not valid: domain is not running".into()));
        }
        v.cap_percent = percent.filter(|p| *p < 100);
        Ok(())
    }
    fn clone_vm(&mut self, spec: &CloneSpec) -> HvResult<VmInfo> {
        let mut w = self.world();
        w.calls.push(format!("clone {} {}", spec.template, spec.name));
        w.up()?;
        if w.failing_clones > 0 {
            w.failing_clones -= 1;
            return Err(HvError::Libvirt("Cannot open log file: Device or resource busy".into()));
        }
        let t = w.templates.get(&spec.template).ok_or_else(|| HvError::NotFound(spec.template.clone()))?.clone();
        if w.vms.contains_key(&spec.name) {
            return Err(HvError::Other(format!("a VM named {:?} already exists", spec.name)));
        }
        let addr = match &spec.network {
            Network::User => Some(format!("127.0.0.1:{}", spec.port)),
            // Bridged: an address from the network once it runs.
            Network::Bridge { .. } => None,
        };
        let v = VmInfo {
            owner: String::new(),
            name: spec.name.clone(),
            pool: spec.pool.clone(),
            state: VmState::Shutoff,
            addr,
            created_at: w.now_us() / 1_000_000,
            ..t
        };
        w.vms.insert(
            spec.name.clone(),
            FakeVm { info: v.clone(), ready_at_us: u64::MAX, hotplug: None, cap_percent: None },
        );
        Ok(v)
    }
    fn start(&mut self, vm: &str) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("start {vm}"));
        let at = w.now_us() + w.boot_delay_us();
        let n = w.next_addr;
        let v = w.vm(vm)?;
        v.info.state = VmState::Running;
        v.ready_at_us = at;
        if v.info.addr.is_none() {
            v.info.addr = Some(format!("10.0.{}.{}:80", n / 250, n % 250 + 2));
            w.next_addr += 1;
        }
        Ok(())
    }
    fn stop(&mut self, vm: &str, _grace: Duration) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("stop {vm}"));
        let v = w.vm(vm)?;
        v.info.state = VmState::Shutoff;
        v.hotplug = None;
        v.cap_percent = None;
        Ok(())
    }
    fn delete(&mut self, vm: &str) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("delete {vm}"));
        w.vm(vm)?;
        w.vms.remove(vm);
        Ok(())
    }
    fn suspend(&mut self, vm: &str) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("suspend {vm}"));
        w.vm(vm)?.info.state = VmState::Paused;
        Ok(())
    }
    fn resume(&mut self, vm: &str) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("resume {vm}"));
        let now = w.now_us();
        let v = w.vm(vm)?;
        v.info.state = VmState::Running;
        v.ready_at_us = now;
        Ok(())
    }
    fn migrate(&mut self, vm: &str, to_uri: &str) -> HvResult<()> {
        let mut w = self.world();
        w.calls.push(format!("migrate {vm} {to_uri}"));
        w.vm(vm)?.info.host = to_uri.into();
        Ok(())
    }
    /// No usage model: the cost models keep their priors.
    fn stats(&mut self, _pool: &str) -> HvResult<Vec<super::stats::DomainStats>> {
        self.world().up()?;
        Ok(Vec::new())
    }
}
