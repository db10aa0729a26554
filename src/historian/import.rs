//! Cold start: load history from a `timestamp,count` CSV (epoch seconds, ISO-8601 or the
//! access-log time format) or an nginx/Apache access log (Common or Combined Log Format) into
//! the data directory, so a new deployment can forecast from day one. Malformed lines are
//! reported with their line numbers (the first [`BAD_LINES_KEPT`], each cut to
//! [`BAD_LINE_ECHO`] bytes, and a count of all). Rows dated after [`ImportOptions::latest_s`]
//! are bad lines: a future bucket would sit after every live call; rows before
//! [`ImportOptions::oldest_s`] would be deleted by retention at the next start. Any of these
//! makes [`import`] write nothing unless [`ImportOptions::skip_bad`]. Writing takes the data
//! directory's lock, so an import into a running instance's directory is refused.

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use super::disk::Disk;
use super::series::FullBucket;
use super::store::TierSpec;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    AccessLog,
}

/// Bad lines listed at most (all are counted).
pub const BAD_LINES_KEPT: usize = 100;
/// Bytes of a problem (with the line it quotes) kept.
pub const BAD_LINE_ECHO: usize = 160;

/// How to read an input.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions<'a> {
    /// CSV or access log; detected from the first line when absent.
    pub format: Option<Format>,
    /// Only access-log requests whose path starts with this.
    pub path_prefix: Option<&'a str>,
    /// Move an old trace forward by whole weeks to end within the week before this second.
    pub shift_to_s: Option<u64>,
    /// Rows after this second (after any shift) are bad lines; `None` accepts any date.
    pub latest_s: Option<u64>,
    /// Rows before this second (after any shift) would be deleted by retention at the next
    /// start: they are counted in [`ImportReport::expired`], not imported.
    pub oldest_s: Option<u64>,
    /// Write the good rows even when some lines were bad or expired; without it such an
    /// import writes nothing.
    pub skip_bad: bool,
}

/// How far ahead of now an imported row may be (clocks differ a little).
pub const FUTURE_TOLERANCE_S: u64 = 300;

/// What an import did.
#[derive(Debug, Default)]
pub struct ImportReport {
    pub lines: u64,
    pub calls: u64,
    /// `(line number, problem)` for the first [`BAD_LINES_KEPT`] lines that were skipped, each
    /// problem cut to [`BAD_LINE_ECHO`] bytes.
    pub bad_lines: Vec<(u64, String)>,
    /// Every line skipped.
    pub bad_count: u64,
    pub buckets_written: u64,
    pub first_s: Option<u64>,
    pub last_s: Option<u64>,
    /// Spacing of the CSV rows, seconds.
    pub csv_step_s: Option<u64>,
    /// Rows older than the history kept (`oldest_s`), and the first line holding one.
    pub expired: u64,
    pub expired_line: Option<u64>,
    /// False when problems stopped the import before anything was written.
    pub written: bool,
}

impl ImportReport {
    /// Lines that were not imported, for whatever reason.
    pub fn skipped(&self) -> u64 {
        self.bad_count + self.expired
    }
}

/// Guesses the format from the first non-empty line.
pub fn detect(first_line: &str) -> Format {
    if first_line.contains('[') && first_line.contains('"') { Format::AccessLog } else { Format::Csv }
}

/// One observation: `count` calls during `[t, t + span)`.
struct Obs {
    t: u64,
    span: u64,
    calls: u64,
    e4: u64,
    e5: u64,
    bytes_out: u64,
    /// Where it came from, for a bad-line report.
    line: u64,
}

impl ImportReport {
    fn bad(&mut self, line: u64, mut problem: String) {
        self.bad_count += 1;
        if self.bad_lines.len() < BAD_LINES_KEPT {
            super::record::truncate_marked(&mut problem, BAD_LINE_ECHO);
            self.bad_lines.push((line, problem));
        }
    }
}

