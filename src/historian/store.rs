//! The historian's data, owned by one thread: per-endpoint tiers, their open buckets, the ring
//! of recent calls, and the disk log. Pure logic over explicit times (no clock, no channel),
//! so tests drive it on virtual time.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use hdrhistogram::Histogram;

use super::disk::Disk;
use super::record::{CallOutcome, CallRecord, Redaction, StoredCall};
use super::series::{Bucket, FullBucket, Tier};

/// One resolution: bucket width, how long it is kept, whether closed buckets go to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierSpec {
    pub step_s: u64,
    pub keep_s: u64,
    pub persist: bool,
}

impl TierSpec {
    pub fn capacity(&self) -> usize {
        (self.keep_s / self.step_s).max(1) as usize
    }
}

/// The default tiers: 1 s for an hour, 1 min for 35 days, 1 h for 400 days.
pub fn default_tiers() -> Vec<TierSpec> {
    vec![
        TierSpec { step_s: 1, keep_s: 3600, persist: false },
        TierSpec { step_s: 60, keep_s: 35 * 86_400, persist: true },
        TierSpec { step_s: 3600, keep_s: 400 * 86_400, persist: true },
    ]
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub tiers: Vec<TierSpec>,
    pub recent_calls: usize,
    pub redaction: Redaction,
    /// A bucket closes this long after its end, so calls that finish late (records are taken
    /// when the response ends, bucketed by start) still land in it.
    pub close_after_us: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            tiers: default_tiers(),
            recent_calls: 100_000,
            redaction: Redaction::default(),
            close_after_us: 5_000_000,
        }
    }
}

/// Counters about the store itself.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StoreCounters {
    pub accepted: u64,
    /// Calls whose buckets had already closed; counted in memory, not in quantiles or on disk.
    pub late: u64,
    /// Buckets on disk dated after the start (an import from the future, a clock that was
    /// ahead): not loaded, so live calls are not all "late" behind them.
    pub future_skipped: u64,
    /// Failed attempts to write closed buckets (each retried later).
    pub disk_errors: u64,
    /// Closed buckets waiting in memory for the disk to take them again.
    pub disk_pending: u64,
    /// Closed buckets given up because the backlog was full (never written).
    pub disk_dropped: u64,
    /// The last write error while buckets are pending; None when the disk keeps up.
    pub disk_error: Option<String>,
}

/// Closed buckets held in memory while the disk refuses them (about 100 bytes each): beyond
/// this the oldest are dropped and counted.
pub const DISK_BACKLOG_MAX: usize = 500_000;
const DISK_RETRY_MIN_US: u64 = 1_000_000;
const DISK_RETRY_MAX_US: u64 = 16_000_000;

struct Open {
    full: FullBucket,
    hist: Histogram<u32>,
}

struct Endpoint {
    tiers: Vec<Tier>,
    open: Vec<BTreeMap<u64, Open>>,
    calls_total: u64,
    errors_total: u64,
}

impl Endpoint {
    fn new(tiers: &[TierSpec]) -> Self {
        Self {
            tiers: tiers.iter().map(|t| Tier::new(t.step_s, t.capacity())).collect(),
            open: tiers.iter().map(|_| BTreeMap::new()).collect(),
            calls_total: 0,
            errors_total: 0,
        }
    }
}

/// Calls per shared chunk of the recent-calls ring.
const CALL_CHUNK: usize = 1024;

/// The most recent calls, newest last, in shared chunks.
#[derive(Clone, Default)]
pub struct CallRing {
    cap: usize,
    chunks: VecDeque<Arc<Vec<StoredCall>>>,
    /// Heap bytes of each chunk's calls (paths, queries), parallel to `chunks`.
    chunk_heap: VecDeque<usize>,
    tail: Vec<StoredCall>,
    tail_heap: usize,
}

impl CallRing {
    fn new(cap: usize) -> Self {
        Self {
            cap: cap.max(1),
            chunks: VecDeque::new(),
            chunk_heap: VecDeque::new(),
            tail: Vec::with_capacity(CALL_CHUNK),
            tail_heap: 0,
        }
    }

    fn push(&mut self, c: StoredCall) {
        self.tail_heap += c.heap_bytes();
        self.tail.push(c);
        if self.tail.len() == CALL_CHUNK {
            // Whole chunks go; the ring holds between cap and cap + one chunk. An evicted
            // chunk no snapshot still holds is reused as the next tail (no 200 KB allocation).
            let mut reuse = None;
            while !self.chunks.is_empty() && self.len() - CALL_CHUNK >= self.cap {
                self.chunk_heap.pop_front();
                if let Some(Ok(mut v)) = self.chunks.pop_front().map(Arc::try_unwrap) {
                    v.clear();
                    reuse = Some(v);
                }
            }
            let full = std::mem::replace(&mut self.tail, reuse.unwrap_or_else(|| Vec::with_capacity(CALL_CHUNK)));
            self.chunks.push_back(Arc::new(full));
            self.chunk_heap.push_back(std::mem::take(&mut self.tail_heap));
        }
    }

    /// Bytes the ring holds: its chunks' slots (allocated whole, the open one twice: the
    /// published snapshot has its own copy) and every call's strings (shared with snapshots).
    pub fn memory_bytes(&self) -> usize {
        (self.chunks.len() + 2) * CALL_CHUNK * std::mem::size_of::<StoredCall>()
            + self.chunk_heap.iter().sum::<usize>()
            + self.tail_heap
    }

