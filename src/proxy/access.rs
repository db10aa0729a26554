//! Optional access log (off by default). The request path formats nothing: it hands a few
//! fields to a bounded channel with `try_send`; a writer thread formats and writes them. When
//! the channel is full the line is dropped and counted, so logging never slows proxying.

use std::io::Write;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use http::Method;

use super::stats::{GlobalStats, Outcome};
use crate::proxy::settings::AccessLog;

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

/// Handle the proxy clones into each call when the access log is on.
#[derive(Debug, Clone)]
pub struct AccessLogger {
    tx: Sender<Line>,
    stats: Arc<GlobalStats>,
}

impl AccessLogger {
    /// Starts the writer thread. It ends when every logger clone is dropped.
    pub fn start(target: &AccessLog, stats: Arc<GlobalStats>) -> std::io::Result<(Self, JoinHandle<()>)> {
        let out: Box<dyn Write + Send> = match target {
            AccessLog::Stdout => Box::new(std::io::stdout()),
            // Client addresses and paths are personal data: owner and group only.
            AccessLog::File(p) => {
                use std::os::unix::fs::OpenOptionsExt;
                Box::new(std::fs::OpenOptions::new().create(true).append(true).mode(0o640).open(p)?)
            }
        };
        let (tx, rx) = crossbeam_channel::bounded(CHANNEL_CAPACITY);
        let handle =
            std::thread::Builder::new().name("prescale-access-log".into()).spawn(move || write_loop(rx, out))?;
        Ok((Self { tx, stats }, handle))
    }

    pub fn pending(
        &self,
        client: IpAddr,
        method: &Method,
        path: &str,
        endpoint: &Arc<str>,
        member: Option<String>,
        request_id: &str,
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
                request_id: request_id.to_string(),
                status: 0,
                latency: Duration::ZERO,
                bytes_out: 0,
                outcome: Outcome::Complete,
            }),
        }
    }
}

fn write_loop(rx: Receiver<Line>, out: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::new(out);
    while let Ok(first) = rx.recv() {
        for line in std::iter::once(first).chain(rx.try_iter()) {
            let ts = line.time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
            let outcome = match line.outcome {
                Outcome::Complete => "ok",
                Outcome::Cancelled => "cancelled",
                Outcome::UpstreamAborted => "upstream_aborted",
            };
            let _ = writeln!(
                out,
                "{}.{:03} {} {} {:?} {} {} {:.3}ms endpoint={} member={} id={} {}",
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
                outcome
            );
        }
        let _ = out.flush();
    }
    let _ = out.flush();
}
