//! The libvirt implementation, on the `virt` crate.
//!
//! One connection per host URI, opened lazily; a failed open or a dead connection is retried
//! with exponential back-off (1 s doubling to 30 s) and the host reported down meanwhile — a
//! pool with a host down is degraded, never a crash. The `virt` crate panics when libvirt fails
//! to free a handle; every call runs under `catch_unwind` and a connection that panicked is
//! abandoned (leaked, not freed again) and reopened.
//!
//! Clones are defined from the template's inactive XML with a new name, no UUID and no MAC
//! (libvirt generates fresh ones), each file-backed disk replaced by a qcow2 overlay on the
//! template's image (`qemu-img create -b`), the qemu user-networking forward
//! (`hostfwd=tcp:127.0.0.1:PORT-:`) moved to the clone's own port, and prescale's metadata.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::Domain;
use virt::sys;

use super::stats::{self, DomainStats, Value};
use super::{CloneSpec, HostInfo, HvError, HvResult, Hypervisor, METADATA_NS, VmInfo, VmState, attr, metadata_xml};

/// Longest wait between connection attempts to a host that is down: a libvirtd that comes
/// back is used again within this (a failed attempt on a local socket costs microseconds).
const RECONNECT_MAX: Duration = Duration::from_secs(2);

struct Host {
    uri: String,
    conn: Option<Connect>,
    next_try: Instant,
    backoff: Duration,
    last_error: Option<String>,
}

pub struct Libvirt {
    hosts: Vec<Host>,
    network: super::Network,
    /// Addresses discovered on a network, by VM name and the domain id they were found for
    /// (a restarted domain gets a new id, and may get a new lease).
    discovered: std::collections::HashMap<String, (u32, String)>,
}

fn lv(e: virt::error::Error) -> HvError {
    use virt::enumutil::Enum::Known;
    use virt::error::ErrorNumber::{ArgumentUnsupported, NoSupport, OperationUnsupported};
    match e.code() {
        Known(ArgumentUnsupported | NoSupport | OperationUnsupported) => HvError::Unsupported(e.message().to_string()),
        _ => HvError::Libvirt(e.message().to_string()),
    }
}

impl Libvirt {
    /// Connections open on first use; nothing fails here.
    pub fn new(uris: &[String]) -> Self {
        // libvirt prints every error to stderr by default; they come back as values here and
        // are logged where they matter.
        virt::error::clear_error_callback();
        let now = Instant::now();
        Self {
            hosts: uris
                .iter()
                .map(|u| Host {
                    uri: u.clone(),
                    conn: None,
                    next_try: now,
                    backoff: Duration::from_secs(1),
                    last_error: None,
                })
                .collect(),
            network: super::Network::User,
            discovered: std::collections::HashMap::new(),
        }
    }

    /// How the pool's VMs are reached (user networking unless told otherwise).
    pub fn with_network(mut self, network: super::Network) -> Self {
        self.network = network;
        self
    }

    /// Runs `f` on host `i`'s connection, opening it if due; a panic inside abandons it.
    fn on<T>(&mut self, i: usize, f: impl FnOnce(&Connect) -> HvResult<T>) -> HvResult<T> {
        let h = &mut self.hosts[i];
        if h.conn.is_none() {
            if Instant::now() < h.next_try {
                return Err(HvError::Connect {
                    uri: h.uri.clone(),
                    message: h.last_error.clone().unwrap_or_else(|| "down".into()),
                });
            }
            match catch_unwind(|| Connect::open(Some(&h.uri))) {
                Ok(Ok(c)) => {
                    h.conn = Some(c);
                    h.backoff = Duration::from_secs(1);
                    h.last_error = None;
                }
                Ok(Err(e)) => return Err(self.failed(i, e.message().to_string())),
                Err(_) => return Err(self.failed(i, "libvirt panicked while connecting".into())),
            }
        }
        let h = &mut self.hosts[i];
        let conn = h.conn.as_ref().expect("opened above");
        match catch_unwind(AssertUnwindSafe(|| f(conn))) {
            Ok(Err(HvError::Libvirt(m))) if !conn.is_alive().unwrap_or(false) => {
                // The connection died under the call: drop it (carefully) and back off.
                Err(self.failed(i, m))
            }
            Ok(r) => r,
            Err(_) => Err(self.failed(i, "libvirt panicked (failed to free a handle)".into())),
        }
    }

