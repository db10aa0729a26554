//! An in-memory hypervisor — a **fake**, for the simulator and executor tests where no real
//! hypervisor runs. Same contract as libvirt's: maxima enforced, clones need the template, a
//! started VM is `Running` at once (boot time is the simulator's business), vCPU unplug refused
//! like real qemu's.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{CloneSpec, HostInfo, HvError, HvResult, Hypervisor, VmInfo, VmState};

#[derive(Debug, Default)]
pub struct FakeHypervisor {
    pub vms: BTreeMap<String, VmInfo>,
    /// Templates by name (their `pool` is ignored).
    pub templates: BTreeMap<String, VmInfo>,
    /// When set, every call fails as if the host were unreachable.
    pub down: bool,
    /// Calls made, in order (`"start api-1"` …), for tests.
    pub calls: Vec<String>,
}

impl FakeHypervisor {
    fn vm(&mut self, name: &str) -> HvResult<&mut VmInfo> {
        if self.down {
            return Err(HvError::Connect { uri: "fake:///".into(), message: "down".into() });
        }
        self.vms.get_mut(name).ok_or_else(|| HvError::NotFound(name.into()))
    }
}

impl Hypervisor for FakeHypervisor {
    fn list(&mut self, pool: &str) -> HvResult<Vec<VmInfo>> {
        if self.down {
            return Err(HvError::Connect { uri: "fake:///".into(), message: "down".into() });
        }
        Ok(self.vms.values().filter(|v| v.pool == pool).cloned().collect())
    }
    fn hosts(&mut self) -> Vec<HostInfo> {
        vec![HostInfo { uri: "fake:///".into(), up: !self.down, cpus: 64, free_memory_mib: 1 << 20, error: None }]
    }
    fn set_vcpus(&mut self, vm: &str, n: u32) -> HvResult<()> {
        self.calls.push(format!("set_vcpus {vm} {n}"));
        let v = self.vm(vm)?;
        if n > v.max_vcpus {
            return Err(HvError::AboveMax { vm: vm.into(), what: "vcpus", asked: n.into(), max: v.max_vcpus.into() });
        }
        if n < v.vcpus && v.state == VmState::Running {
            return Err(HvError::Libvirt("vcpu unplug request timed out".into()));
        }
        v.vcpus = n;
        Ok(())
    }
    fn set_memory(&mut self, vm: &str, mib: u64) -> HvResult<()> {
        self.calls.push(format!("set_memory {vm} {mib}"));
        let v = self.vm(vm)?;
        if mib > v.max_memory_mib {
            return Err(HvError::AboveMax { vm: vm.into(), what: "memory MiB", asked: mib, max: v.max_memory_mib });
        }
        v.memory_mib = mib;
        Ok(())
    }
    fn set_cpu_cap(&mut self, vm: &str, percent: Option<u32>) -> HvResult<()> {
        self.calls.push(format!("set_cpu_cap {vm} {percent:?}"));
        self.vm(vm).map(|_| ())
    }
    fn clone_vm(&mut self, spec: &CloneSpec) -> HvResult<VmInfo> {
        self.calls.push(format!("clone {} {}", spec.template, spec.name));
        if self.down {
            return Err(HvError::Connect { uri: "fake:///".into(), message: "down".into() });
        }
        let t = self.templates.get(&spec.template).ok_or_else(|| HvError::NotFound(spec.template.clone()))?;
        if self.vms.contains_key(&spec.name) {
            return Err(HvError::Other(format!("a VM named {:?} already exists", spec.name)));
        }
        let v = VmInfo {
            name: spec.name.clone(),
            pool: spec.pool.clone(),
            state: VmState::Shutoff,
            addr: Some(format!("127.0.0.1:{}", spec.port)),
            created_at: crate::clock::now_us() / 1_000_000,
            ..t.clone()
        };
        self.vms.insert(spec.name.clone(), v.clone());
        Ok(v)
    }
    fn start(&mut self, vm: &str) -> HvResult<()> {
        self.calls.push(format!("start {vm}"));
        self.vm(vm)?.state = VmState::Running;
        Ok(())
    }
    fn stop(&mut self, vm: &str, _grace: Duration) -> HvResult<()> {
        self.calls.push(format!("stop {vm}"));
        self.vm(vm)?.state = VmState::Shutoff;
        Ok(())
    }
    fn delete(&mut self, vm: &str) -> HvResult<()> {
        self.calls.push(format!("delete {vm}"));
        self.vm(vm)?;
        self.vms.remove(vm);
        Ok(())
    }
    fn suspend(&mut self, vm: &str) -> HvResult<()> {
        self.calls.push(format!("suspend {vm}"));
        self.vm(vm)?.state = VmState::Paused;
        Ok(())
    }
    fn resume(&mut self, vm: &str) -> HvResult<()> {
        self.calls.push(format!("resume {vm}"));
        self.vm(vm)?.state = VmState::Running;
        Ok(())
    }
    fn migrate(&mut self, vm: &str, to_uri: &str) -> HvResult<()> {
        self.calls.push(format!("migrate {vm} {to_uri}"));
        self.vm(vm)?.host = to_uri.into();
        Ok(())
    }
}
