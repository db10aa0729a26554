//! Guests on a real libvirt network (run through `scripts/e2e-guests e2e_netns`, which creates a
//! network namespace, starts libvirtd in it with an isolated network `prescale-lab` serving
//! DHCP on 192.168.150.0/24, defines the template `e2e-net-tpl` on that network and runs this
//! inside the namespace: nothing it sends leaves it).
//!
//! prescale runs in-process with one pool in `network = "bridge"` mode and `min_vms = 2`. The run
//! checks and prints, with times relative to the start:
//!
//! - two clones are launched, each with its own MAC, and get DHCP leases;
//! - prescale discovers both addresses through libvirt (lease source), shows them in
//!   `/admin/api/pools`, and each guest joins the pool once `/health` answers there;
//! - 200 requests through the proxy all succeed and are spread over both guests' addresses;
//! - each guest reports (on `/addr`) the address prescale discovered for it.
//!
//! Exits non-zero when any check fails; deletes its guests at the end.

use std::time::{Duration, Instant};

use prescale::hypervisor::Hypervisor;

mod common;
use common::{http_get, json};

const POOL: &str = "lab";
const URI: &str = "qemu:///system";
const SUBNET: &str = "192.168.150.";

fn main() -> anyhow::Result<()> {
    let (run, mut hv) = common::fresh_run(POOL, URI)?;
    let cfg = run.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"{POOL}\"\n\
             [[pool]]\nname = \"{POOL}\"\nmembers = []\n\
             [pool.scaling]\nuri = \"{URI}\"\ntemplate = \"e2e-net-tpl\"\nmode = \"enabled\"\nmin_vms = 2\nmax_vms = 2\n\
             vcpus = [1, 2]\nmemory_mib = [128, 256]\nhealth_path = \"/health\"\nboot_timeout = \"180s\"\n\
             network = \"bridge\"\nport = 80\naddress_sources = [\"lease\", \"arp\"]\n"
        ),
    )?;
    let start = Instant::now();
    let t = || start.elapsed().as_secs_f64();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let app = rt.block_on(prescale::app::App::start(prescale::config::load(&cfg)?))?;
    let (proxy, admin) = (app.proxy_addr, app.admin_addr);
    println!("t={:.1} s  prescale started: pool {POOL:?}, network = \"bridge\", min_vms = 2", t());

    // Wait for two guests that are serving, each with a discovered address on the network.
    let mut addrs: Vec<String> = Vec::new();
    let mut seen_addr: Vec<String> = Vec::new();
    let deadline = start + Duration::from_secs(240);
    let mut pools = serde_json::Value::Null;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        pools = json(admin, "/admin/api/pools");
        let vms = pools[0]["vms"].as_array().cloned().unwrap_or_default();
        for v in &vms {
            if let Some(a) = v["addr"].as_str()
                && !seen_addr.iter().any(|s| s == a)
            {
                println!("t={:.1} s  {} has address {a} (discovered through libvirt)", t(), v["name"]);
                seen_addr.push(a.to_string());
            }
        }
        addrs = vms
            .iter()
            .filter(|v| v["in_pool"] == true)
            .filter_map(|v| v["addr"].as_str().map(str::to_string))
            .collect();
        if addrs.len() == 2 {
            break;
        }
    }
    let result = check(&pools, &addrs, proxy, admin, t);
    println!("pool network: {}", pools[0]["network"]);
    rt.block_on(app.stop());
    for v in hv.list(POOL).unwrap_or_default() {
        let _ = hv.delete(&v.name);
    }
    result?;
    println!("t={:.1} s  all checks passed", t());
    Ok(())
}

fn check(
    pools: &serde_json::Value,
    addrs: &[String],
    proxy: std::net::SocketAddr,
    admin: std::net::SocketAddr,
    t: impl Fn() -> f64,
) -> anyhow::Result<()> {
    anyhow::ensure!(addrs.len() == 2, "two guests did not join the pool in time: {pools}");
    anyhow::ensure!(pools[0]["network"]["mode"] == "bridge", "the pool shows its network mode: {pools}");
    for a in addrs {
        anyhow::ensure!(a.starts_with(SUBNET) && a.ends_with(":80"), "{a} is not an address on the lab network");
    }
    anyhow::ensure!(addrs[0] != addrs[1], "two guests, two addresses: {addrs:?}");
    println!("t={:.1} s  both guests joined the pool: {}", t(), addrs.join(", "));
    // Each guest says which address it has: the one prescale discovered.
    for a in addrs {
        let (status, body) = http_get(a.parse()?, "/addr").ok_or_else(|| anyhow::anyhow!("{a} does not answer"))?;
        let ip = a.trim_end_matches(":80");
        anyhow::ensure!(status == 200 && body.trim() == ip, "{a} says {status} {body:?}");
        println!("t={:.1} s  {a} says its address is {}", t(), body.trim());
    }
    let mut ok = 0;
    for _ in 0..200 {
        if matches!(http_get(proxy, "/health"), Some((200, _))) {
            ok += 1;
        }
    }
    println!("t={:.1} s  200 requests through the proxy: {ok} answered 200", t());
    anyhow::ensure!(ok == 200, "{} requests failed", 200 - ok);
    // Spread over both guests (the recorded calls name the upstream).
    std::thread::sleep(Duration::from_millis(600));
    let calls = json(admin, "/admin/api/calls?limit=1000");
    let mut by_upstream = std::collections::BTreeMap::<String, u32>::new();
    for c in calls.as_array().into_iter().flatten() {
        if let Some(u) = c["upstream"].as_str() {
            *by_upstream.entry(u.to_string()).or_default() += 1;
        }
    }
    println!("t={:.1} s  calls per upstream: {by_upstream:?}", t());
    anyhow::ensure!(addrs.iter().all(|a| by_upstream.get(a).is_some_and(|n| *n > 20)), "not spread over both guests");
    Ok(())
}
