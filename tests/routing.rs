//! Longest-prefix routing, 404 for unmatched, and never an open proxy.

use std::time::Duration;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn longest_prefix_wins_and_unmatched_is_404() {
    let (a, b, c) = (Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await);
    let app = start(&format!(
        "[[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"a\"\n\
         [[endpoint]]\nname = \"orders\"\npath_prefix = \"/api/orders\"\npool = \"b\"\n\
         [[endpoint]]\nname = \"orders-post\"\npath_prefix = \"/api/orders\"\nmethods = [\"POST\"]\npool = \"c\"\n\
         [[pool]]\nname = \"a\"\nmembers = [\"{}\"]\n[[pool]]\nname = \"b\"\nmembers = [\"{}\"]\n[[pool]]\nname = \"c\"\nmembers = [\"{}\"]\n",
        a.addr, b.addr, c.addr
    ))
    .await;
    let cl = client();
    let who = async |path: &str| get(&cl, &url(&app, path)).await.header("x-upstream").map(str::to_string);
    assert_eq!(who("/api/orders/1").await.as_deref(), Some("b"));
    assert_eq!(who("/api/orders").await.as_deref(), Some("b"));
    assert_eq!(who("/api/ordersx").await.as_deref(), Some("a"));
    assert_eq!(who("/api").await.as_deref(), Some("a"));
    let post = send(&cl, http::Request::post(url(&app, "/api/orders")).body(Default::default()).unwrap()).await;
    assert_eq!(post.header("x-upstream"), Some("c"));
    let miss = get(&cl, &url(&app, "/other")).await;
    assert_eq!(miss.status, 404);
    assert!(miss.header("x-request-id").is_some());
    assert_eq!(get(&cl, &url(&app, "/apix")).await.status, 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_header_and_absolute_uris_never_choose_the_upstream() {
    let up = Upstream::start("u").await;
    let app = start(&format!(
        "[[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    ))
    .await;
    let w = Duration::from_secs(2);
    // Absolute URI naming another host: routed by path among configured endpoints only.
    let r = raw(
        app.proxy_addr,
        b"GET http://evil.example/steal HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        w,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    let r = raw(
        app.proxy_addr,
        b"GET http://evil.example/api/x HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
        w,
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200") && r.contains("x-upstream: u"), "{r}");
    // CONNECT is refused outright.
    let r = raw(app.proxy_addr, b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n", w).await;
    assert!(r.starts_with("HTTP/1.1 405"), "{r}");
    assert_eq!(get(&client(), &url(&app, "/api/ok")).await.status, 200);
    app.stop().await;
}
