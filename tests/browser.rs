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
