//! `/metrics`: every family declared once in [`FAMILIES`] (name, type, unit, help, labels), its
//! samples read at scrape time — per-worker shards summed, historian and forecast snapshots,
//! the allocator's published state, `/proc/self` — and encoded by the `prometheus-client`
//! crate, as the Prometheus text format (0.0.4) or, when the scraper asks for it, OpenMetrics.
//! Nothing here runs on the request path. The README's metrics table is [`table`]'s output
//! (checked by a test).

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::forecast::view::ForecastView;
use crate::historian::HistorianView;
use crate::proxy::Proxy;
use crate::proxy::stats::LATENCY_BOUNDS_US;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family as exposed.
#[derive(Debug)]
pub(crate) struct Family {
    /// Without the unit and `_total` suffixes (the encoder adds them).
    pub base: &'static str,
    pub kind: Kind,
    /// A base unit (`seconds`, `bytes`, `ratio`, `requests_per_second`), the name's suffix.
    pub unit: Option<&'static str>,
    /// One sentence, no final period (the encoder adds it).
    pub help: &'static str,
    pub labels: &'static [&'static str],
}

impl Family {
    /// The family's name as Prometheus sees it.
    pub(crate) fn name(&self) -> String {
        let mut n = self.base.to_string();
        if let Some(u) = self.unit {
            n.push('_');
            n.push_str(u);
        }
        if self.kind == Kind::Counter {
            n.push_str("_total");
        }
        n
    }
}

macro_rules! families {
    ($($id:ident: $base:literal $kind:ident $unit:expr, [$($l:literal),*], $help:literal;)*) => {
        $(const $id: &Family = &Family {
            base: $base, kind: Kind::$kind, unit: $unit, help: $help, labels: &[$($l),*],
        };)*
        /// Every family `/metrics` can show, in the order it shows them.
        pub(crate) const FAMILIES: &[&Family] = &[$($id),*];
    };
}

const S: Option<&str> = Some("seconds");
const B: Option<&str> = Some("bytes");
const R: Option<&str> = Some("ratio");
const RPS: Option<&str> = Some("requests_per_second");

