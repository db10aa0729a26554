//! The data plane's own machinery: each worker's upstream connections, its per-worker
//! counters (summed when read) and its request ids.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::util::*;

/// Sequential calls on one client connection are served by one worker, which keeps its upstream
/// connection open and reuses it: the backend sees one connection for 200 calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_reuses_its_upstream_connection() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "workers = 2").await;
    // Exactly one client connection (a pooled client may open a second one).
    let stream = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    for i in 0..200 {
        let req = http::Request::get(format!("/call/{i}"))
            .header("host", "prescale.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        tx.ready().await.unwrap();
        let resp = tx.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
    }
    assert_eq!(up.hits(), 200);
    let conns = up.conns.load(Ordering::SeqCst);
    assert_eq!(conns, 1, "one upstream connection, reused; got {conns}");
}

/// Calls spread over both workers: `/metrics` adds the workers' counters up to exactly the
/// calls made, the member's request count too, and every response has its own request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_from_every_worker_add_up_and_request_ids_are_unique() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "workers = 2").await;
    let target = url(&app, "/x");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let target = target.clone();
        // A client each: its own connection to prescale, so the kernel spreads them over the
        // workers' sockets.
        tasks.push(tokio::spawn(async move {
            let c = client();
            let mut ids = Vec::new();
            for _ in 0..50 {
                let got = get(&c, &target).await;
                assert_eq!(got.status, 200);
                ids.push(got.header("x-request-id").unwrap().to_string());
            }
            ids
        }));
    }
    let mut ids = HashSet::new();
    for t in tasks {
        for id in t.await.unwrap() {
            assert_eq!(id.len(), 32, "{id}");
            assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
            assert!(ids.insert(id.clone()), "request id {id} given twice");
        }
    }
    assert_eq!(ids.len(), 400);
    // A worker opens an upstream connection only when all of its own are busy: at most one
    // per call in flight on it (8 at a time), per worker.
    let conns = up.conns.load(Ordering::SeqCst);
    assert!(conns <= 16, "{conns} upstream connections for 400 calls");
    let m = String::from_utf8_lossy(&get(&client(), &admin_url(&app, "/metrics")).await.body).into_owned();
    assert_eq!(metric(&m, "prescale_requests_total{endpoint=\"api\",class=\"2xx\"}"), Some(400.0), "{m}");
    assert_eq!(metric(&m, "prescale_request_duration_seconds_count{endpoint=\"api\"}"), Some(400.0));
    let member = format!("prescale_member_requests_total{{pool=\"p\",member=\"{}\"}}", up.addr);
    assert_eq!(metric(&m, &member), Some(400.0), "{m}");
    let outstanding = format!("prescale_member_requests_in_flight{{pool=\"p\",member=\"{}\"}}", up.addr);
    assert_eq!(metric(&m, &outstanding), Some(0.0));
}

/// An upstream that closes every connection after its response: each call opens a new one and
/// none fails, POSTs with bodies included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_closes_after_each_response_loses_no_call() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "workers = 1").await;
    let c = client();
    for i in 0..40 {
        let req = http::Request::post(url(&app, "/close"))
            .body(http_body_util::Full::new(bytes::Bytes::from(format!("body {i}"))))
            .unwrap();
        let got = send(&c, req).await;
        assert_eq!(got.status, 200, "call {i}");
        let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(v["body_len"], format!("body {i}").len());
    }
    assert_eq!(up.hits(), 40);
    assert_eq!(up.conns.load(Ordering::SeqCst), 40, "a new upstream connection for each call");
}

