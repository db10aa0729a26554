//! `CallRecord`: one proxied call, as the proxy hands it over, and `StoredCall`, the same call
//! after the historian has split, redacted and truncated its parameters.

use std::net::IpAddr;
use std::sync::Arc;

use http::Method;
use http::uri::{Authority, PathAndQuery};
use serde::Serialize;

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// 1xx–3xx delivered to the end.
    Ok,
    /// 4xx (including prescale's own 413/400 for this endpoint).
    ClientError,
    /// 5xx from the upstream, a connect failure, no healthy member, or a body broken mid-way.
    UpstreamError,
    /// The upstream did not answer in time (504).
    Timeout,
    /// The client went away before the response ended.
    Cancelled,
}

/// What the proxy records. Built without copying strings: the path and query share the
/// request's buffer, the endpoint name and member address are reference-counted.
#[derive(Debug, Clone)]
pub struct CallRecord {
    /// Start of the call, microseconds since the epoch.
    pub start_us: u64,
    pub endpoint: Arc<str>,
    pub method: Method,
    /// Path and raw query, as received; split and redacted by the historian thread.
    pub target: PathAndQuery,
    pub status: u16,
    pub outcome: CallOutcome,
    /// To the end of the response body (or to the moment the client left).
    pub latency_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client: IpAddr,
    pub upstream: Option<Authority>,
}

/// A call as kept in the ring of recent calls and served by `/admin/api/calls`: one string
/// for path and query, a second only when a secret had to be redacted or the query truncated.
#[derive(Debug, Clone)]
pub struct StoredCall {
    pub start_us: u64,
    pub endpoint: Arc<str>,
    pub method: Method,
    /// Path, then (unless redacted or truncated) `?query`. An owned copy: keeping the
    /// request's `PathAndQuery` would pin the connection's whole read buffer per stored call.
    target: Box<str>,
    /// Length of the path within `target`.
    path_len: u32,
    /// Set when the query needed redaction or truncation; else it is read from `target`.
    params: Option<Box<str>>,
    pub status: u16,
    pub outcome: CallOutcome,
    pub latency_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client: IpAddr,
    pub upstream: Option<Authority>,
}

/// Which query parameters are secrets, and how much of the query to keep.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Lower-case names; a trailing `*` matches any suffix (`auth*`).
    pub keys: Vec<String>,
    pub max_len: usize,
}

pub const REDACTED: &str = "[redacted]";

impl Default for Redaction {
    fn default() -> Self {
        Self {
            keys: ["token", "password", "secret", "key", "auth*"].iter().map(|s| s.to_string()).collect(),
            max_len: 256,
        }
    }
}

impl Redaction {
    /// Whether a parameter name (raw bytes as sent) is a secret. Names are compared without
    /// allocating; only a name holding `%` or `+` is decoded first.
    fn is_secret(&self, raw: &[u8]) -> bool {
        // Quick reject: no secret name starts with this letter (and no escape hides it).
        if let Some(&c) = raw.first()
            && c != b'%'
            && c != b'+'
            && !self.keys.iter().any(|k| k.as_bytes().first().is_some_and(|f| f.eq_ignore_ascii_case(&c)))
        {
            return false;
        }
        let decoded;
        let name: &[u8] = if raw.iter().any(|b| *b == b'%' || *b == b'+') {
            decoded = percent_decode(raw);
            &decoded
        } else {
            raw
        };
        self.keys.iter().any(|k| match k.strip_suffix('*') {
            Some(prefix) => name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()),
            None => name.eq_ignore_ascii_case(k.as_bytes()),
        })
    }

    /// `Some(rewritten)` when the query holds a secret or is too long; `None` when it can be
    /// kept as it is (the common case, which allocates nothing).
    pub fn rewrite(&self, query: &str) -> Option<String> {
        let secret = query.as_bytes().split(|b| *b == b'&').any(|pair| {
            let name_end = pair.iter().position(|b| *b == b'=');
            name_end.is_some_and(|e| self.is_secret(&pair[..e]))
        });
        (secret || query.len() > self.max_len).then(|| self.apply(query))
    }

    /// Redacts secret values (key matched case-insensitively, also when percent-encoded
    /// names decode to a secret) and truncates to `max_len` bytes on a char boundary.
    pub fn apply(&self, query: &str) -> String {
        let mut out = String::with_capacity(query.len().min(self.max_len + 16));
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if self.is_secret(k.as_bytes()) => {
                    out.push_str(k);
                    out.push('=');
                    out.push_str(REDACTED);
                }
                _ => out.push_str(pair),
            }
            if out.len() > self.max_len {
                break;
            }
        }
        if out.len() > self.max_len {
            let mut cut = self.max_len;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
            out.push('…');
        }
        out
    }
}

