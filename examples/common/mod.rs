//! Helpers shared by the end-to-end examples (not an example itself: a folder without main.rs).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// One HTTP/1.0 GET: status and body, or None when the connection fails.
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: e2e\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.get(9..12)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|b| b.1.to_string()).unwrap_or_default();
    Some((status, body))
}

/// An admin API answer as JSON (Null when unavailable).
pub fn json(addr: SocketAddr, path: &str) -> serde_json::Value {
    http_get(addr, path).and_then(|(_, b)| serde_json::from_str(&b).ok()).unwrap_or_default()
}