/// Why a line, a time or a recorded history was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ImportError {
    #[error("expected `timestamp,count`, got {0:?}")]
    NotARow(String),
    #[error("count {0:?} is not a non-negative integer")]
    BadCount(String),
    #[error(
        "cannot read {0:?} as a time (epoch seconds, ISO-8601 such as 2024-01-15T08:00:00Z, or 15/Jan/2024:08:00:00 +0000)"
    )]
    BadTime(String),
    #[error("timestamp {0} is after the year 9999 (milliseconds? the column is read as seconds)")]
    Milliseconds(u64),
    #[error("{0:?} is after the year 9999")]
    TooLate(String),
    #[error("{0}")]
    LogLine(&'static str),
    #[error("bad timestamp {0:?}")]
    LogTime(String),
    #[error("{}: not a directory", .0.display())]
    NotADirectory(std::path::PathBuf),
    #[error("{}: {message}", dir.display())]
    Disk { dir: std::path::PathBuf, message: String },
    #[error("no 1-minute history for endpoint {endpoint:?} in {}; recorded: {known:?}", dir.display())]
    NoHistory { endpoint: String, dir: std::path::PathBuf, known: Vec<String> },
}

/// Imports `input` for `endpoint` into every persisted tier under `data_dir`.
pub fn import(
    input: &Path,
    endpoint: &str,
    data_dir: &Path,
    tiers: &[TierSpec],
    opts: &ImportOptions,
) -> io::Result<ImportReport> {
    // Lock first: an import into a running instance's directory would be invisible to it.
    let mut disk = Disk::open_exclusive(data_dir)?;
    let file = std::fs::File::open(input).map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", input.display())))?;
    let (rows, mut report) = to_rows(io::BufReader::new(file), endpoint, tiers, opts)?;
    if report.skipped() > 0 && !opts.skip_bad {
        return Ok(report);
    }
    disk.append(tiers, rows).map_err(|(e, _)| e)?;
    disk.sync();
    report.written = true;
    Ok(report)
}

