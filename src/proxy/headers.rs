//! Header hygiene (RFC 9110 §7.6.1) and the forwarding headers prescale adds.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");

/// Hop-by-hop headers that never cross a proxy.
const HOP_BY_HOP: [&HeaderName; 8] = [
    &header::CONNECTION,
    &KEEP_ALIVE,
    &PROXY_CONNECTION,
    &header::TE,
    &header::TRAILER,
    &header::TRANSFER_ENCODING,
    &header::UPGRADE,
    &header::PROXY_AUTHORIZATION,
];

/// Removes hop-by-hop headers, including every header named in `Connection`. When `upgrade`
/// is given (a WebSocket or other Upgrade handshake), `Connection: upgrade` and that `Upgrade`
/// value are put back so the next hop sees the handshake.
pub fn strip_hop_by_hop(h: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in HOP_BY_HOP {
        h.remove(n);
    }
    h.remove(header::PROXY_AUTHENTICATE);
    if let Some(u) = upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, u);
    }
}

/// The `Upgrade` value if this HTTP/1.1 request asks for a protocol upgrade.
pub fn upgrade_request(h: &HeaderMap) -> Option<HeaderValue> {
    let asks = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    if asks { h.get(header::UPGRADE).cloned() } else { None }
}

/// Appends the client to `X-Forwarded-For`; sets `X-Forwarded-Proto` and `X-Forwarded-Host`
/// (never passes a client's own on); appends to `Via`. Unless the client is a `trusted` hop,
/// the client-sent `Forwarded` and `X-Real-IP` are removed: an upstream must not believe an
/// address or host the client made up.
pub fn add_forwarding(
    h: &mut HeaderMap,
    client: IpAddr,
    https: bool,
    host: Option<&str>,
    trusted: bool,
    via: &'static str,
) {
    h.remove(&X_FORWARDED_HOST);
    if !trusted {
        h.remove(header::FORWARDED);
        h.remove(&X_REAL_IP);
    }
    let mut ip = [0u8; 48];
    let ip = write_ip(client, &mut ip);
    let xff = match h.get(&X_FORWARDED_FOR).map(|v| v.as_bytes()) {
        Some(prev) if !prev.trim_ascii().is_empty() => HeaderValue::from_bytes(&[prev, b", ", ip].concat()),
        _ => HeaderValue::from_bytes(ip),
    };
    h.remove(&X_FORWARDED_FOR);
    if let Ok(v) = xff {
        h.insert(X_FORWARDED_FOR.clone(), v);
    }
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(if https { "https" } else { "http" }));
    if let Some(v) = host.and_then(|h| HeaderValue::from_str(h).ok()) {
        h.insert(X_FORWARDED_HOST.clone(), v);
    }
    append_via(h, via);
}

/// `ip` as text in `buf`, without the formatting machinery for IPv4 (every request's
/// `X-Forwarded-For`); IPv6 goes through `Display`.
fn write_ip(ip: IpAddr, buf: &mut [u8; 48]) -> &[u8] {
    match ip {
        IpAddr::V4(v4) => {
            let mut n = 0;
            for (i, o) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buf[n] = b'.';
                    n += 1;
                }
                if o >= 100 {
                    buf[n] = b'0' + o / 100;
                    n += 1;
                }
                if o >= 10 {
                    buf[n] = b'0' + o / 10 % 10;
                    n += 1;
                }
                buf[n] = b'0' + o % 10;
                n += 1;
            }
            &buf[..n]
        }
        IpAddr::V6(v6) => {
            use std::io::Write;
            let mut cur = std::io::Cursor::new(&mut buf[..]);
            let _ = write!(cur, "{v6}");
            let n = cur.position() as usize;
            &buf[..n]
        }
    }
}

/// Appends `value` (e.g. `1.1 prescale`) to the `Via` header.
pub fn append_via(h: &mut HeaderMap, value: &'static str) {
    match h.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(prev) => {
            if let Ok(v) = HeaderValue::from_str(&format!("{prev}, {value}")) {
                h.insert(header::VIA, v);
            }
        }
        None => {
            h.insert(header::VIA, HeaderValue::from_static(value));
        }
    }
}

