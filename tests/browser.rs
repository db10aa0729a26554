//! The `/admin` page in a real browser: headless Chromium (Debian packages `chromium`,
//! `chromium-driver`; `scripts/deps` installs them) loads the page of a running prescale with
//! imported history, a forecast and recorded calls — one of them carrying `<script>` in its path
//! and query. The test reads the DOM Chromium built: the endpoint card with its chart (actuals,
//! forecast line, both bands), the totals matching the JSON API, the accuracy table, the escaped
//! call with no script element, the strict CSP — and saves a screenshot as a test artifact
//! (`target/admin-screenshot.png`). Actions: a POST without the page's secret or the token is
//! refused; with it, a refit is accepted and takes effect.

use std::time::Duration;

use crate::util::*;

fn chromium() -> std::path::PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if let Ok(out) = std::process::Command::new("sh").arg("-c").arg(format!("command -v {c}")).output()
            && out.status.success()
        {
            return std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        }
    }
    panic!("headless Chromium is needed for the admin page test: run scripts/deps (apt-get install chromium)");
}

fn browse(args: &[&str], url: &str, profile: &std::path::Path) -> String {
    let out = std::process::Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(out.status.success(), "chromium failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_page_renders_charts_tables_and_escapes_recorded_strings() {
    let dir = tempfile::tempdir().unwrap();
    let now_min = prescale::clock::now_us() / 60_000_000;
    let mut csv = String::from("timestamp,value\n");
    for m in now_min - 3 * 1440..now_min {
        let v = 300.0 + 200.0 * ((m % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin() + (m % 7) as f64;
        csv.push_str(&format!("{},{}\n", m * 60, v.round()));
    }
    std::fs::write(dir.path().join("t.csv"), csv).unwrap();
    let up = Upstream::start("b").await;
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n\
             [[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
            up.addr
        ),
    )
    .unwrap();
    import(&cfg, "api", &dir.path().join("t.csv"), &[]);
    let app = prescale::app::App::start(prescale::config::load(&cfg).unwrap()).await.unwrap();
    let c = client();
    let fc = admin_url(&app, "/admin/api/forecast?endpoint=api");
    assert!(
        eventually(Duration::from_secs(40), async || get(&c, &fc).await.json()["points"]
            .as_array()
            .is_some_and(|p| !p.is_empty()))
        .await,
        "a forecast is published"
    );
    // Recorded calls, one hostile.
    for i in 0..5 {
        assert_eq!(get(&c, &url(&app, &format!("/api/items/{i}"))).await.status, 200);
    }
    // Raw bytes: an HTTP client would percent-encode them; the proxy takes them as they come.
    let resp = raw(
        app.proxy_addr,
        b"GET /api/<script>alert(1)</script>?q=<script>x</script>&n=\"'> HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(resp.starts_with("HTTP/1.1 400"), "raw markup in a request target is refused: {resp}");
    // Encoded, it is a valid target: recorded as sent, shown as text.
    let hostile = url(&app, "/api/%3Cscript%3Ealert(1)%3C/script%3E?q=%3Cscript%3Ex%3C/script%3E&a='b'");
    get(&c, &hostile).await;
    let recorded = async || {
        get(&c, &admin_url(&app, "/admin/api/calls?limit=10")).await.json().as_array().is_some_and(|a| a.len() >= 6)
    };
    assert!(
        eventually(Duration::from_secs(10), recorded).await,
        "{}",
        String::from_utf8_lossy(&get(&c, &admin_url(&app, "/admin/api/calls?limit=10")).await.body)
    );

    // The page as Chromium builds it.
    let profile = dir.path().join("chromium");
    let page = admin_url(&app, "/admin?refresh=0");
    let dom = browse(&["--dump-dom"], &page, &profile);
    assert!(dom.contains(r#"data-endpoint="api""#), "endpoint card: {}", &dom[..dom.len().min(2000)]);
    for class in ["actual", "forecast", "band80", "band95"] {
        assert!(dom.contains(&format!(r#"class="{class}""#)), "chart element {class} missing");
    }
    // Totals match the JSON API.
    let eps = get(&c, &admin_url(&app, "/admin/api/endpoints")).await.json();
    let total = eps.as_array().unwrap().iter().map(|e| e["calls_total"].as_u64().unwrap()).sum::<u64>();
    let shown: u64 =
        dom.split(" endpoints · ").nth(1).unwrap().split(" calls recorded").next().unwrap().parse().unwrap();
    assert!(shown.abs_diff(total) <= 1, "page says {shown} calls, the API {total}");
    // The forecast's next minute, as the API gives it, is on the card.
    let f = get(&c, &fc).await.json();
    let next = (f["points"][0]["rate"].as_f64().unwrap() * 60.0).round();
    let on_page: f64 = dom.split("next min ").nth(1).unwrap().split(" calls").next().unwrap().parse().unwrap();
    assert!((on_page - next).abs() <= 1.0, "next-minute forecast: page {on_page}, API {next}");
    assert!(dom.contains("Forecast accuracy") && dom.contains("<td>api</td><td>60 min</td>"), "accuracy table");
    assert!(dom.contains("0 records dropped"));
    // The hostile path and query are shown as text, never as markup.
    assert!(dom.contains("/api/%3Cscript%3Ealert(1)%3C/script%3E"), "the recorded path is shown as sent");
    assert!(dom.contains("q=%3Cscript%3Ex%3C/script%3E&amp;a='b'"), "the recorded query is shown as text");
    assert!(!dom.contains("<script"), "a script element made it into the page");
    // Regression (issue 21, section 5): ?endpoint=nope was silently ignored.
    let nope = get(&c, &admin_url(&app, "/admin?refresh=0&endpoint=nope")).await;
    let body = String::from_utf8_lossy(&nope.body);
    assert!(body.contains(r#"id="no-endpoint""#) && body.contains("No endpoint named “nope”"), "{body}");
    // Strict CSP on the page.
    let g = get(&c, &page).await;
    let csp = g.header("content-security-policy").unwrap().to_string();
    assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    // A phone-width screenshot and a desktop one, kept as artifacts.
    let shot = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/admin-screenshot.png");
    browse(
        &["--window-size=1280,1600", "--hide-scrollbars", &format!("--screenshot={}", shot.display())],
        &page,
        &profile,
    );
    assert!(std::fs::metadata(&shot).map(|m| m.len() > 10_000).unwrap_or(false), "screenshot written");
    let phone = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/admin-screenshot-phone.png");
    browse(
        &["--window-size=390,1600", "--hide-scrollbars", &format!("--screenshot={}", phone.display())],
        &page,
        &profile,
    );
    assert!(std::fs::metadata(&phone).is_ok());

    // Actions: refused without the page's secret, accepted with it (and the refit happens).
    let action = admin_url(&app, "/admin/action");
    let post = |body: String| {
        http::Request::post(action.as_str())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))
            .unwrap()
    };
    assert_eq!(send(&c, post("action=refit&endpoint=api".into())).await.status, 403);
    assert_eq!(send(&c, post("action=refit&endpoint=api&csrf=wrong".into())).await.status, 403);
    let csrf = dom.split(r#"name="csrf" value=""#).nth(1).unwrap().split('"').next().unwrap().to_string();
    let r = send(&c, post(format!("action=refit&endpoint=api&csrf={csrf}"))).await;
    assert_eq!(r.status, 303, "accepted and redirected back");
    let refitted = async || get(&c, &fc).await.json()["fit_reason"] == "manual";
    assert!(eventually(Duration::from_secs(30), refitted).await, "the refit took effect");
    assert_eq!(send(&c, post(format!("action=explode&csrf={csrf}"))).await.status, 400);
    assert_eq!(
        send(&c, post(format!("action=mode&pool=p&mode=enabled&csrf={csrf}"))).await.status,
        409,
        "pool p is not scaled"
    );
    app.stop().await;
}

/// A WebDriver session on a local chromedriver (Debian's `chromium-driver`): the sign-in flow
/// needs a browser that keeps cookies and submits forms, which `--dump-dom` cannot.
struct Driver {
    _process: KillOnDrop,
    base: String,
    session: String,
    c: TestClient,
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

impl Driver {
    async fn start(profile: &std::path::Path) -> Self {
        let port = dead_addr().port();
        let process = KillOnDrop(
            std::process::Command::new("chromedriver")
                .arg(format!("--port={port}"))
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("chromedriver (Debian package chromium-driver; scripts/deps installs it)"),
        );
        let base = format!("http://127.0.0.1:{port}");
        let c = client();
        let listening = async || tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok();
        assert!(eventually(Duration::from_secs(10), listening).await, "chromedriver did not start");
        let caps = serde_json::json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": chromium().display().to_string(),
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--no-first-run", format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let mut d = Self { _process: process, base, session: String::new(), c };
        let v = d.call(http::Method::POST, "/session", Some(caps)).await;
        d.session = v["sessionId"].as_str().expect("a WebDriver session").to_string();
        d
    }

    async fn call(&self, method: http::Method, path: &str, body: Option<serde_json::Value>) -> serde_json::Value {
        let path = if path == "/session" { path.to_string() } else { format!("/session/{}{path}", self.session) };
        let req = http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(http_body_util::Full::new(bytes::Bytes::from(body.map(|b| b.to_string()).unwrap_or_default())))
            .unwrap();
        let got = send(&self.c, req).await;
        let v = got.json();
        assert!(got.status == 200, "WebDriver {path}: {v}");
        v["value"].clone()
    }

    async fn go(&self, url: &str) {
        self.call(http::Method::POST, "/url", Some(serde_json::json!({ "url": url }))).await;
    }

    async fn source(&self) -> String {
        self.call(http::Method::GET, "/source", None).await.as_str().unwrap_or_default().to_string()
    }

    /// The page source once it contains `marker` (a click's navigation finishes after the
    /// click returns), or the last source seen after 10 s.
    async fn source_with(&self, marker: &str) -> String {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.source().await;
            if s.contains(marker) || std::time::Instant::now() > until {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let v = self
            .call(http::Method::POST, "/element", Some(serde_json::json!({"using": "css selector", "value": css})))
            .await;
        v[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {css}: {v}")).to_string()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css).await;
        self.call(http::Method::POST, &format!("/element/{e}/value"), Some(serde_json::json!({ "text": text }))).await;
    }

    async fn click(&self, css: &str) {
        let e = self.element(css).await;
        self.call(http::Method::POST, &format!("/element/{e}/click"), Some(serde_json::json!({}))).await;
    }

    async fn cookies(&self) -> Vec<serde_json::Value> {
        self.call(http::Method::GET, "/cookie", None).await.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Driver {
    /// Ends the WebDriver session, which closes the browser: killing chromedriver alone would
    /// leave Chromium running. Plain blocking I/O, so it also runs when a test panics.
    fn drop(&mut self) {
        use std::io::{Read, Write};
        let Some(addr) = self.base.strip_prefix("http://") else { return };
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            let req = format!(
                "DELETE /session/{} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.session
            );
            let _ = s.write_all(req.as_bytes());
            // The answer comes once the browser has quit; chromedriver keeps the socket open.
            let _ = s.read(&mut [0u8; 1024]);
        }
    }
}

/// Regression (issue 21, section 2): with `admin.token_file` set, `/admin` answered 401 to a
/// browser (bearer only), so the page could not be opened in the documented container. Now a
/// browser signs in with the token on a form, gets a session cookie (HttpOnly, SameSite=Strict,
/// Secure under TLS, expiring), uses the page and its API, and signs out — over the admin's
/// own TLS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_signs_in_with_the_token_over_tls_and_out_again() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    std::fs::write(dir.path().join("admin.pem"), ck.cert.pem()).unwrap();
    std::fs::write(dir.path().join("admin.key"), ck.signing_key.serialize_pem()).unwrap();
    let token = "a-long-enough-admin-token-for-tests";
    write_token(dir.path(), token);
    let up = Upstream::start("b").await;
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\ntoken_file = \"token\"\n\
         [admin.tls]\ncert = \"admin.pem\"\nkey = \"admin.key\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    );
    let app = prescale::app::App::start(prescale::config::parse(&text, dir.path()).unwrap()).await.unwrap();
    assert_eq!(get(&client(), &url(&app, "/api/x")).await.status, 200);
    let admin = format!("https://127.0.0.1:{}", app.admin_addr.port());

    let d = Driver::start(&dir.path().join("chromium")).await;
    d.go(&format!("{admin}/admin")).await;
    let page = d.source().await;
    assert!(page.contains(r#"id="token""#) && !page.contains("data-endpoint"), "the sign-in form: {page}");
    // A wrong token: the form again, with the error.
    d.type_into("#token", "not-the-token").await;
    d.click("#sign-in").await;
    let page = d.source_with(r#"id="login-error""#).await;
    assert!(page.contains(r#"id="login-error""#), "{page}");
    assert!(d.cookies().await.iter().all(|c| c["name"] != "prescale_session"));
    // The token: the page itself.
    d.type_into("#token", token).await;
    d.click("#sign-in").await;
    let page = d.source_with(r#"id="logout""#).await;
    assert!(page.contains(r#"data-endpoint="api""#) && page.contains(r#"id="logout""#), "{page}");
    let cookies = d.cookies().await;
    let session = cookies.iter().find(|c| c["name"] == "prescale_session").expect("a session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    let expiry = session["expiry"].as_u64().expect("an expiring cookie");
    let now = prescale::clock::now_us() / 1_000_000;
    assert!((now + 11 * 3600..=now + 13 * 3600).contains(&expiry), "{session}");
    // The API answers the session too.
    d.go(&format!("{admin}/admin/api/endpoints")).await;
    assert!(d.source_with("calls_total").await.contains("calls_total"));
    // Sign out (a form post from the page, like every action): back to the form, and the page
    // needs the token again.
    d.go(&format!("{admin}/admin?refresh=0")).await;
    d.click("#logout").await;
    let page = d.source_with(r#"id="token""#).await;
    assert!(page.contains(r#"id="token""#), "{page}");
    d.go(&format!("{admin}/admin")).await;
    let page = d.source().await;
    assert!(page.contains(r#"id="token""#) && !page.contains("data-endpoint"), "{page}");
    drop(d);
    app.stop().await;
}

/// The session cookie over plain HTTP (loopback admin): no `Secure`, `HttpOnly` and
/// `SameSite=Strict`; a closed session's cookie is refused; the bearer token still works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_cookies_that_end_at_sign_out() {
    let dir = tempfile::tempdir().unwrap();
    let token = "another-long-admin-token-for-tests";
    write_token(dir.path(), token);
    let text = "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\ntoken_file = \"token\"\n";
    let app = prescale::app::App::start(prescale::config::parse(text, dir.path()).unwrap()).await.unwrap();
    let c = client();
    let post = |path: &str, body: String, cookie: Option<&str>| {
        let mut b = http::Request::post(admin_url(&app, path))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("origin", format!("http://{}", app.admin_addr));
        if let Some(ck) = cookie {
            b = b.header("cookie", ck);
        }
        b.body(http_body_util::Full::new(bytes::Bytes::from(body))).unwrap()
    };
    let page = get(&c, &admin_url(&app, "/admin")).await;
    assert_eq!(page.status, 401);
    assert!(String::from_utf8_lossy(&page.body).contains(r#"action="/admin/login""#));
    let r = send(&c, post("/admin/login", format!("token={token}&next=%2Fadmin%3Frefresh%3D0"), None)).await;
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/admin?refresh=0"));
    let set = r.header("set-cookie").unwrap().to_string();
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Max-Age=43200"), "{set}");
    assert!(!set.contains("Secure"), "plain HTTP: {set}");
    let cookie = set.split(';').next().unwrap().to_string();
    let with_cookie = |path: &str| {
        http::Request::get(admin_url(&app, path))
            .header("cookie", cookie.as_str())
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    assert_eq!(send(&c, with_cookie("/admin?refresh=0")).await.status, 200);
    assert_eq!(send(&c, with_cookie("/metrics")).await.status, 401, "the cookie's path is /admin only");
    // A login may not send the browser elsewhere.
    let r = send(&c, post("/admin/login", format!("token={token}&next=https://evil.example/"), None)).await;
    assert_eq!(r.header("location"), Some("/admin"));
    let r = send(&c, post("/admin/logout", String::new(), Some(&cookie))).await;
    assert_eq!(r.status, 303);
    assert!(r.header("set-cookie").unwrap().contains("Max-Age=0"));
    assert_eq!(send(&c, with_cookie("/admin?refresh=0")).await.status, 401, "the session ended");
    let bearer = http::Request::get(admin_url(&app, "/metrics"))
        .header("authorization", format!("Bearer {token}"))
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(&c, bearer).await.status, 200);
    app.stop().await;
}
