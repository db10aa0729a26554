//! Overhead of reading VM usage: `all_stats()` (one `virConnectGetAllDomainStats` with every
//! group, decoded, records freed) on a libvirt URI, repeated; prints the median and range per
//! call and per running VM, and one decoded record.
//!
//! `cargo run --release --example stats_poll -- qemu:///system [ROUNDS]` (as root with
//! libvirtd running: `scripts/e2e-guests` sets one up).

use std::time::Instant;

use prescale::hypervisor::libvirt::Libvirt;

fn main() {
    let mut args = std::env::args().skip(1);
    let uri = args.next().unwrap_or_else(|| "qemu:///system".into());
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(200);
    let mut hv = Libvirt::new(std::slice::from_ref(&uri));
    let first = hv.all_stats();
    let running = first.iter().filter(|s| s.state == Some(1)).count();
    if let Some(s) = first.iter().find(|s| s.state == Some(1)) {
        println!("{}", serde_json::to_string(s).unwrap());
    }
    let mut us: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            let s = hv.all_stats();
            assert_eq!(s.len(), first.len());
            t.elapsed().as_secs_f64() * 1e6
        })
        .collect();
    us.sort_by(|a, b| a.total_cmp(b));
    let med = us[us.len() / 2];
    println!(
        "{uri}: {} domains ({running} running), {rounds} calls: median {:.0} µs [{:.0}–{:.0}] per call, {:.0} µs per running VM",
        first.len(),
        med,
        us[0],
        us[us.len() - 1],
        med / running.max(1) as f64
    );
}
