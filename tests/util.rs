//! Helpers: a fake upstream (a real hyper server on a loopback port), a running prescale built
//! from TOML text, HTTP clients, and raw-socket helpers for malformed input.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use prescale::app::App;

pub type Body = BoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

/// A fake upstream. Paths:
/// - `/health` → 200, or 503 after `set_healthy(false)`
/// - `…/status/N` → status N (the marker may follow any prefix, e.g. `/api/status/404`)
/// - `…/sleep/MS` → waits, then 200
/// - `…/big/N` → N bytes, streamed in 64 KiB chunks
/// - a request with `Upgrade` → 101, then echoes bytes on the upgraded connection
/// - anything else → 200 with a JSON echo: name, method, path, query, headers, body_len; a
///   path ending in `/close` closes the connection after the response
pub struct Upstream {
    pub addr: SocketAddr,
    pub name: String,
    pub hits: Arc<AtomicUsize>,
    /// TCP connections accepted.
    pub conns: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
    stop: CancellationToken,
    tasks: TaskTracker,
}

impl Upstream {
    pub async fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap()).await
    }

    pub async fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).await.expect("bind upstream");
        let addr = listener.local_addr().unwrap();
        let (hits, healthy) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicBool::new(true)));
        let conns = Arc::new(AtomicUsize::new(0));
        let accepted = conns.clone();
        let (stop, tasks) = (CancellationToken::new(), TaskTracker::new());
        let (h, hl, st, ts, nm) = (hits.clone(), healthy.clone(), stop.clone(), tasks.clone(), name.to_string());
        tasks.spawn(async move {
            loop {
                let stream = tokio::select! {
                    _ = st.cancelled() => return,
                    a = listener.accept() => match a { Ok((s, _)) => s, Err(_) => continue },
                };
                accepted.fetch_add(1, Ordering::SeqCst);
                let (h, hl, st, nm) = (h.clone(), hl.clone(), st.clone(), nm.clone());
                ts.spawn(async move {
                    let svc = service_fn(move |req| answer(nm.clone(), h.clone(), hl.clone(), req));
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = st.cancelled() => {} }
                });
            }
        });
        Self { addr, name: name.to_string(), hits, conns, healthy, stop, tasks }
    }

    pub fn set_healthy(&self, v: bool) {
        self.healthy.store(v, Ordering::SeqCst);
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// Closes the listener and every connection (the port is free afterwards).
    pub async fn stop(self) -> SocketAddr {
        self.stop.cancel();
        self.tasks.close();
        self.tasks.wait().await;
        self.addr
    }
}

async fn answer(
    name: String,
    hits: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    if path == "/health" {
        let ok = healthy.load(Ordering::SeqCst);
        return Ok(resp(if ok { 200 } else { 503 }, &name, "health"));
    }
    hits.fetch_add(1, Ordering::SeqCst);
    if req.headers().contains_key(http::header::UPGRADE) {
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = on.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let mut r = resp(101, &name, "");
        r.headers_mut().insert("upgrade", "websocket".parse().unwrap());
        r.headers_mut().insert("connection", "upgrade".parse().unwrap());
        return Ok(r);
    }
    if let Some(code) = after(&path, "/status/") {
        return Ok(resp(code.parse().unwrap_or(500), &name, "status"));
    }
    if let Some(ms) = after(&path, "/sleep/") {
        tokio::time::sleep(Duration::from_millis(ms.parse().unwrap_or(0))).await;
        return Ok(resp(200, &name, "slept"));
    }
    if let Some(n) = after(&path, "/big/") {
        let total: usize = n.parse().unwrap_or(0);
        let chunks = (0..total.div_ceil(65536))
            .map(move |i| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'x'; (total - i * 65536).min(65536)]))));
        let body = StreamBody::new(stream_of(chunks)).map_err(|e: Infallible| match e {}).boxed();
        let mut r = Response::new(body);
        r.headers_mut().insert("x-upstream", name.parse().unwrap());
        return Ok(r);
    }
    let close = path.ends_with("/close");
    let method = req.method().to_string();
    let version = format!("{:?}", req.version());
    let query = req.uri().query().unwrap_or("").to_string();
    let headers: BTreeMap<String, String> =
        req.headers().iter().map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string())).collect();
    // Count the body frame by frame: never hold it whole.
    let mut body = req.into_body();
    let mut body_len = 0usize;
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => body_len += f.data_ref().map_or(0, |d| d.len()),
            Err(_) => return Ok(resp(400, &name, "body error")),
        }
    }
    let json = serde_json::json!({
        "name": name, "method": method, "path": path, "query": query, "headers": headers, "body_len": body_len,
        "version": version,
    });
    let mut r = resp(200, &name, &json.to_string());
    if close {
        r.headers_mut().insert("connection", "close".parse().unwrap());
    }
    Ok(r)
}

/// The part of `path` after `marker`, wherever the marker sits (`/api/sleep/5` → `5`).
fn after<'a>(path: &'a str, marker: &str) -> Option<&'a str> {
    path.find(marker).map(|i| &path[i + marker.len()..])
}

