//! Optional OTLP/HTTP export of spans (off by default; `[tracing] otlp_endpoint`): one span per
//! proxied request of a sampled trace (prescale's own span: the client's span as its parent,
//! the upstream's parent as its id) and one per scaling decision. The request path only hands
//! a small record to a bounded channel (`try_send`; a full channel drops the span and counts
//! it); an exporter thread batches the spans (up to 512, or every second), encodes them as an
//! OTLP `ExportTraceServiceRequest` (protobuf, the OpenTelemetry definitions of the
//! `opentelemetry-proto` crate) and POSTs them; a failed export is counted and dropped, never
//! retried into the request path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    ResourceSpans, ScopeSpans, Span, Status, span::SpanKind, status::StatusCode,
};

/// `[tracing]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpSettings {
    /// `http://host:port/v1/traces`.
    pub endpoint: http::Uri,
    pub service_name: String,
    /// Spans waiting for the exporter at most; beyond, spans are dropped and counted.
    pub queue: usize,
}

/// A finished span, as the exporter needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanRecord {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_id: Option<[u8; 8]>,
    pub name: String,
    /// Server for a proxied request, internal for a decision.
    pub server: bool,
    pub start_us: u64,
    pub end_us: u64,
    pub error: bool,
    pub attributes: Vec<(&'static str, Attr)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// Spans exported, dropped (queue full) and lost with a failed export.
#[derive(Debug, Default)]
pub struct OtlpStats {
    pub exported: AtomicU64,
    pub dropped: AtomicU64,
    pub failed: AtomicU64,
}

/// The handle the proxy and the allocator clone.
#[derive(Debug, Clone)]
pub struct Exporter {
    tx: Sender<SpanRecord>,
    pub stats: Arc<OtlpStats>,
}

impl Exporter {
    /// Starts the exporter thread; it ends when every handle is dropped (after a last export).
    pub fn start(s: &OtlpSettings) -> std::io::Result<(Self, JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::bounded(s.queue.max(1));
        let stats = Arc::new(OtlpStats::default());
        let (st, settings) = (stats.clone(), s.clone());
        let handle =
            std::thread::Builder::new().name("prescale-otlp".into()).spawn(move || export_loop(rx, settings, st))?;
        Ok((Self { tx, stats }, handle))
    }

    /// Hands a span over without waiting; a full queue drops it (counted).
    pub fn send(&self, span: SpanRecord) {
        if let Err(TrySendError::Full(_)) = self.tx.try_send(span) {
            self.stats.dropped.fetch_add(1, Relaxed);
        }
    }
}

const BATCH: usize = 512;
const FLUSH: Duration = Duration::from_secs(1);

fn export_loop(rx: Receiver<SpanRecord>, s: OtlpSettings, stats: Arc<OtlpStats>) {
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        tracing::error!("the OTLP exporter cannot start its runtime; spans are dropped");
        return;
    };
    let mut batch: Vec<SpanRecord> = Vec::with_capacity(BATCH);
    let mut open = true;
    while open {
        let deadline = std::time::Instant::now() + FLUSH;
        while batch.len() < BATCH {
            match rx.recv_deadline(deadline) {
                Ok(span) => batch.push(span),
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        let n = batch.len() as u64;
        let body = encode(&s.service_name, &batch);
        batch.clear();
        match rt.block_on(post(&s.endpoint, body)) {
            Ok(()) => stats.exported.fetch_add(n, Relaxed),
            Err(e) => {
                tracing::warn!(endpoint = %s.endpoint, error = %e, spans = n, "OTLP export failed; spans dropped");
                stats.failed.fetch_add(n, Relaxed)
            }
        };
    }
}

fn kv(key: &str, v: &Attr) -> KeyValue {
    let value = match v {
        Attr::Str(s) => any_value::Value::StringValue(s.clone()),
        Attr::Int(i) => any_value::Value::IntValue(*i),
        Attr::Bool(b) => any_value::Value::BoolValue(*b),
    };
    KeyValue { key: key.to_string(), value: Some(AnyValue { value: Some(value) }), ..Default::default() }
}

/// The protobuf body of one export.
pub fn encode(service: &str, spans: &[SpanRecord]) -> Vec<u8> {
    use prost::Message;
    let spans = spans
        .iter()
        .map(|r| Span {
            trace_id: r.trace_id.to_vec(),
            span_id: r.span_id.to_vec(),
            parent_span_id: r.parent_id.map(|p| p.to_vec()).unwrap_or_default(),
            name: r.name.clone(),
            kind: if r.server { SpanKind::Server } else { SpanKind::Internal } as i32,
            start_time_unix_nano: r.start_us * 1000,
            end_time_unix_nano: r.end_us.max(r.start_us) * 1000,
            attributes: r.attributes.iter().map(|(k, v)| kv(k, v)).collect(),
            status: Some(Status {
                message: String::new(),
                code: if r.error { StatusCode::Error } else { StatusCode::Unset } as i32,
            }),
            ..Default::default()
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", &Attr::Str(service.to_string()))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "prescale".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

async fn post(endpoint: &http::Uri, body: Vec<u8>) -> Result<(), String> {
    use http_body_util::Full;
    let authority = endpoint.authority().ok_or("no host in the endpoint")?.clone();
    let port = authority.port_u16().unwrap_or(80);
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
    let work = async {
        let tcp = tokio::net::TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
        let req = http::Request::post(endpoint.path_and_query().map_or("/v1/traces", |p| p.as_str()))
            .header(http::header::HOST, authority.as_str())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .header(http::header::CONTENT_LENGTH, body.len())
            .body(Full::new(bytes::Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let (status, _) =
            super::upstream::request_once(hyper_util::rt::TokioIo::new(tcp), req).await.map_err(|e| e.to_string())?;
        if status.is_success() { Ok(()) } else { Err(format!("the collector answered {status}")) }
    };
    tokio::time::timeout(Duration::from_secs(5), work).await.map_err(|_| "no answer within 5 s".to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    #[test]
    fn spans_encode_as_otlp_protobuf() {
        let r = SpanRecord {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_id: Some([3; 8]),
            name: "GET api".into(),
            server: true,
            start_us: 1_000,
            end_us: 3_000,
            error: true,
            attributes: vec![
                ("http.response.status_code", Attr::Int(502)),
                ("prescale.endpoint", Attr::Str("api".into())),
            ],
        };
        let req = ExportTraceServiceRequest::decode(encode("svc", &[r]).as_slice()).unwrap();
        let rs = &req.resource_spans[0];
        let svc = &rs.resource.as_ref().unwrap().attributes[0];
        assert_eq!(svc.key, "service.name");
        let span = &rs.scope_spans[0].spans[0];
        assert_eq!(
            (span.trace_id.as_slice(), span.span_id.as_slice(), span.parent_span_id.as_slice()),
            (&[1u8; 16][..], &[2u8; 8][..], &[3u8; 8][..])
        );
        assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1_000_000, 3_000_000));
        assert_eq!(span.kind, SpanKind::Server as i32);
        assert_eq!(span.status.as_ref().unwrap().code, StatusCode::Error as i32);
        assert_eq!(span.attributes[0].value.as_ref().unwrap().value, Some(any_value::Value::IntValue(502)));
    }
}
