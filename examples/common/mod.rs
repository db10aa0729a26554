//! Helpers shared by the end-to-end examples (not an example itself: a folder without main.rs).
// Each example uses a part of these helpers.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// One HTTP/1.0 GET: status and body, or None when the connection fails.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    http_get_waiting(addr, path, Duration::from_secs(5))
}

/// [`http_get`] waiting up to `read_timeout` for the answer (a request the proxy holds).
pub fn http_get_waiting(addr: SocketAddr, path: &str, read_timeout: Duration) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(read_timeout)).ok()?;
    // The address as Host: the admin answers only IP literals, localhost and admin.hosts.
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|b| b.1.to_string()).unwrap_or_default();
    Some((status, body))
}

/// An admin API answer as JSON (Null when unavailable).
pub fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    http_get(addr, path).and_then(|(_, b)| serde_json::from_str(&b).ok()).unwrap_or_default()
}

/// Names of the first pool's VMs that are in the upstream pool, from the admin API.
pub fn serving(admin: SocketAddr) -> Vec<String> {
    json(admin, "/admin/api/pools")[0]["vms"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter(|v| v["in_pool"].as_bool() == Some(true))
                .filter_map(|v| v["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// A fresh run directory under `work` (the first argument, default `target/e2e`) and a libvirt
/// connection on `uri` with `pool`'s leftover guests from earlier runs deleted.
pub fn fresh_run(
    pool: &str,
    uri: &str,
) -> anyhow::Result<(std::path::PathBuf, prescale::hypervisor::libvirt::Libvirt)> {
    use prescale::hypervisor::Hypervisor;
    let work = std::path::PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/e2e".into()));
    let run = work.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&run)?;
    let mut hv = prescale::hypervisor::libvirt::Libvirt::new(&[uri.to_string()]);
    for v in hv.list(pool)? {
        hv.delete(&v.name)?;
    }
    Ok((run, hv))
}

/// Imports `csv` (`timestamp,value`) as endpoint `api`'s history into the historian of the
/// config at `cfg`, in-process (the library's importer, as `prescale import` does).
pub fn import_history(cfg: &std::path::Path, csv: &std::path::Path) -> anyhow::Result<()> {
    let settings = prescale::config::load(cfg)?;
    let h = settings.historian.as_ref().expect("historian on");
    let dir = h.data_dir.clone().expect("data_dir set");
    prescale::historian::import::import(csv, "api", &dir, &h.store.tiers, &Default::default())
        .map_err(|e| anyhow::anyhow!("import: {e}"))?;
    Ok(())
}

/// The config both scaled-pool runs share: proxy and admin on loopback port 0, history in
/// `data`, endpoint `api` → `pool` scaled from the template `e2e-tpl` on `uri` (1–2 guests of
/// 1–2 vCPUs and 128–256 MiB, ports 18410–18450, health on `/health`), then `extra` scaling keys.
pub fn scaled_pool_config(pool: &str, uri: &str, extra: &str) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"{pool}\"\n\
         [[pool]]\nname = \"{pool}\"\nmembers = []\n\
         [pool.scaling]\nuri = \"{uri}\"\ntemplate = \"e2e-tpl\"\nmode = \"enabled\"\nmin_vms = 1\nmax_vms = 2\n\
         vcpus = [1, 2]\nmemory_mib = [128, 256]\nports = [18410, 18450]\nhealth_path = \"/health\"\n{extra}"
    )
}
