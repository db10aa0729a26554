//! VM usage as libvirt reports it (`virConnectGetAllDomainStats`): the typed parameters of one
//! domain's record decoded into [`DomainStats`], and two readings turned into rates
//! ([`Usage`]). Decoding is pure code over `(name, value)` pairs, so it is tested on records
//! recorded from a real qemu guest; the FFI that produces the pairs (and frees the records)
//! lives in [`super::libvirt`].

use serde::Serialize;

/// A typed parameter's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    UInt(u64),
    Double(f64),
    Bool(bool),
    Str(String),
}

impl Value {
    fn u64(&self) -> Option<u64> {
        match self {
            Value::Int(v) => u64::try_from(*v).ok(),
            Value::UInt(v) => Some(*v),
            Value::Double(v) if *v >= 0.0 => Some(*v as u64),
            Value::Bool(b) => Some(*b as u64),
            _ => None,
        }
    }
}

/// One reading of a VM's counters. Absent groups stay `None` (the test driver reports only
/// `state.*`; a NIC passed through `qemu:commandline` has no `net.*`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DomainStats {
    pub name: String,
    /// libvirt's `virDomainState` (1 = running).
    pub state: Option<u64>,
    /// Cumulative CPU time, nanoseconds.
    pub cpu_time_ns: Option<u64>,
    pub vcpus: Option<u64>,
    /// Balloon: current size, what the guest sees as usable, and the host RSS, KiB.
    pub balloon_current_kib: Option<u64>,
    pub balloon_usable_kib: Option<u64>,
    pub rss_kib: Option<u64>,
    /// Sums over every disk and NIC, cumulative bytes.
    pub block_rd_bytes: Option<u64>,
    pub block_wr_bytes: Option<u64>,
    pub net_rx_bytes: Option<u64>,
    pub net_tx_bytes: Option<u64>,
}

/// Decodes one record's parameters.
pub fn decode(name: &str, params: &[(String, Value)]) -> DomainStats {
    let mut s = DomainStats { name: name.to_string(), ..DomainStats::default() };
    let add = |slot: &mut Option<u64>, v: Option<u64>| {
        if let Some(v) = v {
            *slot = Some(slot.unwrap_or(0).saturating_add(v));
        }
    };
    for (k, v) in params {
        let n = v.u64();
        match k.as_str() {
            "state.state" => s.state = n,
            "cpu.time" => s.cpu_time_ns = n,
            "vcpu.current" => s.vcpus = n,
            "balloon.current" => s.balloon_current_kib = n,
            "balloon.usable" => s.balloon_usable_kib = n,
            "balloon.rss" => s.rss_kib = n,
            _ => {
                // block.<i>.rd.bytes, net.<i>.rx.bytes …: summed over devices.
                let mut parts = k.splitn(3, '.');
                let (Some(group), Some(idx), Some(field)) = (parts.next(), parts.next(), parts.next()) else {
                    continue;
                };
                if idx.parse::<u32>().is_err() {
                    continue;
                }
                match (group, field) {
                    ("block", "rd.bytes") => add(&mut s.block_rd_bytes, n),
                    ("block", "wr.bytes") => add(&mut s.block_wr_bytes, n),
                    ("net", "rx.bytes") => add(&mut s.net_rx_bytes, n),
                    ("net", "tx.bytes") => add(&mut s.net_tx_bytes, n),
                    _ => {}
                }
            }
        }
    }
    s
}

/// A VM's usage between two readings.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Usage {
    pub name: String,
    pub cores: Option<f64>,
    pub rss_mib: Option<f64>,
    pub balloon_mib: Option<f64>,
    pub block_bytes_per_s: Option<f64>,
    pub net_bytes_per_s: Option<f64>,
}

