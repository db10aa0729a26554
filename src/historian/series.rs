//! Per-endpoint time series at several resolutions ("tiers"), each a bounded ring.
//!
//! A closed bucket takes 16 bytes in memory: calls, 4xx, 5xx and four latency quantiles
//! (p50, p90, p99, max) log-encoded in 16 bits each (0.04 % relative precision). Error counts
//! above 65,534 per bucket live exactly in a small overflow map. Bytes, timeouts and the latency
//! sum are kept while a bucket is open and written to disk when it closes, not in memory.
//!
//! Rings are made of 256-bucket chunks behind `Arc`, so a snapshot for readers shares every
//! full chunk and copies only the partial tail: readers never block the ingest thread.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde::Serialize;

/// Buckets per shared chunk.
pub const CHUNK: usize = 256;
/// `calls` value marking a bucket when prescale was not recording.
const MISSING: u32 = u32::MAX;
const OVERFLOW: u16 = u16::MAX;

/// Latency code: `round(ln(1 + µs) · SCALE)`, fits 1 µs … 3.7 h in 16 bits.
const SCALE: f64 = 2900.0;

pub fn encode_latency(us: u64) -> u16 {
    ((1.0 + us as f64).ln() * SCALE).round().min(u16::MAX as f64) as u16
}

pub fn decode_latency(code: u16) -> u64 {
    // A table of all 65,536 values (512 KiB, built once) turns queries' exp() into a load.
    static TABLE: std::sync::OnceLock<Vec<u64>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| (0..=u16::MAX).map(|c| ((c as f64 / SCALE).exp() - 1.0).round() as u64).collect())
        [code as usize]
}

/// A closed bucket as kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bucket {
    calls: u32,
    e4: u16,
    e5: u16,
    lat: [u16; 4],
}

impl Bucket {
    pub const MISSING: Bucket = Bucket { calls: MISSING, e4: 0, e5: 0, lat: [0; 4] };
    pub const ZERO: Bucket = Bucket { calls: 0, e4: 0, e5: 0, lat: [0; 4] };

    pub fn is_missing(&self) -> bool {
        self.calls == MISSING
    }
}

/// Everything known about a closed bucket (what is written to disk).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FullBucket {
    pub calls: u64,
    pub e4: u64,
    pub e5: u64,
    pub timeouts: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency_sum_us: u64,
    /// p50, p90, p99, max in microseconds.
    pub lat_us: [u64; 4],
}

/// A bucket as queries return it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    /// Bucket start, seconds since the epoch.
    pub t: u64,
    pub count: u64,
    pub errors: u64,
    pub errors_4xx: u64,
    pub errors_5xx: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// True where prescale was not recording (not the same as zero calls).
    pub missing: bool,
}

/// One resolution of one endpoint's series: a ring of buckets `step_s` seconds wide.
#[derive(Debug, Clone)]
pub struct Tier {
    pub step_s: u64,
    capacity: usize,
    /// Bucket index (`t / step_s`) of the first slot of `chunks[0]`.
    first: u64,
    chunks: VecDeque<Arc<[Bucket; CHUNK]>>,
    tail: Vec<Bucket>,
    overflow: Arc<HashMap<u64, (u32, u32)>>,
}

impl Tier {
    pub fn new(step_s: u64, capacity: usize) -> Self {
        Self {
            step_s,
            capacity: capacity.max(1),
            first: 0,
            chunks: VecDeque::new(),
            tail: Vec::with_capacity(CHUNK),
            overflow: Arc::default(),
        }
    }

    fn len(&self) -> usize {
        self.chunks.len() * CHUNK + self.tail.len()
    }

    /// Index of the first slot held (for coverage checks).
    pub fn first_index(&self) -> u64 {
        self.first
    }