    fn failed(&mut self, i: usize, message: String) -> HvError {
        let h = &mut self.hosts[i];
        if let Some(c) = h.conn.take() {
            // Closing a broken connection can fail, and the crate panics on that: leak it.
            std::mem::forget(c);
        }
        h.next_try = Instant::now() + h.backoff;
        h.backoff = (h.backoff * 2).min(RECONNECT_MAX);
        // Logged when it changes, not at every retry.
        if h.last_error.as_deref() != Some(message.as_str()) {
            tracing::warn!(uri = %h.uri, error = %message, "libvirt host unavailable");
        }
        h.last_error = Some(message.clone());
        HvError::Connect { uri: h.uri.clone(), message }
    }

    /// Finds the host that has `vm` (a host that cannot be asked makes "not found" a
    /// connection error: the VM may be there).
    fn locate(&mut self, vm: &str) -> HvResult<usize> {
        let mut down = None;
        for i in 0..self.hosts.len() {
            match self.on(i, |c| Ok(c.lookup_domain_by_name(vm).is_ok())) {
                Ok(true) => return Ok(i),
                Ok(false) => {}
                Err(e) => down = Some(e),
            }
        }
        Err(down.unwrap_or_else(|| HvError::NotFound(vm.into())))
    }

    fn with_vm<T>(&mut self, vm: &str, f: impl FnOnce(&Connect, &Domain) -> HvResult<T>) -> HvResult<T> {
        let i = self.locate(vm)?;
        self.on(i, |c| {
            let d = c.lookup_domain_by_name(vm).map_err(|_| HvError::NotFound(vm.into()))?;
            f(c, &d)
        })
    }
}

fn state(d: &Domain) -> VmState {
    match d.state().map(|s| s.0.known()) {
        Ok(Some(virt::domain::DomainState::Running | virt::domain::DomainState::Blocked)) => VmState::Running,
        Ok(Some(virt::domain::DomainState::Paused)) => VmState::Paused,
        Ok(Some(virt::domain::DomainState::Shutoff)) => VmState::Shutoff,
        _ => VmState::Other,
    }
}

/// prescale's metadata of a domain, if it has some.
fn meta(d: &Domain) -> Option<String> {
    d.metadata(sys::VIR_DOMAIN_METADATA_ELEMENT as i32, Some(METADATA_NS), 0).ok().or_else(|| {
        // Drivers without the metadata API: look in the XML.
        let xml = d.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).ok()?;
        let i = xml.find(METADATA_NS)?;
        let start = xml[..i].rfind('<')?;
        let end = xml[i..].find("/>")? + i + 2;
        Some(xml[start..end].to_string())
    })
}

fn info(uri: &str, d: &Domain, m: &str) -> HvResult<VmInfo> {
    let i = d.info().map_err(lv)?;
    let active = d.is_active().unwrap_or(false);
    let live = if active { sys::VIR_DOMAIN_AFFECT_LIVE } else { sys::VIR_DOMAIN_AFFECT_CONFIG };
    let vcpus = d.vcpus_flags(live).unwrap_or(i.nr_virt_cpu);
    let max_vcpus = d.vcpus_flags(sys::VIR_DOMAIN_VCPU_MAXIMUM | sys::VIR_DOMAIN_AFFECT_CONFIG).unwrap_or(vcpus);
    Ok(VmInfo {
        name: d.name().map_err(lv)?,
        pool: attr(m, "pool").unwrap_or_default(),
        host: uri.to_string(),
        state: state(d),
        vcpus,
        max_vcpus,
        memory_mib: i.memory / 1024,
        max_memory_mib: i.max_mem / 1024,
        addr: attr(m, "addr").filter(|a| !a.is_empty()),
        created_at: attr(m, "created").and_then(|c| c.parse().ok()).unwrap_or(0),
        owner: attr(m, "owner").unwrap_or_default(),
        cpu_time_ns: i.cpu_time,
    })
}

