//! Optional access log (off by default), as plain lines or JSON objects with the fields the
//! configuration lists (`listen.access_log_format`, `listen.access_log_fields`). The request
//! path formats nothing: it hands a few fields to a bounded channel with `try_send`; a writer
//! thread formats and writes them. When the channel is full the line is dropped and counted,
//! so logging never slows proxying.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use http::Method;

use super::stats::{GlobalStats, Outcome};
use crate::proxy::settings::{AccessFormat, AccessLog};

/// A field of a JSON access-log line; its key is its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// RFC 3339 UTC with milliseconds, when the response started.
    Time,
    Client,
    Method,
    /// Without the query (which may hold secrets).
    Path,
    Endpoint,
    /// The upstream `host:port`, `null` when none answered.
    Member,
    RequestId,
    /// 32 hex digits (W3C trace context).
    TraceId,
    Status,
    BytesOut,
    DurationMs,
    /// `ok`, `cancelled` (the client left) or `upstream_aborted`.
    Outcome,
}

impl Field {
    pub const ALL: [Field; 12] = [
        Field::Time,
        Field::Client,
        Field::Method,
        Field::Path,
        Field::Endpoint,
        Field::Member,
        Field::RequestId,
        Field::TraceId,
        Field::Status,
        Field::BytesOut,
        Field::DurationMs,
        Field::Outcome,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::Time => "time",
            Field::Client => "client",
            Field::Method => "method",
            Field::Path => "path",
            Field::Endpoint => "endpoint",
            Field::Member => "member",
            Field::RequestId => "request_id",
            Field::TraceId => "trace_id",
            Field::Status => "status",
            Field::BytesOut => "bytes_out",
            Field::DurationMs => "duration_ms",
            Field::Outcome => "outcome",
        }
    }

    pub fn from_name(n: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.name() == n)
    }

    /// Every name, for error messages.
    pub fn names() -> String {
        Self::ALL.map(Field::name).join(", ")
    }
}

const CHANNEL_CAPACITY: usize = 65_536;

/// A finished call, as the writer thread needs it.
#[derive(Debug)]
struct Line {
    time: SystemTime,
    client: IpAddr,
    method: Method,
    path: String,
    endpoint: Arc<str>,
    member: Option<String>,
    request_id: String,
    trace_id: [u8; 16],
    status: u16,
    latency: Duration,
    bytes_out: u64,
    outcome: Outcome,
}

/// Fields known when the response starts; completed and sent when it ends.
#[derive(Debug)]
pub struct Pending {
    tx: Sender<Line>,
    stats: Arc<GlobalStats>,
    line: Box<Line>,
}

impl Pending {
    pub fn send(self, status: u16, latency: Duration, bytes_out: u64, outcome: Outcome) {
        let mut line = *self.line;
        line.status = status;
        line.latency = latency;
        line.bytes_out = bytes_out;
        line.outcome = outcome;
        if let Err(TrySendError::Full(_)) = self.tx.try_send(line) {
            self.stats.access_log_dropped.fetch_add(1, Relaxed);
        }
    }
}

/// How a call is known: its request id and its trace.
#[derive(Debug, Clone, Copy)]
pub struct Ids<'a> {
    pub request_id: &'a str,
    pub trace_id: [u8; 16],
}

/// Handle the proxy clones into each call when the access log is on.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    tx: Sender<Line>,
    stats: Arc<GlobalStats>,
}

