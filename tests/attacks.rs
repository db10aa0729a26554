//! Hostile input, round two (issue 20): each test is a finding that got through before, probed
//! from outside against a running prescale (`prescale run` where memory or descriptors are
//! measured, in-process otherwise).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::util::*;

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn metrics(admin: &str) -> String {
    String::from_utf8_lossy(&get(&client(), &format!("http://{admin}/metrics")).await.body).into_owned()
}

/// Sends `n` GETs with a path of `len` bytes over `conns` keep-alive connections.
async fn long_path_requests(addr: SocketAddr, n: usize, len: usize, conns: usize) {
    let mut tasks = Vec::new();
    for k in 0..conns {
        tasks.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let mut buf = vec![0u8; 4096];
            for i in (k..n).step_by(conns) {
                let path = format!("/api/{i:06}/{}", "a".repeat(len));
                s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
                // The upstream's answer echoes the path: read until the whole body is in.
                let mut got = Vec::new();
                loop {
                    let r = s.read(&mut buf).await.unwrap();
                    assert!(r > 0, "connection closed");
                    got.extend_from_slice(&buf[..r]);
                    let text = String::from_utf8_lossy(&got);
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        assert!(head.starts_with("HTTP/1.1 200"), "{}", &head[..head.len().min(200)]);
                        let len: usize = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length: "))
                            .and_then(|v| v.trim().parse().ok())
                            .expect("content-length");
                        if body.len() >= len {
                            break;
                        }
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// A `proxy.toml` for `prescale run` in front of `up` (one endpoint on `/`), with extra lines for
/// `[listen]`, `[admin]` and `[historian]`.
fn run_config(dir: &std::path::Path, up: SocketAddr, listen: &str, admin: &str, historian: &str) -> std::path::PathBuf {
    let cfg = dir.join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n{listen}\n[admin]\naddr = \"127.0.0.1:0\"\n{admin}\n[historian]\n{historian}\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{up}\"]\n"
        ),
    )
    .unwrap();
    cfg
}

/// Sends `n` requests with `len`-byte paths after a warm-up, waits until the historian has
/// them all, and returns RSS growth (bytes) and memory-gauge growth.
async fn memory_growth(pid: u32, addr: SocketAddr, admin: &str, n: usize, len: usize) -> (f64, f64) {
    let gauge = "prescale_historian_memory_bytes";
    let accepted = "prescale_historian_records_total{result=\"accepted\"}";
    long_path_requests(addr, 200, 100, 4).await; // warm-up: buffers, ring chunk, tiers
    let before = metric(&metrics(admin).await, accepted).unwrap();
    let (rss0, g0) = (rss_kib(pid), metric(&metrics(admin).await, gauge).unwrap());
    long_path_requests(addr, n, len, 4).await;
    let all_in = async || metric(&metrics(admin).await, accepted) >= Some(before + n as f64);
    assert!(eventually(Duration::from_secs(10), all_in).await, "every call recorded");
    let (rss1, g1) = (rss_kib(pid), metric(&metrics(admin).await, gauge).unwrap());
    ((rss1 as f64 - rss0 as f64) * 1024.0, g1 - g0)
}

/// Finding 1: 5,000 requests with 64 KB paths grew RSS 48 → 574 MB (the recent-calls ring kept
/// every path whole) while the memory gauge said 1.6 MB. Now each stored path is cut (256 bytes
/// by default), and the gauge follows what the ring really holds: run again with paths kept to
/// 16 KB, so that they dominate RSS, the gauge's growth is within 10 % of RSS growth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_paths_keep_memory_bounded_and_the_gauge_honest() {
    let up = Upstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();

    // Defaults: bounded.
    let (child, addr, admin) = spawn_run(&run_config(dir.path(), up.addr, "", "", ""));
    let (rss, gauge) = memory_growth(child.0.id(), addr.parse().unwrap(), &admin, 5000, 64_000).await;
    let calls = get(&client(), &format!("http://{admin}/admin/api/calls?limit=1000")).await;
    let longest = calls.json().as_array().unwrap().iter().map(|c| c["path"].as_str().unwrap().len()).max().unwrap();
    eprintln!(
        "5,000 × 64 KB paths, defaults: RSS +{:.1} MiB, gauge +{:.1} MiB, longest stored path {longest} B, /calls page {} B",
        rss / 1048576.0,
        gauge / 1048576.0,
        calls.body.len()
    );
    assert!(longest <= 256 + 3, "stored paths are cut: {longest}");
    assert!(rss < 48.0 * 1048576.0, "RSS grew {rss} bytes (before the fix: ≈ 500 MB)");
    assert!(calls.body.len() < 1 << 20, "one page of calls is {} bytes", calls.body.len());
    drop(child);

    // Paths kept to 16 KB: the gauge tracks RSS.
    let cfg = run_config(dir.path(), up.addr, "", "", "path_max_len = 16384\nrecent_calls = 5000");
    let (child, addr, admin) = spawn_run(&cfg);
    let (rss, gauge) = memory_growth(child.0.id(), addr.parse().unwrap(), &admin, 4000, 16_000).await;
    eprintln!(
        "4,000 × 16 KB paths kept: RSS +{:.1} MiB, gauge +{:.1} MiB (ratio {:.3})",
        rss / 1048576.0,
        gauge / 1048576.0,
        gauge / rss
    );
    assert!((gauge / rss - 1.0).abs() <= 0.10, "gauge +{gauge} vs RSS +{rss}");
    drop(child);
}

/// Finding 1 (admin side): `/admin/api/calls?limit=10000` returned 329 MB and
/// `/admin/api/series?step=1&from=0&to=100000` 13 MB, one request at a time. Now every answer is
/// bounded and paged (`Link: rel="next"`), and the probes answer while large pages render.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_answers_are_bounded_and_paged_and_probes_answer_meanwhile() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "").await;
    let c = client();
    for i in 0..1500 {
        get(&c, &url(&app, &format!("/item/{i}?q={}", "x".repeat(300)))).await;
    }
    let all_in = async || {
        get(&c, &admin_url(&app, "/admin/api/endpoints")).await.json()[0]["calls_total"].as_u64() == Some(1500)
    };
    assert!(eventually(Duration::from_secs(5), all_in).await);
    // Calls: at most 1,000 per answer, and the Link leads to the older ones.
    let first = get(&c, &admin_url(&app, "/admin/api/calls?limit=10000&endpoint=api")).await;
    let page1 = first.json();
    assert_eq!(page1.as_array().unwrap().len(), 1000);
    let next = first.header("link").expect("a next link").to_string();
    let path = next.trim_start_matches('<').split('>').next().unwrap().to_string();
    assert!(next.ends_with("rel=\"next\"") && path.contains("before_us="), "{next}");
    let second = get(&c, &admin_url(&app, &path)).await;
    let page2 = second.json();
    assert_eq!(page2.as_array().unwrap().len(), 500, "the rest");
    assert!(second.header("link").is_none(), "no page after the last");
    let oldest1 = page1.as_array().unwrap().last().unwrap()["t_us"].as_u64().unwrap();
    assert!(page2.as_array().unwrap().iter().all(|c| c["t_us"].as_u64().unwrap() < oldest1));
    // Series: at most 10,000 points per answer.
    let s = get(&c, &admin_url(&app, "/admin/api/series?endpoint=api&step=1&from=0&to=100000")).await;
    assert_eq!(s.status, 200);
    assert!(s.json()["points"].as_array().unwrap().len() <= 10_000);
    assert!(s.body.len() < 2 << 20, "{} bytes (13 MB before)", s.body.len());
    assert!(s.header("link").unwrap().contains("from=10000"), "{:?}", s.header("link"));
    // Probes while large answers render, several at a time.
    let heavy: Vec<_> = (0..6)
        .map(|_| {
            let (c, u) = (c.clone(), admin_url(&app, "/admin/api/calls?limit=1000"));
            tokio::spawn(async move {
                for _ in 0..10 {
                    assert_eq!(get(&c, &u).await.status, 200);
                }
            })
        })
        .collect();
    let mut slowest = Duration::ZERO;
    while heavy.iter().any(|h| !h.is_finished()) {
        let t = Instant::now();
        assert_eq!(get(&c, &admin_url(&app, "/live")).await.status, 200);
        assert_eq!(get(&c, &admin_url(&app, "/ready")).await.status, 200);
        slowest = slowest.max(t.elapsed());
    }
    for h in heavy {
        h.await.unwrap();
    }
    eprintln!("slowest /live + /ready while pages rendered: {slowest:?}");
    assert!(slowest < Duration::from_secs(2), "{slowest:?}");
    app.stop().await;
}