    pub fn len(&self) -> usize {
        self.chunks.len() * CALL_CHUNK + self.tail.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Newest first.
    pub fn iter(&self) -> impl Iterator<Item = &StoredCall> {
        self.tail.iter().rev().chain(self.chunks.iter().rev().flat_map(|c| c.iter().rev()))
    }
}

/// A read-only view for queries.
#[derive(Clone, Default)]
pub struct Snapshot {
    pub taken_us: u64,
    pub endpoints: Vec<EndpointView>,
    pub recent: CallRing,
    pub counters: StoreCounters,
    pub memory_bytes: usize,
    pub disk_bytes: u64,
}

#[derive(Clone)]
pub struct EndpointView {
    pub name: Arc<str>,
    pub tiers: Vec<Tier>,
    pub calls_total: u64,
    pub errors_total: u64,
    /// The 1-minute and coarser tiers hold the fleet's calls (`[cluster]`), the finer ones
    /// this instance's only.
    pub fleet: bool,
    /// The finest tier's open buckets: `(index, calls so far)`.
    pub open_calls: Vec<(u64, u64)>,
}

impl Snapshot {
    pub fn endpoint(&self, name: &str) -> Option<&EndpointView> {
        self.endpoints.iter().find(|e| &*e.name == name)
    }
}

impl EndpointView {
    /// The tier a query from `from_s` at `step_s` reads: among the tiers whose step divides
    /// `step_s` (so points aggregate whole buckets), the finest one whose recorded data starts
    /// as early as any's. After a restart the fine tiers (in memory only) start at the restart
    /// while the coarser ones hold what was loaded from disk: the coarser one then wins, so
    /// the history before the restart is shown. `now_s` bounds the scan.
    pub fn tier_for(&self, step_s: u64, from_s: u64, now_s: u64) -> Option<&Tier> {
        // In a fleet, a step of a minute or more is read from the tiers that hold every
        // instance's calls.
        let fits: Vec<&Tier> = self
            .tiers
            .iter()
            .filter(|t| step_s.is_multiple_of(t.step_s))
            .filter(|t| !(self.fleet && step_s >= 60 && t.step_s < 60))
            .collect();
        let start = |t: &Tier| t.first_present(from_s, now_s).unwrap_or(u64::MAX);
        let earliest = fits.iter().map(|t| start(t)).min()?;
        fits.into_iter().find(|t| start(t) <= earliest.max(from_s))
    }

    /// Calls per second over the last `secs` closed seconds of the finest tier.
    pub fn recent_rate(&self, secs: u64) -> f64 {
        let Some(t) = self.tiers.first() else { return 0.0 };
        let end = t.next() * t.step_s;
        let pts = t.points(end.saturating_sub(secs.max(t.step_s)), end, t.step_s);
        let span = (pts.len() as u64 * t.step_s).max(1);
        pts.iter().map(|p| p.count).sum::<u64>() as f64 / span as f64
    }

    /// The larger of the rate over the last `long` closed seconds and the rate over the `short`
    /// seconds before `now_s`, open buckets included (calls so far: a bucket closes seconds
    /// after its end, and a burst must not wait for that). A burst shows within a second or
    /// two of its start; the long window keeps a lull of a few seconds from reading as no load.
    pub fn burst_rate(&self, long: u64, short: u64, now_s: u64) -> f64 {
        let Some(t) = self.tiers.first() else { return 0.0 };
        let from = now_s.saturating_sub(short);
        let closed_to = (t.next() * t.step_s).min(now_s);
        let closed: u64 =
            if from < closed_to { t.points(from, closed_to, t.step_s).iter().map(|p| p.count).sum() } else { 0 };
        let open: u64 =
            self.open_calls.iter().filter(|(i, _)| (from..now_s).contains(&(i * t.step_s))).map(|(_, n)| n).sum();
        self.recent_rate(long).max((closed + open) as f64 / short.max(1) as f64)
    }
}

pub struct Store {
    cfg: StoreConfig,
    endpoints: BTreeMap<Arc<str>, Endpoint>,
    recent: CallRing,
    disk: Option<Disk>,
    /// Second from which this process records: buckets begun earlier are missing, later
    /// ones zero when quiet.
    live_from_s: u64,
    counters: StoreCounters,
    spare: Vec<Histogram<u32>>,
    /// Rows the disk refused, oldest first, written again when it takes them.
    backlog: std::collections::VecDeque<super::disk::Row>,
    disk_retry_at_us: u64,
    disk_backoff_us: u64,
    /// Where closed 1-minute buckets go to be published to the fleet (`[cluster]`).
    closed_out: Option<crossbeam_channel::Sender<ClosedMinute>>,
    /// Peers' buckets for buckets not closed here yet: (tier, endpoint, index, bucket).
    peer_wait: Vec<(usize, Arc<str>, u64, FullBucket)>,
}

/// Every endpoint's closed 1-minute bucket of one minute: what a fleet member publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedMinute {
    /// Minute index (`t / 60`).
    pub minute: u64,
    pub buckets: Vec<(Arc<str>, FullBucket)>,
}

/// Peers' buckets waiting for their bucket to close here: beyond this the oldest are dropped.
const PEER_WAIT_MAX: usize = 100_000;

fn new_hist() -> Histogram<u32> {
    // 1 µs … 1 h, two significant digits.
    Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid histogram bounds")
}

impl Store {
    /// A store starting at `now_us`; with a disk, closed buckets are loaded from it first.
    pub fn new(cfg: StoreConfig, disk: Option<Disk>, now_us: u64) -> Self {
        let mut s = Self {
            recent: CallRing::new(cfg.recent_calls),
            cfg,
            endpoints: BTreeMap::new(),
            disk,
            live_from_s: now_us / 1_000_000,
            counters: StoreCounters::default(),
            spare: Vec::new(),
            backlog: std::collections::VecDeque::new(),
            disk_retry_at_us: 0,
            disk_backoff_us: DISK_RETRY_MIN_US,
            closed_out: None,
            peer_wait: Vec::new(),
        };
        if let Some(disk) = s.disk.as_mut() {
            let mut loaded = Vec::new();
            for (ti, spec) in s.cfg.tiers.iter().enumerate() {
                if spec.persist {
                    disk.load(ti, spec, now_us / 1_000_000, &mut |name, index, full| {
                        loaded.push((ti, name, index, full))
                    });
                }
            }
            let now_s = now_us / 1_000_000;
            for (ti, name, index, full) in loaded {
                // A bucket that has not begun yet cannot hold real calls; loading it would put
                // the tier's end in the future and make every live call "late".
                if index.saturating_mul(s.cfg.tiers[ti].step_s) > now_s {
                    s.counters.future_skipped += 1;
                    continue;
                }
                let ep = s.endpoint_entry(name);
                ep.tiers[ti].put(index, &full, Bucket::MISSING);
            }
            if s.counters.future_skipped > 0 {
                tracing::warn!(
                    buckets = s.counters.future_skipped,
                    "history dated in the future was not loaded (an import of future rows, or a clock that was ahead)"
                );
            }
        }
        s
    }