families! {
    BUILD: "prescale_build_info" Gauge None, ["version"], "Always 1; the running version in its label";
    CONNECTIONS_ACTIVE: "prescale_connections_active" Gauge None, [], "Client connections open now, upgraded tunnels included";
    CONNECTIONS_PARKED: "prescale_connections_parked" Gauge None, [], "Idle HTTP/1.1 client connections parked (open, holding no buffers) until their client sends again";
    CONNECTIONS: "prescale_connections" Counter None, [], "Client connections accepted";
    TUNNELS_ACTIVE: "prescale_tunnels_active" Gauge None, [], "Upgraded (WebSocket) tunnels open now; each holds a connection slot";
    TUNNELS_OPENED: "prescale_tunnels_opened" Counter None, [], "Upgraded tunnels opened";
    TUNNELS_IDLE: "prescale_tunnels_idle_closed" Counter None, [], "Upgraded tunnels closed because no byte moved for listen.tunnel_idle_timeout";
    UNROUTED: "prescale_unrouted_requests" Counter None, [], "Requests that matched no endpoint (404) or were refused before routing";
    RETRIES: "prescale_upstream_retries" Counter None, [], "Upstream attempts repeated on another member";
    LOG_DROPPED: "prescale_access_log_dropped_lines" Counter None, [], "Access-log lines dropped because the writer fell behind";
    REQUESTS: "prescale_requests" Counter None, ["endpoint", "class"], "Responses by endpoint and status class (2xx, 5xx, ...)";
    HELD: "prescale_requests_held" Counter None, ["endpoint", "result"], "Requests held while no member was ready (the endpoint's hold), by how it ended: served, timed_out, refused (queue full)";
    WAITING: "prescale_requests_waiting" Gauge None, ["endpoint"], "Requests held now, waiting for a member to become ready";
    CANCELLED: "prescale_requests_cancelled" Counter None, ["endpoint"], "Calls the client abandoned before the response ended";
    DURATION: "prescale_request_duration" Histogram S, ["endpoint"], "Time from the request's arrival to the end of the response body";
    MEMBER_HEALTHY: "prescale_member_healthy" Gauge None, ["pool", "member"], "1 if the member can take traffic (healthy, not draining, not ejected)";
    MEMBER_IN_FLIGHT: "prescale_member_requests_in_flight" Gauge None, ["pool", "member"], "Requests sent to the member and not finished";
    MEMBER_REQUESTS: "prescale_member_requests" Counter None, ["pool", "member"], "Requests sent to the member";
    SPANS: "prescale_trace_spans" Counter None, ["result"], "Spans for the OTLP exporter ([tracing]): exported, dropped (queue full) or failed (the collector did not take them)";
    ADMIN_REFUSED: "prescale_admin_connections_refused" Counter None, [], "Admin connections beyond admin.max_connections (answered only for /live and /ready, then closed)";
    RECORDS: "prescale_historian_records" Counter None, ["result"], "Call records accepted by the historian, or dropped because its channel was full";
    LATE: "prescale_historian_late_records" Counter None, [], "Records whose bucket had already closed (counted, not in quantiles or on disk)";
    HIST_MEMORY: "prescale_historian_memory" Gauge B, [], "Memory held by the historian's series and recent-calls ring";
    HIST_DISK: "prescale_historian_disk" Gauge B, [], "Size of the historian's files on disk";
    DISK_ERRORS: "prescale_historian_disk_errors" Counter None, [], "Failed writes of closed buckets";
    DISK_OK: "prescale_historian_disk_ok" Gauge None, [], "0 while closed buckets cannot be written (disk full, read-only, ...) and wait in memory";
    DISK_PENDING: "prescale_historian_disk_pending_buckets" Gauge None, [], "Closed buckets waiting in memory for the disk";
    DISK_DROPPED: "prescale_historian_disk_dropped_buckets" Counter None, [], "Closed buckets dropped after waiting too long for the disk";
    FORECAST: "prescale_forecast" Gauge RPS, ["endpoint", "band"], "Forecast calls per second for the next minute: the mean and the 80 and 95 % bands";
    MASE: "prescale_forecast_mase" Gauge None, ["endpoint", "horizon"], "Mean absolute scaled error of the forecasts over the last day, by horizon group";
    SMAPE: "prescale_forecast_smape" Gauge R, ["endpoint", "horizon"], "Symmetric mean absolute percentage error over the last day as a ratio (0 to 2)";
    UNDER: "prescale_forecast_under" Gauge R, ["endpoint", "horizon"], "Share of actuals more than 20 % above the forecast mean over the last day";
    COVERAGE: "prescale_forecast_coverage" Gauge R, ["endpoint", "horizon", "band"], "Share of actuals inside the 80 or 95 % band over the last day";
    POOL_VMS: "prescale_pool_vms" Gauge None, ["pool", "phase"], "VMs of a scaled pool by phase";
    POOL_CAPACITY: "prescale_pool_capacity" Gauge RPS, ["pool"], "Calls per second the pool's serving and booting VMs can take";
    POOL_REQUIRED: "prescale_pool_required" Gauge RPS, ["pool"], "Calls per second the planner provisions for";
    POOL_LEAD: "prescale_pool_lead_time" Gauge S, ["pool"], "Lead time the planner uses";
    POOL_DEGRADED: "prescale_pool_degraded" Gauge None, ["pool"], "1 while the pool cannot be scaled (hypervisor unreachable, host down, launches paused, an action failing)";
    POOL_LEADER: "prescale_fleet_leader" Gauge None, ["pool"], "With [cluster]: 1 while this instance leads the pool (plans and acts), 0 while it follows or is paused";
    POOL_PAUSED: "prescale_fleet_paused" Gauge None, ["pool"], "With [cluster]: 1 while scaling of the pool is paused here (etcd unreachable, lease not renewed in time)";
    FLEET_UP: "prescale_fleet_etcd_up" Gauge None, [], "With [cluster]: 1 while etcd answers, 0 while it cannot be reached (scaling paused)";
    FLEET_PENDING: "prescale_fleet_minutes_pending" Gauge None, [], "With [cluster]: closed minutes waiting to be published to etcd";
    FLEET_PUBLISHED: "prescale_fleet_minutes_published" Counter None, [], "With [cluster]: closed minutes published to etcd";
    FLEET_PEER: "prescale_fleet_peer_minutes" Counter None, [], "With [cluster]: other instances' minutes added to the fleet series";
    FLEET_WRITES: "prescale_fleet_etcd_writes" Counter None, [], "With [cluster]: write requests sent to etcd (puts and transactions)";
    FLEET_WRITE_BYTES: "prescale_fleet_etcd_written" Counter B, [], "With [cluster]: bytes of the values written to etcd";
    FLEET_FENCED: "prescale_fleet_fenced" Counter None, [], "With [cluster]: actions refused by the fence (this instance no longer held the pool's lease)";
    POOL_ACTIONS: "prescale_pool_actions" Counter None, ["pool", "kind", "outcome"], "Scaling actions decided since start, by kind and outcome (ok, dry_run, skipped, error)";
    VM_VCPUS: "prescale_vm_vcpus" Gauge None, ["pool", "vm"], "vCPUs of a pool's VM";
    VM_MEMORY: "prescale_vm_memory" Gauge B, ["pool", "vm"], "Memory of a pool's VM";
    CPU: "process_cpu" Counter S, [], "User and system CPU time of the process";
    RSS: "process_resident_memory" Gauge B, [], "Resident memory of the process";
    VSZ: "process_virtual_memory" Gauge B, [], "Virtual memory of the process";
    FDS: "process_open_fds" Gauge None, [], "Open file descriptors";
    MAX_FDS: "process_max_fds" Gauge None, [], "The limit on open file descriptors";
    START: "process_start_time" Gauge S, [], "Start time of the process since the Unix epoch";
    THREADS: "process_threads" Gauge None, [], "Threads of the process";
}