/// Sets the open-file limit of the child (soft and hard, so prescale cannot raise it).
fn spawn_run_with_files(cfg: &std::path::Path, files: u64) -> (KillOnDrop, String, String) {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_prescale"));
    cmd.args(["run", "--config"]).arg(cfg).env("PRESCALE_LOG", "error").stdout(std::process::Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let l = libc::rlimit { rlim_cur: files, rlim_max: files };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = KillOnDrop(cmd.spawn().unwrap());
    let mut line = String::new();
    std::io::BufReader::new(child.0.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split(',').next()).unwrap().to_string();
    let admin = line.rsplit("http://").next().unwrap().trim().to_string();
    (child, addr, admin)
}

/// Finding 2: `POST /admin/action` with `Content-Length: 1000` and 3 bytes held its connection
/// forever, and 1,080 of them at the file limit made proxied requests and `/live` time out.
/// Now: at most `admin.max_connections` are held, each cut at `admin.request_timeout`; beyond
/// the cap probes are still answered and everything else closed at once; the proxy keeps
/// serving at a file limit of 256.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_admin_posts_are_cut_and_the_proxy_keeps_serving_at_the_file_limit() {
    let up = Upstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();
    let admin_limits = "max_connections = 16\nrequest_timeout = \"2s\"";
    let cfg = run_config(dir.path(), up.addr, "max_connections = 50", admin_limits, "enabled = false");
    let (_child, addr, admin) = spawn_run_with_files(&cfg, 256);
    let admin_addr: SocketAddr = admin.parse().unwrap();
    // 300 slow POSTs: more than the process has descriptors for.
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(admin_addr).await.unwrap();
        let _ = s
            .write_all(b"POST /admin/action HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nact")
            .await;
        slow.push(s);
    }
    let started = Instant::now();
    // The proxy serves, and the probes answer, while they are held.
    let c = client();
    for i in 0..20 {
        assert_eq!(get(&c, &format!("http://{addr}/ok/{i}")).await.status, 200);
    }
    let live = raw(admin_addr, b"GET /live HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", Duration::from_secs(3)).await;
    assert!(live.starts_with("HTTP/1.1 200"), "{live}");
    // Every slow POST ends: beyond the cap at once (503), the held ones at the request timeout.
    let mut ended = 0;
    let mut answers = std::collections::BTreeMap::new();
    for s in &mut slow {
        let mut buf = Vec::new();
        if tokio::time::timeout(Duration::from_secs(6), s.read_to_end(&mut buf)).await.is_ok() {
            ended += 1;
            let status = String::from_utf8_lossy(&buf).split(' ').nth(1).unwrap_or("closed").to_string();
            *answers.entry(status).or_insert(0) += 1;
        }
    }
    let took = started.elapsed();
    eprintln!("300 slow admin POSTs: {ended} ended within {took:?}: {answers:?}");
    assert_eq!(ended, 300, "{answers:?}");
    assert!(answers.get("408").copied().unwrap_or(0) <= 16, "{answers:?}");
    let m = String::from_utf8_lossy(&get(&c, &format!("http://{admin}/metrics")).await.body).into_owned();
    assert!(metric(&m, "prescale_admin_connections_refused_total").unwrap() >= 284.0, "refused beyond the cap");
    assert_eq!(get(&c, &format!("http://{addr}/after")).await.status, 200);
}