/// A stream over an iterator (for streaming request and response bodies).
pub fn stream_of<I: Iterator + Send + Unpin>(it: I) -> impl futures_core::Stream<Item = I::Item> + Send {
    struct S<I>(I);
    impl<I: Iterator + Unpin> futures_core::Stream for S<I> {
        type Item = I::Item;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<I::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    S(it)
}

fn resp(status: u16, name: &str, body: &str) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())).map_err(|e| match e {}).boxed());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut().insert("x-upstream", name.parse().unwrap());
    r.headers_mut().insert("connection", "x-hop-from-upstream".parse().unwrap());
    r.headers_mut().insert("x-hop-from-upstream", "1".parse().unwrap());
    r.headers_mut().insert("keep-alive", "timeout=5".parse().unwrap());
    r
}

/// A free loopback port nobody listens on.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// Starts prescale from TOML text (listen and admin on port 0 unless the text says otherwise).
pub async fn start(toml: &str) -> App {
    let text = if toml.contains("[listen]") {
        toml.to_string()
    } else {
        format!("[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n{toml}")
    };
    let settings = prescale::config::parse(&text, std::path::Path::new(".")).expect("test config is valid");
    App::start(settings).await.expect("prescale starts")
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new()).http2_only(true).build_http()
}

/// A finished response: status, headers, whole body.
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
    pub version: http::Version,
}

impl Got {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn send(c: &TestClient, req: Request<Full<Bytes>>) -> Got {
    let r = tokio::time::timeout(Duration::from_secs(20), c.request(req)).await.expect("no timeout").expect("response");
    let (parts, body) = r.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Got { status: parts.status.as_u16(), headers: parts.headers, body, version: parts.version }
}

pub async fn get(c: &TestClient, url: &str) -> Got {
    send(c, Request::get(url).body(Full::default()).unwrap()).await
}

/// Writes raw bytes and reads until the server closes or `wait` passes.
pub async fn raw(addr: SocketAddr, bytes: &[u8], wait: Duration) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(wait, s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `f` every 20 ms until it returns true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

pub fn url(app: &App, path: &str) -> String {
    format!("http://{}{}", app.proxy_addr, path)
}

pub fn admin_url(app: &App, path: &str) -> String {
    format!("http://{}{}", app.admin_addr, path)
}

/// Value of one Prometheus sample line (exact label set) in `/metrics`.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')).and_then(|v| v.parse().ok()))
}

/// Kills the child process when dropped, so a failing test never leaves one behind.
pub struct KillOnDrop(pub std::process::Child);

/// Starts `prescale run --config cfg` as a child process; returns it with the proxy's and the
/// admin's `host:port`, read from its first line.
pub fn spawn_run(cfg: &std::path::Path) -> (KillOnDrop, String, String) {
    use std::io::BufRead;
    let mut child = KillOnDrop(
        std::process::Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["run", "--config"])
            .arg(cfg)
            .env("PRESCALE_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split(',').next()).expect("proxy address").to_string();
    let admin = line.rsplit("http://").next().expect("admin address").trim().to_string();
    (child, addr, admin)
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `prescale import --config CFG --endpoint ENDPOINT --input FILE [extra…]`, whatever it does.
pub fn import_output(
    cfg: &std::path::Path,
    endpoint: &str,
    input: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["import", "--config"])
        .arg(cfg)
        .args(["--endpoint", endpoint, "--input"])
        .arg(input)
        .args(extra)
        .output()
        .unwrap()
}

/// The same, which must succeed; returns its output.
pub fn import(cfg: &std::path::Path, endpoint: &str, csv: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let out = import_output(cfg, endpoint, csv, extra);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// prescale in-process in front of `up` (one endpoint `api` on `/`), with `listen_extra` lines
/// after `[listen]`'s address (more listen keys, or whole tables such as `[upstream]`).
pub async fn app_with(up: &Upstream, listen_extra: &str) -> prescale::app::App {
    start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n{listen_extra}\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    ))
    .await
}

/// True when `app` answers a plain GET through its proxy with 200.
pub async fn serves(app: &App) -> bool {
    get(&client(), &url(app, "/ok")).await.status == 200
}

/// Writes an admin token file readable by its owner only (as `check` requires).
pub fn write_token(dir: &std::path::Path, token: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("token");
    std::fs::write(&p, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Three days of 1-min history for endpoint `api` where, every day, a 40-minute peak of
/// 600 calls/min starts three minutes after the current minute (30 calls/min otherwise).
pub fn peak_history(dir: &std::path::Path, cfg: &std::path::Path) -> u64 {
    let now_min = prescale::clock::now_us() / 60_000_000;
    let peak_start = (now_min + 3) % 1440;
    let mut csv = String::from("timestamp,value\n");
    for m in now_min - 3 * 1440..now_min {
        let in_peak = (m % 1440 + 1440 - peak_start) % 1440 < 40;
        csv.push_str(&format!("{},{}\n", m * 60, if in_peak { 600 } else { 30 }));
    }
    std::fs::write(dir.join("h.csv"), csv).unwrap();
    import(cfg, "api", &dir.join("h.csv"), &[]);
    (now_min + 3) * 60
}

/// A program the tests need: on `PATH`, else in one of `also` (where `scripts/deps --tests`
/// put it); a panic naming the package otherwise.
pub fn find_tool(name: &str, also: &[std::path::PathBuf], package: &str) -> std::path::PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .chain(also.iter().map(|d| d.join(name)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is needed ({package}): run scripts/deps --tests"))
}