/// A sample's value.
#[derive(Debug, Clone)]
enum Value {
    Counter(u64),
    Seconds(f64),
    Gauge(f64),
    /// Sum, count and per-bucket (not cumulative) counts with their upper bounds, `+Inf` last.
    Histogram(f64, u64, Vec<(f64, u64)>),
}

/// What one scrape read: samples per family, label values in the family's label order.
#[derive(Debug, Default)]
struct Scrape(HashMap<&'static str, Vec<(Vec<String>, Value)>>);

impl Scrape {
    fn add(&mut self, f: &'static Family, labels: &[&str], v: Value) {
        debug_assert_eq!(labels.len(), f.labels.len(), "{}", f.base);
        self.0.entry(f.base).or_default().push((labels.iter().map(|s| s.to_string()).collect(), v));
    }

    fn counter(&mut self, f: &'static Family, labels: &[&str], v: u64) {
        debug_assert_eq!(f.kind, Kind::Counter);
        self.add(f, labels, Value::Counter(v));
    }

    fn gauge(&mut self, f: &'static Family, labels: &[&str], v: impl Into<f64>) {
        debug_assert_eq!(f.kind, Kind::Gauge);
        self.add(f, labels, Value::Gauge(v.into()));
    }
}

impl Collector for Scrape {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for f in FAMILIES {
            let Some(samples) = self.0.get(f.base) else { continue };
            let unit = f.unit.map(|u| Unit::Other(u.to_string()));
            let kind = match f.kind {
                Kind::Counter => MetricType::Counter,
                Kind::Gauge => MetricType::Gauge,
                Kind::Histogram => MetricType::Histogram,
            };
            let mut family = encoder.encode_descriptor(f.base, f.help, unit.as_ref(), kind)?;
            for (values, v) in samples {
                let labels: Vec<(&str, &str)> =
                    f.labels.iter().copied().zip(values.iter().map(String::as_str)).collect();
                let mut m = family.encode_family(&labels)?;
                match v {
                    Value::Counter(c) => m.encode_counter::<NoLabelSet, _, f64>(c, None)?,
                    Value::Seconds(c) => m.encode_counter::<NoLabelSet, _, f64>(c, None)?,
                    Value::Gauge(g) => m.encode_gauge(g)?,
                    Value::Histogram(sum, count, buckets) => {
                        m.encode_histogram::<NoLabelSet>(*sum, *count, buckets, None)?
                    }
                }
            }
        }
        Ok(())
    }
}

/// The exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `text/plain; version=0.0.4`, what Prometheus has always read.
    Prometheus,
    /// `application/openmetrics-text; version=1.0.0`, when the `Accept` header asks for it.
    OpenMetrics,
}