/// Finding 3: 300 idle WebSocket tunnels escaped `max_connections = 100` and
/// `idle_timeout = 3s`, with the connection gauge at 0. Now a tunnel holds its connection's
/// slot, counts in the gauges, and is closed when idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tunnels_count_against_the_cap_and_are_closed_when_idle() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "max_connections = 5\ntunnel_idle_timeout = \"5s\"").await;
    let mut tunnels = Vec::new();
    for _ in 0..5 {
        let mut s = TcpStream::connect(app.proxy_addr).await.unwrap();
        s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 1024];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 101"));
        s.write_all(b"ping").await.unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"ping", "the tunnel echoes");
        tunnels.push(s);
    }
    // Fresh activity on every tunnel, so none idles out while the gauges are read.
    for s in &mut tunnels {
        s.write_all(b"pong").await.unwrap();
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"pong");
    }
    let c = client();
    let m = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/metrics")).await.body).into_owned();
    assert_eq!(metric(&m, "prescale_tunnels_active"), Some(5.0), "{m}");
    assert_eq!(metric(&m, "prescale_connections_active"), Some(5.0));
    // The cap is full: a sixth connection waits (the kernel's queue), unanswered.
    let waiting = tokio::time::timeout(Duration::from_millis(700), get(&c, &url(&app, "/sixth"))).await;
    assert!(waiting.is_err(), "a sixth connection was served past max_connections = 5");
    // Idle for the tunnel timeout: closed, slots free.
    for s in &mut tunnels {
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(15), s.read(&mut buf)).await.expect("closed when idle");
        assert_eq!(n.unwrap_or(0), 0);
    }
    let freed = async || {
        let m = String::from_utf8_lossy(&get(&client(), &admin_url(&app, "/metrics")).await.body).into_owned();
        metric(&m, "prescale_tunnels_active") == Some(0.0)
            && metric(&m, "prescale_tunnels_idle_closed_total") == Some(5.0)
    };
    assert!(eventually(Duration::from_secs(3), freed).await);
    assert_eq!(get(&c, &url(&app, "/after")).await.status, 200);
    app.stop().await;
}