/// A running VM's address on its network: the first IPv4 address (not loopback or link-local)
/// that one of `sources` reports, in their order, with the pool's port. Remembered per domain
/// id; `None` until the guest has one (DHCP takes seconds after boot).
fn discover(
    d: &Domain,
    name: &str,
    sources: &[super::AddressSource],
    port: u16,
    cache: &mut std::collections::HashMap<String, (u32, String)>,
) -> Option<String> {
    let id = d.id().unwrap_or(0);
    if let Some((cached_id, addr)) = cache.get(name)
        && *cached_id == id
    {
        return Some(addr.clone());
    }
    for s in sources {
        let src = match s {
            super::AddressSource::Lease => sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE,
            super::AddressSource::Agent => sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT,
            super::AddressSource::Arp => sys::VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP,
        };
        // A source that does not apply (no agent, no lease) is an error here: try the next.
        let Ok(ifaces) = catch_unwind(AssertUnwindSafe(|| d.interface_addresses(src, 0))) else { continue };
        let Ok(ifaces) = ifaces else { continue };
        let ip = ifaces
            .iter()
            .filter(|i| i.name != "lo")
            .flat_map(|i| i.addrs.iter())
            .filter(|a| a.typed == sys::VIR_IP_ADDR_TYPE_IPV4 as i64)
            .filter_map(|a| a.addr.parse::<std::net::Ipv4Addr>().ok())
            .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified());
        if let Some(ip) = ip {
            let addr = format!("{ip}:{port}");
            tracing::info!(vm = name, source = s.name(), %addr, "VM address discovered");
            cache.insert(name.to_string(), (id, addr.clone()));
            return Some(addr);
        }
    }
    None
}

/// Every domain's stats on one connection: `virConnectGetAllDomainStats` (state, CPU, balloon,
/// vCPU, interface and block groups; groups a driver lacks are skipped, not an error), each
/// record's typed parameters copied out and the record list freed with
/// `virDomainStatsRecordListFree` — the `virt` crate's wrapper frees only the array.
fn all_stats(c: &Connect) -> HvResult<Vec<DomainStats>> {
    use std::ffi::CStr;
    let groups = sys::VIR_DOMAIN_STATS_STATE
        | sys::VIR_DOMAIN_STATS_CPU_TOTAL
        | sys::VIR_DOMAIN_STATS_BALLOON
        | sys::VIR_DOMAIN_STATS_VCPU
        | sys::VIR_DOMAIN_STATS_INTERFACE
        | sys::VIR_DOMAIN_STATS_BLOCK;
    let mut records: *mut sys::virDomainStatsRecordPtr = std::ptr::null_mut();
    // SAFETY: `c` is an open connection; libvirt fills `records` with a NULL-terminated array
    // it allocated, which is freed below whatever happens in between (nothing in between panics:
    // only reads and owned copies).
    let n = unsafe { sys::virConnectGetAllDomainStats(c.as_ptr(), groups as _, &mut records, 0) };
    if n < 0 || records.is_null() {
        return Err(HvError::Libvirt(virt::error::Error::last_error().message().to_string()));
    }
    let mut out = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        // SAFETY: `records` holds `n` valid record pointers.
        let rec = unsafe { &**records.add(i) };
        let name = unsafe { sys::virDomainGetName(rec.dom) };
        let name =
            if name.is_null() { String::new() } else { unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned() };
        let mut params = Vec::with_capacity(rec.nparams.max(0) as usize);
        for j in 0..rec.nparams.max(0) as usize {
            // SAFETY: `params` holds `nparams` typed parameters; the union member read is the
            // one `type_` names; strings are NUL-terminated and copied.
            let p = unsafe { &*rec.params.add(j) };
            let field = unsafe { CStr::from_ptr(p.field.as_ptr()) }.to_string_lossy().into_owned();
            let v = unsafe {
                match p.type_ as u32 {
                    sys::VIR_TYPED_PARAM_INT => Value::Int(p.value.i as i64),
                    sys::VIR_TYPED_PARAM_UINT => Value::UInt(p.value.ui as u64),
                    sys::VIR_TYPED_PARAM_LLONG => Value::Int(p.value.l),
                    sys::VIR_TYPED_PARAM_ULLONG => Value::UInt(p.value.ul),
                    sys::VIR_TYPED_PARAM_DOUBLE => Value::Double(p.value.d),
                    sys::VIR_TYPED_PARAM_BOOLEAN => Value::Bool(p.value.b != 0),
                    sys::VIR_TYPED_PARAM_STRING if !p.value.s.is_null() => {
                        Value::Str(CStr::from_ptr(p.value.s).to_string_lossy().into_owned())
                    }
                    _ => continue,
                }
            };
            params.push((field, v));
        }
        out.push(stats::decode(&name, &params));
    }
    // SAFETY: frees every record (and its domain reference) and the array, once.
    unsafe { sys::virDomainStatsRecordListFree(records) };
    Ok(out)
}