/// Parses `input` (CSV or access log) into the closed buckets of every persisted tier, without
/// touching the disk: what `import` writes (and what the importer fuzz target exercises).
pub fn to_rows(
    input: impl io::BufRead,
    endpoint: &str,
    tiers: &[TierSpec],
    opts: &ImportOptions,
) -> io::Result<(Vec<super::disk::Row>, ImportReport)> {
    let ImportOptions { format, path_prefix, shift_to_s, latest_s, oldest_s, skip_bad: _ } = *opts;
    // Lines as bytes: one with invalid UTF-8 is a bad line, not the end of the import.
    let mut lines = input.split(b'\n');
    let mut report = ImportReport::default();
    let mut obs = Vec::new();
    let mut fmt = format;
    let mut line_no = 0u64;
    let (mut prev_row, mut adjacent_step): (Option<(u64, u64)>, Option<u64>) = (None, None);
    while let Some(line) = lines.next().transpose()? {
        line_no += 1;
        let line = String::from_utf8_lossy(&line);
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let f = *fmt.get_or_insert_with(|| detect(line));
        report.lines += 1;
        match f {
            Format::Csv => match parse_csv_row(line, report.lines == 1) {
                Ok(Some((t, c))) => {
                    // The row spacing is read from rows on adjacent lines, so a malformed row
                    // in between does not look like a wider step.
                    if let Some((prev_line, prev_t)) = prev_row
                        && prev_line + 1 == line_no
                        && t > prev_t
                    {
                        adjacent_step = Some(adjacent_step.map_or(t - prev_t, |s: u64| s.min(t - prev_t)));
                    }
                    prev_row = Some((line_no, t));
                    obs.push(Obs { t, span: 0, calls: c, e4: 0, e5: 0, bytes_out: 0, line: line_no })
                }
                Ok(None) => {} // header
                Err(e) => report.bad(line_no, e.to_string()),
            },
            Format::AccessLog => match parse_clf(line) {
                Ok(l) => {
                    if path_prefix.is_some_and(|p| !l.path.starts_with(p)) {
                        continue;
                    }
                    obs.push(Obs {
                        t: l.t,
                        span: 1,
                        calls: 1,
                        e4: (400..500).contains(&l.status) as u64,
                        e5: (l.status >= 500) as u64,
                        bytes_out: l.bytes,
                        line: line_no,
                    })
                }
                Err(e) => report.bad(line_no, e.to_string()),
            },
        }
    }
    if fmt == Some(Format::Csv) {
        obs.sort_by_key(|o| o.t);
        let step =
            adjacent_step.or_else(|| obs.windows(2).map(|w| w[1].t - w[0].t).filter(|d| *d > 0).min()).unwrap_or(60);
        report.csv_step_s = Some(step);
        for o in &mut obs {
            o.span = step;
        }
    }
    // Move an old trace forward by whole weeks (keeping its daily and weekly phase) so that it
    // ends within the week before `shift_to_s`.
    if let (Some(now), Some(last)) = (shift_to_s, obs.iter().map(|o| o.t + o.span.max(1)).max()) {
        const WEEK: u64 = 7 * 86_400;
        let weeks = now.saturating_sub(last) / WEEK;
        for o in &mut obs {
            o.t += weeks * WEEK;
        }
    }
    if let Some(latest) = latest_s {
        let (keep, future): (Vec<Obs>, Vec<Obs>) = obs.into_iter().partition(|o| o.t <= latest);
        for o in future {
            report.bad(
                o.line,
                format!(
                    "dated {} s after now: future rows are refused (--allow-future)",
                    o.t - latest + FUTURE_TOLERANCE_S
                ),
            );
        }
        obs = keep;
    }
    if let Some(oldest) = oldest_s {
        let (keep, old): (Vec<Obs>, Vec<Obs>) = obs.into_iter().partition(|o| o.t + o.span.max(1) > oldest);
        report.expired = old.len() as u64;
        report.expired_line = old.iter().map(|o| o.line).min();
        obs = keep;
    }
    report.calls = obs.iter().fold(0u64, |a, o| a.saturating_add(o.calls));
    report.first_s = obs.iter().map(|o| o.t).min();
    report.last_s = obs.iter().map(|o| o.t + o.span.max(1) - 1).max();

    let name: Arc<str> = Arc::from(endpoint);
    let mut rows = Vec::new();
    for (ti, spec) in tiers.iter().enumerate().filter(|(_, t)| t.persist) {
        // Only what the tier keeps, counted back from the input's last second: older buckets
        // would be dropped on load anyway (and a far-off timestamp must not mean a huge loop).
        let floor = (report.last_s.unwrap_or(0) / spec.step_s).saturating_sub(spec.capacity() as u64);
        let mut buckets: BTreeMap<u64, FullBucket> = BTreeMap::new();
        for o in &obs {
            spread(o, spec.step_s, floor, &mut buckets);
        }
        // An access log covers its span continuously: minutes without lines are zeros.
        if fmt == Some(Format::AccessLog)
            && let (Some(&a), Some(&b)) = (buckets.keys().next(), buckets.keys().next_back())
        {
            for i in a..=b {
                buckets.entry(i).or_default();
            }
        }
        report.buckets_written += buckets.len() as u64;
        rows.extend(buckets.into_iter().map(|(i, f)| (ti, name.clone(), i, f)));
    }
    Ok((rows, report))
}

/// Adds an observation to the buckets of width `step`: whole into the bucket containing it
/// when the bucket is at least as wide, else split evenly over the buckets it spans (the
/// remainder going to the first ones), so counts stay exact integers.
/// Buckets before `floor` are skipped.
fn spread(o: &Obs, step: u64, floor: u64, out: &mut BTreeMap<u64, FullBucket>) {
    let parts = (o.span / step).max(1);
    let first = o.t / step;
    for k in floor.saturating_sub(first)..parts {
        let share = |v: u64| v / parts + u64::from(k < v % parts);
        let b = out.entry(first + k).or_default();
        b.calls = b.calls.saturating_add(share(o.calls));
        b.e4 = b.e4.saturating_add(share(o.e4));
        b.e5 = b.e5.saturating_add(share(o.e5));
        b.bytes_out = b.bytes_out.saturating_add(share(o.bytes_out));
    }
}

/// The last second importers accept (9999-12-31T23:59:59Z): beyond it a timestamp is a typo.
const MAX_TIMESTAMP: u64 = 253_402_300_799;