async fn two_pools(extra_listen: &str) -> (prescale::app::App, Upstream, Upstream) {
    let (search, orders) = (Upstream::start("search").await, Upstream::start("orders").await);
    let app = start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n{extra_listen}\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"search\"\npath_prefix = \"/api/search\"\npool = \"s\"\nmethods = [\"GET\"]\n\
         [[endpoint]]\nname = \"orders\"\npath_prefix = \"/api/orders\"\npool = \"o\"\nhost = \"api.example.com\"\n\
         [[pool]]\nname = \"s\"\nmembers = [\"{}\"]\n[[pool]]\nname = \"o\"\nmembers = [\"{}\"]\n",
        search.addr, orders.addr
    ))
    .await;
    (app, search, orders)
}

/// Finding 4: `/api/search/../orders/1` went to the search pool (and was recorded under
/// search), `POST /api/orders/../search/x` to the orders pool, around search's GET-only rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dot_segments_never_cross_endpoints() {
    let (app, search, orders) = two_pools("").await;
    let c = client();
    let req = |m: &str, p: &str| {
        Request::builder().method(m).uri(url(&app, p)).header("host", "api.example.com").body(Full::default()).unwrap()
    };
    for p in [
        "/api/search/../orders/1",
        "/api/search/%2e%2e/orders/1",
        "/api/search/%2E%2e/orders/1",
        "/api/search/..;/orders/1",
    ] {
        let got = send(&c, req("GET", p)).await;
        assert_eq!((got.status, got.header("x-upstream")), (200, Some("orders")), "{p}");
        assert_eq!(got.json()["path"], "/api/orders/1", "{p}: the normalised path is forwarded");
    }
    // POST to search's prefix through orders: search takes only GET, so nothing matches.
    assert_eq!(send(&c, req("POST", "/api/orders/../search/x")).await.status, 404);
    assert_eq!(send(&c, req("GET", "/api/orders/../search/x")).await.json()["name"], "search");
    // An encoded slash after dots has no safe reading.
    assert_eq!(send(&c, req("GET", "/api/search/..%2forders/1")).await.status, 400);
    // Recorded under the endpoint that served them.
    let recorded = async || {
        let calls = get(&c, &admin_url(&app, "/admin/api/calls?endpoint=orders")).await.json();
        // Not an array yet (the historian has not published the endpoint) is "not yet".
        calls.as_array().is_some_and(|a| a.len() == 4 && a.iter().all(|c| c["path"] == "/api/orders/1"))
    };
    assert!(eventually(Duration::from_secs(3), recorded).await);
    assert_eq!(search.hits(), 1);
    assert_eq!(orders.hits(), 4);
    app.stop().await;

    // Reject mode.
    let (app, _s, _o) = two_pools("dot_segments = \"reject\"").await;
    let rejected = raw(
        app.proxy_addr,
        b"GET /api/search/../orders/1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n",
        Duration::from_millis(500),
    )
    .await;
    assert!(rejected.starts_with("HTTP/1.1 400"), "{rejected}");
    app.stop().await;
}

