//! HTTP/2 (h2c and over TLS by ALPN), HTTPS with HTTP/1.1, WebSocket upgrade.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::*;

fn config(up: &Upstream, tls: &str) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n{tls}\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_prior_knowledge() {
    let up = Upstream::start("u").await;
    let app = start(&config(&up, "")).await;
    let c = h2_client();
    let got = send(&c, Request::post(url(&app, "/h2?x=1")).body(Full::from("abc")).unwrap()).await;
    assert_eq!(got.version, http::Version::HTTP_2);
    assert_eq!(got.status, 200);
    let j = got.json();
    assert_eq!(j["body_len"], 3);
    assert_eq!(j["query"], "x=1");
    // The upstream speaks HTTP/1.1 and needs a Host: taken from :authority.
    assert_eq!(j["headers"]["host"], app.proxy_addr.to_string());
    // Many concurrent streams on one connection.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (c, u) = (c.clone(), url(&app, &format!("/s/{i}")));
        tasks.push(tokio::spawn(async move { get(&c, &u).await.status }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    app.stop().await;
}

struct Certs {
    _dir: tempfile::TempDir,
    cert_path: std::path::PathBuf,
    key_path: std::path::PathBuf,
    roots: rustls::RootCertStore,
}

fn certs() -> Certs {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, ck.cert.pem()).unwrap();
    std::fs::write(&key_path, ck.signing_key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    Certs { _dir: dir, cert_path, key_path, roots }
}

async fn tls_connect(
    addr: std::net::SocketAddr,
    roots: &rustls::RootCertStore,
    alpn: &[&[u8]],
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.expect("TLS handshake")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_alpn_h2_and_http11() {
    let up = Upstream::start("u").await;
    let c = certs();
    let tls = format!("tls = {{ cert = {:?}, key = {:?} }}", c.cert_path, c.key_path);
    let app = start(&config(&up, &tls)).await;

    // h2 negotiated by ALPN.
    let stream = tls_connect(app.proxy_addr, &c.roots, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("https://localhost/tls").body(Full::<Bytes>::default()).unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let j: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(j["headers"]["x-forwarded-proto"], "https");

    // HTTP/1.1 over TLS.
    let stream = tls_connect(app.proxy_addr, &c.roots, &[b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = Request::get("/tls1").header("host", "localhost").body(Full::<Bytes>::default()).unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_11);

    // A plain-text request to the TLS port is not served, and the port keeps working.
    let r = raw(app.proxy_addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Duration::from_secs(2)).await;
    assert!(!r.contains("200 OK"));
    let _ = tls_connect(app.proxy_addr, &c.roots, &[b"h2"]).await;
    app.stop().await;
}

#[test]
fn tls_config_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let text = "[listen]\ntls = { cert = \"missing.pem\", key = \"empty.pem\" }\n";
    let errs = prescale::config::parse(text, dir.path()).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs[0].to_string().starts_with("line 2: listen.tls.cert: cannot read"), "{}", errs[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through() {
    let up = Upstream::start("ws").await;
    let app = start(&config(&up, "")).await;
    let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket") && head.contains("connection: upgrade"), "{head}");
    // Bytes now flow both ways through the tunnel (the fake upstream echoes).
    for msg in [&b"ping-1"[..], b"second message"] {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut got)).await.unwrap().unwrap();
        assert_eq!(got, msg);
    }
    app.stop().await;
}
