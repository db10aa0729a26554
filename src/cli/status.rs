//! `prescale status`: what an operator types during an incident instead of opening a browser —
//! pools, VMs, each endpoint's forecast for the next hour and the last decisions, read from a
//! running instance's admin API, as a compact table (or one JSON object with `--json`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use http_body_util::Full;
use serde_json::{Value, json};

/// Where the admin API is and how to get in.
pub(super) struct Target {
    /// `http://host:port` or `https://host:port`.
    pub base: String,
    pub token: Option<String>,
    /// PEM certificates to trust for HTTPS (the admin's own certificate when it is self-signed).
    pub ca: Option<PathBuf>,
}

impl Target {
    /// From `--admin URL` or the configuration's `[admin]` (address, token, TLS certificate).
    pub(super) fn resolve(
        admin: Option<String>,
        config: &Path,
        token_file: Option<PathBuf>,
        ca: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let read_token = |p: &Path| -> anyhow::Result<String> {
            Ok(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?.trim().to_string())
        };
        let token = match &token_file {
            Some(p) => Some(read_token(p)?),
            None => std::env::var("PRESCALE_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()),
        };
        if let Some(url) = admin {
            let url = url.trim_end_matches('/').to_string();
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                bail!("--admin {url:?}: give a URL such as http://127.0.0.1:9901");
            }
            return Ok(Self { base: url, token, ca });
        }
        let s = crate::config::load(config).map_err(|e| anyhow!("{e}"))?;
        let mut addr = s.admin.addr;
        // An admin listening on every address is reached on loopback.
        if addr.ip().is_unspecified() {
            addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
        }
        let scheme = if s.admin.tls.is_some() { "https" } else { "http" };
        Ok(Self {
            base: format!("{scheme}://{addr}"),
            token: token.or(s.admin.token),
            ca: ca.or_else(|| s.admin.tls.map(|t| t.cert)),
        })
    }
}

/// Everything the table shows, as the admin API gave it.
async fn gather(t: &Target) -> anyhow::Result<Value> {
    let client = Client::new(t)?;
    let pools = client.get("/admin/api/pools").await?;
    let endpoints = client.get("/admin/api/endpoints").await.unwrap_or(Value::Array(Vec::new()));
    let decisions = client.get("/admin/api/decisions?limit=10").await?;
    let mut eps = Vec::new();
    for e in endpoints.as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or_default();
        let forecast = client.get(&format!("/admin/api/forecast?endpoint={}", encode(name))).await.ok();
        eps.push(json!({ "endpoint": e, "forecast": forecast }));
    }
    Ok(json!({ "admin": t.base, "pools": pools, "endpoints": eps, "decisions": decisions }))
}

/// `prescale exclude`: excludes a period of an endpoint from what its models learn, through the
/// running instance's admin action (saved in its data_dir; the model is fitted again).
pub(super) fn exclude(t: &Target, endpoint: &str, from: &str, to: &str, reason: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let client = Client::new(t)?;
        client
            .action(&[("action", "exclude"), ("endpoint", endpoint), ("from", from), ("to", to), ("reason", reason)])
            .await
    })?;
    println!("{endpoint}: {from} – {to} excluded from its models ({reason}); it is fitted again");
    Ok(())
}

pub(super) fn status(t: &Target, as_json: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let v = rt.block_on(gather(t))?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", table(&v, crate::clock::now_us() / 1_000_000));
    }
    Ok(())
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A rate in calls per second, short.
fn rate(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(r) if r >= 100.0 => format!("{r:.0}/s"),
        Some(r) => format!("{r:.1}/s"),
    }
}

/// `HH:MM:SS` of an epoch second (UTC).
fn clock(t: u64) -> String {
    format!("{:02}:{:02}:{:02}", t % 86_400 / 3600, t % 3600 / 60, t % 60)
}

/// One block character per point, from the lowest to the highest.
fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    values
        .iter()
        .map(|v| if span <= 1e-9 { BARS[0] } else { BARS[((v - lo) / span * 7.0).round().clamp(0.0, 7.0) as usize] })
        .collect()
}

