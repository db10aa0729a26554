//! The on-disk log of closed buckets: append-only segment files per tier, one per 1,440
//! buckets (a day of minutes, 60 days of hours), each record framed with its length and a
//! CRC-32.
//!
//! Why not an embedded database: the data is append-only, time-ordered and read back whole at
//! start-up; retention deletes whole files. A framed log does exactly that with no compaction,
//! no write amplification and one `write` per closing batch. A crash leaves at most a torn last
//! record, which the CRC catches: it is skipped on load and cut off before appending again.
//!
//! Record payloads (varints): `1 id name…` defines an endpoint id within its segment file;
//! `2 id index calls 4xx 5xx timeouts bytes_in bytes_out latency_sum p50 p90 p99 max`.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::series::FullBucket;
use super::store::TierSpec;

/// Buckets per segment file.
pub const SEGMENT_BUCKETS: u64 = 1440;
const MAGIC: &[u8; 4] = b"PSH1";
const KIND_NAME: u8 = 1;
const KIND_BUCKET: u8 = 2;
/// Upper bound of one record, to reject garbage lengths without allocating them.
const MAX_RECORD: usize = 4096;

/// What loading found besides the data.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LoadReport {
    pub records: u64,
    /// Bytes cut off the end of files because the last record was torn or corrupt.
    pub torn_bytes: u64,
}

struct Segment {
    tier: usize,
    number: u64,
    file: File,
    /// Bytes known to be in the file: a failed write is cut back to this.
    len: u64,
    ids: HashMap<Arc<str>, u64>,
}

/// A closed bucket to write: tier position, endpoint, bucket index, contents.
pub type Row = (usize, Arc<str>, u64, FullBucket);

pub struct Disk {
    dir: PathBuf,
    open: Vec<Segment>,
    bytes: u64,
    pub report: LoadReport,
    last_retention_s: u64,
    /// Held by writers (`run`, `import`) for as long as the `Disk` lives.
    _lock: Option<DirLock>,
}

/// The lock file in a data directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive `flock` on a data directory's [`LOCK_FILE`], released when dropped (or when the
/// process dies, however it dies). The holder's pid is written into the file for the message
/// another process shows.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes the lock without waiting; `ErrorKind::WouldBlock` names the holder when another
    /// process (or another `Disk` in this one) has it.
    pub fn take(dir: &Path) -> io::Result<Self> {
        let path = dir.join(LOCK_FILE);
        let mut file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; no memory is passed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::WouldBlock {
                return Err(err);
            }
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let who = match holder.trim().parse::<u32>() {
                Ok(pid) => format!("prescale (pid {pid})"),
                Err(_) => "prescale".to_string(),
            };
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!("{} is in use by {who}: stop it first, or use another data_dir", dir.display()),
            ));
        }
        file.set_len(0)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        Ok(Self { _file: file })
    }
}

pub(crate) fn file_name(step_s: u64, number: u64) -> String {
    format!("step{step_s}-{number:010}.seg")
}

