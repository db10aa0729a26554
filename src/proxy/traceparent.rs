//! W3C Trace Context (`traceparent`, `tracestate`): prescale is one hop of the client's trace.
//! A valid incoming `traceparent` is continued — same trace id and flags, prescale's own span
//! id as the upstream's parent, `tracestate` passed on untouched; without one (or with an
//! invalid one, whose `tracestate` is then dropped as the specification asks) prescale starts
//! a trace. The trace id goes into the call record, `/admin/api/calls` and the access log.

use http::HeaderValue;
use http::header::{HeaderMap, HeaderName};

pub static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The sampled flag (bit 0 of trace-flags).
const SAMPLED: u8 = 1;

/// A request's place in its trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// prescale's span for this call: the parent the upstream sees.
    pub span_id: [u8; 8],
    /// The client's span, when the client sent a valid `traceparent`.
    pub parent_id: Option<[u8; 8]>,
    pub flags: u8,
}

impl TraceContext {
    /// Continues the request's trace, or starts one.
    pub fn from_headers(h: &HeaderMap) -> Self {
        let parsed = match h.get_all(&TRACEPARENT).iter().collect::<Vec<_>>().as_slice() {
            // Two traceparent headers are invalid too.
            [one] => parse(one.as_bytes()),
            _ => None,
        };
        match parsed {
            Some((trace_id, parent, flags)) => {
                Self { trace_id, span_id: new_span_id(), parent_id: Some(parent), flags }
            }
            None => {
                let mut trace_id = [0u8; 16];
                fill_nonzero(&mut trace_id);
                Self { trace_id, span_id: new_span_id(), parent_id: None, flags: SAMPLED }
            }
        }
    }

    pub fn sampled(&self) -> bool {
        self.flags & SAMPLED != 0
    }

    /// Sets the upstream's `traceparent` (version 00, prescale's span as the parent); drops a
    /// `tracestate` that does not belong to a continued trace.
    pub fn write(&self, h: &mut HeaderMap) {
        let mut v = [0u8; 55];
        v[..3].copy_from_slice(b"00-");
        hex(&self.trace_id, &mut v[3..35]);
        v[35] = b'-';
        hex(&self.span_id, &mut v[36..52]);
        v[52] = b'-';
        hex(&[self.flags], &mut v[53..55]);
        // Only lowercase hex digits and dashes: always a valid header value.
        if let Ok(v) = HeaderValue::from_bytes(&v) {
            h.insert(TRACEPARENT.clone(), v);
        }
        if self.parent_id.is_none() {
            h.remove(&TRACESTATE);
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        crate::historian::record::trace_id_hex(&self.trace_id).unwrap_or_default()
    }
}

fn hex(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[(b >> 4) as usize];
        out[2 * i + 1] = DIGITS[(b & 15) as usize];
    }
}

fn unhex<const N: usize>(s: &[u8]) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, o) in out.iter_mut().enumerate() {
        *o = digit(s[2 * i])? << 4 | digit(s[2 * i + 1])?;
    }
    Some(out)
}

/// `version-traceid-parentid-flags` per W3C Trace Context level 1: lowercase hex, version
/// `ff` invalid, all-zero ids invalid; version 00 is exactly 55 bytes; a later version may
/// append fields after a dash, which are ignored.
fn parse(v: &[u8]) -> Option<([u8; 16], [u8; 8], u8)> {
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let [version] = unhex::<1>(&v[..2])?;
    if version == 0xff || (version == 0 && v.len() != 55) || (v.len() > 55 && v[55] != b'-') {
        return None;
    }
    let trace: [u8; 16] = unhex(&v[3..35])?;
    let parent: [u8; 8] = unhex(&v[36..52])?;
    let [flags] = unhex::<1>(&v[53..55])?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent, flags))
}

fn new_span_id() -> [u8; 8] {
    let mut id = [0u8; 8];
    fill_nonzero(&mut id);
    id
}

/// Random bytes, never all zero (an all-zero id is invalid).
fn fill_nonzero(out: &mut [u8]) {
    loop {
        fastrand::fill(out);
        if out.iter().any(|b| *b != 0) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_continued_with_a_new_parent() {
        let t = TraceContext::from_headers(&headers(&[("traceparent", CLIENT), ("tracestate", "congo=t61rcWkgMzE")]));
        assert_eq!(t.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_id, unhex::<8>(b"00f067aa0ba902b7"));
        assert!(t.sampled());
        let mut out = headers(&[("traceparent", CLIENT), ("tracestate", "congo=t61rcWkgMzE")]);
        t.write(&mut out);
        let sent = out[&TRACEPARENT].to_str().unwrap().to_string();
        assert_eq!(sent.len(), 55);
        assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-01"), "{sent}");
        assert_ne!(&sent[36..52], "00f067aa0ba902b7", "prescale's own span is the upstream's parent");
        assert_eq!(unhex::<8>(&sent.as_bytes()[36..52]), Some(t.span_id));
        assert_eq!(out[&TRACESTATE], "congo=t61rcWkgMzE", "tracestate passes untouched");
        // The sampled flag is the client's decision.
        let unsampled = TraceContext::from_headers(&headers(&[("traceparent", &CLIENT.replace("-01", "-00"))]));
        assert!(!unsampled.sampled());
    }

    #[test]
    fn invalid_or_missing_traceparent_starts_a_trace_and_drops_tracestate() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            let h = headers(&[("traceparent", bad), ("tracestate", "a=b")]);
            let t = TraceContext::from_headers(&h);
            assert!(t.parent_id.is_none(), "{bad:?} was accepted");
            assert_ne!(t.trace_id, [0; 16]);
            let mut out = h.clone();
            t.write(&mut out);
            assert!(out.get(&TRACESTATE).is_none(), "{bad:?}");
            assert!(parse(out[&TRACEPARENT].as_bytes()).is_some(), "what prescale sends parses");
        }
        // Two headers are as bad as one invalid one.
        let two = headers(&[("traceparent", CLIENT), ("traceparent", CLIENT)]);
        assert!(TraceContext::from_headers(&two).parent_id.is_none());
        // A later version with more fields is read by its first four.
        let v1 = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-whatever";
        assert!(TraceContext::from_headers(&headers(&[("traceparent", v1)])).parent_id.is_some());
        // Started traces differ.
        let (a, b) = (TraceContext::from_headers(&HeaderMap::new()), TraceContext::from_headers(&HeaderMap::new()));
        assert_ne!(a.trace_id, b.trace_id);
    }
}