/// A pool with `protocol = "h2c"`: calls reach the member over HTTP/2, with the client's host as
/// `:authority`, and a worker's concurrent calls share one connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2c_pool_multiplexes_a_workers_calls_on_one_connection() {
    let up = Upstream::start("u").await;
    let app = start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nworkers = 1\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n\
         [[pool]]\nname = \"p\"\nprotocol = \"h2c\"\nmembers = [\"{}\"]\n",
        up.addr
    ))
    .await;
    let target = url(&app, "/sleep/30");
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let target = target.clone();
        tasks.push(tokio::spawn(async move {
            let c = client();
            for _ in 0..5 {
                assert_eq!(get(&c, &target).await.status, 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = get(&client(), &url(&app, "/echo?x=1")).await;
    let v: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(v["version"], "HTTP/2.0", "{v}");
    assert_eq!(v["path"], "/echo");
    assert_eq!(v["query"], "x=1");
    assert_eq!(up.hits(), 81);
    let conns = up.conns.load(Ordering::SeqCst);
    assert_eq!(conns, 1, "81 calls, 16 at a time, on {conns} upstream connection(s)");
}

/// Issue 18, lever 4 ("hold, don't fail"): while no member of the pool can take requests, an
/// endpoint with `hold` keeps them (bounded) until one is ready, then serves them; beyond the
/// bound or the time, 503 with `Retry-After`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_held_until_a_member_is_ready_within_bounds() {
    let addr = dead_addr();
    let app = start(&format!(
        "[[endpoint]]\nname = \"held\"\npath_prefix = \"/held\"\npool = \"p\"\nhold = \"5s\"\nhold_queue = 2\n\
         [[endpoint]]\nname = \"quick\"\npath_prefix = \"/quick\"\npool = \"p\"\n\
         [[endpoint]]\nname = \"short\"\npath_prefix = \"/short\"\npool = \"p\"\nhold = \"300ms\"\n\
         [[pool]]\nname = \"p\"\nmembers = [\"{addr}\"]\n\
         [pool.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n"
    ))
    .await;
    let c = client();
    // Without hold: 503 at once, with a Retry-After.
    let quick = get(&c, &url(&app, "/quick/x")).await;
    assert_eq!(quick.status, 503);
    assert_eq!(quick.headers["retry-after"], "1");
    // A short hold runs out: 503 after it, Retry-After its length (at least 1 s).
    let t = std::time::Instant::now();
    let short = get(&c, &url(&app, "/short/x")).await;
    assert_eq!(short.status, 503);
    assert!(t.elapsed() >= Duration::from_millis(280), "{:?}", t.elapsed());
    assert_eq!(short.headers["retry-after"], "1");
    // Two requests held (the bound), a third refused at once; then the member comes up.
    let held: Vec<_> = (0..2)
        .map(|i| {
            let (c, u) = (c.clone(), url(&app, &format!("/held/{i}")));
            tokio::spawn(async move { get(&c, &u).await.status })
        })
        .collect();
    let metrics =
        async || String::from_utf8_lossy(&get(&client(), &admin_url(&app, "/metrics")).await.body).into_owned();
    let waiting = async || metric(&metrics().await, "prescale_requests_waiting{endpoint=\"held\"}") == Some(2.0);
    assert!(eventually(Duration::from_secs(3), waiting).await);
    let refused = get(&c, &url(&app, "/held/extra")).await;
    assert_eq!(refused.status, 503, "beyond hold_queue");
    assert_eq!(refused.headers["retry-after"], "5");
    let up = Upstream::start_on("late", addr).await;
    for h in held {
        assert_eq!(h.await.unwrap(), 200, "held, then served once the member passed its check");
    }
    let m = metrics().await;
    assert_eq!(metric(&m, "prescale_requests_held_total{endpoint=\"held\",result=\"served\"}"), Some(2.0), "{m}");
    assert_eq!(metric(&m, "prescale_requests_held_total{endpoint=\"held\",result=\"refused\"}"), Some(1.0));
    assert_eq!(metric(&m, "prescale_requests_held_total{endpoint=\"short\",result=\"timed_out\"}"), Some(1.0));
    assert_eq!(metric(&m, "prescale_requests_waiting{endpoint=\"held\"}"), Some(0.0));
    app.stop().await;
    up.stop().await;
}

/// An idle keep-alive connection is parked — open, without hyper's state and buffers — and is
/// served again on the same socket when its client sends; a request that takes longer than the
/// park delay is not cut off by it; the gauge counts parked connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_parked_and_served_again_on_the_same_socket() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "workers = 1").await;
    let stream = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    let (mut tx, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    let conn = tokio::spawn(conn);
    let parked = || async {
        let m = String::from_utf8_lossy(&get(&client(), &admin_url(&app, "/metrics")).await.body).into_owned();
        metric(&m, "prescale_connections_parked").unwrap()
    };
    let mut call = async |path: &str| {
        let req = http::Request::get(path)
            .header("host", "prescale.test")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        tx.ready().await.expect("the client connection is still open");
        let resp = tx.send_request(req).await.expect("answered on the same connection");
        let status = resp.status();
        http_body_util::BodyExt::collect(resp.into_body()).await.unwrap();
        status
    };
    assert_eq!(call("/first").await, 200);
    assert_eq!(parked().await, 0.0, "just used: not parked yet");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(parked().await, 1.0, "idle for 1.5 s: parked");
    assert_eq!(call("/after-parking").await, 200);
    assert_eq!(parked().await, 0.0, "woken by its request");
    // Slower than the park delay: in flight, so never parked under the request.
    assert_eq!(call("/sleep/1300").await, 200);
    for i in 0..3 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(call(&format!("/again/{i}")).await, 200);
    }
    assert!(!conn.is_finished(), "one client connection throughout");
    assert_eq!(up.hits(), 6);
}

/// A client that pauses for longer than the park delay halfway through a request head is not
/// parked (and cut off): the head is the header timeout's. Raw bytes, so the pause really falls
/// inside the head — on a fresh connection and on one that has already been answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_pauses_is_not_parked_away() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("u").await;
    let app = app_with(&up, "workers = 1").await;
    let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    let answer = async |s: &mut tokio::net::TcpStream| {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // The test upstream answers with a Content-Length: read the head, then that many bytes.
        let complete = |got: &[u8]| {
            let text = String::from_utf8_lossy(got);
            let Some(end) = text.find("\r\n\r\n") else { return false };
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse::<usize>().unwrap())
                })
                .expect("a content-length");
            got.len() >= end + 4 + len
        };
        while !complete(&got) {
            let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "closed: {}", String::from_utf8_lossy(&got));
            got.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&got).into_owned()
    };
    for path in ["/one", "/two"] {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: prescale.test\r\n").as_bytes()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        s.write_all(b"X-Late: yes\r\n\r\n").await.unwrap();
        let got = answer(&mut s).await;
        assert!(got.starts_with("HTTP/1.1 200"), "{got}");
    }
    assert_eq!(up.hits(), 2);
}