    fn endpoint_entry(&mut self, name: Arc<str>) -> &mut Endpoint {
        let tiers = &self.cfg.tiers;
        self.endpoints.entry(name).or_insert_with(|| Endpoint::new(tiers))
    }

    /// Sends every closed 1-minute bucket (all endpoints of a minute together) to `tx` from
    /// now on; a full channel drops the minute (the receiver keeps its own backlog).
    pub fn publish_closed(&mut self, tx: crossbeam_channel::Sender<ClosedMinute>) {
        self.closed_out = Some(tx);
    }

    /// Adds another fleet member's closed 1-minute bucket of `endpoint` to the 1-minute and
    /// coarser persisted tiers held in memory (never to disk: the disk holds this instance's own
    /// calls; peers' come from etcd again after a restart). An endpoint not configured here is
    /// ignored; a bucket not closed here yet waits until it is.
    pub fn merge_peer(&mut self, endpoint: &str, minute: u64, full: &FullBucket) {
        let Some(name) = self.endpoints.get_key_value(endpoint).map(|(k, _)| k.clone()) else { return };
        let ep = self.endpoints.get_mut(&name).expect("just found");
        for (ti, spec) in self.cfg.tiers.iter().enumerate() {
            if spec.step_s < 60 || spec.step_s % 60 != 0 {
                continue;
            }
            let index = minute * 60 / spec.step_s;
            let tier = &mut ep.tiers[ti];
            // The bucket this process started in is missing here (partly seen): the peers'
            // share alone would pass for the fleet's.
            let start = index * spec.step_s;
            if index < tier.first_index() || (start < self.live_from_s && self.live_from_s < start + spec.step_s) {
                continue;
            }
            if !tier.merge(index, full) {
                self.peer_wait.push((ti, name.clone(), index, *full));
            }
        }
        let over = self.peer_wait.len().saturating_sub(PEER_WAIT_MAX);
        if over > 0 {
            self.peer_wait.drain(..over);
        }
    }

    /// Peers' buckets whose bucket has closed here since they came.
    fn merge_waiting(&mut self) {
        if self.peer_wait.is_empty() {
            return;
        }
        let endpoints = &mut self.endpoints;
        self.peer_wait.retain(|(ti, name, index, full)| {
            let Some(ep) = endpoints.get_mut(name) else { return false };
            let tier = &mut ep.tiers[*ti];
            if *index >= tier.next() {
                return true;
            }
            tier.merge(*index, full);
            false
        });
    }

    /// Makes sure configured endpoints have series even before their first call (their quiet
    /// minutes are real zeros).
    pub fn register(&mut self, names: &[Arc<str>]) {
        for n in names {
            self.endpoint_entry(n.clone());
        }
    }

    pub fn ingest(&mut self, r: CallRecord) {
        self.counters.accepted += 1;
        let start_s = r.start_us / 1_000_000;
        let latency = r.latency_us.max(1);
        let status = r.status;
        let timeout = r.outcome == CallOutcome::Timeout;
        let mut late = false;
        let spare = &mut self.spare;
        let tiers = &self.cfg.tiers;
        // Look up by &str first: no reference-count traffic for the common case.
        if !self.endpoints.contains_key(&*r.endpoint) {
            self.endpoints.insert(r.endpoint.clone(), Endpoint::new(tiers));
        }
        let Some(ep) = self.endpoints.get_mut(&*r.endpoint) else { return };
        ep.calls_total += 1;
        if status >= 400 {
            ep.errors_total += 1;
        }
        // Latency goes into the finest open bucket's histogram only; a closing bucket's
        // histogram is merged into the coarser tier's (see `advance`): one record per call.
        let mut hist_done = false;
        for (ti, tier) in ep.tiers.iter_mut().enumerate() {
            let index = start_s / tier.step_s;
            if !tier.is_empty() && index < tier.next() {
                tier.add_late(index, status);
                late = true;
                continue;
            }
            let open = ep.open[ti]
                .entry(index)
                .or_insert_with(|| Open { full: FullBucket::default(), hist: spare.pop().unwrap_or_else(new_hist) });
            let f = &mut open.full;
            f.calls += 1;
            match status {
                400..=499 => f.e4 += 1,
                500.. => f.e5 += 1,
                _ => {}
            }
            f.timeouts += timeout as u64;
            f.bytes_in += r.bytes_in;
            f.bytes_out += r.bytes_out;
            f.latency_sum_us += latency;
            if !hist_done {
                open.hist.saturating_record(latency);
                hist_done = true;
            }
        }
        self.counters.late += late as u64;
        self.recent.push(StoredCall::from_record(r, &self.cfg.redaction));
    }

