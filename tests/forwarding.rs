//! What reaches the upstream and what comes back: methods, bodies, query strings, headers.

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;

use crate::util::*;

async fn one_pool(up: &Upstream) -> prescale::app::App {
    start(&format!(
        "[[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_query_and_bodies_are_forwarded() {
    let up = Upstream::start("u").await;
    let app = one_pool(&up).await;
    let c = client();
    for method in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        let body = if method == "GET" { Bytes::new() } else { Bytes::from_static(b"hello body") };
        let req = Request::builder()
            .method(method)
            .uri(url(&app, "/api/items/7?q=a%20b&x=1"))
            .body(Full::new(body.clone()))
            .unwrap();
        let got = send(&c, req).await;
        assert_eq!(got.status, 200, "{method}");
        let j = got.json();
        assert_eq!(j["method"], method);
        assert_eq!(j["path"], "/api/items/7");
        assert_eq!(j["query"], "q=a%20b&x=1");
        assert_eq!(j["body_len"], body.len());
    }
    // HEAD: headers only.
    let got = send(&c, Request::head(url(&app, "/api/x")).body(Full::default()).unwrap()).await;
    assert_eq!(got.status, 200);
    assert!(got.body.is_empty());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_and_large_bodies_stream_both_ways() {
    let up = Upstream::start("u").await;
    let app = one_pool(&up).await;
    // 10 MiB request body sent chunked (no Content-Length), counted by the upstream.
    let chunks = (0..160).map(|_| Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from(vec![7u8; 65536]))));
    let stream = StreamBody::new(stream_of(chunks));
    let hc: hyper_util::client::legacy::Client<_, _> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let req = Request::post(url(&app, "/api/upload")).body(stream).unwrap();
    let resp = hc.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["body_len"], 10 * 1024 * 1024);
    assert!(j["headers"].get("content-length").is_none(), "sent chunked: {j}");

    // 10 MiB response body streamed back.
    let got = get(&client(), &url(&app, "/api/big/10485760")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body.len(), 10 * 1024 * 1024);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hop_by_hop_removed_and_forwarding_headers_set() {
    let up = Upstream::start("u").await;
    let app = one_pool(&up).await;
    let req = Request::get(url(&app, "/api/h"))
        .header("host", "shop.example.com:8443")
        .header("connection", "keep-alive, x-private")
        .header("x-private", "must not pass")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic abc")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-custom", "kept")
        .body(Full::default())
        .unwrap();
    let got = send(&client(), req).await;
    assert_eq!(got.status, 200);
    let h = &got.json()["headers"];
    for gone in ["x-private", "keep-alive", "te", "proxy-authorization"] {
        assert!(h.get(gone).is_none(), "{gone} was forwarded: {h}");
    }
    assert_eq!(h["x-custom"], "kept");
    assert_eq!(h["host"], "shop.example.com:8443", "Host is preserved");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "http");
    assert_eq!(h["x-forwarded-host"], "shop.example.com:8443");
    assert_eq!(h["via"], "1.1 prescale");
    let rid = h["x-request-id"].as_str().unwrap();
    assert_eq!(rid.len(), 32);
    // Response: the same request id comes back; the upstream's hop-by-hop headers do not.
    assert_eq!(got.header("x-request-id"), Some(rid));
    assert_eq!(got.header("via"), Some("1.1 prescale"));
    assert!(got.header("x-hop-from-upstream").is_none());
    assert!(got.header("keep-alive").is_none());
    assert_eq!(got.header("x-upstream"), Some("u"));

    // A client request id is passed through unchanged.
    let req = Request::get(url(&app, "/api/h")).header("x-request-id", "client-id-1").body(Full::default()).unwrap();
    let got = send(&client(), req).await;
    assert_eq!(got.json()["headers"]["x-request-id"], "client-id-1");
    assert_eq!(got.header("x-request-id"), Some("client-id-1"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_statuses_pass_through_and_are_counted() {
    let up = Upstream::start("u").await;
    let app = one_pool(&up).await;
    let c = client();
    for code in [201, 302, 404, 500, 503] {
        assert_eq!(get(&c, &url(&app, &format!("/api/status/{code}"))).await.status, code);
    }
    let m = get(&c, &admin_url(&app, "/metrics")).await;
    let text = String::from_utf8_lossy(&m.body);
    assert_eq!(metric(&text, "prescale_requests_total{endpoint=\"api\",class=\"2xx\"}"), Some(1.0));
    assert_eq!(metric(&text, "prescale_requests_total{endpoint=\"api\",class=\"3xx\"}"), Some(1.0));
    assert_eq!(metric(&text, "prescale_requests_total{endpoint=\"api\",class=\"4xx\"}"), Some(1.0));
    assert_eq!(metric(&text, "prescale_requests_total{endpoint=\"api\",class=\"5xx\"}"), Some(2.0));
    assert_eq!(metric(&text, "prescale_request_duration_seconds_count{endpoint=\"api\"}"), Some(5.0));
    app.stop().await;
}

/// Regression: an HTTP/1.0 upstream's version reached clients (`HTTP/1.0 200`, and the client's
/// keep-alive connection closed). Clients get HTTP/1.1 with keep-alive whatever the upstream
/// speaks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_upstream_does_not_downgrade_the_client() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let old = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old_addr = old.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = old.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nold server\n").await;
            });
        }
    });
    let app = start(&format!(
        "[[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{old_addr}\"]\n"
    ))
    .await;
    let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    for i in 0..2 {
        s.write_all(b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 1024];
        // The upstream's body ends at its close; to the client it is chunked, ending in `0`.
        while !String::from_utf8_lossy(&got).ends_with("\r\n0\r\n\r\n") {
            let n = tokio::time::timeout(std::time::Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
            assert!(n > 0, "request {i}: the client's connection was closed");
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200") && text.contains("old server"), "request {i}: {text}");
    }
    app.stop().await;
}
