//! What the allocator needs from a hypervisor, as a trait: list a pool's VMs, resize them live,
//! clone new ones from a template, start, stop, delete, suspend/resume, migrate, read hosts.
//!
//! [`libvirt`] implements it on the `virt` crate (any libvirt URI: `qemu:///system`,
//! `qemu+ssh://host/system`, `test:///…`); [`fake`] is an in-memory stand-in for the
//! simulator and for executor tests — a fake, named as such, used where no hypervisor runs.
//! Every call blocks: implementations live on the allocator's own thread, never on a runtime.
//!
//! VMs prescale creates carry a `<metadata>` element in the namespace [`METADATA_NS`]
//! recording pool, upstream address, template, overlay disk and creation time, so a restarted
//! prescale finds and adopts them.

pub mod fake;
pub mod libvirt;
pub mod stats;

use serde::Serialize;

/// Namespace of prescale's `<metadata>` element in domain XML.
pub const METADATA_NS: &str = "urn:prescale:vm";

/// Run state as the allocator sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    Running,
    Paused,
    Shutoff,
    Other,
}

/// One VM of a pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct VmInfo {
    pub name: String,
    pub pool: String,
    /// The libvirt URI of the host it runs on.
    pub host: String,
    pub state: VmState,
    pub vcpus: u32,
    pub max_vcpus: u32,
    pub memory_mib: u64,
    pub max_memory_mib: u64,
    /// `host:port` the proxy forwards to.
    pub addr: Option<String>,
    /// Epoch seconds (from the metadata).
    pub created_at: u64,
    /// CPU time used so far, nanoseconds.
    pub cpu_time_ns: u64,
    /// `fleet/instance/term` of the fleet leader that made it (from the metadata; empty when
    /// a lone instance did).
    pub owner: String,
}

/// A host's capacity, for placement.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HostInfo {
    pub uri: String,
    pub up: bool,
    pub cpus: u32,
    pub free_memory_mib: u64,
    /// Why it is down, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a pool's VMs are reached (`[pool.scaling] network`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Network {
    /// qemu user networking with a host port forward (`hostfwd=tcp:127.0.0.1:PORT-:…` in the
    /// template's `<qemu:commandline>`): each clone gets its own PORT from `ports` and is
    /// reached at `127.0.0.1:PORT`. For the demo and single-host set-ups.
    #[default]
    User,
    /// A bridge or libvirt network: each clone keeps the template's interfaces with a new MAC,
    /// gets its address from the network (DHCP), and prescale discovers it through libvirt
    /// (`virDomainInterfaceAddresses`, trying `sources` in order); the VM is `ADDRESS:port`.
    Bridge { port: u16, sources: Vec<AddressSource> },
}

/// Where libvirt looks for a guest's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AddressSource {
    /// The DHCP leases of a libvirt-managed network (dnsmasq).
    Lease,
    /// The qemu guest agent inside the VM.
    Agent,
    /// The host's ARP table (bridges libvirt does not manage).
    Arp,
}

impl AddressSource {
    pub const ALL: [AddressSource; 3] = [AddressSource::Lease, AddressSource::Agent, AddressSource::Arp];

    pub fn name(self) -> &'static str {
        match self {
            Self::Lease => "lease",
            Self::Agent => "agent",
            Self::Arp => "arp",
        }
    }
}

