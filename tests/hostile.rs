//! Hostile HTTP against the proxy (the hardening issue's first part): request smuggling
//! attempts, obs-fold, duplicate Host, absolute-URI and CONNECT requests (never an open proxy),
//! invalid bytes in the target. Each gets a 4xx or is handled as one request to our upstream,
//! and the proxy keeps serving.

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::*;

async fn app(up: &Upstream) -> prescale::app::App {
    app_with(up, "").await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_headers_are_refused_with_431() {
    let up = Upstream::start("u").await;
    let app = app(&up).await;
    let headers: String = (0..300).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r =
        raw(app.proxy_addr, format!("GET /a HTTP/1.1\r\nHost: x\r\n{headers}\r\n").as_bytes(), Duration::from_secs(2))
            .await;
    assert_eq!(status(&r), 431, "{r}");
    assert_eq!(up.hits(), 0);
    assert!(serves(&app).await);
    app.stop().await;
}

/// A client that asks for 64 MB and stops reading: the proxy stops pulling from the upstream
/// (backpressure, nothing buffered beyond the sockets), closes the stalled connection at the
/// idle timeout, and serves everyone else meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_is_cut_off_and_others_are_served() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "idle_timeout = \"1s\"").await;
    let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    s.write_all(b"GET /big/67108864 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut first = vec![0u8; 65536];
    let mut got = s.read(&mut first).await.unwrap();
    assert!(String::from_utf8_lossy(&first[..got]).starts_with("HTTP/1.1 200"));
    let stalled = Instant::now();
    for _ in 0..20 {
        assert!(serves(&app).await, "others are served while one client stalls");
    }
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(stalled.elapsed())).await;
    // Now read what is left: the proxy gave up on this connection, so it ends early.
    let mut rest = Vec::new();
    // (A reset instead of a clean close is fine: what arrived before it is counted.)
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut rest)).await.expect("closed by the proxy");
    got += rest.len();
    assert!(got < 64 << 20, "the stalled response was cut off ({got} bytes arrived)");
    assert!(serves(&app).await);
    app.stop().await;
}

/// A client that sends a body a byte at a time: its upstream gives up at the response timeout
/// (504) and the client is answered; other clients are served meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_writer_gets_504_at_the_response_timeout() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "[upstream]\nresponse_timeout = \"1s\"").await;
    let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    s.write_all(b"PUT /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n").await.unwrap();
    let t = Instant::now();
    let mut buf = vec![0u8; 4096];
    let answer = loop {
        let _ = s.write_all(b"x").await;
        assert!(serves(&app).await);
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(100), s.read(&mut buf)).await {
            break String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(t.elapsed() < Duration::from_secs(6), "no answer to the slow writer");
    };
    assert_eq!(status(&answer), 504, "{answer}");
    assert!(t.elapsed() >= Duration::from_millis(900), "{:?}", t.elapsed());
    app.stop().await;
}

/// HTTP/2 frame: 9-byte header and payload.
fn h2_frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut f = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    f.extend_from_slice(&[kind, flags]);
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Rapid reset (a request opened and cancelled at once, 20,000 times: CVE-2023-44487) and a
/// PING flood from a client that never reads the acknowledgements (CVE-2019-9512), each on one
/// HTTP/2 connection: the proxy ends that connection (GOAWAY, or a close once its writes have
/// been blocked for the idle timeout) and keeps serving every other client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_rapid_reset_and_ping_floods_end_the_connection_not_the_proxy() {
    let up = Upstream::start("u").await;
    let app = app_with(&up, "idle_timeout = \"1s\"").await;
    for flood in ["reset", "ping"] {
        let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
        let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        out.extend(h2_frame(4, 0, 0, &[])); // SETTINGS
        // HPACK: :method GET, :scheme http, :path /, :authority x (literal, indexed name 1).
        let headers = [0x82, 0x86, 0x84, 0x01, 0x01, b'x'];
        for i in 0..200_000u32 {
            match flood {
                "reset" if i < 20_000 => {
                    let id = 2 * i + 1;
                    out.extend(h2_frame(1, 0x05, id, &headers)); // HEADERS, END_STREAM|END_HEADERS
                    out.extend(h2_frame(3, 0, id, &8u32.to_be_bytes())); // RST_STREAM CANCEL
                }
                "ping" => out.extend(h2_frame(6, 0, 0, &u64::from(i).to_be_bytes())),
                _ => break,
            }
        }
        let t = Instant::now();
        let (mut rd, mut wr) = s.split();
        let reads = flood == "reset";
        let writer = async {
            // The server may stop reading and close: a write error ends the flood.
            let _ = tokio::time::timeout(Duration::from_secs(15), wr.write_all(&out)).await;
        };
        let reader = async {
            // The reset flood's client reads (and ignores) what comes back; the PING flood's
            // reads only after it has written everything, to see the connection ended.
            let mut sink = vec![0u8; 65536];
            loop {
                if !reads && t.elapsed() < Duration::from_millis(100) {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                match tokio::time::timeout(Duration::from_secs(15), rd.read(&mut sink)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => return Some(t.elapsed()),
                    Ok(Ok(_)) => {}
                    Err(_) => return None,
                }
            }
        };
        let (_, ended) = if reads {
            tokio::join!(writer, reader)
        } else {
            writer.await;
            ((), reader.await)
        };
        assert!(ended.is_some(), "{flood}: the flooding connection was ended");
        assert!(serves(&app).await, "{flood}: the proxy still serves");
        assert!(up.hits() < 20_000, "{flood}: the flood did not all reach the upstream ({})", up.hits());
    }
    app.stop().await;
}

