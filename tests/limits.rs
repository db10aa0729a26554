//! Malformed and hostile requests get a 4xx and the proxy keeps serving.

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::*;

async fn still_serves(app: &prescale::app::App) {
    assert!(serves(app).await, "proxy still serves");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_400() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "").await;
    let w = Duration::from_secs(2);
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"GET /\x01path HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",
    ] {
        let r = raw(app.proxy_addr, bad, w).await;
        assert!(r.starts_with("HTTP/1.1 400"), "{:?} → {r:?}", String::from_utf8_lossy(bad));
        still_serves(&app).await;
    }
    // Content-Length that is not a number reaches routing only if hyper accepts it; either
    // way the answer is 400.
    let r = raw(app.proxy_addr, b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", w).await;
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert_eq!(up.hits(), 5, "only the good requests reached the upstream");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_get_431_and_bodies_413() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "max_header_bytes = 8192\nmax_body_bytes = 1000").await;
    let big = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let r = raw(app.proxy_addr, big.as_bytes(), Duration::from_secs(2)).await;
    assert!(r.starts_with("HTTP/1.1 431"), "{r}");
    still_serves(&app).await;

    let c = client();
    let got = send(&c, Request::post(url(&app, "/x")).body(Full::from(vec![0u8; 1001])).unwrap()).await;
    assert_eq!(got.status, 413);
    let got = send(&c, Request::post(url(&app, "/x")).body(Full::from(vec![0u8; 1000])).unwrap()).await;
    assert_eq!(got.status, 200);
    // Chunked (no Content-Length) over the limit: cut off while streaming.
    // One write: the proxy may answer 413 and close as soon as the limit is crossed, so a
    // client writing chunk by chunk could see EPIPE before it reads the answer.
    let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    let mut req = b"POST /x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        req.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, "z".repeat(600)).as_bytes());
    }
    req.extend_from_slice(b"0\r\n\r\n");
    s.write_all(&req).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
    let r = String::from_utf8_lossy(&buf[..n]);
    assert!(r.starts_with("HTTP/1.1 413"), "{r}");
    still_serves(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_at_the_header_timeout() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "header_timeout = \"1s\"").await;
    let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    let start = Instant::now();
    let mut closed_after = None;
    for b in b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ".iter().chain(b"a".repeat(100).iter()) {
        if s.write_all(&[*b]).await.is_err() {
            closed_after = Some(start.elapsed());
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(250), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                closed_after = Some(start.elapsed());
                break;
            }
            Ok(Ok(n)) => {
                let r = String::from_utf8_lossy(&buf[..n]);
                assert!(r.starts_with("HTTP/1.1 408"), "{r}");
                closed_after = Some(start.elapsed());
                break;
            }
            Err(_) => {}
        }
    }
    let t = closed_after.expect("the slow client was cut off");
    assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(4), "cut off after {t:?}");
    still_serves(&app).await;
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "idle_timeout = \"300ms\"\nheader_timeout = \"5s\"").await;
    let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    s.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let t = Instant::now();
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.expect("closed").unwrap();
    assert_eq!(n, 0);
    assert!(t.elapsed() >= Duration::from_millis(250), "{:?}", t.elapsed());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "max_connections = 2\nworkers = 1").await;
    let held: Vec<_> = open_kept_alive(2, app.proxy_addr).await;
    // A third connection is accepted by the kernel but not served while two are open.
    let mut third = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    third.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await.is_err(),
        "served beyond the connection cap"
    );
    drop(held);
    let n = tokio::time::timeout(Duration::from_secs(3), third.read(&mut buf))
        .await
        .expect("served once a slot frees")
        .unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    app.stop().await;
}

/// Regression: each worker took a connection place before accepting, so with N workers N − 1
/// places were held by idle accept loops and a connection could wait below the cap (found by
/// the WebSocket-tunnel test, which flaked 4 runs in 6). With 4 workers and a cap of 4, four
/// connections are all served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_place_under_the_cap_is_usable_whatever_the_worker_count() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "max_connections = 4\nworkers = 4").await;
    for round in 0..3 {
        let held = tokio::time::timeout(Duration::from_secs(3), open_kept_alive(4, app.proxy_addr))
            .await
            .unwrap_or_else(|_| panic!("round {round}: a connection below the cap was not served"));
        drop(held);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// Opens `n` connections that each complete one request and stay open (keep-alive).
async fn open_kept_alive(n: usize, addr: std::net::SocketAddr) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        out.push(s);
    }
    out
}

/// Thousands of idle keep-alive connections held open against `prescale run` (its own process,
/// which raises its open-file limit): every one is served and stays usable, and a new client is
/// still served at once. `PRESCALE_IDLE_CONNECTIONS` sets the count (2,000 in CI;
/// `scripts/faults idle` runs 10,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_idle_connections_are_held_and_others_still_served() {
    let want: usize = std::env::var("PRESCALE_IDLE_CONNECTIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(2000);
    // This process holds the client ends.
    let files = prescale::app::raise_open_file_limit() as usize;
    assert!(files >= want + 200, "open-file limit {files} is too low for {want} connections");
    let up = Upstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nmax_connections = {}\nidle_timeout = \"120s\"\nheader_timeout = \"60s\"\n\
             [admin]\naddr = \"127.0.0.1:0\"\n[historian]\nenabled = false\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
            want + 100,
            up.addr
        ),
    )
    .unwrap();
    let (child, addr, admin) = spawn_run(&cfg);
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let t = Instant::now();
    let mut conns = open_kept_alive(want, addr).await;
    let opened = t.elapsed();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A new client is served at once while they are all held.
    let t = Instant::now();
    assert_eq!(get(&client(), &format!("http://{addr}/new")).await.status, 200);
    let fresh = t.elapsed();
    let metrics = String::from_utf8_lossy(&get(&client(), &format!("http://{admin}/metrics")).await.body).into_owned();
    let active = metric(&metrics, "prescale_connections_active").unwrap_or(0.0);
    assert!(active >= want as f64, "{active} connections active, {want} held");
    // Every held connection still answers a second request.
    for s in conns.iter_mut().step_by((want / 100).max(1)) {
        s.write_all(b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    }
    let rss_kib = std::fs::read_to_string(format!("/proc/{}/status", child.0.id()))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l.split_whitespace().nth(1).unwrap().to_string())
        })
        .unwrap_or_default();
    eprintln!(
        "idle connections: {want} opened in {opened:?}, a new client served in {fresh:?}, prescale RSS {rss_kib} KiB"
    );
    drop(conns);
    drop(child);
}