/// Finding 5: a Host with userinfo matched `host = "api.example.com"` and was forwarded; HTTP/1.1
/// without Host got 200 with the client's own `X-Forwarded-Host`; client `Forwarded` and
/// `X-Real-IP` reached the upstream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_is_validated_and_forwarding_claims_are_ours() {
    let (app, _search, orders) = two_pools("").await;
    let a = app.proxy_addr;
    let status = |r: &str| r.split(' ').nth(1).unwrap_or("").to_string();
    let w = Duration::from_millis(500);
    for bad in ["api.example.com:x@evil.example", "api.example.com/x", "a b", "<x>", "\"q\""] {
        let r = raw(a, format!("GET /api/orders/1 HTTP/1.1\r\nHost: {bad}\r\n\r\n").as_bytes(), w).await;
        assert_eq!(status(&r), "400", "Host {bad}: {r}");
    }
    let r = raw(a, b"GET /api/search/1 HTTP/1.1\r\nX-Forwarded-Host: evil.example\r\n\r\n", w).await;
    assert_eq!(status(&r), "400", "HTTP/1.1 without Host: {r}");
    let r = raw(a, b"GET /api/search/1 HTTP/1.0\r\n\r\n", w).await;
    assert_eq!(status(&r), "200", "HTTP/1.0 needs no Host: {r}");
    assert_eq!(orders.hits(), 0, "nothing with a bad Host reached orders");
    let req = Request::get(url(&app, "/api/orders/1"))
        .header("host", "api.example.com:8080")
        .header("x-forwarded-host", "evil.example")
        .header("forwarded", "for=1.2.3.4;host=evil.example")
        .header("x-real-ip", "1.2.3.4")
        .body(Full::default())
        .unwrap();
    let got = send(&client(), req).await;
    assert_eq!(got.status, 200);
    let h = &got.json()["headers"];
    assert_eq!(h["x-forwarded-host"], "api.example.com:8080", "{h}");
    assert!(h.get("forwarded").is_none() && h.get("x-real-ip").is_none(), "{h}");
    app.stop().await;
}