/// This machine's address on its default route (not loopback), if it has one: requests to it
/// from here arrive with a non-loopback peer address and never leave the machine.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    let s = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("10.255.255.254:9").ok()?; // connect() on UDP sends nothing
    Some(s.local_addr().ok()?.ip()).filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
}

/// The admin listener on every interface with a token: every mutating request, and every page
/// and API but the probes, is refused without the right token, whether it comes from loopback
/// or from a non-loopback address; the page's form secret does not stand in for the token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_mutations_refuse_without_the_token_from_any_address() {
    let up = Upstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), "s3cret-admin-token");
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"0.0.0.0:0\"\ntoken_file = \"token\"\nmax_failed_logins = 1000\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    );
    let app = prescale::app::App::start(prescale::config::parse(&text, dir.path()).unwrap()).await.unwrap();
    let port = app.admin_addr.port();
    let mut hosts = vec![std::net::IpAddr::from([127, 0, 0, 1])];
    hosts.extend(non_loopback_ip());
    let c = client();
    let with = |req: http::request::Builder, auth: Option<&str>| {
        let req = match auth {
            Some(a) => req.header("authorization", a),
            None => req,
        };
        req.header("content-type", "application/x-www-form-urlencoded")
    };
    for host in &hosts {
        let base = format!("http://{}", std::net::SocketAddr::new(*host, port));
        // The page's form secret, read with the token.
        let page = send(
            &c,
            with(Request::get(format!("{base}/admin")), Some("Bearer s3cret-admin-token"))
                .body(Full::default())
                .unwrap(),
        )
        .await;
        assert_eq!(page.status, 200, "{host}");
        let body = String::from_utf8_lossy(&page.body).into_owned();
        let csrf = body.split(r#"name="csrf" value=""#).nth(1).map(|s| s.split('"').next().unwrap().to_string());
        let forms = [
            "action=mode&pool=p&mode=enabled".to_string(),
            "action=scale&pool=p&delta=1".to_string(),
            "action=scale&pool=p&delta=-1".to_string(),
            "action=refit&endpoint=api".to_string(),
        ];
        for form in &forms {
            for (auth, extra) in [
                (None, String::new()),
                (Some("Bearer wrong"), String::new()),
                (Some("Basic czNjcmV0LWFkbWluLXRva2Vu"), String::new()),
                (None, "&token=wrong".to_string()),
                (None, "&token=".to_string()),
                (None, csrf.as_ref().map(|c| format!("&csrf={c}")).unwrap_or_default()),
            ] {
                let req = with(Request::post(format!("{base}/admin/action")), auth)
                    .body(Full::from(format!("{form}{extra}")));
                let got = send(&c, req.unwrap()).await;
                assert_eq!(got.status, 403, "{host}: POST {form}{extra} with {auth:?}");
            }
            // With the token the same request passes the check (done: 303; or refused later:
            // no scaled pool — 409), so the refusals above were the token's doing.
            let req = with(Request::post(format!("{base}/admin/action")), Some("Bearer s3cret-admin-token"));
            let got = send(&c, req.body(Full::from(form.clone())).unwrap()).await.status;
            assert!([303, 409].contains(&got), "{host}: {form} with the token → {got}");
        }
        for method in [http::Method::PUT, http::Method::DELETE, http::Method::PATCH] {
            for path in ["/admin/action", "/admin/api/pools", "/metrics"] {
                let got = send(
                    &c,
                    Request::builder()
                        .method(method.clone())
                        .uri(format!("{base}{path}"))
                        .body(Full::default())
                        .unwrap(),
                )
                .await;
                assert!([401, 403, 405].contains(&got.status), "{host}: {method} {path} → {}", got.status);
            }
        }
        for path in ["/admin", "/admin/api/pools", "/admin/api/decisions", "/admin/api/calls", "/metrics"] {
            assert_eq!(get(&c, &format!("{base}{path}")).await.status, 401, "{host}: GET {path}");
        }
        assert_eq!(get(&c, &format!("{base}/live")).await.status, 200);
    }
    eprintln!("admin surface checked from {hosts:?}");
    app.stop().await;
}