/// Replaces the text of the first `<tag>…</tag>`.
fn set_element(xml: &str, tag: &str, text: &str) -> Option<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let a = xml.find(&open)? + open.len();
    let b = a + xml[a..].find(&close)?;
    Some(format!("{}{}{}", &xml[..a], text, &xml[b..]))
}

/// Removes every `<tag …/>` or `<tag>…</tag>`.
fn remove_elements(mut xml: String, tag: &str) -> String {
    let open = format!("<{tag}");
    while let Some(a) = xml.find(&open).filter(|a| {
        let c = xml.as_bytes().get(a + open.len()).copied();
        matches!(c, Some(b' ' | b'>' | b'/'))
    }) {
        let rest = &xml[a..];
        let end = match (rest.find("/>"), rest.find(&format!("</{tag}>"))) {
            (Some(s), Some(e)) if s < rest.find('>').unwrap_or(usize::MAX) + 1 && s < e => s + 2,
            (_, Some(e)) => e + tag.len() + 3,
            (Some(s), None) => s + 2,
            (None, None) => break,
        };
        xml.replace_range(a..a + end, "");
    }
    xml
}

/// `path` made the clone's own: the template's name in the file name becomes the clone's,
/// else the file name gets the clone's name as a prefix.
fn own_path(path: &str, template: &str, clone: &str) -> String {
    let (dir, file) = path.rsplit_once('/').map_or(("", path), |(d, f)| (d, f));
    let file = match file.rfind(template).filter(|_| !template.is_empty()) {
        Some(i) => format!("{}{clone}{}", &file[..i], &file[i + template.len()..]),
        None => format!("{clone}-{file}"),
    };
    if path.contains('/') { format!("{dir}/{file}") } else { file }
}

/// Every path a running domain holds for itself alone, made the clone's own: character
/// devices' files and sockets (`<serial>`, `<console>`, `<channel>`, `<parallel>`: their
/// `<source path>` and `<log file>`) and the NVRAM file (`<nvram>`; its `template`, the shared
/// source of the copy, stays). Two domains on one file fail to start ("Device or resource busy").
fn per_domain_paths(xml: &str, template: &str, clone: &str) -> String {
    let mut out = String::with_capacity(xml.len() + 64);
    let mut rest = xml;
    let devices = ["<serial", "<console", "<channel", "<parallel"];
    loop {
        let next = devices.iter().filter_map(|d| rest.find(d).map(|i| (i, *d))).min();
        let Some((i, dev)) = next else { break };
        let close = format!("</{}>", &dev[1..]);
        let end = rest[i..].find(&close).map_or(rest.len(), |e| i + e + close.len());
        out.push_str(&rest[..i]);
        let mut block = rest[i..end].to_string();
        for (tag, key) in [("<source", "path"), ("<log", "file")] {
            let mut from = 0;
            while let Some(t) = block[from..].find(tag).map(|t| from + t) {
                let tag_end = block[t..].find('>').map_or(block.len(), |e| t + e + 1);
                let old = block[t..tag_end].to_string();
                if let Some(path) = attr(&old, key) {
                    let new = old.replacen(&path, &own_path(&path, template, clone), 1);
                    block.replace_range(t..tag_end, &new);
                    from = t + new.len();
                } else {
                    from = tag_end;
                }
            }
        }
        out.push_str(&block);
        rest = &rest[end..];
    }
    out.push_str(rest);
    // <nvram …>PATH</nvram>
    if let Some(a) = out.find("<nvram")
        && let Some(gt) = out[a..].find('>').map(|g| a + g + 1)
        && !out[..gt].ends_with("/>")
        && let Some(b) = out[gt..].find("</nvram>").map(|b| gt + b)
    {
        let path = out[gt..b].trim().to_string();
        if !path.is_empty() {
            out.replace_range(gt..b, &own_path(&path, template, clone));
        }
    }
    out
}