/// Whether a client-supplied request id is kept: 1–128 bytes of letters, digits and
/// `-._:+/=` (UUIDs, hex, base64). Anything else — markup, quotes, spaces — could end up in a
/// log viewer or a page, so it is replaced.
fn safe_request_id(b: &[u8]) -> bool {
    !b.is_empty() && b.len() <= 128 && b.iter().all(|c| c.is_ascii_alphanumeric() || b"-._:+/=".contains(c))
}

/// The client's request id, if it is safe to keep (else the worker makes one).
pub fn client_request_id(h: &HeaderMap) -> Option<HeaderValue> {
    h.get(&X_REQUEST_ID).filter(|v| safe_request_id(v.as_bytes())).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret-hop".parse().unwrap());
        h.insert("x-secret-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-keep", "yes".parse().unwrap());
        strip_hop_by_hop(&mut h, None);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-keep"], "yes");
    }

    #[test]
    fn upgrade_is_kept_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "Upgrade".parse().unwrap());
        h.insert(header::UPGRADE, "websocket".parse().unwrap());
        let up = upgrade_request(&h);
        assert_eq!(up.as_ref().unwrap(), "websocket");
        strip_hop_by_hop(&mut h, up);
        assert_eq!(h[header::CONNECTION], "upgrade");
        assert_eq!(h[header::UPGRADE], "websocket");
    }

    #[test]
    fn forwarding_headers() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "10.0.0.1".parse().unwrap());
        h.insert(header::VIA, "1.0 edge".parse().unwrap());
        add_forwarding(&mut h, "192.0.2.7".parse().unwrap(), true, Some("api.example.com"), false, "1.1 prescale");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(h[header::VIA], "1.0 edge, 1.1 prescale");
    }

    #[test]
    fn addresses_are_written_as_display_writes_them() {
        for ip in [
            "0.0.0.0",
            "1.2.3.4",
            "10.0.100.9",
            "255.255.255.255",
            "192.168.10.1",
            "::1",
            "2001:db8::8:800:200c:417a",
            "::ffff:192.0.2.1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            let mut buf = [0u8; 48];
            assert_eq!(write_ip(ip, &mut buf), ip.to_string().as_bytes(), "{ip}");
        }
    }

    #[test]
    fn request_ids() {
        assert_eq!(client_request_id(&HeaderMap::new()), None);
        let mut h = HeaderMap::new();
        h.insert(&X_REQUEST_ID, "abc-123".parse().unwrap());
        assert_eq!(client_request_id(&h).unwrap(), "abc-123");
        h.insert(&X_REQUEST_ID, "has space".parse().unwrap());
        assert_eq!(client_request_id(&h), None);
        // Regression (issue 20, finding 10): markup and quotes were kept.
        for bad in ["<script>x</script>", "a\"b", "x'y", "{json}"] {
            h.insert(&X_REQUEST_ID, bad.parse().unwrap());
            assert_eq!(client_request_id(&h), None, "{bad} replaced");
        }
        h.insert(&X_REQUEST_ID, "9f1c2a3b-0000-4abc-8def-1234567890ab".parse().unwrap());
        assert_eq!(client_request_id(&h).unwrap(), "9f1c2a3b-0000-4abc-8def-1234567890ab");
    }

    /// Regression (issue 20, finding 5): a client's own X-Forwarded-Host, Forwarded and
    /// X-Real-IP were passed on.
    #[test]
    fn client_forwarding_claims_are_not_passed_on_from_untrusted_clients() {
        let claims = || {
            let mut h = HeaderMap::new();
            h.insert("x-forwarded-host", "evil.example".parse().unwrap());
            h.insert("forwarded", "for=1.2.3.4;host=evil.example".parse().unwrap());
            h.insert("x-real-ip", "1.2.3.4".parse().unwrap());
            h
        };
        let mut h = claims();
        add_forwarding(&mut h, "192.0.2.7".parse().unwrap(), false, None, false, "1.1 prescale");
        assert!(h.get("x-forwarded-host").is_none() && h.get("forwarded").is_none() && h.get("x-real-ip").is_none());
        let mut h = claims();
        add_forwarding(&mut h, "192.0.2.7".parse().unwrap(), false, Some("api.example.com"), true, "1.1 prescale");
        assert_eq!(h["x-forwarded-host"], "api.example.com", "ours, not the client's");
        assert!(h.get("forwarded").is_some() && h.get("x-real-ip").is_some(), "kept behind trusted hops");
    }
}