/// Rates between `a` (earlier) and `b`, `secs` apart; counters that went backwards (a
/// restarted VM) give `None`.
pub fn usage(a: &DomainStats, b: &DomainStats, secs: f64) -> Usage {
    let rate = |x: Option<u64>, y: Option<u64>| match (x, y) {
        (Some(x), Some(y)) if y >= x && secs > 0.0 => Some((y - x) as f64 / secs),
        _ => None,
    };
    let sum = |p: Option<u64>, q: Option<u64>| match (p, q) {
        (None, None) => None,
        (p, q) => Some(p.unwrap_or(0) + q.unwrap_or(0)),
    };
    Usage {
        name: b.name.clone(),
        cores: rate(a.cpu_time_ns, b.cpu_time_ns).map(|ns| ns / 1e9),
        rss_mib: b.rss_kib.map(|k| k as f64 / 1024.0),
        balloon_mib: b.balloon_current_kib.map(|k| k as f64 / 1024.0),
        block_bytes_per_s: rate(sum(a.block_rd_bytes, a.block_wr_bytes), sum(b.block_rd_bytes, b.block_wr_bytes)),
        net_bytes_per_s: rate(sum(a.net_rx_bytes, a.net_tx_bytes), sum(b.net_rx_bytes, b.net_tx_bytes)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `virsh domstats --raw` lines → typed pairs (unsigned long long where libvirt uses them).
    fn parse(text: &str) -> Vec<(String, Value)> {
        text.lines()
            .filter_map(|l| l.trim().split_once('='))
            .map(|(k, v)| {
                let val = v.parse::<u64>().map(Value::UInt).unwrap_or_else(|_| Value::Str(v.into()));
                (k.to_string(), val)
            })
            .collect()
    }

    /// Recorded from a running qemu guest (256 MiB, balloon at 128 MiB, 1 of 2 vCPUs, a NIC on
    /// qemu's command line and no disk): libvirt 9.0, `virsh domstats --raw`.
    const RECORDED: &str = "state.state=1\nstate.reason=1\ncpu.time=5927850000\ncpu.user=5124183000\n\
        cpu.system=803667000\ncpu.cache.monitor.count=0\ncpu.haltpoll.success.time=0\ncpu.haltpoll.fail.time=0\n\
        balloon.current=131072\nballoon.maximum=262144\nballoon.swap_in=0\nballoon.swap_out=0\n\
        balloon.major_fault=0\nballoon.minor_fault=598\nballoon.unused=196260\nballoon.available=223356\n\
        balloon.usable=199484\nballoon.last-update=1795869147\nballoon.disk_caches=2420\n\
        balloon.hugetlb_pgalloc=0\nballoon.hugetlb_pgfail=0\nballoon.rss=207780\nvcpu.current=1\n\
        vcpu.maximum=2\nvcpu.0.state=1\nvcpu.0.time=5150000000\nvcpu.0.wait=0\nvcpu.0.delay=1021542255\n\
        net.count=0\nblock.count=0\ndirtyrate.calc_status=0\ndirtyrate.calc_start_time=0\n\
        dirtyrate.calc_period=0\ndirtyrate.calc_mode=page-sampling";

    #[test]
    fn decodes_a_recorded_qemu_record() {
        let s = decode("rec-1", &parse(RECORDED));
        assert_eq!(s.state, Some(1));
        assert_eq!(s.cpu_time_ns, Some(5_927_850_000));
        assert_eq!(s.vcpus, Some(1));
        assert_eq!(s.balloon_current_kib, Some(131_072));
        assert_eq!(s.balloon_usable_kib, Some(199_484));
        assert_eq!(s.rss_kib, Some(207_780));
        // net.count/block.count = 0: no devices, no counters (not zeros).
        assert_eq!((s.block_rd_bytes, s.net_rx_bytes), (None, None));
    }

    #[test]
    fn sums_devices_and_turns_two_readings_into_rates() {
        // Block and net fields as libvirt documents them (two disks, one NIC).
        let a = decode(
            "v",
            &[
                ("cpu.time".into(), Value::UInt(1_000_000_000)),
                ("block.count".into(), Value::UInt(2)),
                ("block.0.name".into(), Value::Str("vda".into())),
                ("block.0.rd.bytes".into(), Value::UInt(1000)),
                ("block.0.wr.bytes".into(), Value::UInt(500)),
                ("block.1.rd.bytes".into(), Value::UInt(3000)),
                ("block.1.wr.reqs".into(), Value::UInt(7)),
                ("net.0.rx.bytes".into(), Value::UInt(10_000)),
                ("net.0.tx.bytes".into(), Value::UInt(20_000)),
                ("balloon.rss".into(), Value::UInt(102_400)),
            ],
        );
        assert_eq!((a.block_rd_bytes, a.block_wr_bytes), (Some(4000), Some(500)));
        assert_eq!((a.net_rx_bytes, a.net_tx_bytes), (Some(10_000), Some(20_000)));
        let mut b = a.clone();
        b.cpu_time_ns = Some(4_000_000_000); // 3 s of CPU in 2 s: 1.5 cores
        b.block_rd_bytes = Some(6000);
        b.net_tx_bytes = Some(24_000);
        let u = usage(&a, &b, 2.0);
        assert_eq!(u.cores, Some(1.5));
        assert_eq!(u.rss_mib, Some(100.0));
        assert_eq!(u.block_bytes_per_s, Some(1000.0));
        assert_eq!(u.net_bytes_per_s, Some(2000.0));
        // A restarted VM (counter went back) gives no rate rather than a huge one.
        b.cpu_time_ns = Some(10);
        assert_eq!(usage(&a, &b, 2.0).cores, None);
        assert_eq!(usage(&a, &a, 0.0).cores, None);
    }
}