/// Left-aligned columns, two spaces apart.
fn columns(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> =
        (0..n).map(|i| rows.iter().filter_map(|r| r.get(i)).map(|c| c.chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for r in rows {
        let line: Vec<String> =
            r.iter().enumerate().map(|(i, c)| format!("{c}{}", " ".repeat(widths[i] - c.chars().count()))).collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    out
}

/// The terminal view of what [`gather`] read.
pub(super) fn table(v: &Value, now: u64) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "prescale at {} — {} UTC\n", v["admin"].as_str().unwrap_or("?"), clock(now));
    let pools = v["pools"].as_array().cloned().unwrap_or_default();
    if pools.is_empty() {
        let _ = writeln!(out, "No scaled pools.\n");
    } else {
        let mut rows = vec![
            ["POOL", "MODE", "SERVING", "BOOTING", "SPARE", "CAPACITY", "REQUIRED", "MEASURED", "LEAD", "STATE"]
                .map(String::from)
                .to_vec(),
        ];
        for p in &pools {
            let vms = p["vms"].as_array().cloned().unwrap_or_default();
            let count = |ph: &[&str]| vms.iter().filter(|v| ph.iter().any(|p| v["phase"] == *p)).count().to_string();
            rows.push(vec![
                p["pool"].as_str().unwrap_or("?").into(),
                p["mode"].as_str().unwrap_or("?").into(),
                count(&["serving"]),
                count(&["booting"]),
                count(&["suspended", "stopped"]),
                rate(p["capacity_rps"].as_f64()),
                rate(p["required_rps"].as_f64()),
                rate(p["measured_rps"].as_f64()),
                format!("{}s", p["lead"]["lead_time_s"].as_u64().unwrap_or(0)),
                p["degraded"].as_str().map_or("ok".into(), |d| format!("DEGRADED: {d}")),
            ]);
        }
        out.push_str(&columns(&rows));
        out.push('\n');
        let mut rows = vec![
            ["VM", "POOL", "STATE", "PHASE", "VCPUS", "MEMORY", "ADDRESS", "IN FLIGHT"].map(String::from).to_vec(),
        ];
        for p in &pools {
            for vm in p["vms"].as_array().into_iter().flatten() {
                rows.push(vec![
                    vm["name"].as_str().unwrap_or("?").into(),
                    p["pool"].as_str().unwrap_or("?").into(),
                    vm["state"].as_str().unwrap_or("?").into(),
                    vm["phase"].as_str().unwrap_or("?").into(),
                    format!("{}/{}", vm["vcpus"], vm["max_vcpus"]),
                    format!("{} MiB", vm["memory_mib"]),
                    vm["addr"].as_str().unwrap_or("-").into(),
                    vm["in_flight"].as_str().unwrap_or("").into(),
                ]);
            }
        }
        if rows.len() > 1 {
            out.push_str(&columns(&rows));
            out.push('\n');
        }
    }
    let eps = v["endpoints"].as_array().cloned().unwrap_or_default();
    if !eps.is_empty() {
        let mut rows = vec![
            ["ENDPOINT", "NOW", "MODEL", "+15m", "+30m", "+60m", "PEAK hi95", "NEXT HOUR"].map(String::from).to_vec(),
        ];
        for e in &eps {
            let f = &e["forecast"];
            let points = f["points"].as_array().cloned().unwrap_or_default();
            let at = |i: usize| points.get(i).and_then(|p| p["rate"].as_f64());
            let peak = points
                .iter()
                .filter_map(|p| p["hi95"].as_f64())
                .fold(None, |m: Option<f64>, x| Some(m.map_or(x, |m| m.max(x))));
            let means: Vec<f64> = points.iter().filter_map(|p| p["rate"].as_f64()).collect();
            rows.push(vec![
                e["endpoint"]["name"].as_str().unwrap_or("?").into(),
                rate(e["endpoint"]["rate_per_s"].as_f64()),
                f["model"].as_str().unwrap_or("-").into(),
                rate(at(14)),
                rate(at(29)),
                rate(at(59)),
                rate(peak),
                sparkline(&means),
            ]);
        }
        out.push_str(&columns(&rows));
        out.push('\n');
    }
    let decisions = v["decisions"].as_array().cloned().unwrap_or_default();
    if decisions.is_empty() {
        let _ = writeln!(out, "No decisions yet.");
    } else {
        let _ = writeln!(out, "Last decisions (newest first):");
        let mut rows = Vec::new();
        for d in &decisions {
            let action = match &d["action"] {
                Value::Null => "hold".to_string(),
                a => a["kind"].as_str().unwrap_or("?").to_string(),
            };
            rows.push(vec![
                format!("  {}", d["t"].as_u64().map_or("?".into(), clock)),
                d["pool"].as_str().unwrap_or("?").into(),
                action,
                d["outcome"].as_str().unwrap_or("?").into(),
                if d["reactive"] == true { "reactive".into() } else { String::new() },
                d["reason"].as_str().unwrap_or("").into(),
            ]);
        }
        out.push_str(&columns(&rows));
    }
    out
}

/// A one-request-per-connection HTTP/1.1 client for the admin API: plain or TLS (rustls, with
/// the given certificates or the admin's own as roots), the bearer token when there is one.
struct Client {
    host: String,
    port: u16,
    token: Option<String>,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Client {
    fn new(t: &Target) -> anyhow::Result<Self> {
        let (https, rest) = match t.base.split_once("://") {
            Some(("https", r)) => (true, r),
            Some(("http", r)) => (false, r),
            _ => bail!("{}: not an http(s) URL", t.base),
        };
        let authority: http::uri::Authority = rest.parse().with_context(|| format!("{}: bad address", t.base))?;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_string();
        let tls = if https {
            let mut roots = rustls::RootCertStore::empty();
            let ca = t.ca.as_ref().context("the admin speaks HTTPS: give --ca FILE (PEM) to trust its certificate")?;
            for c in rustls_pki_types::pem::PemObject::pem_file_iter(ca)
                .with_context(|| format!("reading {}", ca.display()))?
            {
                roots.add(c.with_context(|| format!("a certificate in {}", ca.display()))?)?;
            }
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()?
                .with_root_certificates(roots)
                .with_no_client_auth();
            Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
        } else {
            None
        };
        Ok(Self { host, port, token: t.token.clone(), tls })
    }

    /// A JSON answer of the admin API.
    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let (status, body) = self.call(http::Method::GET, path, None).await?;
        if status != 200 {
            bail!("GET {path}: {status} {}", String::from_utf8_lossy(&body).trim());
        }
        serde_json::from_slice(&body).with_context(|| format!("GET {path}: not JSON"))
    }

    /// `POST /admin/action` with these fields: with the token when there is one, else with the
    /// form secret of a fresh page load (what a browser on this machine would send).
    async fn action(&self, fields: &[(&str, &str)]) -> anyhow::Result<()> {
        let mut form: Vec<(String, String)> = fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if self.token.is_none() {
            let (_, page) = self.call(http::Method::GET, "/admin?refresh=0", None).await?;
            let page = String::from_utf8_lossy(&page);
            let secret = page
                .split(r#"name="csrf" value=""#)
                .nth(1)
                .and_then(|r| r.split('"').next())
                .context("the admin page offered no form secret")?;
            form.push(("csrf".into(), secret.to_string()));
        }
        let body: String =
            form.iter().map(|(k, v)| format!("{}={}", encode(k), encode(v))).collect::<Vec<_>>().join("&");
        let (status, answer) = self.call(http::Method::POST, "/admin/action", Some(body)).await?;
        match status {
            303 => Ok(()),
            _ => bail!("{status}: {}", String::from_utf8_lossy(&answer).trim()),
        }
    }

    async fn call(&self, method: http::Method, path: &str, form: Option<String>) -> anyhow::Result<(u16, Bytes)> {
        tokio::time::timeout(Duration::from_secs(10), self.fetch(method.clone(), path, form))
            .await
            .map_err(|_| anyhow!("{method} {path}: no answer within 10 s"))?
    }

    async fn fetch(&self, method: http::Method, path: &str, form: Option<String>) -> anyhow::Result<(u16, Bytes)> {
        let tcp = tokio::net::TcpStream::connect((self.host.as_str(), self.port))
            .await
            .with_context(|| format!("connecting to {}:{} (is prescale running?)", self.host, self.port))?;
        let req = {
            let mut b = http::Request::builder()
                .method(method.clone())
                .uri(path)
                .header(http::header::HOST, format!("{}:{}", self.host, self.port));
            if let Some(t) = &self.token {
                b = b.header(http::header::AUTHORIZATION, format!("Bearer {t}"));
            }
            match form {
                Some(f) => b
                    .header(http::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .header(http::header::CONTENT_LENGTH, f.len())
                    .body(Full::new(Bytes::from(f)))?,
                None => b.body(Full::new(Bytes::new()))?,
            }
        };
        let resp = match &self.tls {
            None => send(hyper_util::rt::TokioIo::new(tcp), req).await?,
            Some(tls) => {
                let name = rustls_pki_types::ServerName::try_from(self.host.clone())?;
                send(hyper_util::rt::TokioIo::new(tls.connect(name, tcp).await?), req).await?
            }
        };
        let (status, body) = resp;
        if status == 401 || status == 403 {
            bail!(
                "{method} {path}: {status} — give the admin token (--token-file, PRESCALE_ADMIN_TOKEN, or admin.token_file)"
            );
        }
        Ok((status, body))
    }
}

async fn send<I>(io: I, req: http::Request<Full<Bytes>>) -> anyhow::Result<(u16, Bytes)>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (status, body) = crate::proxy::upstream::request_once(io, req).await?;
    Ok((status.as_u16(), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_pools_vms_forecasts_and_decisions() {
        let points: Vec<Value> =
            (0..60).map(|i| json!({ "rate": 1.0 + i as f64 / 10.0, "hi95": 2.0 + i as f64 / 10.0 })).collect();
        let v = json!({
            "admin": "http://127.0.0.1:9901",
            "pools": [{ "pool": "p", "mode": "enabled", "capacity_rps": 10.0, "required_rps": 7.5, "measured_rps": 3.25,
                        "lead": { "lead_time_s": 120 }, "degraded": "hypervisor unreachable",
                        "vms": [{ "name": "p-1", "state": "running", "phase": "serving", "vcpus": 2, "max_vcpus": 4,
                                  "memory_mib": 1024, "addr": "10.0.0.5:80" },
                                { "name": "p-2", "state": "paused", "phase": "suspended", "vcpus": 1, "max_vcpus": 4,
                                  "memory_mib": 512 }] }],
            "endpoints": [{ "endpoint": { "name": "api", "rate_per_s": 3.0 }, "forecast": { "model": "hw", "points": points } }],
            "decisions": [{ "t": 3723, "pool": "p", "action": { "kind": "launch" }, "outcome": "ok", "reactive": false,
                            "reason": "forecast upper band 9.0/s over capacity" },
                          { "t": 3600, "pool": "p", "action": null, "outcome": "ok", "reactive": true, "reason": "steady" }],
        });
        let t = table(&v, 3725);
        assert!(t.starts_with("prescale at http://127.0.0.1:9901 — 01:02:05 UTC"), "{t}");
        let line = |start: &str| t.lines().find(|l| l.starts_with(start)).unwrap_or_else(|| panic!("{start}: {t}"));
        let pool: Vec<&str> = line("p ").split_whitespace().collect();
        assert_eq!(&pool[..9], ["p", "enabled", "1", "0", "1", "10.0/s", "7.5/s", "3.2/s", "120s"], "{t}");
        assert!(line("p ").ends_with("DEGRADED: hypervisor unreachable"));
        assert!(line("p-1").contains("2/4") && line("p-1").contains("10.0.0.5:80"));
        let api: Vec<&str> = line("api").split_whitespace().collect();
        assert_eq!(&api[..7], ["api", "3.0/s", "hw", "2.4/s", "3.9/s", "6.9/s", "7.9/s"], "{t}");
        assert_eq!(api[7].chars().count(), 60);
        assert!(api[7].starts_with('▁') && api[7].ends_with('█'), "{}", api[7]);
        assert!(line("  01:02:03").contains("launch") && line("  01:02:03").contains("forecast upper band"));
        assert!(line("  01:00:00").contains("hold") && line("  01:00:00").contains("reactive"));
        // Columns line up: every row of a block starts its second column at the same place.
        let col2 = |l: &str| l.find("  ").map(|i| i + l[i..].len() - l[i..].trim_start().len());
        assert_eq!(col2(line("POOL")), col2(line("p ")));
    }

    #[test]
    fn nothing_to_show_is_said() {
        let t = table(&json!({ "admin": "http://x:1", "pools": [], "endpoints": [], "decisions": [] }), 0);
        assert!(t.contains("No scaled pools.") && t.contains("No decisions yet."), "{t}");
    }
}
