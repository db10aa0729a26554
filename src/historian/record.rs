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
    /// The W3C trace id the proxy continued or started; all zero when there is none.
    pub trace_id: [u8; 16],
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
    /// Shared, so the snapshots that copy the ring's open chunk copy no strings.
    target: Arc<str>,
    /// Length of the path within `target`.
    path_len: u32,
    /// Set when the query needed redaction or truncation; else it is read from `target`.
    params: Option<Arc<str>>,
    pub status: u16,
    pub outcome: CallOutcome,
    pub latency_us: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub client: IpAddr,
    pub upstream: Option<Authority>,
    pub trace_id: [u8; 16],
}

/// Which query parameters and path segments are secrets, and how much of a call to keep.
#[derive(Debug, Clone)]
pub struct Redaction {
    /// Lower-case names; a trailing `*` matches any suffix (`auth*`). A parameter is a secret
    /// when its whole name, or any word of it, matches: words are split at `[`, `]`, `.`, `-`,
    /// `_` and lower→upper case changes, so `access_token`, `X-Amz-Signature`, `user[password]`,
    /// `token[]` and `clientSecret` all match the defaults.
    pub keys: Vec<String>,
    /// Bytes of the query kept (after redaction).
    pub max_len: usize,
    /// Bytes of the path kept: a longer one is cut on a char boundary and marked with `…`.
    /// Without it, every stored call could hold a path as long as the header limit (64 KB).
    pub path_max_len: usize,
    /// Path patterns whose `{name}` segments are secrets (`/reset/{token}`): the segment is
    /// replaced by `[redacted]` when the path's leading segments match the pattern.
    pub path_patterns: Vec<PathPattern>,
}

pub const REDACTED: &str = "[redacted]";
/// Marks a cut path or query.
pub const CUT: char = '…';

/// The default secret names (see [`Redaction::keys`] for how they match).
pub const DEFAULT_SECRET_KEYS: [&str; 15] = [
    "token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "key",
    "apikey",
    "auth*",
    "credential*",
    "sig",
    "signature",
    "code",
    "session*",
    "jwt",
    "otp",
];

impl Default for Redaction {
    fn default() -> Self {
        Self {
            keys: DEFAULT_SECRET_KEYS.iter().map(|s| s.to_string()).collect(),
            max_len: 256,
            path_max_len: 256,
            path_patterns: Vec::new(),
        }
    }
}

/// One segment of a [`PathPattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternSegment {
    /// Must equal the path's segment (case-sensitive, as paths are).
    Literal(String),
    /// `*`: any segment, kept.
    Any,
    /// `{name}`: any segment, redacted.
    Secret,
}

/// A path pattern such as `/reset/{token}` or `/users/*/keys/{key}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern(pub Vec<PatternSegment>);

/// Why a redaction pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("{0:?} must start with /")]
    NotAbsolute(String),
    #[error("{0:?} has no {{name}} segment to redact")]
    NothingToRedact(String),
}

impl std::str::FromStr for PathPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, PatternError> {
        let rest = s.strip_prefix('/').ok_or_else(|| PatternError::NotAbsolute(s.to_string()))?;
        let segs: Vec<PatternSegment> = rest
            .split('/')
            .map(|seg| match seg {
                "*" => PatternSegment::Any,
                _ if seg.starts_with('{') && seg.ends_with('}') && seg.len() > 2 => PatternSegment::Secret,
                _ => PatternSegment::Literal(seg.to_string()),
            })
            .collect();
        if !segs.contains(&PatternSegment::Secret) {
            return Err(PatternError::NothingToRedact(s.to_string()));
        }
        Ok(Self(segs))
    }
}

impl PathPattern {
    /// Whether `path`'s leading segments match; the secret segments' byte ranges go to `out`.
    fn matches(&self, path: &str, out: &mut Vec<(usize, usize)>) -> bool {
        let Some(rest) = path.strip_prefix('/') else { return false };
        let mut at = 1;
        let mut segs = rest.split('/');
        let mark = out.len();
        for p in &self.0 {
            let Some(seg) = segs.next() else {
                out.truncate(mark);
                return false;
            };
            match p {
                PatternSegment::Literal(l) if l != seg => {
                    out.truncate(mark);
                    return false;
                }
                PatternSegment::Secret if !seg.is_empty() => out.push((at, at + seg.len())),
                _ => {}
            }
            at += seg.len() + 1;
        }
        true
    }
}