/// Finding 6: with no token, `Host: attacker.example:PORT` got the page and its form secret,
/// and a cross-origin POST with that secret acted. Finding 10: `/admin?msg=` showed any text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_rebinding_and_cross_origin_posts_are_refused() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "").await;
    let c = client();
    let port = app.admin_addr.port();
    let page =
        |host: String| Request::get(admin_url(&app, "/admin")).header("host", host).body(Full::default()).unwrap();
    let evil = send(&c, page(format!("attacker.example:{port}"))).await;
    assert_eq!(evil.status, 421);
    assert!(!String::from_utf8_lossy(&evil.body).contains("csrf"));
    for path in ["/admin/api/calls", "/metrics"] {
        let r = Request::get(admin_url(&app, path)).header("host", "attacker.example").body(Full::default()).unwrap();
        assert_eq!(send(&c, r).await.status, 421, "{path}");
    }
    let probe = Request::get(admin_url(&app, "/live")).header("host", "attacker.example").body(Full::default());
    assert_eq!(send(&c, probe.unwrap()).await.status, 200, "probes answer any Host");
    // The real page, and its form secret (its forms appear with the endpoint's first forecast).
    let mut body = String::new();
    let has_form = async || {
        body = String::from_utf8_lossy(&send(&c, page(format!("127.0.0.1:{port}"))).await.body).into_owned();
        body.contains(r#"name="csrf""#)
    };
    assert!(eventually(Duration::from_secs(30), has_form).await, "the page has its action forms");
    let csrf = body.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_string();
    let second = String::from_utf8_lossy(&send(&c, page(format!("localhost:{port}"))).await.body).into_owned();
    assert!(!second.contains(&csrf), "a new secret per page load");
    let post = |origin: Option<&str>, host: String| {
        let mut r = Request::post(admin_url(&app, "/admin/action"))
            .header("host", host)
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(o) = origin {
            r = r.header("origin", o);
        }
        r.body(Full::from(format!("action=refit&endpoint=api&csrf={csrf}"))).unwrap()
    };
    let host = format!("127.0.0.1:{port}");
    assert_eq!(send(&c, post(Some(&format!("http://attacker.example:{port}")), host.clone())).await.status, 403);
    assert_eq!(send(&c, post(Some("null"), host.clone())).await.status, 403);
    assert_eq!(
        send(&c, post(Some(&format!("http://attacker.example:{port}")), format!("attacker.example:{port}")))
            .await
            .status,
        421
    );
    // Same origin with the secret passes the checks (303 done, or 409 if the forecast is not
    // there yet).
    let same = send(&c, post(Some(&format!("http://{host}")), host.clone())).await;
    assert!([303, 409].contains(&same.status), "{}: {}", same.status, String::from_utf8_lossy(&same.body));
    // The page shows only messages prescale stored.
    let msg = Request::get(admin_url(&app, "/admin?msg=%3Cb%3Eyour%20account%20is%20locked%3C%2Fb%3E"))
        .body(Full::default())
        .unwrap();
    let shown = String::from_utf8_lossy(&send(&c, msg).await.body).into_owned();
    assert!(!shown.contains("account is locked") && !shown.contains(r#"id="msg""#));
    app.stop().await;
}

/// Finding 10: failed logins were not limited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_admin_logins_are_limited() {
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), "the-right-admin-token");
    let text = "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\ntoken_file = \"token\"\nmax_failed_logins = 5\n";
    let app = prescale::app::App::start(prescale::config::parse(text, dir.path()).unwrap()).await.unwrap();
    let c = client();
    let with = |t: &str| {
        Request::get(admin_url(&app, "/metrics"))
            .header("authorization", format!("Bearer {t}"))
            .body(Full::default())
            .unwrap()
    };
    assert_eq!(send(&c, with("the-right-admin-token")).await.status, 200);
    for _ in 0..5 {
        assert_eq!(send(&c, with("guess")).await.status, 401);
    }
    let blocked = send(&c, with("the-right-admin-token")).await;
    assert_eq!(blocked.status, 429, "blocked even with the right token, or guessing goes on");
    assert!(blocked.header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() <= 60));
    assert_eq!(get(&c, &admin_url(&app, "/live")).await.status, 200);
    app.stop().await;
}