impl AccessLogger {
    /// Starts the writer thread. It ends when every logger clone is dropped.
    pub fn start(
        target: &AccessLog,
        format: &AccessFormat,
        stats: Arc<GlobalStats>,
    ) -> std::io::Result<(Self, JoinHandle<()>)> {
        let out: Box<dyn Write + Send> = match target {
            AccessLog::Stdout => Box::new(std::io::stdout()),
            // Client addresses and paths are personal data: owner and group only.
            AccessLog::File(p) => {
                use std::os::unix::fs::OpenOptionsExt;
                Box::new(std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(p)?)
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
        let handle = std::thread::Builder::new().name("prescale-access-log".into()).spawn({
            let format = format.clone();
            move || write_loop(rx, out, format)
        })?;
        Ok((Self { tx, stats }, handle))
    }

    pub fn pending(
        &self,
        client: IpAddr,
        method: &Method,
        path: &str,
        endpoint: &Arc<str>,
        member: Option<String>,
        ids: Ids<'_>,
    ) -> Pending {
        Pending {
            tx: self.tx.clone(),
            stats: self.stats.clone(),
            line: Box::new(Line {
                time: SystemTime::now(),
                client,
                method: method.clone(),
                path: path.to_string(),
                endpoint: endpoint.clone(),
                member,
                request_id: ids.request_id.to_string(),
                trace_id: ids.trace_id,
                status: 0,
                latency: Duration::ZERO,
                bytes_out: 0,
                outcome: Outcome::Complete,
            }),
        }
    }
}

fn write_loop(rx: Receiver<Line>, out: Box<dyn Write + Send>, format: AccessFormat) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        for line in std::iter::once(first).chain(rx.try_iter()) {
            let _ = match &format {
                AccessFormat::Text => write_text(&mut out, &line),
                AccessFormat::Json(fields) => write_json(&mut out, &line, fields),
            };
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}

fn outcome(o: Outcome) -> &'static str {
    match o {
        Outcome::Complete => "ok",
        Outcome::Cancelled => "cancelled",
        Outcome::UpstreamAborted => "upstream_aborted",
    }
}

fn write_text(out: &mut impl Write, line: &Line) -> std::io::Result<()> {
    let ts = line.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    writeln!(
        out,
        "{}.{:03} {} {} {:?} {} {} {:.3}ms endpoint={} member={} id={} trace={} {}",
        ts.as_secs(),
        ts.subsec_millis(),
        line.client,
        line.method,
        line.path,
        line.status,
        line.bytes_out,
        line.latency.as_secs_f64() * 1000.0,
        line.endpoint,
        line.member.as_deref().unwrap_or("-"),
        line.request_id,
        crate::historian::record::trace_id_hex(&line.trace_id).as_deref().unwrap_or("-"),
        outcome(line.outcome)
    )
}

fn write_json(out: &mut impl Write, line: &Line, fields: &[Field]) -> std::io::Result<()> {
    use serde_json::Value;
    // Written key by key: the configured order is kept.
    out.write_all(b"{")?;
    for (i, f) in fields.iter().enumerate() {
        let v = match f {
            Field::Time => Value::from(rfc3339_ms(line.time)),
            Field::Client => Value::from(line.client.to_string()),
            Field::Method => Value::from(line.method.as_str()),
            Field::Path => Value::from(line.path.as_str()),
            Field::Endpoint => Value::from(&*line.endpoint),
            Field::Member => line.member.as_deref().map_or(Value::Null, Value::from),
            Field::RequestId => Value::from(line.request_id.as_str()),
            Field::TraceId => crate::historian::record::trace_id_hex(&line.trace_id).map_or(Value::Null, Value::from),
            Field::Status => Value::from(line.status),
            Field::BytesOut => Value::from(line.bytes_out),
            Field::DurationMs => Value::from((line.latency.as_secs_f64() * 1e6).round() / 1e3),
            Field::Outcome => Value::from(outcome(line.outcome)),
        };
        if i > 0 {
            out.write_all(b",")?;
        }
        serde_json::to_writer(&mut *out, f.name())?;
        out.write_all(b":")?;
        serde_json::to_writer(&mut *out, &v)?;
    }
    out.write_all(b"}\n")
}

/// `2026-12-01T09:30:00.123Z`.
fn rfc3339_ms(t: SystemTime) -> String {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let (y, mo, day, h, mi, s) = crate::clock::utc(d.as_secs());
    format!("{y:04}-{mo:02}-{day:02}T{h:02}:{mi:02}:{s:02}.{:03}Z", d.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line {
        Line {
            time: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_581_400_123),
            client: "10.0.0.7".parse().unwrap(),
            method: Method::POST,
            path: "/api/orders \"x\"".into(),
            endpoint: Arc::from("orders"),
            member: None,
            request_id: "abc-1".into(),
            trace_id: [0xab; 16],
            status: 502,
            latency: Duration::from_micros(12_345),
            bytes_out: 42,
            outcome: Outcome::Cancelled,
        }
    }

    #[test]
    fn json_lines_hold_the_chosen_fields_in_order() {
        let mut out = Vec::new();
        write_json(&mut out, &line(), &Field::ALL).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["time"], "2025-12-01T09:30:00.123Z");
        assert_eq!(v["path"], "/api/orders \"x\"", "escaped, not broken");
        assert_eq!(v["member"], serde_json::Value::Null);
        assert_eq!(v["trace_id"], "ab".repeat(16));
        assert_eq!(v["duration_ms"], 12.345);
        assert_eq!(v["outcome"], "cancelled");
        let mut at = 0;
        for f in Field::ALL {
            let k =
                text[at..].find(&format!("\"{}\":", f.name())).unwrap_or_else(|| panic!("{} out of order", f.name()));
            at += k + 1;
        }
        let mut out = Vec::new();
        write_json(&mut out, &line(), &[Field::Status, Field::Time]).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "{\"status\":502,\"time\":\"2025-12-01T09:30:00.123Z\"}\n");
    }

    #[test]
    fn civil_dates() {
        let at = |s: u64| rfc3339_ms(SystemTime::UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(at(4_107_542_399), "2100-02-28T23:59:59.000Z");
    }
}