    /// Closes every bucket whose end is at least `close_after` before `now_us`: buckets with
    /// calls get their quantiles, silent ones become zeros, and persisted tiers go to disk.
    /// Returns true if anything closed.
    pub fn advance(&mut self, now_us: u64) -> bool {
        let horizon_s = now_us.saturating_sub(self.cfg.close_after_us) / 1_000_000;
        let mut closed = false;
        let mut writes: Vec<super::disk::Row> = Vec::new();
        let mut minutes: BTreeMap<u64, Vec<(Arc<str>, FullBucket)>> = BTreeMap::new();
        let publish = self.closed_out.is_some();
        for (name, ep) in self.endpoints.iter_mut() {
            for (ti, spec) in self.cfg.tiers.iter().enumerate() {
                let tier = &mut ep.tiers[ti];
                let close_before = horizon_s / spec.step_s;
                // The first bucket this process saw from its start: a bucket begun before the
                // process was only partly observed, so it is missing, not a (too small) value.
                let live_from = self.live_from_s.div_ceil(spec.step_s);
                let missing_to = live_from.min(close_before.max(self.live_from_s / spec.step_s));
                if tier.is_empty() || tier.next() < missing_to {
                    tier.fill_to(missing_to, Bucket::MISSING);
                }
                // Buckets that can never be shown again are not walked one by one.
                let floor = close_before.saturating_sub(spec.capacity() as u64);
                if tier.next() < floor {
                    tier.fill_to(floor, Bucket::ZERO);
                }
                let (this, coarser) = ep.open.split_at_mut(ti + 1);
                let open = &mut this[ti];
                while tier.next() < close_before {
                    let index = tier.next();
                    let full = match open.remove(&index) {
                        Some(mut o) => {
                            o.full.lat_us = [
                                o.hist.value_at_quantile(0.5),
                                o.hist.value_at_quantile(0.9),
                                o.hist.value_at_quantile(0.99),
                                o.hist.max(),
                            ];
                            // Hand the latencies up to the next tier's bucket holding this one.
                            if let Some(next) = coarser.first_mut() {
                                let up = index * spec.step_s / self.cfg.tiers[ti + 1].step_s;
                                if let Some(c) = next.get_mut(&up) {
                                    let _ = c.hist.add(&o.hist);
                                }
                            }
                            o.hist.reset();
                            self.spare.push(o.hist);
                            o.full
                        }
                        None => FullBucket::default(),
                    };
                    tier.put(index, &full, Bucket::ZERO);
                    if publish && spec.step_s == 60 {
                        minutes.entry(index).or_default().push((name.clone(), full));
                    }
                    if spec.persist {
                        writes.push((ti, name.clone(), index, full));
                    }
                    closed = true;
                }
                // Open buckets behind the ring's end (clock stepped back): fold them in.
                while let Some((&index, _)) = open.first_key_value() {
                    if index >= tier.next() {
                        break;
                    }
                    if let Some(o) = open.remove(&index) {
                        self.spare.push(o.hist);
                    }
                }
            }
        }
        if let Some(tx) = &self.closed_out {
            for (minute, buckets) in minutes {
                let _ = tx.try_send(ClosedMinute { minute, buckets });
            }
        }
        if closed {
            self.merge_waiting();
        }
        if self.disk.is_some() {
            self.write_out(writes, now_us);
            if let Some(disk) = self.disk.as_mut() {
                disk.enforce_retention(&self.cfg.tiers, horizon_s);
            }
        }
        closed
    }

    /// Appends closed buckets to disk, after any backlog. While the disk refuses them (full,
    /// read-only, gone) they wait in memory and are retried with back-off (1 s doubling to
    /// 16 s); recording and queries carry on from memory meanwhile.
    fn write_out(&mut self, writes: Vec<super::disk::Row>, now_us: u64) {
        let Some(disk) = self.disk.as_mut() else { return };
        let rows = if self.backlog.is_empty() {
            if writes.is_empty() {
                return;
            }
            writes
        } else {
            self.backlog.extend(writes);
            // A clock stepped back must not postpone the retry.
            let due = now_us >= self.disk_retry_at_us || self.disk_retry_at_us > now_us + DISK_RETRY_MAX_US;
            if !due {
                self.trim_backlog();
                return;
            }
            self.backlog.drain(..).collect()
        };
        match disk.append(&self.cfg.tiers, rows) {
            Ok(()) => {
                if self.counters.disk_error.take().is_some() {
                    tracing::info!("history is being written to disk again");
                }
                self.disk_backoff_us = DISK_RETRY_MIN_US;
            }
            Err((e, failed)) => {
                if self.counters.disk_error.is_none() {
                    tracing::warn!(error = %e, rows = failed.len(), "history cannot be written; kept in memory and retried");
                }
                self.counters.disk_errors += 1;
                self.counters.disk_error = Some(e.to_string());
                self.backlog.extend(failed);
                self.disk_retry_at_us = now_us + self.disk_backoff_us;
                self.disk_backoff_us = (self.disk_backoff_us * 2).min(DISK_RETRY_MAX_US);
            }
        }
        self.trim_backlog();
    }

    fn trim_backlog(&mut self) {
        let over = self.backlog.len().saturating_sub(DISK_BACKLOG_MAX);
        if over > 0 {
            self.backlog.drain(..over);
            self.counters.disk_dropped += over as u64;
        }
        self.counters.disk_pending = self.backlog.len() as u64;
    }

    pub fn snapshot(&self, now_us: u64) -> Snapshot {
        let endpoints: Vec<EndpointView> = self
            .endpoints
            .iter()
            .map(|(name, ep)| EndpointView {
                name: name.clone(),
                tiers: ep.tiers.iter().map(Tier::snapshot).collect(),
                calls_total: ep.calls_total,
                errors_total: ep.errors_total,
                fleet: self.closed_out.is_some(),
                open_calls: ep
                    .open
                    .first()
                    .map_or_else(Vec::new, |o| o.iter().map(|(i, b)| (*i, b.full.calls)).collect()),
            })
            .collect();
        Snapshot {
            taken_us: now_us,
            memory_bytes: self.memory_bytes(),
            disk_bytes: self.disk.as_ref().map_or(0, |d| d.bytes()),
            endpoints,
            recent: self.recent.clone(),
            counters: self.counters.clone(),
        }
    }

    /// Bytes held: series, open buckets' histograms, and the recent calls with their strings
    /// (approximate only in the allocator's rounding).
    pub fn memory_bytes(&self) -> usize {
        let series: usize = self.endpoints.values().flat_map(|e| e.tiers.iter()).map(Tier::memory_bytes).sum();
        let open: usize = self.endpoints.values().flat_map(|e| e.open.iter()).map(|o| o.len()).sum();
        let hist = (open + self.spare.len()) * new_hist_bytes();
        series + hist + self.recent.memory_bytes()
    }