/// `timestamp,count`: the timestamp in epoch seconds, ISO-8601 or the access-log time format
/// (see [`parse_time`]), the count a non-negative integer. `Ok(None)` for a header, which only
/// the first line may be: a word later on is a bad line, not a second header.
fn parse_csv_row(line: &str, first: bool) -> Result<Option<(u64, u64)>, ImportError> {
    let mut it = line.split(',').map(str::trim);
    let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
        return Err(ImportError::NotARow(line.to_string()));
    };
    if first && !a.is_empty() && a.chars().all(|c| c.is_ascii_alphabetic() || c == '_' || c == ' ') {
        return Ok(None);
    }
    let t = parse_time(a)?;
    match b.parse::<f64>() {
        Ok(c) if c >= 0.0 && c.fract() == 0.0 && c < 1e15 => Ok(Some((t, c as u64))),
        _ => Err(ImportError::BadCount(b.to_string())),
    }
}

/// A timestamp as people's exports write it: epoch seconds (`1700000000`, `1700000000.25`),
/// ISO-8601 / RFC 3339 (`2024-01-15T08:00:00Z`, `…T08:00:00.5+02:00`, `2024-01-15 08:00:00`
/// taken as UTC, `2024-01-15`), or the access-log format (`15/Jan/2024:08:00:00 +0000`).
pub fn parse_time(s: &str) -> Result<u64, ImportError> {
    let s = s.trim();
    let bad = || ImportError::BadTime(s.to_string());
    let t = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs = s.split('.').next().unwrap_or("");
        let t: u64 = secs.parse().map_err(|_| bad())?;
        if s.matches('.').count() > 1 {
            return Err(bad());
        }
        if t > MAX_TIMESTAMP {
            return Err(ImportError::Milliseconds(t));
        }
        t
    } else if s.contains('/') {
        parse_clf_time(s).ok_or_else(bad)?
    } else {
        parse_iso(s).ok_or_else(bad)?
    };
    if t > MAX_TIMESTAMP { Err(ImportError::TooLate(s.to_string())) } else { Ok(t) }
}