impl Format {
    /// From an `Accept` header: OpenMetrics when it is listed (Prometheus lists it first).
    pub(crate) fn from_accept(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.split(',').any(|t| t.trim().starts_with("application/openmetrics-text")) => Self::OpenMetrics,
            _ => Self::Prometheus,
        }
    }

    pub(crate) fn content_type(self) -> &'static str {
        match self {
            Self::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Self::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// What a scrape reads from.
pub(crate) struct Sources<'a> {
    pub proxy: &'a Proxy,
    pub historian: Option<&'a HistorianView>,
    pub forecasts: Option<&'a ForecastView>,
    pub allocator: Option<&'a crate::allocator::live::AllocatorView>,
    pub fleet: Option<&'a crate::fleet::FleetView>,
    pub admin_refused: u64,
}

pub(crate) fn render(src: &Sources<'_>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(read(src)));
    let mut out = String::with_capacity(16 * 1024);
    let done = match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    // Writing to a String only fails on a bug in the encoder; say so rather than serve half.
    if let Err(e) = done {
        tracing::error!(error = %e, "cannot encode /metrics");
    }
    out
}

fn read(src: &Sources<'_>) -> Scrape {
    let mut s = Scrape::default();
    s.gauge(BUILD, &[env!("CARGO_PKG_VERSION")], 1);
    let g = &src.proxy.global;
    s.gauge(CONNECTIONS_ACTIVE, &[], g.connections_active.load(Relaxed) as f64);
    s.gauge(CONNECTIONS_PARKED, &[], g.connections_parked.load(Relaxed) as f64);
    s.counter(CONNECTIONS, &[], g.connections_total.load(Relaxed));
    s.gauge(TUNNELS_ACTIVE, &[], g.tunnels_active.load(Relaxed) as f64);
    s.counter(TUNNELS_OPENED, &[], g.tunnels_total.load(Relaxed));
    s.counter(TUNNELS_IDLE, &[], g.tunnels_idle_closed.load(Relaxed));
    s.counter(UNROUTED, &[], g.unrouted.load(Relaxed));
    s.counter(RETRIES, &[], g.upstream_retries.load(Relaxed));
    s.counter(LOG_DROPPED, &[], g.access_log_dropped.load(Relaxed));
    s.counter(ADMIN_REFUSED, &[], src.admin_refused);
    if let Some(x) = src.proxy.otlp() {
        s.counter(SPANS, &["exported"], x.stats.exported.load(Relaxed));
        s.counter(SPANS, &["dropped"], x.stats.dropped.load(Relaxed));
        s.counter(SPANS, &["failed"], x.stats.failed.load(Relaxed));
    }

    for (name, e) in src.proxy.endpoint_stats() {
        let t = e.totals();
        for (i, c) in t.by_class.iter().enumerate() {
            s.counter(REQUESTS, &[&name, &format!("{}xx", i + 1)], *c);
        }
        s.counter(CANCELLED, &[&name], t.cancelled);
        s.counter(HELD, &[&name, "served"], e.held_served.load(Relaxed));
        s.counter(HELD, &[&name, "timed_out"], e.held_timed_out.load(Relaxed));
        s.counter(HELD, &[&name, "refused"], e.held_refused.load(Relaxed));
        s.gauge(WAITING, &[&name], e.held_now.load(Relaxed) as f64);
        let mut buckets: Vec<(f64, u64)> =
            LATENCY_BOUNDS_US.iter().zip(t.buckets.iter()).map(|(b, n)| (*b as f64 / 1e6, *n)).collect();
        buckets.push((f64::INFINITY, t.buckets[LATENCY_BOUNDS_US.len()]));
        let count = buckets.iter().map(|b| b.1).sum();
        s.add(DURATION, &[&name], Value::Histogram(t.latency_sum_us as f64 / 1e6, count, buckets));
    }
    for p in src.proxy.pools() {
        for m in p.members().iter() {
            let l = [p.name.as_str(), m.addr.as_str()];
            s.gauge(MEMBER_HEALTHY, &l, u8::from(m.is_healthy() && !m.is_draining() && !m.is_ejected()));
            s.gauge(MEMBER_IN_FLIGHT, &l, m.outstanding() as f64);
            s.counter(MEMBER_REQUESTS, &l, m.requests_total());
        }
    }

    if let Some(h) = src.historian {
        let snap = h.snapshot();
        let c = &snap.counters;
        s.counter(RECORDS, &["accepted"], c.accepted);
        s.counter(RECORDS, &["dropped"], h.dropped());
        s.counter(LATE, &[], c.late);
        s.gauge(HIST_MEMORY, &[], snap.memory_bytes as f64);
        s.gauge(HIST_DISK, &[], snap.disk_bytes as f64);
        s.counter(DISK_ERRORS, &[], c.disk_errors);
        s.gauge(DISK_OK, &[], u8::from(c.disk_error.is_none()));
        s.gauge(DISK_PENDING, &[], c.disk_pending as f64);
        s.counter(DISK_DROPPED, &[], c.disk_dropped);
    }

    if let Some(f) = src.forecasts {
        let all = f.all();
        let mut names: Vec<&String> = all.endpoints.keys().collect();
        names.sort();
        for n in names {
            if let Some(p) = all.endpoints[n].points.first() {
                for (band, v) in
                    [("mean", p.rate), ("lo80", p.lo80), ("hi80", p.hi80), ("lo95", p.lo95), ("hi95", p.hi95)]
                {
                    s.gauge(FORECAST, &[n, band], v);
                }
            }
        }
        let mut names: Vec<&String> = all.accuracy.keys().collect();
        names.sort();
        for n in names {
            for h in all.accuracy[n].iter() {
                let horizon = format!("{}m", h.horizon_minutes);
                let d = &h.day;
                for (fam, v) in [(MASE, d.mase), (SMAPE, d.smape.map(|p| p / 100.0)), (UNDER, d.under_rate)] {
                    if let Some(v) = v {
                        s.gauge(fam, &[n, &horizon], v);
                    }
                }
                for (band, v) in [("80", d.coverage80), ("95", d.coverage95)] {
                    if let Some(v) = v {
                        s.gauge(COVERAGE, &[n, &horizon, band], v);
                    }
                }
            }
        }
    }

    if let Some(f) = src.fleet {
        let st = f.state();
        let c = &st.counters;
        s.gauge(FLEET_UP, &[], u8::from(st.error.is_none()));
        s.gauge(FLEET_PENDING, &[], c.minutes_pending as f64);
        s.counter(FLEET_PUBLISHED, &[], c.minutes_published);
        s.counter(FLEET_PEER, &[], c.peer_minutes);
        s.counter(FLEET_WRITES, &[], c.writes);
        s.counter(FLEET_WRITE_BYTES, &[], c.write_bytes);
        s.counter(FLEET_FENCED, &[], c.fenced);
    }

    if let Some(a) = src.allocator {
        use crate::allocator::plan::Phase;
        let st = a.state();
        for p in &st.pools {
            let pool = p.pool.as_str();
            for (phase, name) in [
                (Phase::Booting, "booting"),
                (Phase::Serving, "serving"),
                (Phase::Draining, "draining"),
                (Phase::Suspended, "suspended"),
                (Phase::Stopped, "stopped"),
            ] {
                s.gauge(POOL_VMS, &[pool, name], p.vms.iter().filter(|v| v.phase == phase).count() as f64);
            }
            s.gauge(POOL_CAPACITY, &[pool], p.capacity_rps);
            s.gauge(POOL_REQUIRED, &[pool], p.required_rps);
            s.gauge(POOL_LEAD, &[pool], p.lead.lead_time_s as f64);
            s.gauge(POOL_DEGRADED, &[pool], u8::from(p.degraded.is_some()));
            if let Some(f) = &p.fleet {
                s.gauge(POOL_LEADER, &[pool], u8::from(f.role == "leader"));
                s.gauge(POOL_PAUSED, &[pool], u8::from(f.role == "paused"));
            }
            for v in &p.vms {
                s.gauge(VM_VCPUS, &[pool, &v.info.name], v.info.vcpus);
                s.gauge(VM_MEMORY, &[pool, &v.info.name], (v.info.memory_mib * 1024 * 1024) as f64);
            }
        }
        for ((pool, kind, outcome), n) in &st.actions {
            s.counter(POOL_ACTIONS, &[pool, kind, outcome], *n);
        }
    }

    if let Some(p) = process() {
        s.add(CPU, &[], Value::Seconds(p.cpu_seconds));
        s.gauge(RSS, &[], p.resident_bytes as f64);
        s.gauge(VSZ, &[], p.virtual_bytes as f64);
        s.gauge(START, &[], p.start_time);
        s.gauge(THREADS, &[], p.threads as f64);
        s.gauge(FDS, &[], p.open_fds as f64);
        if let Some(m) = p.max_fds {
            s.gauge(MAX_FDS, &[], m as f64);
        }
    }
    s
}