/// Finding 10: prescale's own 413/502/504 were missing from the access log, and the file was
/// created world-readable; a client's `X-Request-Id` with markup was kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_errors_are_in_the_access_log_and_request_ids_are_safe() {
    use std::os::unix::fs::PermissionsExt;
    let up = Upstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nmax_body_bytes = 10\naccess_log = \"{}\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [upstream]\nresponse_timeout = \"300ms\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n[[endpoint]]\nname = \"dead\"\npath_prefix = \"/dead\"\npool = \"d\"\n\
         [[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n[[pool]]\nname = \"d\"\nmembers = [\"{}\"]\nretry = false\n",
        log.display(),
        up.addr,
        dead_addr()
    );
    let app = prescale::app::App::start(prescale::config::parse(&text, dir.path()).unwrap()).await.unwrap();
    let c = client();
    let big = Request::post(url(&app, "/api/upload")).body(Full::from("x".repeat(100))).unwrap();
    assert_eq!(send(&c, big).await.status, 413);
    assert_eq!(get(&c, &url(&app, "/dead/1")).await.status, 502);
    assert_eq!(get(&c, &url(&app, "/api/sleep/2000")).await.status, 504);
    assert_eq!(get(&c, &url(&app, "/nowhere")).await.status, 404);
    let marked =
        Request::get(url(&app, "/api/x")).header("x-request-id", "<script>alert(1)</script>").body(Full::default());
    let got = send(&c, marked.unwrap()).await;
    assert_eq!(got.header("x-request-id").unwrap().len(), 32, "replaced by our own id");
    let logged = async || {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        [" 413 ", " 502 ", " 504 ", " 404 "].iter().all(|s| t.lines().any(|l| l.contains(s)))
    };
    assert!(eventually(Duration::from_secs(3), logged).await, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    let t = std::fs::read_to_string(&log).unwrap();
    assert!(t.lines().any(|l| l.contains("\"/api/upload\" 413") && l.contains("endpoint=api")), "{t}");
    assert!(t.lines().any(|l| l.contains("\"/nowhere\" 404") && l.contains("endpoint=-")), "{t}");
    assert!(!t.contains("<script>"));
    assert_eq!(std::fs::metadata(&log).unwrap().permissions().mode() & 0o777, 0o640);
    app.stop().await;
}

/// Finding 10: `import --endpoint` took markup and 100 KB names. Finding 9: bad lines were
/// echoed whole.
#[test]
fn import_validates_the_endpoint_name_and_bounds_what_it_echoes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[historian]\ndata_dir = \"data\"\n").unwrap();
    let csv = dir.path().join("t.csv");
    let mut text = String::from("timestamp,value\n");
    for _ in 0..40 {
        text.push_str(&"\u{1}".repeat(1 << 20));
        text.push('\n');
    }
    text.push_str("1700000000,3\n");
    std::fs::write(&csv, text).unwrap();
    let run = |endpoint: &str| import_output(&cfg, endpoint, &csv, &["--skip-bad", "--shift-to-now"]);
    for bad in ["<script>", &"e".repeat(100_000)] {
        let out = run(bad);
        assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stderr).contains("must be 1 to 64 letters"));
        assert!(out.stderr.len() < 1000);
    }
    let out = run("api");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    eprintln!("stderr for 40 × 1 MB bad lines: {} bytes", out.stderr.len());
    assert!(out.stderr.len() < 50 * 400, "{} bytes on stderr (210 MB before)", out.stderr.len());
    assert!(String::from_utf8_lossy(&out.stdout).contains("40 line(s) skipped"));
}
