//! Hostile HTTP against the proxy (the hardening issue's first part): request smuggling
//! attempts, obs-fold, duplicate Host, absolute-URI and CONNECT requests (never an open proxy),
//! invalid bytes in the target. Each gets a 4xx or is handled as one request to our upstream,
//! and the proxy keeps serving.

use std::time::Duration;

use crate::util::*;

async fn app(up: &Upstream) -> prescale::app::App {
    start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    ))
    .await
}

fn status(r: &str) -> u16 {
    r.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_attempts_never_reach_the_upstream_as_two_requests() {
    let up = Upstream::start("u").await;
    let app = app(&up).await;
    let w = Duration::from_secs(2);
    // CL and TE together: hyper rejects (400) or lets chunked win; either way the smuggled
    // "GET /admin" must not arrive at the upstream as a second request.
    let r = raw(
        app.proxy_addr,
        b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
        w,
    )
    .await;
    let hits_after_clte = up.hits();
    assert!(status(&r) == 400 || status(&r) == 200, "{r}");
    assert!(hits_after_clte <= 1, "at most the POST reached the upstream, got {hits_after_clte}");
    // TE with an unknown coding, and a duplicated TE header.
    for bad in [
        &b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc"[..],
        b"POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
        // obs-fold (a header continued on the next line)
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n",
        // two Host headers
        b"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
    ] {
        let before = up.hits();
        let r = raw(app.proxy_addr, bad, w).await;
        assert!((400..500).contains(&status(&r)), "{:?} → {r:?}", String::from_utf8_lossy(bad));
        assert_eq!(up.hits(), before, "{:?} reached the upstream", String::from_utf8_lossy(bad));
    }
    assert_eq!(get(&client(), &url(&app, "/ok")).await.status, 200, "still serving");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_an_open_proxy() {
    let up = Upstream::start("u").await;
    let app = app(&up).await;
    let w = Duration::from_secs(2);
    // CONNECT is refused.
    let r = raw(app.proxy_addr, b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", w).await;
    assert!((400..500).contains(&status(&r)), "{r}");
    // An absolute URI naming another host goes to *our* pool (routing is by path), never there.
    let before = up.hits();
    let r = raw(app.proxy_addr, b"GET http://192.0.2.1:9/steal HTTP/1.1\r\nHost: 192.0.2.1:9\r\n\r\n", w).await;
    assert!(status(&r) == 200 || (400..500).contains(&status(&r)), "{r}");
    if status(&r) == 200 {
        assert_eq!(up.hits(), before + 1, "served by our upstream");
    }
    // Bytes that are not a valid request target.
    for bad in [&b"GET /a\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n"[..], b"GET /a\x7fb HTTP/1.1\r\nHost: x\r\n\r\n"] {
        let r = raw(app.proxy_addr, bad, w).await;
        assert!((400..500).contains(&status(&r)), "{:?} → {r:?}", String::from_utf8_lossy(bad));
    }
    assert_eq!(get(&client(), &url(&app, "/ok")).await.status, 200, "still serving");
    app.stop().await;
}