/// The process's own figures, from `/proc/self` (Linux).
struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: u64,
    virtual_bytes: u64,
    start_time: f64,
    threads: u64,
    open_fds: u64,
    max_fds: Option<u64>,
}

fn process() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // proc(5) numbers fields from 1 with the state as 3; `rest` starts at the state.
    let field = |n: usize| f.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    // SAFETY: sysconf only reads a configuration value.
    let (tick, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let (tick, page) = (tick.max(1) as f64, page.max(1) as u64);
    let boot = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse::<u64>().ok()))?;
    let max_fds = std::fs::read_to_string("/proc/self/limits").ok().and_then(|l| {
        l.lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(3))
            .and_then(|v| v.parse().ok())
    });
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) as f64 / tick,
        threads: field(20)?,
        start_time: boot as f64 + field(22)? as f64 / tick,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)? * page,
        open_fds: std::fs::read_dir("/proc/self/fd").map(|d| d.count() as u64).unwrap_or(0),
        max_fds,
    })
}

/// The README's metrics table: one row per family.
pub fn table() -> String {
    let mut out = String::from("| metric | type | labels | meaning |\n|---|---|---|---|\n");
    for f in FAMILIES {
        let kind = match f.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let labels = f.labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", ");
        out.push_str(&format!("| `{}` | {kind} | {labels} | {} |\n", f.name(), f.help));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_follow_the_conventions() {
        let mut seen = std::collections::HashSet::new();
        for f in FAMILIES {
            let n = f.name();
            assert!(seen.insert(n.clone()), "{n} twice");
            assert!(n.starts_with("prescale_") || n.starts_with("process_"), "{n}");
            assert!(!f.help.ends_with('.'), "{n}: the encoder adds the period");
            assert!(n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'), "{n}");
            for l in f.labels {
                assert!(
                    [
                        "endpoint", "pool", "member", "vm", "band", "horizon", "class", "result", "phase", "kind",
                        "outcome", "version"
                    ]
                    .contains(l),
                    "{n}: label {l} is not one of the shared set"
                );
            }
        }
    }

    #[test]
    fn accept_header_chooses_the_format() {
        assert_eq!(Format::from_accept(None), Format::Prometheus);
        assert_eq!(Format::from_accept(Some("text/plain;version=0.0.4")), Format::Prometheus);
        let prom = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(Format::from_accept(Some(prom)), Format::OpenMetrics);
    }

    #[test]
    fn samples_encode_in_both_formats() {
        let mut s = Scrape::default();
        s.counter(REQUESTS, &["a\"b", "2xx"], 3);
        s.add(DURATION, &["x"], Value::Histogram(0.5, 2, vec![(0.001, 1), (0.01, 0), (f64::INFINITY, 1)]));
        let mut r = Registry::default();
        r.register_collector(Box::new(s));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &r).unwrap();
        assert!(text.contains("# TYPE prescale_requests_total counter\n"), "{text}");
        assert!(text.contains("prescale_requests_total{endpoint=\"a\\\"b\",class=\"2xx\"} 3"), "{text}");
        assert!(text.contains("prescale_request_duration_seconds_bucket{endpoint=\"x\",le=\"0.01\"} 1\n"), "{text}");
        assert!(text.contains("prescale_request_duration_seconds_bucket{endpoint=\"x\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(!text.contains("# EOF"));
        let mut om = String::new();
        prometheus_client::encoding::text::encode(&mut om, &r).unwrap();
        assert!(om.ends_with("# EOF\n"), "{om}");
        assert!(om.contains("# UNIT prescale_request_duration_seconds seconds\n"), "{om}");
    }

    #[test]
    fn process_figures_are_read() {
        let p = process().expect("/proc/self");
        assert!(p.resident_bytes > 0 && p.virtual_bytes >= p.resident_bytes);
        assert!(p.threads >= 1 && p.open_fds >= 3);
        let now = crate::clock::now_us() as f64 / 1e6;
        assert!(p.start_time <= now + 1.0 && p.start_time > now - 86_400.0 * 365.0, "{}", p.start_time);
    }
}