/// The byte two hex digits spell, if they are hex digits.
pub fn hex_pair(a: u8, b: u8) -> Option<u8> {
    let d = |c: u8| (c as char).to_digit(16);
    Some((d(a)? * 16 + d(b)?) as u8)
}

fn percent_decode(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let Some(v) = hex_pair(b[i + 1], b[i + 2])
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(if b[i] == b'+' { b' ' } else { b[i] });
        i += 1;
    }
    out
}

impl StoredCall {
    pub fn from_record(r: CallRecord, redaction: &Redaction) -> Self {
        let params = r.target.query().and_then(|q| redaction.rewrite(q)).map(String::into_boxed_str);
        let path = r.target.path();
        let target: Box<str> = match (&params, r.target.query()) {
            (None, Some(_)) => r.target.as_str().into(),
            _ => path.into(),
        };
        Self {
            start_us: r.start_us,
            endpoint: r.endpoint,
            method: r.method,
            path_len: path.len() as u32,
            target,
            params,
            status: r.status,
            outcome: r.outcome,
            latency_us: r.latency_us,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            client: r.client,
            upstream: r.upstream,
        }
    }

    pub fn path(&self) -> &str {
        &self.target[..self.path_len as usize]
    }

    /// The recorded parameters: redacted and truncated.
    pub fn params(&self) -> &str {
        self.params.as_deref().unwrap_or_else(|| self.target.get(self.path_len as usize + 1..).unwrap_or(""))
    }
}

impl Serialize for StoredCall {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("StoredCall", 13)?;
        st.serialize_field("t_us", &self.start_us)?;
        st.serialize_field("endpoint", &*self.endpoint)?;
        st.serialize_field("method", self.method.as_str())?;
        st.serialize_field("path", self.path())?;
        st.serialize_field("params", self.params())?;
        st.serialize_field("status", &self.status)?;
        st.serialize_field("outcome", &self.outcome)?;
        st.serialize_field("latency_ms", &(self.latency_us as f64 / 1000.0))?;
        st.serialize_field("bytes_in", &self.bytes_in)?;
        st.serialize_field("bytes_out", &self.bytes_out)?;
        st.serialize_field("client", &self.client)?;
        st.serialize_field("upstream", &self.upstream.as_ref().map(|a| a.as_str()))?;
        st.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_default_keys_case_insensitively() {
        let r = Redaction::default();
        assert_eq!(
            r.apply("q=shoes&token=abc&Password=x&api_key=1&key=2&Authorization=b&authz=c&limit=5"),
            "q=shoes&token=[redacted]&Password=[redacted]&api_key=1&key=[redacted]&Authorization=[redacted]&authz=[redacted]&limit=5"
        );
        // A percent-encoded secret name is still a secret.
        assert_eq!(r.apply("%74oken=abc"), "%74oken=[redacted]");
        assert_eq!(r.apply("flag&secret"), "flag&secret");
        assert_eq!(r.rewrite("q=1&limit=5"), None, "clean short queries are kept as they are");
        assert!(r.rewrite("q=1&TOKEN=5").is_some());
    }

    #[test]
    fn truncates_on_a_char_boundary() {
        let r = Redaction { max_len: 10, ..Default::default() };
        assert_eq!(r.apply("a=ééééééééé"), "a=éééé…");
        assert_eq!(r.apply("short=1"), "short=1");
        // Redaction happens before truncation: a secret is never cut in half and leaked.
        let r = Redaction { max_len: 12, ..Default::default() };
        assert_eq!(r.apply("x=1&token=supersecretvalue"), "x=1&token=[r…");
    }
}