/// The clone's XML from the template's: see the module doc. Returns the XML and the overlay
/// disks to create as `(backing file, overlay file)`.
pub(crate) fn clone_xml(
    template_xml: &str,
    spec: &CloneSpec,
    created: u64,
) -> HvResult<(String, Vec<(String, String)>)> {
    let bad = |m: &str| HvError::Other(format!("template {:?}: {m}", spec.template));
    let mut xml = set_element(template_xml, "name", &spec.name).ok_or_else(|| bad("no <name>"))?;
    xml = remove_elements(xml, "uuid");
    xml = remove_elements(xml, "mac");
    // Disks: a file-backed disk gets a qcow2 overlay next to its backing file.
    let mut overlays = Vec::new();
    let mut out = String::with_capacity(xml.len());
    let mut rest = xml.as_str();
    while let Some(i) = rest.find("<source file=") {
        out.push_str(&rest[..i]);
        let tag_end = rest[i..].find('>').map(|e| i + e + 1).ok_or_else(|| bad("broken <source>"))?;
        let tag = &rest[i..tag_end];
        let file = attr(tag, "file").ok_or_else(|| bad("broken <source file>"))?;
        let dir = std::path::Path::new(&file).parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let overlay = format!("{dir}/{}.qcow2", spec.name);
        out.push_str(&tag.replace(&file, &overlay));
        overlays.push((file, overlay));
        rest = &rest[tag_end..];
    }
    out.push_str(rest);
    xml = out;
    xml = per_domain_paths(&xml, &spec.template, &spec.name);
    if overlays.len() == 1 || overlays.is_empty() {
        // A qcow2 overlay needs the driver type to say so.
        xml = xml.replace("type='raw'", "type='qcow2'").replace("type=\"raw\"", "type=\"qcow2\"");
    }
    let addr = match spec.network {
        // qemu user networking: the clone's own forwarded port.
        // (A template without a forward is taken as reachable there by other means, e.g. a
        // test driver's stand-in listening on that port.)
        super::Network::User => {
            if let Some(i) = xml.find("hostfwd=tcp:127.0.0.1:") {
                let p = i + "hostfwd=tcp:127.0.0.1:".len();
                let e = p + xml[p..].find('-').ok_or_else(|| bad("broken hostfwd"))?;
                xml.replace_range(p..e, &spec.port.to_string());
            }
            format!("127.0.0.1:{}", spec.port)
        }
        // On a network the address comes from DHCP: discovered once the VM runs.
        super::Network::Bridge { .. } => {
            if !xml.contains("<interface") {
                return Err(bad("network = \"bridge\" needs an <interface> in the template"));
            }
            String::new()
        }
    };
    let m =
        metadata_xml(&spec.pool, &addr, &spec.template, overlays.first().map(|o| o.1.as_str()), created, &spec.owner);
    xml = if let Some(i) = xml.find("</metadata>") {
        format!("{}{}{}", &xml[..i], m, &xml[i..])
    } else if let Some(i) = xml.find("<metadata/>") {
        format!("{}<metadata>{m}</metadata>{}", &xml[..i], &xml[i + "<metadata/>".len()..])
    } else {
        let i = xml.rfind("</domain>").ok_or_else(|| bad("no </domain>"))?;
        format!("{}<metadata>{m}</metadata>\n{}", &xml[..i], &xml[i..])
    };
    Ok((xml, overlays))
}

impl Libvirt {
    /// Stats of every domain on every reachable host (pool member or not).
    pub fn all_stats(&mut self) -> Vec<DomainStats> {
        (0..self.hosts.len()).filter_map(|i| self.on(i, all_stats).ok()).flatten().collect()
    }
}

impl Hypervisor for Libvirt {
    fn stats(&mut self, pool: &str) -> HvResult<Vec<DomainStats>> {
        let names: std::collections::HashSet<String> = self.list(pool)?.into_iter().map(|v| v.name).collect();
        Ok(self.all_stats().into_iter().filter(|s| names.contains(&s.name)).collect())
    }