/// Whether `f` holds for a word of a parameter name: words are split at brackets, dots, dashes,
/// underscores and at a lower→upper case change (nothing is allocated).
fn any_word(name: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> bool {
    let mut start = 0;
    for i in 0..=name.len() {
        let sep = i < name.len() && matches!(name[i], b'[' | b']' | b'.' | b'-' | b'_');
        let case = i < name.len() && i > start && name[i].is_ascii_uppercase() && name[i - 1].is_ascii_lowercase();
        if i == name.len() || sep || case {
            if i > start && f(&name[start..i]) {
                return true;
            }
            start = if sep { i + 1 } else { i };
        }
    }
    false
}

impl Redaction {
    fn key_matches(&self, word: &[u8]) -> bool {
        self.keys.iter().any(|k| match k.strip_suffix('*') {
            Some(prefix) => word.len() >= prefix.len() && word[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()),
            None => word.eq_ignore_ascii_case(k.as_bytes()),
        })
    }

    /// Whether a parameter name (raw bytes as sent) is a secret: its whole name or any of its
    /// words matches a key. Only a name holding `%` or `+` is decoded first.
    fn is_secret(&self, raw: &[u8]) -> bool {
        let decoded;
        let name: &[u8] = if raw.iter().any(|b| *b == b'%' || *b == b'+') {
            decoded = percent_decode(raw);
            &decoded
        } else {
            raw
        };
        self.key_matches(name) || any_word(name, |w| self.key_matches(w))
    }

    /// `(pair, separator)` pairs of a query: `&` and `;` both separate (some frameworks read
    /// `a=1;token=x` as two parameters).
    fn pairs(query: &str) -> impl Iterator<Item = (&str, Option<char>)> {
        let mut rest = Some(query);
        std::iter::from_fn(move || {
            let s = rest?;
            match s.find(['&', ';']) {
                Some(i) => {
                    rest = Some(&s[i + 1..]);
                    Some((&s[..i], s[i..].chars().next()))
                }
                None => {
                    rest = None;
                    Some((s, None))
                }
            }
        })
    }

    /// `Some(rewritten)` when the query holds a secret or is too long; `None` when it can be
    /// kept as it is (the common case, which allocates nothing).
    pub fn rewrite(&self, query: &str) -> Option<String> {
        let secret =
            Self::pairs(query).any(|(pair, _)| pair.split_once('=').is_some_and(|(k, _)| self.is_secret(k.as_bytes())));
        (secret || query.len() > self.max_len).then(|| self.apply(query))
    }

    /// Redacts secret values (key matched case-insensitively, by whole name or word, also when
    /// percent-encoded names decode to a secret) and truncates to `max_len` bytes on a char
    /// boundary.
    pub fn apply(&self, query: &str) -> String {
        let mut out = String::with_capacity(query.len().min(self.max_len + 16));
        for (pair, sep) in Self::pairs(query) {
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
            if let Some(c) = sep {
                out.push(c);
            }
        }
        truncate_marked(&mut out, self.max_len);
        out
    }

    /// The path as stored: secret segments of a matching pattern redacted, then cut to
    /// `path_max_len`. `None` when the path can be kept as it is (the common case).
    pub fn path(&self, path: &str) -> Option<String> {
        let mut ranges = Vec::new();
        for p in &self.path_patterns {
            if p.matches(path, &mut ranges) {
                break;
            }
        }
        if ranges.is_empty() && path.len() <= self.path_max_len {
            return None;
        }
        let mut out = String::with_capacity(path.len().min(self.path_max_len + 16));
        let mut at = 0;
        for (a, b) in ranges {
            out.push_str(&path[at..a]);
            out.push_str(REDACTED);
            at = b;
        }
        out.push_str(&path[at..]);
        truncate_marked(&mut out, self.path_max_len);
        Some(out)
    }
}

/// Truncates to `max` bytes on a char boundary, marking the cut with [`CUT`].
pub fn truncate_marked(s: &mut String, max: usize) {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
        s.push(CUT);
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

/// A trace id as 32 lowercase hex digits; `None` for the all-zero "no trace".
pub fn trace_id_hex(id: &[u8; 16]) -> Option<String> {
    use std::fmt::Write;
    (id != &[0; 16]).then(|| {
        id.iter().fold(String::with_capacity(32), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    })
}

impl StoredCall {
    pub fn from_record(r: CallRecord, redaction: &Redaction) -> Self {
        let params = r.target.query().and_then(|q| redaction.rewrite(q)).map(Arc::<str>::from);
        let raw_path = r.target.path();
        let stored_path = redaction.path(raw_path);
        let path = stored_path.as_deref().unwrap_or(raw_path);
        let target: Arc<str> = match (&stored_path, &params, r.target.query()) {
            (None, None, Some(_)) => r.target.as_str().into(),
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
            trace_id: r.trace_id,
        }
    }

    /// Heap bytes this call holds beyond its own struct (path, query, parameters), with the
    /// reference counts and the allocator's per-allocation overhead: what the memory gauge adds.
    pub fn heap_bytes(&self) -> usize {
        const MALLOC_OVERHEAD: usize = 16;
        const ARC_COUNTS: usize = 16;
        let alloc = |n: usize| (n + ARC_COUNTS).div_ceil(16) * 16 + MALLOC_OVERHEAD;
        // The upstream's address shares the member's buffer; the endpoint name is shared too.
        alloc(self.target.len()) + self.params.as_ref().map_or(0, |p| alloc(p.len()))
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
        let mut st = s.serialize_struct("StoredCall", 14)?;
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
        st.serialize_field("trace_id", &trace_id_hex(&self.trace_id))?;
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
            "q=shoes&token=[redacted]&Password=[redacted]&api_key=[redacted]&key=[redacted]&Authorization=[redacted]&authz=[redacted]&limit=5"
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

    /// Regression (issue 20, finding 8): the old list missed these common secret names.
    #[test]
    fn common_secret_names_brackets_and_semicolons_are_redacted() {
        let r = Redaction::default();
        for name in [
            "access_token",
            "api_key",
            "client_secret",
            "refresh_token",
            "X-Amz-Signature",
            "X-Amz-Credential",
            "x-amz-security-token",
            "sig",
            "code",
            "session",
            "sessionId",
            "jwt",
            "token[]",
            "user[password]",
            "accessToken",
            "apiKey",
            "PASSWORD",
        ] {
            let q = format!("q=1&{name}=s3cr3t");
            assert_eq!(r.apply(&q), format!("q=1&{name}=[redacted]"), "{name}");
            assert!(r.rewrite(&q).is_some(), "{name}");
        }
        // Values after `;` are parameters too.
        assert_eq!(r.apply("a=1;token=x;b=2"), "a=1;token=[redacted];b=2");
        // Ordinary names stay, including ones that merely contain a secret word's letters.
        assert_eq!(r.rewrite("q=shoes&monkey=1&keyboard=2&zipcode=3&limit=5"), None);
    }

    /// Regression (issue 20, finding 1): a path as long as the header limit was stored whole.
    #[test]
    fn long_paths_are_cut_with_a_marker() {
        let r = Redaction::default();
        let long = format!("/api/{}", "a".repeat(65_000));
        let cut = r.path(&long).unwrap();
        assert!(cut.len() <= r.path_max_len + CUT.len_utf8(), "{}", cut.len());
        assert!(cut.ends_with(CUT) && cut.starts_with("/api/aaa"));
        assert_eq!(r.path("/api/orders/7"), None, "short paths are kept as they are");
        let multi = format!("/{}", "é".repeat(200));
        assert!(r.path(&multi).unwrap().ends_with("é…"), "cut on a char boundary");
    }

    #[test]
    fn path_patterns_redact_their_secret_segments() {
        let r = Redaction {
            path_patterns: vec!["/reset/{token}".parse().unwrap(), "/users/*/keys/{key}".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(r.path("/reset/abc123").as_deref(), Some("/reset/[redacted]"));
        assert_eq!(r.path("/reset/abc123/confirm").as_deref(), Some("/reset/[redacted]/confirm"));
        assert_eq!(r.path("/users/7/keys/k-99").as_deref(), Some("/users/7/keys/[redacted]"));
        assert_eq!(r.path("/users/7/orders/9"), None);
        assert_eq!(r.path("/reset"), None);
        assert!("/reset/plain".parse::<PathPattern>().is_err(), "a pattern must name a secret segment");
        assert!("reset/{t}".parse::<PathPattern>().is_err());
    }

    #[test]
    fn stored_calls_hold_bounded_paths_and_count_their_bytes() {
        let r = Redaction::default();
        let rec = |target: &str| CallRecord {
            start_us: 1,
            endpoint: "api".into(),
            method: Method::GET,
            target: target.parse().unwrap(),
            status: 200,
            outcome: CallOutcome::Ok,
            latency_us: 1,
            bytes_in: 0,
            bytes_out: 0,
            client: [127, 0, 0, 1].into(),
            upstream: None,
            trace_id: [0; 16],
        };
        let long = format!("/p/{}?token=x&q=1", "b".repeat(60_000));
        let c = StoredCall::from_record(rec(&long), &r);
        assert!(c.path().len() <= 256 + 3 && c.path().ends_with(CUT));
        assert_eq!(c.params(), "token=[redacted]&q=1");
        assert!(c.heap_bytes() < 700, "{}", c.heap_bytes());
        let short = StoredCall::from_record(rec("/p/1?q=2"), &r);
        assert_eq!((short.path(), short.params()), ("/p/1", "q=2"));
    }
}