/// What to create.
#[derive(Debug, Clone, PartialEq)]
pub struct CloneSpec {
    pub template: String,
    pub name: String,
    pub pool: String,
    /// Port of the new VM's upstream address (`127.0.0.1:port`), written into its qemu
    /// user-networking forward where the template has one (unused on a bridge).
    pub port: u16,
    pub network: Network,
    /// Host to create it on; `None`: the one with the most free memory.
    pub host: Option<String>,
    /// In a fleet (`[cluster]`): `fleet/instance/term` of the leader that made it, written
    /// into its metadata; empty for a lone instance.
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HvError {
    #[error("cannot connect to {uri}: {message}")]
    Connect { uri: String, message: String },
    #[error("no VM named {0:?}")]
    NotFound(String),
    #[error("{what} {asked} is above the maximum {max} of VM {vm:?}")]
    AboveMax { vm: String, what: &'static str, asked: u64, max: u64 },
    #[error("libvirt: {0}")]
    Libvirt(String),
    /// The driver has no such operation or parameter (e.g. `vcpu_quota` on `test:///`).
    #[error("libvirt: {0}")]
    Unsupported(String),
    #[error("{0}")]
    Other(String),
}

pub type HvResult<T> = Result<T, HvError>;

/// The operations the allocator performs. All block.
pub trait Hypervisor: Send {
    /// The VMs of `pool` on every host (those carrying prescale's metadata for it).
    fn list(&mut self, pool: &str) -> HvResult<Vec<VmInfo>>;
    fn hosts(&mut self) -> Vec<HostInfo>;
    /// Live vCPU count (hot-plug); above the VM's maximum is an error.
    fn set_vcpus(&mut self, vm: &str, n: u32) -> HvResult<()>;
    /// Live memory (balloon); above the VM's maximum is an error.
    fn set_memory(&mut self, vm: &str, mib: u64) -> HvResult<()>;
    /// CPU cap in percent of the VM's vCPUs (`None`: no cap) — the way down where unplug fails.
    fn set_cpu_cap(&mut self, vm: &str, percent: Option<u32>) -> HvResult<()>;
    /// Defines a new VM from a template (not started).
    fn clone_vm(&mut self, spec: &CloneSpec) -> HvResult<VmInfo>;
    fn start(&mut self, vm: &str) -> HvResult<()>;
    /// Graceful shutdown, then destroy after `grace`.
    fn stop(&mut self, vm: &str, grace: std::time::Duration) -> HvResult<()>;
    /// Stops if needed, undefines, removes its overlay disk.
    fn delete(&mut self, vm: &str) -> HvResult<()>;
    fn suspend(&mut self, vm: &str) -> HvResult<()>;
    fn resume(&mut self, vm: &str) -> HvResult<()>;
    /// Live-migrates to the host at `to_uri` (one of the pool's hosts).
    fn migrate(&mut self, vm: &str, to_uri: &str) -> HvResult<()>;
    /// Usage counters of the pool's VMs (CPU time, balloon/RSS, block and network bytes where
    /// the hypervisor reports them). The default has CPU time from [`Hypervisor::list`] only.
    fn stats(&mut self, pool: &str) -> HvResult<Vec<stats::DomainStats>> {
        Ok(self
            .list(pool)?
            .into_iter()
            .map(|v| stats::DomainStats {
                name: v.name,
                cpu_time_ns: Some(v.cpu_time_ns),
                vcpus: Some(v.vcpus as u64),
                balloon_current_kib: Some(v.memory_mib * 1024),
                ..Default::default()
            })
            .collect())
    }
}

/// Pulls `name="value"` (or single-quoted) out of an XML fragment.
pub(crate) fn attr(xml: &str, name: &str) -> Option<String> {
    for q in ['"', '\''] {
        let key = format!(" {name}={q}");
        if let Some(i) = xml.find(&key) {
            let rest = &xml[i + key.len()..];
            return rest.find(q).map(|j| rest[..j].to_string());
        }
    }
    None
}

/// The metadata element prescale writes.
pub(crate) fn metadata_xml(
    pool: &str,
    addr: &str,
    template: &str,
    overlay: Option<&str>,
    created: u64,
    owner: &str,
) -> String {
    let esc = |s: &str| s.replace('&', "&amp;").replace('"', "&quot;").replace('<', "&lt;");
    let owner = if owner.is_empty() { String::new() } else { format!(r#" owner="{}""#, esc(owner)) };
    format!(
        r#"<prescale:vm xmlns:prescale="{METADATA_NS}" pool="{}" addr="{}" template="{}" overlay="{}" created="{created}"{owner}/>"#,
        esc(pool),
        esc(addr),
        esc(template),
        esc(overlay.unwrap_or(""))
    )
}