fn parse_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("step")?.strip_suffix(".seg")?;
    let (step, number) = rest.split_once('-')?;
    Some((step.parse().ok()?, number.parse().ok()?))
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(b: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= ((byte & 0x7f) as u64) << shift;
        if byte < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Appends one framed record (length, CRC-32, payload) to `out`.
pub fn frame(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Encodes one bucket record (for the importer and tests as well).
pub fn encode_bucket(id: u64, index: u64, f: &FullBucket) -> Vec<u8> {
    let mut p = vec![KIND_BUCKET];
    for v in [
        id,
        index,
        f.calls,
        f.e4,
        f.e5,
        f.timeouts,
        f.bytes_in,
        f.bytes_out,
        f.latency_sum_us,
        f.lat_us[0],
        f.lat_us[1],
        f.lat_us[2],
        f.lat_us[3],
    ] {
        put_varint(&mut p, v);
    }
    p
}

/// Decodes the records of one segment file, stopping at the first torn or corrupt one.
/// Returns the byte length of the valid prefix.
pub fn decode_segment(data: &[u8], mut each: impl FnMut(&str, u64, FullBucket)) -> usize {
    if data.len() < MAGIC.len() || &data[..4] != MAGIC {
        return 0;
    }
    let mut names: HashMap<u64, String> = HashMap::new();
    let mut pos = 4;
    while pos + 8 <= data.len() {
        let len = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(data[pos + 4..pos + 8].try_into().expect("4 bytes"));
        if len == 0 || len > MAX_RECORD || pos + 8 + len > data.len() {
            break;
        }
        let payload = &data[pos + 8..pos + 8 + len];
        if crc32fast::hash(payload) != crc {
            break;
        }
        let mut p = 1;
        match payload[0] {
            KIND_NAME => {
                let Some(id) = get_varint(payload, &mut p) else { break };
                let Ok(name) = std::str::from_utf8(&payload[p..]) else { break };
                names.insert(id, name.to_string());
            }
            KIND_BUCKET => {
                let mut v = [0u64; 13];
                if v.iter_mut().any(|x| match get_varint(payload, &mut p) {
                    Some(n) => {
                        *x = n;
                        false
                    }
                    None => true,
                }) {
                    break;
                }
                if let Some(name) = names.get(&v[0]) {
                    let f = FullBucket {
                        calls: v[2],
                        e4: v[3],
                        e5: v[4],
                        timeouts: v[5],
                        bytes_in: v[6],
                        bytes_out: v[7],
                        latency_sum_us: v[8],
                        lat_us: [v[9], v[10], v[11], v[12]],
                    };
                    each(name, v[1], f);
                }
            }
            _ => break,
        }
        pos += 8 + len;
    }
    pos
}

impl Disk {
    /// Opens (creating) a data directory to read it; see [`Disk::open_exclusive`] to write.
    pub fn open(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, false)
    }

    /// Opens a data directory for writing: one writer at a time (a running instance, or an
    /// import), enforced by a [`DirLock`] held as long as the `Disk`.
    pub fn open_exclusive(dir: &Path) -> io::Result<Self> {
        Self::open_with(dir, true)
    }

    fn open_with(dir: &Path, exclusive: bool) -> io::Result<Self> {
        // Every error names the directory: "Not a directory (os error 20)" alone does not say which.
        let named = |e: io::Error| {
            if e.kind() == io::ErrorKind::WouldBlock {
                e
            } else {
                io::Error::new(e.kind(), format!("{}: {e}", dir.display()))
            }
        };
        fs::create_dir_all(dir).map_err(named)?;
        let lock = if exclusive { Some(DirLock::take(dir).map_err(named)?) } else { None };
        let mut bytes = 0;
        for e in fs::read_dir(dir).map_err(named)? {
            let e = e.map_err(named)?;
            if parse_name(&e.file_name().to_string_lossy()).is_some() {
                bytes += e.metadata().map_err(named)?.len();
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            open: Vec::new(),
            bytes,
            report: LoadReport::default(),
            last_retention_s: 0,
            _lock: lock,
        })
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Segment numbers on disk for a tier, oldest first.
    fn segments(&self, step_s: u64) -> Vec<u64> {
        let mut v: Vec<u64> = fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| parse_name(&e.file_name().to_string_lossy()))
            .filter(|(s, _)| *s == step_s)
            .map(|(_, n)| n)
            .collect();
        v.sort_unstable();
        v
    }

    /// Reads tier `tier`'s buckets still within retention, calling `each(name, index, bucket)`
    /// in index order per endpoint. Torn tails are cut off so appends continue cleanly.
    pub fn load(&mut self, _tier: usize, spec: &TierSpec, now_s: u64, each: &mut dyn FnMut(Arc<str>, u64, FullBucket)) {
        let oldest = (now_s / spec.step_s).saturating_sub(spec.capacity() as u64);
        let mut names: HashMap<String, Arc<str>> = HashMap::new();
        for number in self.segments(spec.step_s) {
            if (number + 1) * SEGMENT_BUCKETS <= oldest {
                continue;
            }
            let path = self.dir.join(file_name(spec.step_s, number));
            let mut data = Vec::new();
            if File::open(&path).and_then(|mut f| f.read_to_end(&mut data)).is_err() {
                continue;
            }
            let mut rows = Vec::new();
            let valid = decode_segment(&data, |name, index, f| {
                let name = names.entry(name.to_string()).or_insert_with(|| Arc::from(name)).clone();
                rows.push((name, index, f));
            });
            if valid < data.len() {
                self.report.torn_bytes += (data.len() - valid) as u64;
                tracing::warn!(file = %path.display(), bytes = data.len() - valid, "torn or corrupt tail skipped");
                if let Ok(f) = OpenOptions::new().write(true).open(&path) {
                    let _ = f.set_len(valid.max(MAGIC.len()) as u64);
                }
                self.bytes = self.bytes.saturating_sub((data.len() - valid.max(MAGIC.len())) as u64);
            }
            self.report.records += rows.len() as u64;
            // Imported and live data may interleave within a file: order by endpoint, index.
            rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
            for (name, index, f) in rows {
                if index >= oldest {
                    each(name, index, f);
                }
            }
        }
    }

    fn segment(&mut self, tier: usize, step_s: u64, number: u64) -> io::Result<&mut Segment> {
        if let Some(i) = self.open.iter().position(|s| s.tier == tier && s.number == number) {
            return Ok(&mut self.open[i]);
        }
        // Keep at most the current segment per tier open.
        self.open.retain(|s| s.tier != tier || s.number > number);
        let path = self.dir.join(file_name(step_s, number));
        let mut file = OpenOptions::new().create(true).append(true).open(&path)?;
        let mut len = file.metadata()?.len();
        if len < MAGIC.len() as u64 {
            // New, or a header torn by a full disk: (re)write it whole.
            if len > 0 {
                file.set_len(0)?;
            }
            if let Err(e) = file.write_all(MAGIC) {
                if file.metadata().is_ok_and(|m| m.len() > 0) {
                    let _ = file.set_len(0);
                }
                return Err(e);
            }
            self.bytes += MAGIC.len() as u64 - len;
            len = MAGIC.len() as u64;
        }
        self.open.push(Segment { tier, number, file, len, ids: HashMap::new() });
        Ok(self.open.last_mut().expect("just pushed"))
    }

    /// Appends closed buckets `(tier, endpoint, index, bucket)`, one write per segment file.
    /// On failure (disk full, read-only, …) returns the first error and the rows not written;
    /// a file a write failed on is cut back to its last whole record, so nothing after it is
    /// lost when the rows are appended again later.
    pub fn append(&mut self, tiers: &[TierSpec], rows: Vec<Row>) -> Result<(), (io::Error, Vec<Row>)> {
        let mut by_file: Vec<((usize, u64), Vec<Row>)> = Vec::new();
        for r in rows {
            let key = (r.0, r.2 / SEGMENT_BUCKETS);
            match by_file.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => v.push(r),
                None => by_file.push((key, vec![r])),
            }
        }
        let mut error: Option<io::Error> = None;
        let mut failed: Vec<Row> = Vec::new();
        for ((tier, number), rows) in by_file {
            let step = tiers[tier].step_s;
            let seg = match self.segment(tier, step, number) {
                Ok(s) => s,
                Err(e) => {
                    error.get_or_insert(e);
                    failed.extend(rows);
                    continue;
                }
            };
            let mut buf = Vec::with_capacity(rows.len() * 32);
            for (_, name, index, f) in &rows {
                let next_id = seg.ids.len() as u64;
                let id = match seg.ids.get(name) {
                    Some(id) => *id,
                    None => {
                        let mut p = vec![KIND_NAME];
                        put_varint(&mut p, next_id);
                        p.extend_from_slice(name.as_bytes());
                        frame(&p, &mut buf);
                        seg.ids.insert(name.clone(), next_id);
                        next_id
                    }
                };
                frame(&encode_bucket(id, *index, f), &mut buf);
            }
            match seg.file.write_all(&buf) {
                Ok(()) => {
                    seg.len += buf.len() as u64;
                    self.bytes += buf.len() as u64;
                }
                Err(e) => {
                    // Part of the batch may be in the file: cut it back to the last whole
                    // record, and reopen next time (the name records written with it are gone).
                    let _ = seg.file.set_len(seg.len);
                    self.open.retain(|s| !(s.tier == tier && s.number == number));
                    error.get_or_insert(e);
                    failed.extend(rows);
                }
            }
        }
        match error {
            None => Ok(()),
            Some(e) => Err((e, failed)),
        }
    }

    /// Deletes segment files wholly older than each persisted tier's retention (checked at
    /// most once a minute).
    pub fn enforce_retention(&mut self, tiers: &[TierSpec], now_s: u64) {
        if now_s < self.last_retention_s + 60 {
            return;
        }
        self.last_retention_s = now_s;
        for spec in tiers.iter().filter(|t| t.persist) {
            let oldest = (now_s / spec.step_s).saturating_sub(spec.capacity() as u64);
            for number in self.segments(spec.step_s) {
                if (number + 1) * SEGMENT_BUCKETS <= oldest {
                    let path = self.dir.join(file_name(spec.step_s, number));
                    let len = fs::metadata(&path).map_or(0, |m| m.len());
                    if fs::remove_file(&path).is_ok() {
                        self.bytes = self.bytes.saturating_sub(len);
                    }
                }
            }
        }
    }

    pub fn sync(&mut self) {
        for s in &self.open {
            let _ = s.file.sync_data();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> TierSpec {
        TierSpec { step_s: 60, keep_s: 35 * 86_400, persist: true }
    }

    fn fb(calls: u64) -> FullBucket {
        FullBucket {
            calls,
            e4: 1,
            e5: 2,
            timeouts: 1,
            bytes_in: 10,
            bytes_out: 99,
            latency_sum_us: 5,
            lat_us: [1, 2, 3, 4],
        }
    }

    fn load_all(d: &mut Disk, now_s: u64) -> Vec<(String, u64, u64)> {
        let mut out = Vec::new();
        d.load(1, &spec(), now_s, &mut |n, i, f| out.push((n.to_string(), i, f.calls)));
        out
    }

    #[test]
    fn round_trip_across_segments_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let now_s = 30_000_000 * 60;
        let base = now_s / 60 - 2000;
        let mut d = Disk::open(dir.path()).unwrap();
        let rows: Vec<_> = (0..2000)
            .map(|i| (1usize, Arc::<str>::from(if i % 2 == 0 { "a" } else { "b" }), base + i, fb(i)))
            .collect();
        let tiers = vec![TierSpec { step_s: 1, keep_s: 60, persist: false }, spec()];
        d.append(&tiers, rows.clone()).unwrap();
        drop(d);
        let mut d = Disk::open(dir.path()).unwrap();
        let got = load_all(&mut d, now_s);
        assert_eq!(got.len(), 2000);
        assert!(got.iter().all(|(n, i, c)| *c == i - base && (n == "a") == ((i - base) % 2 == 0)));
        assert!(d.bytes() > 0);
        // Bytes per endpoint-minute on disk, for the README.
        let per = d.bytes() as f64 / 2000.0;
        assert!(per < 40.0, "{per} bytes per bucket");
    }

    #[test]
    fn torn_tail_is_skipped_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let now_s = 30_000_000 * 60;
        let base = now_s / 60 - 10;
        let tiers = vec![spec(), spec()];
        let mut d = Disk::open(dir.path()).unwrap();
        let rows: Vec<_> = (0..5).map(|i| (1usize, Arc::<str>::from("a"), base + i, fb(7))).collect();
        d.append(&tiers, rows.clone()).unwrap();
        drop(d);
        let path = fs::read_dir(dir.path()).unwrap().next().unwrap().unwrap().path();
        let mut data = fs::read(&path).unwrap();
        let full_len = data.len();
        data.truncate(full_len - 3); // a torn last write
        fs::write(&path, &data).unwrap();
        let mut d = Disk::open(dir.path()).unwrap();
        assert_eq!(load_all(&mut d, now_s).len(), 4);
        assert!(d.report.torn_bytes > 0);
        // Appending after the trim yields a clean file again.
        d.append(&tiers, vec![(1, Arc::from("a"), base + 6, fb(9))]).unwrap();
        drop(d);
        let mut d = Disk::open(dir.path()).unwrap();
        let got = load_all(&mut d, now_s);
        assert_eq!(got.iter().map(|g| g.1 - base).collect::<Vec<_>>(), vec![0, 1, 2, 3, 6]);
        // A flipped byte in the middle stops the load at that record, never panics.
        let mut data = fs::read(&path).unwrap();
        data[20] ^= 0xff;
        fs::write(&path, &data).unwrap();
        let mut d = Disk::open(dir.path()).unwrap();
        assert!(load_all(&mut d, now_s).len() < 5);
    }

    #[test]
    fn retention_deletes_old_segments() {
        let dir = tempfile::tempdir().unwrap();
        let tiers = vec![TierSpec { step_s: 60, keep_s: 2 * 86_400, persist: true }];
        let mut d = Disk::open(dir.path()).unwrap();
        let day = SEGMENT_BUCKETS;
        let rows: Vec<_> = (0..5).map(|k| (0usize, Arc::<str>::from("a"), 100 * day + k * day, fb(1))).collect();
        d.append(&tiers, rows.clone()).unwrap();
        assert_eq!(d.segments(60).len(), 5);
        d.enforce_retention(&tiers, (104 * day + 10) * 60);
        assert_eq!(d.segments(60), vec![102, 103, 104]);
    }

    #[test]
    fn decoder_survives_garbage() {
        for seed in 0..200u64 {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut data = MAGIC.to_vec();
            data.extend((0..rng.usize(0..300)).map(|_| rng.u8(..)));
            decode_segment(&data, |_, _, _| {});
        }
    }
}