    pub fn counters(&self) -> &StoreCounters {
        &self.counters
    }

    /// Flushes the disk log (fsync), e.g. at shutdown.
    pub fn sync(&mut self) {
        if let Some(d) = self.disk.as_mut() {
            d.sync();
        }
    }
}

fn new_hist_bytes() -> usize {
    static BYTES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| new_hist().distinct_values() * 4 + 128)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::historian::record::CallOutcome;

    const T0: u64 = 1_800_000_000; // a minute and hour boundary: 1_800_000_000 % 3600 == 0

    fn rec(endpoint: &str, t_s: f64, status: u16, latency_us: u64) -> CallRecord {
        CallRecord {
            start_us: (t_s * 1e6) as u64,
            endpoint: Arc::from(endpoint),
            method: http::Method::GET,
            target: "/a?token=x&q=1".parse().unwrap(),
            status,
            outcome: if status >= 500 { CallOutcome::UpstreamError } else { CallOutcome::Ok },
            latency_us,
            bytes_in: 0,
            bytes_out: 10,
            client: "10.0.0.1".parse().unwrap(),
            upstream: None,
            trace_id: [0; 16],
        }
    }

    fn cfg() -> StoreConfig {
        StoreConfig { close_after_us: 2_000_000, ..Default::default() }
    }

    fn minute_counts(s: &Snapshot, ep: &str, from: u64, to: u64) -> Vec<(u64, bool)> {
        let e = s.endpoint(ep).unwrap();
        e.tiers[1].points(from, to, 60).iter().map(|p| (p.count, p.missing)).collect()
    }

    /// The reactive path's reading (issue 18, lever 2): a burst shows at its own rate as it
    /// comes, open buckets included, not diluted over the long window nor seconds late; a short
    /// lull does not read as idle.
    #[test]
    fn a_burst_reads_at_its_rate_as_it_comes_and_a_lull_keeps_the_longer_rate() {
        let mut s = Store::new(cfg(), None, T0 * 1_000_000);
        s.register(&[Arc::from("api")]);
        // 20 s at 2 calls/s, then 5 s at 16 calls/s.
        for k in 0..20 * 2 {
            s.ingest(rec("api", T0 as f64 + k as f64 / 2.0, 200, 1000));
        }
        for k in 0..5 * 16 {
            s.ingest(rec("api", (T0 + 20) as f64 + k as f64 / 16.0, 200, 1000));
        }
        // Now T0 + 25: buckets close 2 s after their end, so T0+23 and T0+24 are still open.
        s.advance((T0 + 25) * 1_000_000);
        let snap = s.snapshot((T0 + 25) * 1_000_000);
        let e = snap.endpoint("api").unwrap();
        assert_eq!(e.open_calls, [(T0 + 23, 16), (T0 + 24, 16)]);
        assert!((e.recent_rate(15) - (12.0 * 2.0 + 3.0 * 16.0) / 15.0).abs() < 1e-9, "{}", e.recent_rate(15));
        assert!((e.burst_rate(15, 5, T0 + 25) - 16.0).abs() < 1e-9, "{}", e.burst_rate(15, 5, T0 + 25));
        // Then 7 quiet seconds: the short window reads nothing, the reading keeps the long one.
        s.advance((T0 + 32) * 1_000_000);
        let snap = s.snapshot((T0 + 32) * 1_000_000);
        let e = snap.endpoint("api").unwrap();
        let long = (5.0 * 2.0 + 5.0 * 16.0) / 15.0;
        assert!((e.burst_rate(15, 5, T0 + 32) - long).abs() < 1e-9, "{}", e.burst_rate(15, 5, T0 + 32));
    }

    /// A fleet member's store: every closed minute goes out once, with all endpoints; peers'
    /// minutes add to the 1-minute and hourly tiers (not the 1-second one), whether they come
    /// before the minute closed here, after, or for a minute this instance was not running.
    #[test]
    fn closed_minutes_go_out_and_peers_minutes_add_up() {
        let mut s = Store::new(cfg(), None, T0 * 1_000_000);
        s.register(&[Arc::from("a"), Arc::from("b")]);
        let (tx, rx) = crossbeam_channel::bounded(100);
        s.publish_closed(tx);
        for i in 0..30 {
            s.ingest(rec("a", (T0 + 60) as f64 + i as f64, 200, 1000));
        }
        let peer = |calls| FullBucket { calls, e4: 1, lat_us: [2000, 4000, 8000, 9000], ..Default::default() };
        // Before minute T0+60 has closed here, and for T0 (before this instance started).
        s.merge_peer("a", (T0 + 60) / 60, &peer(12));
        s.merge_peer("a", (T0 - 60) / 60, &peer(7));
        s.merge_peer("unknown", T0 / 60, &peer(7));
        s.advance((T0 + 125) * 1_000_000);
        // After it closed.
        s.merge_peer("b", (T0 + 60) / 60, &peer(5));
        let out: Vec<ClosedMinute> = rx.try_iter().collect();
        assert_eq!(out.iter().map(|m| m.minute).collect::<Vec<_>>(), [T0 / 60, (T0 + 60) / 60], "each minute once");
        let a = out[1].buckets.iter().find(|(n, _)| &**n == "a").unwrap().1;
        assert_eq!(a.calls, 30, "only this instance's calls go out");
        assert!(out[1].buckets.iter().any(|(n, b)| &**n == "b" && b.calls == 0), "quiet endpoints too");
        let snap = s.snapshot((T0 + 125) * 1_000_000);
        assert_eq!(minute_counts(&snap, "a", T0 - 60, T0 + 120), [(7, false), (0, false), (42, false)]);
        assert_eq!(minute_counts(&snap, "b", T0 + 60, T0 + 120), [(5, false)]);
        let e = snap.endpoint("a").unwrap();
        let p = e.tiers[1].points(T0 + 60, T0 + 120, 60)[0];
        assert_eq!(p.errors_4xx, 1);
        assert!(p.p99_ms > 7.9, "the larger p99 of the parts (8 ms): {p:?}");
        // The 1-second tier is this instance's own.
        assert_eq!(e.tiers[0].points(T0 + 60, T0 + 120, 60)[0].count, 30);
        assert!(e.fleet);
        assert_eq!(e.tier_for(60, T0 + 60, T0 + 120).unwrap().step_s, 60, "a fleet's minutes, not the local seconds");
        // The hour holding them gets the peer's minute once it has closed here too; the hour
        // before the start has only the peers' minute.
        s.advance((T0 + 3605) * 1_000_000);
        let snap = s.snapshot((T0 + 3605) * 1_000_000);
        let h = snap.endpoint("a").unwrap().tiers[2].points(T0 - 3600, T0 + 3600, 3600);
        assert_eq!((h[0].count, h[1].count), (7, 30 + 12), "{h:?}");
    }

    /// The disk refuses writes (the segment files are links to /dev/full, which fails every
    /// write with ENOSPC, like a full disk): recording carries on in memory, the condition is
    /// counted and named, and once the disk takes writes again the backlog is written in full.
    #[test]
    fn a_full_disk_keeps_history_in_memory_and_writes_it_when_space_returns() {
        use crate::historian::disk::{Disk, SEGMENT_BUCKETS, file_name};
        let dir = tempfile::tempdir().unwrap();
        let links: Vec<_> =
            [60u64, 3600].iter().map(|step| dir.path().join(file_name(*step, T0 / step / SEGMENT_BUCKETS))).collect();
        let mut s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), T0 * 1_000_000);
        // (Made after loading: reading /dev/full never ends.)
        for l in &links {
            std::os::unix::fs::symlink("/dev/full", l).unwrap();
        }
        // Ten minutes of calls, 3 a minute, each minute closed as it passes.
        for m in 0..10 {
            for k in 0..3 {
                s.ingest(rec("api", (T0 + m * 60 + 10 + k * 10) as f64, 200, 1000));
            }
            s.advance((T0 + (m + 1) * 60 + 3) * 1_000_000);
        }
        let snap = s.snapshot(0);
        let c = &snap.counters;
        assert!(c.disk_error.as_deref().unwrap_or("").contains("No space left"), "{c:?}");
        assert!(c.disk_errors >= 2, "retried: {c:?}");
        assert_eq!(c.disk_pending, 10, "ten closed minutes wait in memory: {c:?}");
        assert_eq!(minute_counts(&snap, "api", T0, T0 + 600), vec![(3, false); 10], "queries still see them");
        // Space returns.
        for l in &links {
            std::fs::remove_file(l).unwrap();
        }
        for k in 0..3 {
            s.ingest(rec("api", (T0 + 610 + k * 10) as f64, 200, 1000));
        }
        s.advance((T0 + 663) * 1_000_000);
        let c = s.snapshot(0).counters;
        assert_eq!((c.disk_pending, c.disk_error, c.disk_dropped), (0, None, 0), "backlog written");
        drop(s);
        // A restart finds every minute, the ones from the full-disk period included.
        let s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), (T0 + 700) * 1_000_000);
        assert_eq!(minute_counts(&s.snapshot(0), "api", T0, T0 + 660), vec![(3, false); 11]);
    }

    #[test]
    fn clock_jumps_back_and_forward_keep_buckets_consistent() {
        let mut s = Store::new(cfg(), None, (T0 - 60) * 1_000_000);
        for k in 0..30 {
            s.ingest(rec("api", (T0 - 60 + 2 * k) as f64, 200, 1000));
        }
        s.advance((T0 + 10) * 1_000_000);
        let before = s.snapshot(0).endpoint("api").unwrap().tiers[1].next();
        // The system time is set back an hour: nothing panics, closed buckets stay closed, calls
        // stamped in the past are counted as late, not as a new history.
        s.advance((T0 - 3600) * 1_000_000);
        s.ingest(rec("api", (T0 - 3600) as f64, 200, 1000));
        s.advance((T0 - 3590) * 1_000_000);
        let snap = s.snapshot(0);
        let t = &snap.endpoint("api").unwrap().tiers[1];
        assert_eq!(t.next(), before, "no bucket was reopened or rewritten");
        assert_eq!((s.counters().late, s.counters().accepted), (1, 31), "the past call is counted as late");
        assert_eq!(minute_counts(&snap, "api", T0 - 60, T0), vec![(30, false)]);
        // Forward a day: the gap is filled (zeros for a registered endpoint, counted once).
        s.advance((T0 + 86_400) * 1_000_000);
        let snap = s.snapshot(0);
        let t = &snap.endpoint("api").unwrap().tiers[1];
        assert!(t.next() >= (T0 + 86_400) / 60 - 1, "caught up: {}", t.next());
        let day = t.points(T0, T0 + 86_400 - 60, 60);
        assert!(day.iter().all(|p| p.count == 0), "no calls were invented in the gap");
        assert_eq!(minute_counts(&snap, "api", T0 - 60, T0), vec![(30, false)], "history kept");
    }

    #[test]
    fn buckets_across_minute_and_hour_boundaries_on_virtual_time() {
        let start_us = (T0 - 120) * 1_000_000;
        let mut s = Store::new(cfg(), None, start_us);
        s.register(&[Arc::from("quiet")]);
        // 3 calls in the minute before the hour boundary, 2 right after, 1 a minute later.
        for (t, st) in [(T0 - 30, 200), (T0 - 1, 500), (T0 - 1, 404), (T0, 200), (T0 + 59, 200), (T0 + 60, 503)] {
            s.ingest(rec("api", t as f64 + 0.5, st, 1500));
        }
        // Not closed yet: the minute ending at T0 closes only 2 s after T0.
        s.advance((T0 + 1) * 1_000_000);
        let snap = s.snapshot(0);
        assert!(minute_counts(&snap, "api", T0 - 60, T0).iter().all(|(_, m)| *m));
        s.advance((T0 + 125) * 1_000_000);
        let snap = s.snapshot(0);
        assert_eq!(minute_counts(&snap, "api", T0 - 60, T0 + 120), vec![(3, false), (2, false), (1, false)]);
        let p = &snap.endpoint("api").unwrap().tiers[1].points(T0 - 60, T0, 60)[0];
        assert_eq!((p.errors_4xx, p.errors_5xx), (1, 1));
        assert!((p.p50_ms - 1.5).abs() < 0.05, "{}", p.p50_ms);
        // The 1-s tier has each call in its own second.
        let secs = snap.endpoint("api").unwrap().tiers[0].points(T0 - 1, T0 + 1, 1);
        assert_eq!(secs.iter().map(|p| p.count).collect::<Vec<_>>(), vec![2, 1]);
        // A registered endpoint without calls has real zeros since start, not missing.
        assert_eq!(minute_counts(&snap, "quiet", T0 - 120, T0), vec![(0, false), (0, false)]);
        assert!(minute_counts(&snap, "quiet", T0 - 180, T0 - 120)[0].1, "before start: missing");
        // The hour before T0 was seen only from T0 − 120: missing. The hour from T0 holds 3
        // (once it closes).
        s.advance((T0 + 3600 + 3) * 1_000_000);
        let snap = s.snapshot(0);
        let h = snap.endpoint("api").unwrap().tiers[2].points(T0 - 3600, T0 + 3600, 3600);
        assert_eq!(h.iter().map(|p| (p.count, p.missing)).collect::<Vec<_>>(), vec![(0, true), (3, false)]);
        assert_eq!(snap.endpoint("api").unwrap().calls_total, 6);
        // The recent-calls ring holds them newest first, with secrets redacted.
        let calls: Vec<_> = snap.recent.iter().collect();
        assert_eq!(calls.len(), 6);
        assert_eq!(calls[0].status, 503);
        assert_eq!(calls[0].params(), "token=[redacted]&q=1");
    }

    #[test]
    fn late_calls_are_counted_not_lost() {
        let mut s = Store::new(cfg(), None, T0 * 1_000_000);
        s.ingest(rec("api", T0 as f64 + 1.0, 200, 100));
        s.advance((T0 + 65) * 1_000_000);
        // A long call that started in the closed minute finishes now.
        s.ingest(rec("api", T0 as f64 + 2.0, 200, 60_000_000));
        s.advance((T0 + 70) * 1_000_000);
        let snap = s.snapshot(0);
        assert_eq!(minute_counts(&snap, "api", T0, T0 + 60), vec![(2, false)]);
        assert_eq!(snap.counters.late, 1);
    }

    #[test]
    fn restart_keeps_history_and_marks_the_gap_missing() {
        let dir = tempfile::tempdir().unwrap();
        let now = T0 * 1_000_000;
        let mut s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), now);
        for m in 0..5u64 {
            for _ in 0..=m {
                s.ingest(rec("api", (T0 + m * 60) as f64 + 5.0, 200, 100));
            }
        }
        s.advance((T0 + 5 * 60 + 3) * 1_000_000);
        // One more call in a minute that never closes before the "crash".
        s.ingest(rec("api", (T0 + 5 * 60) as f64 + 10.0, 200, 100));
        drop(s);
        // Restart 10 minutes later.
        let later = (T0 + 15 * 60) * 1_000_000;
        let mut s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), later);
        s.advance(later + 63_000_000);
        let snap = s.snapshot(0);
        let got = minute_counts(&snap, "api", T0, T0 + 17 * 60);
        let mut want: Vec<(u64, bool)> = (1..=5).map(|c| (c, false)).collect();
        want.extend(std::iter::repeat_n((0, true), 10)); // down: missing, including the open minute
        want.push((0, false)); // up again, quiet: zero
        want.push((0, true)); // not closed yet
        assert_eq!(got, want);
        // Hours too.
        let h = snap.endpoint("api").unwrap().tiers[2].points(T0, T0 + 3600, 3600);
        assert!(h[0].missing, "the hour had not closed before the crash");
    }

    /// Regression (issue 16): after a restart, a query for the last minutes at a 60-s step
    /// chose the fresh 1-s tier (it "covered" the range: its ring had been filled with missing
    /// buckets up to the restart) and showed every minute before the restart as missing,
    /// although the minute tier loaded them from disk. Restarts at several offsets from the
    /// minute boundary, two endpoints, the series as `/admin/api/series` picks it.
    #[test]
    fn history_before_a_restart_is_shown_whatever_the_offset_from_the_minute() {
        for offset in [1u64, 3, 8, 15, 30, 45, 59] {
            let dir = tempfile::tempdir().unwrap();
            let minute = T0 + 120;
            let mut s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), T0 * 1_000_000);
            for k in 0..300u64 {
                s.ingest(rec("a", minute as f64 + (k % 50) as f64, 200, 100));
            }
            for k in 0..120u64 {
                s.ingest(rec("b", minute as f64 + (k % 50) as f64 + 0.5, 200, 100));
            }
            // The minute closes (close_after 2 s), SIGTERM `offset` s after the minute ended.
            let stop_s = minute + 60 + offset.max(3);
            s.advance(stop_s * 1_000_000);
            s.sync();
            drop(s);
            let up_s = stop_s + 1;
            let mut s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), up_s * 1_000_000);
            s.register(&[Arc::from("a"), Arc::from("b")]);
            s.advance((up_s + 3) * 1_000_000);
            let snap = s.snapshot(0);
            let now_s = up_s + 3;
            for (ep, want) in [("a", 300), ("b", 120)] {
                let e = snap.endpoint(ep).unwrap();
                let (from, to) = (now_s - 180, now_s + 120);
                let tier = e.tier_for(60, from, now_s).unwrap();
                let to = to.min(tier.next() * tier.step_s);
                let pts = tier.points(from, to, 60);
                let p = pts.iter().find(|p| p.t == minute).unwrap_or_else(|| panic!("offset {offset}: {pts:?}"));
                assert_eq!((p.count, p.missing), (want, false), "offset {offset} s, endpoint {ep}: {pts:?}");
            }
        }
    }

    /// Regression (issue 21, section 4): a restart in the middle of a minute made that minute a
    /// real value — a zero, or only the calls after the restart — although the process saw only
    /// part of it. Buckets a process did not observe from their start are missing, in every tier.
    #[test]
    fn a_restart_mid_minute_marks_the_partly_observed_buckets_missing() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), T0 * 1_000_000);
        s.register(&[Arc::from("quiet")]);
        for m in 0..3u64 {
            s.ingest(rec("api", (T0 + m * 60) as f64 + 5.0, 200, 100));
        }
        // Graceful stop 40 s into minute 3, as the historian thread does it.
        s.ingest(rec("api", (T0 + 180) as f64 + 30.0, 200, 100));
        s.advance((T0 + 220) * 1_000_000);
        s.sync();
        drop(s);
        // Restart 10 s later, in the same minute; calls resume.
        let up = (T0 + 230) * 1_000_000;
        let mut s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), up);
        s.register(&[Arc::from("quiet")]);
        s.ingest(rec("api", (T0 + 180) as f64 + 55.0, 200, 100));
        s.ingest(rec("api", (T0 + 240) as f64 + 5.0, 200, 100));
        s.advance((T0 + 303) * 1_000_000);
        let snap = s.snapshot(0);
        assert_eq!(
            minute_counts(&snap, "api", T0, T0 + 300),
            vec![(1, false), (1, false), (1, false), (0, true), (1, false)],
            "the minute of the restart is missing, not 1 call"
        );
        assert_eq!(
            minute_counts(&snap, "quiet", T0, T0 + 300),
            vec![(0, false), (0, false), (0, false), (0, true), (0, false)],
            "a quiet endpoint's restart minute is missing, not a real zero"
        );
        // The seconds after the restart were all observed: they are real.
        let secs = snap.endpoint("api").unwrap().tiers[0].points(T0 + 230, T0 + 240, 1);
        assert!(secs.iter().all(|p| !p.missing));
        // The hour holding the restart is incomplete too.
        s.advance((T0 + 3600 + 3) * 1_000_000);
        let snap = s.snapshot(0);
        let h = snap.endpoint("api").unwrap().tiers[2].points(T0, T0 + 3600, 3600);
        assert!(h[0].missing, "the hour of the restart was not fully observed");
    }

    #[test]
    fn recent_ring_is_bounded() {
        let mut s = Store::new(StoreConfig { recent_calls: 2000, ..cfg() }, None, T0 * 1_000_000);
        for i in 0..10_000 {
            s.ingest(rec("api", T0 as f64 + i as f64 / 1000.0, 200, 100));
        }
        let snap = s.snapshot(0);
        assert!((2000..2000 + CALL_CHUNK).contains(&snap.recent.len()));
        let newest = snap.recent.iter().next().unwrap().start_us;
        assert_eq!(newest, ((T0 as f64 + 9.999) * 1e6) as u64);
    }

    /// Regression (issue 20, finding 1): 65 KB paths were stored whole while the gauge counted
    /// a fixed size per call. Now the stored path is cut and the gauge counts its bytes.
    #[test]
    fn long_paths_are_bounded_and_the_gauge_counts_what_is_held() {
        let mut s = Store::new(StoreConfig { recent_calls: 5000, ..cfg() }, None, T0 * 1_000_000);
        let base = s.snapshot(0).recent.memory_bytes();
        let path = format!("/a/{}", "x".repeat(65_000));
        for i in 0..5000 {
            let mut r = rec("api", T0 as f64 + i as f64 / 1000.0, 200, 100);
            r.target = path.parse().unwrap();
            s.ingest(r);
        }
        let snap = s.snapshot(0);
        let held: usize = snap.recent.iter().map(|c| c.path().len()).sum();
        assert!(held <= 5000 * 260, "stored paths are cut: {held} bytes");
        let grew = snap.recent.memory_bytes() - base;
        assert!(s.memory_bytes() >= snap.recent.memory_bytes(), "the store's gauge includes the ring");
        // The gauge counts the strings (rounded to the allocator's 16 bytes) and the slots.
        // 5,000 calls fill four whole chunks of slots beyond the tail the empty ring had.
        let slots = (5000 / CALL_CHUNK) * CALL_CHUNK * std::mem::size_of::<StoredCall>();
        assert!(grew >= held + slots, "{grew} < {held} + {slots}");
        assert!(grew <= held + slots + 5000 * 48, "{grew} > {held} + {slots} + rounding");
    }

    /// Regression (issue 20, finding 7): one imported row in the year 2100 made every later live
    /// call "late" (20 GETs → late 20, series 0).
    #[test]
    fn a_future_dated_bucket_on_disk_does_not_stop_live_recording() {
        let dir = tempfile::tempdir().unwrap();
        let tiers = cfg().tiers;
        let year_2100 = 4_102_444_800u64;
        let rows: Vec<_> = tiers
            .iter()
            .enumerate()
            .filter(|(_, t)| t.persist)
            .map(|(ti, t)| (ti, Arc::from("api"), year_2100 / t.step_s, FullBucket { calls: 7, ..Default::default() }))
            .collect();
        assert!(!rows.is_empty());
        let mut disk = Disk::open(dir.path()).unwrap();
        disk.append(&tiers, rows).map_err(|(e, _)| e).unwrap();
        disk.sync();
        drop(disk);
        let mut s = Store::new(cfg(), Some(Disk::open(dir.path()).unwrap()), T0 * 1_000_000);
        assert!(s.counters().future_skipped > 0);
        for i in 0..20 {
            s.ingest(rec("api", T0 as f64 + 1.0 + i as f64 / 100.0, 200, 100));
        }
        s.advance((T0 + 125) * 1_000_000);
        let snap = s.snapshot((T0 + 125) * 1_000_000);
        assert_eq!(snap.counters.late, 0, "live calls are not late behind a future bucket");
        assert_eq!(minute_counts(&snap, "api", T0, T0 + 60), vec![(20, false)]);
    }
}
