//! The admin listener's settings, validated (built by [`crate::config`] from `proxy.toml`).

use std::net::SocketAddr;
use std::time::Duration;

use crate::proxy::settings::TlsSettings;

#[derive(Debug, Clone)]
pub struct AdminSettings {
    pub addr: SocketAddr,
    /// Present when the admin listener speaks HTTPS (`[admin.tls]`); session cookies are then
    /// `Secure`.
    pub tls: Option<TlsSettings>,
    /// Bearer token; required when `addr` is not loopback.
    pub token: Option<String>,
    /// Host names the admin answers besides IP literals and `localhost` (DNS rebinding guard).
    pub hosts: Vec<String>,
    /// Admin connections open at once; beyond them only `/live` and `/ready` are answered.
    pub max_connections: usize,
    /// A request's head and body must arrive within this.
    pub request_timeout: Duration,
    /// Keep-alive admin connections silent this long are closed.
    pub idle_timeout: Duration,
    /// Wrong tokens or form secrets one address may present per minute before it gets 429.
    pub max_failed_logins: u32,
}