    fn list(&mut self, pool: &str) -> HvResult<Vec<VmInfo>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for i in 0..self.hosts.len() {
            let uri = self.hosts[i].uri.clone();
            let network = self.network.clone();
            let mut found = std::mem::take(&mut self.discovered);
            let discovered = &mut found;
            let r = self.on(i, |c| {
                let mut v = Vec::new();
                for d in c.list_all_domains(0).map_err(lv)? {
                    if let Some(m) = meta(&d).filter(|m| attr(m, "pool").as_deref() == Some(pool)) {
                        let mut vm = info(&uri, &d, &m)?;
                        if let super::Network::Bridge { port, sources } = &network
                            && vm.addr.is_none()
                            && vm.state == VmState::Running
                        {
                            vm.addr = discover(&d, &vm.name, sources, *port, discovered);
                        }
                        v.push(vm);
                    }
                }
                Ok(v)
            });
            self.discovered = found;
            match r {
                Ok(v) => out.extend(v),
                Err(e) => errors.push(e),
            }
        }
        // One host down: the others' VMs still count (the pool shows as degraded via hosts()).
        if out.is_empty() && errors.len() == self.hosts.len() && !errors.is_empty() {
            return Err(errors.remove(0));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn hosts(&mut self) -> Vec<HostInfo> {
        (0..self.hosts.len())
            .map(|i| {
                let uri = self.hosts[i].uri.clone();
                match self.on(i, |c| {
                    let n = c.node_info().map_err(lv)?;
                    let free = match c.free_memory() {
                        Ok(bytes) => bytes / (1024 * 1024),
                        // Drivers without it (the test driver): node memory less what the
                        // running domains hold.
                        Err(_) => {
                            let used: u64 = c
                                .list_all_domains(sys::VIR_CONNECT_LIST_DOMAINS_ACTIVE)
                                .map_err(lv)?
                                .iter()
                                .filter_map(|d| d.info().ok())
                                .map(|i| i.memory)
                                .sum();
                            n.memory.saturating_sub(used) / 1024
                        }
                    };
                    Ok((n.cpus, free))
                }) {
                    Ok((cpus, free)) => HostInfo { uri, up: true, cpus, free_memory_mib: free, error: None },
                    Err(e) => HostInfo { uri, up: false, cpus: 0, free_memory_mib: 0, error: Some(e.to_string()) },
                }
            })
            .collect()
    }

    fn set_vcpus(&mut self, vm: &str, n: u32) -> HvResult<()> {
        self.with_vm(vm, |_, d| {
            let max = d.vcpus_flags(sys::VIR_DOMAIN_VCPU_MAXIMUM | sys::VIR_DOMAIN_AFFECT_CONFIG).map_err(lv)?;
            if n > max {
                return Err(HvError::AboveMax { vm: vm.into(), what: "vcpus", asked: n.into(), max: max.into() });
            }
            let flags = if d.is_active().unwrap_or(false) {
                sys::VIR_DOMAIN_AFFECT_LIVE
            } else {
                sys::VIR_DOMAIN_AFFECT_CONFIG
            };
            d.set_vcpus_flags(n, flags).map_err(lv)
        })
    }

    fn set_memory(&mut self, vm: &str, mib: u64) -> HvResult<()> {
        self.with_vm(vm, |_, d| {
            let max = d.info().map_err(lv)?.max_mem / 1024;
            if mib > max {
                return Err(HvError::AboveMax { vm: vm.into(), what: "memory MiB", asked: mib, max });
            }
            let flags = if d.is_active().unwrap_or(false) {
                sys::VIR_DOMAIN_AFFECT_LIVE
            } else {
                sys::VIR_DOMAIN_AFFECT_CONFIG
            };
            d.set_memory_flags(mib * 1024, flags).map_err(lv)
        })
    }

    fn set_cpu_cap(&mut self, vm: &str, percent: Option<u32>) -> HvResult<()> {
        self.with_vm(vm, |_, d| {
            let mut s = d.scheduler_parameters().map_err(lv)?;
            let period = 100_000u64;
            s.vcpu_bw.period = Some(period);
            s.vcpu_bw.quota = Some(percent.map_or(-1, |p| (period * p as u64 / 100) as i64));
            d.set_scheduler_parameters(&s).map_err(lv)
        })
    }

    fn clone_vm(&mut self, spec: &CloneSpec) -> HvResult<VmInfo> {
        // Placement: the named host, else the one with the most free memory that has the
        // template.
        let order: Vec<usize> = match &spec.host {
            Some(h) => vec![
                self.hosts
                    .iter()
                    .position(|x| &x.uri == h)
                    .ok_or_else(|| HvError::Other(format!("unknown host {h}")))?,
            ],
            None => {
                let hosts = self.hosts();
                let mut idx: Vec<usize> = (0..hosts.len()).filter(|i| hosts[*i].up).collect();
                idx.sort_by_key(|i| std::cmp::Reverse(hosts[*i].free_memory_mib));
                idx
            }
        };
        let created = crate::clock::now_us() / 1_000_000;
        let mut last = HvError::NotFound(spec.template.clone());
        for i in order {
            let uri = self.hosts[i].uri.clone();
            let r = self.on(i, |c| {
                if c.lookup_domain_by_name(&spec.name).is_ok() {
                    return Err(HvError::Other(format!("a VM named {:?} already exists on {uri}", spec.name)));
                }
                let t =
                    c.lookup_domain_by_name(&spec.template).map_err(|_| HvError::NotFound(spec.template.clone()))?;
                let txml = t.xml_desc(sys::VIR_DOMAIN_XML_INACTIVE).map_err(lv)?;
                let (xml, overlays) = clone_xml(&txml, spec, created)?;
                for (base, ov) in &overlays {
                    let out = std::process::Command::new("qemu-img")
                        .args(["create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", ov])
                        .output()
                        .map_err(|e| HvError::Other(format!("qemu-img: {e}")))?;
                    if !out.status.success() {
                        return Err(HvError::Other(format!(
                            "qemu-img create {ov}: {}",
                            String::from_utf8_lossy(&out.stderr).trim()
                        )));
                    }
                }
                let d = c.define_domain_xml(&xml).map_err(lv)?;
                let m = meta(&d).unwrap_or_default();
                info(&uri, &d, &m)
            });
            match r {
                Ok(v) => return Ok(v),
                Err(e @ HvError::NotFound(_)) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    fn start(&mut self, vm: &str) -> HvResult<()> {
        self.with_vm(vm, |_, d| d.create().map(|_| ()).map_err(lv))
    }

    fn stop(&mut self, vm: &str, grace: Duration) -> HvResult<()> {
        self.with_vm(vm, |_, d| {
            if !d.is_active().unwrap_or(false) {
                return Ok(());
            }
            let _ = d.shutdown();
            let until = Instant::now() + grace;
            while Instant::now() < until {
                if !d.is_active().unwrap_or(false) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if d.is_active().unwrap_or(false) { d.destroy().map_err(lv) } else { Ok(()) }
        })
    }

    fn delete(&mut self, vm: &str) -> HvResult<()> {
        self.with_vm(vm, |_, d| {
            if d.is_active().unwrap_or(false) {
                d.destroy().map_err(lv)?;
            }
            let overlay = meta(d).and_then(|m| attr(&m, "overlay")).filter(|o| !o.is_empty());
            d.undefine_flags(sys::VIR_DOMAIN_UNDEFINE_NVRAM).or_else(|_| d.undefine()).map_err(lv)?;
            if let Some(o) = overlay {
                let _ = std::fs::remove_file(o);
            }
            Ok(())
        })
    }

    fn suspend(&mut self, vm: &str) -> HvResult<()> {
        self.with_vm(vm, |_, d| d.suspend().map_err(lv))
    }

    fn resume(&mut self, vm: &str) -> HvResult<()> {
        self.with_vm(vm, |_, d| d.resume().map_err(lv))
    }

    fn migrate(&mut self, vm: &str, to_uri: &str) -> HvResult<()> {
        let to = self
            .hosts
            .iter()
            .position(|h| h.uri == to_uri)
            .ok_or_else(|| HvError::Other(format!("{to_uri} is not one of the pool's hosts")))?;
        // The destination connection is opened (and checked) first.
        let dest = self.on(to, |c| Ok(c.clone()))?;
        let r = self.with_vm(vm, |_, d| {
            let flags = sys::VIR_MIGRATE_LIVE | sys::VIR_MIGRATE_PERSIST_DEST | sys::VIR_MIGRATE_UNDEFINE_SOURCE;
            d.migrate(&dest, flags, None, None, 0).map(|_| ()).map_err(lv)
        });
        std::mem::forget(dest);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_xml_renames_and_rewires() {
        let t = "<domain type='qemu'>\n  <name>tpl</name>\n  <uuid>1234</uuid>\n  <devices>\n    <disk type='file'><driver name='qemu' type='qcow2'/><source file='/img/base.qcow2'/></disk>\n    <interface type='user'><mac address='52:54:00:00:00:01'/></interface>\n  </devices>\n  <qemu:commandline><qemu:arg value='user,id=n0,hostfwd=tcp:127.0.0.1:8000-:80'/></qemu:commandline>\n</domain>";
        let spec = CloneSpec {
            owner: String::new(),
            template: "tpl".into(),
            name: "api-3".into(),
            pool: "api".into(),
            port: 8013,
            network: crate::hypervisor::Network::User,
            host: None,
        };
        let (x, ov) = clone_xml(t, &spec, 42).unwrap();
        assert!(x.contains("<name>api-3</name>"), "{x}");
        assert!(!x.contains("<uuid>") && !x.contains("<mac"), "{x}");
        assert!(x.contains("hostfwd=tcp:127.0.0.1:8013-:80"), "{x}");
        assert!(x.contains("<source file='/img/api-3.qcow2'/>"), "{x}");
        assert_eq!(ov, vec![("/img/base.qcow2".to_string(), "/img/api-3.qcow2".to_string())]);
        assert!(x.contains(METADATA_NS) && x.contains(r#"pool="api""#) && x.contains(r#"addr="127.0.0.1:8013""#));
        assert!(x.contains(r#"created="42""#));
        assert!(clone_xml("<domain></domain>", &spec, 0).is_err());
    }

    /// On a network: the template's MAC goes (libvirt makes a new one), the forward is not
    /// touched, and the metadata holds no address (it is discovered once the VM runs).
    #[test]
    fn clone_xml_on_a_network() {
        let t = "<domain type='qemu'>\n  <name>tpl</name>\n  <devices>\n    <interface type='network'><mac address='52:54:00:00:00:01'/><source network='lab'/></interface>\n  </devices>\n</domain>";
        let spec = CloneSpec {
            owner: String::new(),
            template: "tpl".into(),
            name: "api-4".into(),
            pool: "api".into(),
            port: 80,
            network: crate::hypervisor::Network::Bridge {
                port: 80,
                sources: vec![crate::hypervisor::AddressSource::Lease],
            },
            host: None,
        };
        let (x, _) = clone_xml(t, &spec, 42).unwrap();
        assert!(!x.contains("<mac") && x.contains("<source network='lab'/>"), "{x}");
        assert!(x.contains("addr=\"\""), "{x}");
    }

    /// Regression (issue 16): a template whose serial console writes to a file cloned once;
    /// every later clone kept the template's path and failed to start ("Cannot open log file
    /// … Device or resource busy"). Each clone gets its own copy of every per-domain path.
    #[test]
    fn clone_xml_gives_each_clone_its_own_console_log_channel_and_nvram() {
        let t = "<domain type='qemu'>\n  <name>tpl</name>\n  <os><loader readonly='yes' type='pflash'>/usr/share/OVMF/OVMF_CODE.fd</loader><nvram template='/usr/share/OVMF/OVMF_VARS.fd'>/var/lib/libvirt/qemu/nvram/tpl_VARS.fd</nvram></os>\n  <devices>\n    <serial type='file'><source path='/var/log/libvirt/qemu/tpl.console.log'/><target port='0'/></serial>\n    <console type='file'><source path='/var/log/libvirt/qemu/tpl.console.log'/><target type='serial' port='0'/></console>\n    <serial type='pty'><log file='/var/log/guest.log' append='off'/><target port='1'/></serial>\n    <channel type='unix'><source mode='bind' path='/run/qga/tpl.agent'/><target type='virtio' name='org.qemu.guest_agent.0'/></channel>\n  </devices>\n</domain>";
        let spec = CloneSpec {
            owner: String::new(),
            template: "tpl".into(),
            name: "api-2".into(),
            pool: "api".into(),
            port: 8002,
            network: crate::hypervisor::Network::User,
            host: None,
        };
        let (x, _) = clone_xml(t, &spec, 1).unwrap();
        assert_eq!(x.matches("<source path='/var/log/libvirt/qemu/api-2.console.log'/>").count(), 2, "{x}");
        assert!(x.contains("<log file='/var/log/api-2-guest.log' append='off'/>"), "{x}");
        assert!(x.contains("path='/run/qga/api-2.agent'"), "{x}");
        assert!(x.contains(">/var/lib/libvirt/qemu/nvram/api-2_VARS.fd</nvram>"), "{x}");
        assert!(x.contains("template='/usr/share/OVMF/OVMF_VARS.fd'"), "the shared NVRAM template stays: {x}");
        assert!(x.contains(">/usr/share/OVMF/OVMF_CODE.fd</loader>"), "read-only firmware stays shared: {x}");
        assert!(!x.contains("tpl.console") && !x.contains("tpl_VARS") && !x.contains("/var/log/guest.log"), "{x}");
    }
}