/// `YYYY-MM-DD`, then optionally `T` or a space, `HH:MM[:SS[.fraction]]` and `Z`, `±HH:MM`,
/// `±HHMM` or `±HH` (no zone: UTC). Fractions are cut to the second.
fn parse_iso(s: &str) -> Option<u64> {
    let num = |t: &str| -> Option<i64> { t.bytes().all(|b| b.is_ascii_digit()).then(|| t.parse().ok()).flatten() };
    let (date, time) = match s.find(['T', 't', ' ']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (y, mo, da) = (d.next()?, d.next()?, d.next()?);
    if d.next().is_some() || y.len() != 4 || mo.len() != 2 || da.len() != 2 {
        return None;
    }
    let (year, month, day) = (num(y)?, num(mo)?, num(da)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    if let Some(time) = time {
        let zone_at = time.find(['Z', 'z', '+', '-']).unwrap_or(time.len());
        let (clock, zone) = time.split_at(zone_at);
        let mut c = clock.split(':');
        let (h, mi) = (num(c.next()?)?, num(c.next()?)?);
        let se = match c.next() {
            Some(sec) => num(sec.split(['.', ',']).next()?)?,
            None => 0,
        };
        if c.next().is_some() || !(0..=23).contains(&h) || !(0..=59).contains(&mi) || !(0..=60).contains(&se) {
            return None;
        }
        let off = match zone {
            "" | "Z" | "z" => 0,
            z => {
                let sign = if z.starts_with('-') { -1 } else { 1 };
                let digits: String = z[1..].chars().filter(|c| *c != ':').collect();
                let (oh, om) = match digits.len() {
                    2 => (num(&digits)?, 0),
                    4 => (num(&digits[..2])?, num(&digits[2..])?),
                    _ => return None,
                };
                if oh > 23 || om > 59 {
                    return None;
                }
                sign * (oh * 3600 + om * 60)
            }
        };
        secs += h * 3600 + mi * 60 + se - off;
    }
    u64::try_from(secs).ok()
}

struct LogLine {
    t: u64,
    path: String,
    status: u16,
    bytes: u64,
}

/// `host ident user [10/Oct/2000:13:55:36 -0700] "GET /a HTTP/1.0" 200 2326 …`
fn parse_clf(line: &str) -> Result<LogLine, ImportError> {
    let open = line.find('[').ok_or(ImportError::LogLine("no [timestamp]"))?;
    let close = open + line[open..].find(']').ok_or(ImportError::LogLine("unterminated [timestamp]"))?;
    let t = parse_clf_time(&line[open + 1..close])
        .ok_or_else(|| ImportError::LogTime(line[open + 1..close].to_string()))?;
    let rest = &line[close + 1..];
    let q1 = rest.find('"').ok_or(ImportError::LogLine("no \"request\""))?;
    let q2 = q1 + 1 + rest[q1 + 1..].find('"').ok_or(ImportError::LogLine("unterminated \"request\""))?;
    let request = &rest[q1 + 1..q2];
    let path = request.split_whitespace().nth(1).unwrap_or("").split('?').next().unwrap_or("").to_string();
    let mut after = rest[q2 + 1..].split_whitespace();
    let status: u16 = after
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|s| (100..600).contains(s))
        .ok_or(ImportError::LogLine("missing or bad status"))?;
    let bytes = after.next().and_then(|b| b.parse().ok()).unwrap_or(0);
    Ok(LogLine { t, path, status, bytes })
}

fn parse_clf_time(s: &str) -> Option<u64> {
    // 10/Oct/2000:13:55:36 -0700
    let (dt, zone) = s.split_once(' ')?;
    let mut p = dt.split(['/', ':']);
    let day: i64 = p.next()?.parse().ok()?;
    let mon = p.next()?;
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| *m == mon)? as i64
        + 1;
    let year: i64 = p.next()?.parse().ok()?;
    let (h, mi, se): (i64, i64, i64) = (p.next()?.parse().ok()?, p.next()?.parse().ok()?, p.next()?.parse().ok()?);
    if !(1..=31).contains(&day)
        || !(0..=9999).contains(&year)
        || !(0..=23).contains(&h)
        || !(0..=59).contains(&mi)
        || !(0..=60).contains(&se)
        || zone.len() != 5
        || !zone.is_ascii()
    {
        return None;
    }
    let sign = match &zone[..1] {
        "+" => 1,
        "-" => -1,
        _ => return None,
    };
    let off = sign * (zone[1..3].parse::<i64>().ok()? * 3600 + zone[3..5].parse::<i64>().ok()? * 60);
    let t = days_from_civil(year, month, day) * 86_400 + h * 3600 + mi * 60 + se - off;
    u64::try_from(t).ok().filter(|t| *t <= MAX_TIMESTAMP)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The other direction: `endpoint`'s recorded 1-minute series from a data directory (what
/// `prescale simulate --from-history` replays). Minutes prescale was not recording are NaN.
pub fn recorded_series(data_dir: &Path, endpoint: &str) -> Result<crate::trace::Series, ImportError> {
    if !data_dir.is_dir() {
        return Err(ImportError::NotADirectory(data_dir.to_path_buf()));
    }
    let mut disk =
        Disk::open(data_dir).map_err(|e| ImportError::Disk { dir: data_dir.to_path_buf(), message: e.to_string() })?;
    let spec = TierSpec { step_s: 60, keep_s: 400 * 86_400, persist: true };
    let now = crate::clock::now_us() / 1_000_000;
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    let mut names: BTreeMap<String, u64> = BTreeMap::new();
    disk.load(1, &spec, now, &mut |name: Arc<str>, index, f: FullBucket| {
        *names.entry(name.to_string()).or_default() += 1;
        if &*name == endpoint {
            *counts.entry(index).or_default() = f.calls;
        }
    });
    let (Some(first), Some(last)) = (counts.keys().next().copied(), counts.keys().next_back().copied()) else {
        return Err(ImportError::NoHistory {
            endpoint: endpoint.to_string(),
            dir: data_dir.to_path_buf(),
            known: names.into_keys().collect(),
        });
    };
    let values = (first..=last).map(|i| counts.get(&i).map_or(f64::NAN, |c| *c as f64)).collect();
    Ok(crate::trace::Series { step_s: 60, start_s: first * 60, values })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clf_lines() {
        let l = parse_clf(r#"199.72.81.55 - - [01/Jul/1995:00:00:01 -0400] "GET /history/apollo/ HTTP/1.0" 200 6245"#)
            .unwrap();
        assert_eq!(l.t, 804_571_201);
        assert_eq!(l.path, "/history/apollo/");
        assert_eq!((l.status, l.bytes), (200, 6245));
        let l = parse_clf(r#"h - u [10/Oct/2000:13:55:36 -0700] "POST /a?x=1 HTTP/1.1" 404 - "ref" "agent""#).unwrap();
        assert_eq!(l.t, 971_211_336);
        assert_eq!((l.path.as_str(), l.status, l.bytes), ("/a", 404, 0));
        assert!(parse_clf("garbage").is_err());
        assert!(parse_clf(r#"h - - [32/Jul/1995:00:00:01 -0400] "GET / HTTP/1.0" 200 1"#).is_err());
    }

    /// Inputs the importer fuzz target is built to catch (also in fuzz/regressions/import):
    /// each once meant an arithmetic overflow, a slice off a character boundary, or a loop
    /// over every minute between two far-apart timestamps.
    #[test]
    fn hostile_timestamps_are_bad_lines_or_bounded() {
        let tiers = super::super::store::default_tiers();
        let rows = |text: &str, f| {
            to_rows(text.as_bytes(), "e", &tiers, &ImportOptions { format: Some(f), ..Default::default() }).unwrap()
        };
        // Past the year 9999: a bad line, not an overflow.
        let (r, rep) = rows("18446744073709551615,5\n", Format::Csv);
        assert_eq!((r.len(), rep.bad_lines.len()), (0, 1));
        assert!(rep.bad_lines[0].1.contains("after the year 9999"), "{:?}", rep.bad_lines);
        assert!(parse_clf(r#"h - - [10/Oct/9223372036854775807:13:55:36 +0000] "GET / HTTP/1.1" 200 1"#).is_err());
        // A multi-byte time zone: refused, not a panic.
        assert!(parse_clf("h - - [10/Oct/2026:13:55:36 \u{e9}123] \"GET / HTTP/1.1\" 200 1").is_err());
        // Rows ages apart: only what each tier keeps is built (35 days of minutes, 1 h of
        // seconds…), not every bucket in between.
        for (text, f) in [
            ("0,1\n253402300799,1\n", Format::Csv),
            (
                "h - - [01/Jan/1970:00:00:01 +0000] \"GET / HTTP/1.1\" 200 1\nh - - [10/Oct/9999:13:55:36 +0000] \"GET / HTTP/1.1\" 200 1\n",
                Format::AccessLog,
            ),
        ] {
            let (r, rep) = rows(text, f);
            let most: u64 = tiers.iter().filter(|t| t.persist).map(|t| t.capacity() as u64 + 1).sum();
            assert!(r.len() as u64 <= most, "{} buckets", r.len());
            assert!(rep.bad_lines.is_empty(), "{:?}", rep.bad_lines);
        }
        // Invalid UTF-8 is one bad line; the lines around it are imported.
        let (_, rep) =
            to_rows(&b"1800000000,1\n\xff\xfe,2\n1800000060,3\n"[..], "e", &tiers, &ImportOptions::default()).unwrap();
        assert_eq!((rep.lines, rep.bad_lines.len(), rep.calls), (3, 1, 4));
    }

    #[test]
    fn csv_rows() {
        assert_eq!(parse_csv_row("timestamp,value", true), Ok(None));
        assert!(parse_csv_row("timestamp,value", false).is_err(), "only the first line is a header");
        assert_eq!(parse_csv_row("804571200,42", false), Ok(Some((804_571_200, 42))));
        assert!(parse_csv_row("804571200,-1", false).is_err());
        assert!(parse_csv_row("804571200", false).is_err());
        assert!(parse_csv_row("x,y,z", true).is_err());
    }

    #[test]
    fn times_in_the_formats_exports_use() {
        let t = 1_705_305_600; // 2024-01-15T08:00:00Z
        for s in [
            "1705305600",
            "1705305600.75",
            "2024-01-15T08:00:00Z",
            "2024-01-15t08:00:00z",
            "2024-01-15T08:00:00.123456Z",
            "2024-01-15T10:00:00+02:00",
            "2024-01-15T10:00:00+0200",
            "2024-01-15T03:00:00-05",
            "2024-01-15 08:00:00",
            "2024-01-15T08:00",
            "15/Jan/2024:08:00:00 +0000",
            "15/Jan/2024:09:00:00 +0100",
        ] {
            assert_eq!(parse_time(s), Ok(t), "{s}");
        }
        assert_eq!(parse_time("2024-01-15"), Ok(t - 8 * 3600));
        for bad in [
            "",
            "yesterday",
            "2024-13-01T00:00:00Z",
            "2024-01-15T25:00:00Z",
            "2024-01-15T08:00:00+2",
            "24-01-15",
            "1.2.3",
            "1705305600000",
            "15/Jan/2024:08:00:00",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_time("1705305600000").unwrap_err(), ImportError::Milliseconds(1_705_305_600_000));
    }

    #[test]
    fn spreading_keeps_counts_exact() {
        let mut b = BTreeMap::new();
        spread(&Obs { t: 600, span: 300, calls: 7, e4: 0, e5: 0, bytes_out: 0, line: 1 }, 60, 0, &mut b);
        assert_eq!(b.values().map(|f| f.calls).collect::<Vec<_>>(), vec![2, 2, 1, 1, 1]);
        let mut h = BTreeMap::new();
        spread(&Obs { t: 3600 + 300, span: 300, calls: 7, e4: 0, e5: 0, bytes_out: 0, line: 1 }, 3600, 0, &mut h);
        assert_eq!(h[&1].calls, 7);
    }

    /// Regression (issue 20, finding 9): 40 lines of 1 MB control bytes were kept and echoed
    /// whole (210 MB on stderr).
    #[test]
    fn bad_lines_are_cut_listed_up_to_a_cap_and_counted() {
        let tiers = [TierSpec { step_s: 60, keep_s: 86_400, persist: true }];
        let mut text = String::from("timestamp,value\n");
        let junk = "\u{1}".repeat(1 << 20);
        for _ in 0..(BAD_LINES_KEPT + 40) {
            text.push_str(&junk);
            text.push('\n');
        }
        text.push_str("1700000000,5\n");
        let (_, rep) = to_rows(text.as_bytes(), "e", &tiers, &ImportOptions::default()).unwrap();
        assert_eq!(rep.bad_count, BAD_LINES_KEPT as u64 + 40);
        assert_eq!(rep.bad_lines.len(), BAD_LINES_KEPT);
        assert!(rep.bad_lines.iter().all(|(_, p)| p.len() <= BAD_LINE_ECHO + '…'.len_utf8()));
        assert_eq!(rep.calls, 5);
    }

    /// Regression (issue 20, finding 7): a row in the year 2100 was imported.
    #[test]
    fn future_rows_are_bad_lines_unless_allowed() {
        let tiers = [TierSpec { step_s: 60, keep_s: 86_400, persist: true }];
        let now = 1_790_000_000;
        let text = format!("1789999940,3\n1790000000,4\n{},9\n4102444800,1\n", now + 60);
        let opts = ImportOptions { latest_s: Some(now + FUTURE_TOLERANCE_S), ..Default::default() };
        let (rows, rep) = to_rows(text.as_bytes(), "e", &tiers, &opts).unwrap();
        assert_eq!((rep.calls, rep.bad_count), (16, 1), "{:?}", rep.bad_lines);
        assert_eq!(rep.bad_lines[0].0, 4);
        assert!(rep.bad_lines[0].1.contains("future rows are refused"), "{:?}", rep.bad_lines);
        assert!(rows.iter().all(|(_, _, i, _)| i * 60 <= now + FUTURE_TOLERANCE_S));
        let (_, rep) = to_rows(text.as_bytes(), "e", &tiers, &ImportOptions::default()).unwrap();
        assert_eq!((rep.calls, rep.bad_count), (17, 0), "allowed when asked");
    }
}