    /// Index of the next bucket to append (`first` when empty).
    pub fn next(&self) -> u64 {
        self.first + self.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends buckets up to (excluding) `index` filled with `fill`; starts the ring there if
    /// it is empty.
    pub fn fill_to(&mut self, index: u64, fill: Bucket) {
        if self.is_empty() {
            self.first = index - index % CHUNK as u64;
            // Align chunks to CHUNK so a bucket's chunk is `index / CHUNK`; slots before the
            // real start are missing.
            while self.next() < index {
                self.append(Bucket::MISSING);
            }
            return;
        }
        // A long gap (e.g. after months offline) would only be evicted again: skip ahead.
        if index > self.next() + self.capacity as u64 + CHUNK as u64 {
            self.chunks.clear();
            self.tail.clear();
            self.first = index - index % CHUNK as u64;
            while self.next() < index {
                self.append(Bucket::MISSING);
            }
            return;
        }
        while self.next() < index {
            self.append(fill);
        }
    }

    fn append(&mut self, b: Bucket) {
        self.tail.push(b);
        if self.tail.len() == CHUNK {
            let chunk: [Bucket; CHUNK] = self.tail.as_slice().try_into().expect("tail holds one chunk");
            self.chunks.push_back(Arc::new(chunk));
            self.tail.clear();
            while self.len() > self.capacity + CHUNK {
                self.chunks.pop_front();
                let dropped_before = self.first + CHUNK as u64;
                if !self.overflow.is_empty() {
                    Arc::make_mut(&mut self.overflow).retain(|i, _| *i >= dropped_before);
                }
                self.first = dropped_before;
            }
        }
    }

    /// Stores the closed bucket `index`; gaps before it are filled with `gap`. A bucket older
    /// than the ring's end replaces the one there (counts only grow: see `add_late`).
    pub fn put(&mut self, index: u64, full: &FullBucket, gap: Bucket) {
        let b = self.compact(index, full);
        if self.is_empty() || index >= self.next() {
            self.fill_to(index, gap);
            self.append(b);
        } else if index >= self.first {
            self.set(index, b);
        }
    }

    fn compact(&mut self, index: u64, f: &FullBucket) -> Bucket {
        let small = |v: u64| if v >= OVERFLOW as u64 { OVERFLOW } else { v as u16 };
        let (e4, e5) = (small(f.e4), small(f.e5));
        if e4 == OVERFLOW || e5 == OVERFLOW {
            Arc::make_mut(&mut self.overflow)
                .insert(index, (f.e4.min(u32::MAX as u64) as u32, f.e5.min(u32::MAX as u64) as u32));
        }
        Bucket { calls: f.calls.min(MISSING as u64 - 1) as u32, e4, e5, lat: f.lat_us.map(encode_latency) }
    }

    fn set(&mut self, index: u64, b: Bucket) {
        let pos = (index - self.first) as usize;
        let (c, i) = (pos / CHUNK, pos % CHUNK);
        if c < self.chunks.len() {
            Arc::make_mut(&mut self.chunks[c])[i] = b;
        } else if let Some(slot) = self.tail.get_mut(i) {
            *slot = b;
        }
    }

    /// Adds another instance's closed bucket `index` to this one (the fleet series): counts and
    /// errors summed; p50 call-weighted, p90/p99/max the larger (an upper bound, as `points`
    /// aggregates). A missing bucket takes the other's values; a bucket outside the ring is
    /// left alone (the caller holds it until the bucket has closed here).
    pub fn merge(&mut self, index: u64, other: &FullBucket) -> bool {
        let Some(b) = self.get(index) else { return false };
        if b.is_missing() {
            let b = self.compact(index, other);
            self.set(index, b);
            return true;
        }
        let (e4, e5) = self.errors(index, &b);
        let mine = b.calls as u64;
        let calls = mine + other.calls;
        let lat = |i: usize| decode_latency(b.lat[i]);
        let p50 = (lat(0) * mine + other.lat_us[0] * other.calls).checked_div(calls).unwrap_or(0);
        let full = FullBucket {
            calls,
            e4: e4 + other.e4,
            e5: e5 + other.e5,
            lat_us: [p50, lat(1).max(other.lat_us[1]), lat(2).max(other.lat_us[2]), lat(3).max(other.lat_us[3])],
            ..Default::default()
        };
        let nb = self.compact(index, &full);
        self.set(index, nb);
        true
    }

    /// Adds a late call (its bucket had already closed) to the counts; quantiles stay.
    pub fn add_late(&mut self, index: u64, status: u16) {
        if let Some(mut b) = self.get(index).filter(|b| !b.is_missing()) {
            b.calls = b.calls.saturating_add(1).min(MISSING - 1);
            let (mut e4, mut e5) = self.errors(index, &b);
            match status {
                400..=499 => e4 += 1,
                500.. => e5 += 1,
                _ => {}
            }
            let full = FullBucket { calls: b.calls as u64, e4, e5, ..Default::default() };
            let mut nb = self.compact(index, &full);
            nb.lat = b.lat;
            self.set(index, nb);
        }
    }

    fn errors(&self, index: u64, b: &Bucket) -> (u64, u64) {
        if (b.e4 == OVERFLOW || b.e5 == OVERFLOW)
            && let Some((e4, e5)) = self.overflow.get(&index)
        {
            return (*e4 as u64, *e5 as u64);
        }
        (b.e4 as u64, b.e5 as u64)
    }

    pub fn get(&self, index: u64) -> Option<Bucket> {
        if index < self.first || index >= self.next() {
            return None;
        }
        let pos = (index - self.first) as usize;
        let (c, i) = (pos / CHUNK, pos % CHUNK);
        Some(if c < self.chunks.len() { self.chunks[c][i] } else { self.tail[i] })
    }

    /// A read-only copy sharing every full chunk.
    pub fn snapshot(&self) -> Tier {
        self.clone()
    }

    /// Start (seconds) of the first bucket at or after `from_s` and before `to_s` that holds
    /// data (is not missing), if the ring still has one.
    pub fn first_present(&self, from_s: u64, to_s: u64) -> Option<u64> {
        let lo = (from_s / self.step_s).max(self.first_index());
        let hi = to_s.div_ceil(self.step_s).min(self.next());
        (lo..hi).find(|&i| self.get(i).is_some_and(|b| !b.is_missing())).map(|i| i * self.step_s)
    }

    /// Points for buckets starting in `[from_s, to_s)`, aggregated to `step_s` (a multiple of
    /// this tier's step): counts are summed; p50 is the call-weighted mean of the parts' p50s,
    /// p90/p99/max the largest part's (an upper bound, exact when one part holds the calls).
    pub fn points(&self, from_s: u64, to_s: u64, step_s: u64) -> Vec<Point> {
        let k = (step_s / self.step_s).max(1);
        let out_step = k * self.step_s;
        let start = from_s / out_step * out_step;
        let mut out = Vec::new();
        let mut t = start;
        while t < to_s {
            let mut p = Point {
                t,
                count: 0,
                errors: 0,
                errors_4xx: 0,
                errors_5xx: 0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                max_ms: 0.0,
                missing: true,
            };
            let mut p50_weighted = 0.0;
            // Only the buckets the ring holds: a huge step must not mean a huge loop.
            let lo = (t / self.step_s).max(self.first_index());
            let hi = (t / self.step_s).saturating_add(k).min(self.next());
            for index in lo..hi {
                let Some(b) = self.get(index).filter(|b| !b.is_missing()) else { continue };
                p.missing = false;
                let (e4, e5) = self.errors(index, &b);
                p.count += b.calls as u64;
                p.errors_4xx += e4;
                p.errors_5xx += e5;
                let ms = |c: u16| decode_latency(c) as f64 / 1000.0;
                if b.calls > 0 {
                    p50_weighted += ms(b.lat[0]) * b.calls as f64;
                    p.p90_ms = p.p90_ms.max(ms(b.lat[1]));
                    p.p99_ms = p.p99_ms.max(ms(b.lat[2]));
                    p.max_ms = p.max_ms.max(ms(b.lat[3]));
                }
            }
            p.errors = p.errors_4xx + p.errors_5xx;
            if p.count > 0 {
                p.p50_ms = p50_weighted / p.count as f64;
            }
            out.push(p);
            match t.checked_add(out_step) {
                Some(next) => t = next,
                None => break,
            }
        }
        out
    }

    /// Bytes this ring holds in memory (chunks counted once even when shared).
    pub fn memory_bytes(&self) -> usize {
        (self.chunks.len() * CHUNK + self.tail.capacity()) * std::mem::size_of::<Bucket>() + self.overflow.len() * 24
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(calls: u64, e4: u64, e5: u64, p50: u64) -> FullBucket {
        FullBucket { calls, e4, e5, lat_us: [p50, p50 * 2, p50 * 3, p50 * 4], ..Default::default() }
    }

    #[test]
    fn bucket_is_16_bytes() {
        assert_eq!(std::mem::size_of::<Bucket>(), 16);
    }

    #[test]
    fn latency_code_precision() {
        for us in [0u64, 1, 7, 250, 1_000, 12_345, 1_000_000, 3_600_000_000] {
            let back = decode_latency(encode_latency(us));
            assert!((back as f64 - us as f64).abs() <= 1.0 + us as f64 * 0.0004, "{us} → {back}");
        }
    }

    #[test]
    fn ring_keeps_capacity_and_marks_gaps() {
        let mut t = Tier::new(60, 1000);
        t.put(10_000, &full(5, 1, 2, 1000), Bucket::ZERO);
        t.put(10_003, &full(7, 0, 0, 2000), Bucket::ZERO);
        let pts = t.points(10_000 * 60, 10_005 * 60, 60);
        assert_eq!(pts.iter().map(|p| p.count).collect::<Vec<_>>(), vec![5, 0, 0, 7, 0]);
        assert_eq!(pts.iter().map(|p| p.missing).collect::<Vec<_>>(), vec![false, false, false, false, true]);
        assert_eq!(pts[0].errors, 3);
        assert!((pts[0].p50_ms - 1.0).abs() < 0.01);
        // Slots before the first bucket are missing, not zero.
        assert!(t.points(9_999 * 60, 10_000 * 60, 60)[0].missing);
        // Push far more than capacity: memory stays bounded, old data goes.
        for i in 0..5000 {
            t.put(10_004 + i, &full(1, 0, 0, 10), Bucket::ZERO);
        }
        assert!(t.len() <= 1000 + CHUNK);
        assert!(t.get(10_000).is_none());
        assert_eq!(t.get(15_003).unwrap().calls, 1);
    }

    #[test]
    fn aggregation_and_overflowing_errors_are_exact() {
        let mut t = Tier::new(60, 10_000);
        t.put(0, &full(100_000, 70_000, 5, 100), Bucket::ZERO);
        t.put(1, &full(10, 0, 0, 300), Bucket::ZERO);
        let p = t.points(0, 120, 120);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].count, 100_010);
        assert_eq!(p[0].errors_4xx, 70_000);
        assert_eq!(p[0].errors_5xx, 5);
        assert!((p[0].p99_ms - 0.9).abs() < 0.01);
        t.add_late(1, 503);
        assert_eq!(t.points(60, 120, 60)[0].count, 11);
        assert_eq!(t.points(60, 120, 60)[0].errors_5xx, 1);
    }

    #[test]
    fn snapshots_share_chunks() {
        let mut t = Tier::new(1, 10_000);
        for i in 0..1000 {
            t.put(i, &full(1, 0, 0, 1), Bucket::ZERO);
        }
        let snap = t.snapshot();
        assert!(Arc::ptr_eq(&snap.chunks[0], &t.chunks[0]));
        // A late update copies only the chunk it touches; the snapshot keeps the old value.
        t.add_late(5, 200);
        assert_eq!(snap.get(5).unwrap().calls, 1);
        assert_eq!(t.get(5).unwrap().calls, 2);
        assert!(Arc::ptr_eq(&snap.chunks[1], &t.chunks[1]));
    }
}
