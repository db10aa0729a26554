//! Readiness, the admin listener, graceful shutdown and reload in-process.

use std::time::Duration;

use http::Request;
use http_body_util::Full;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_waits_for_a_healthy_member_per_pool() {
    let up = Upstream::start("u").await;
    up.set_healthy(false);
    let app = start(&format!(
        "[[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n\
         health_check = {{ path = \"/health\", interval = \"100ms\", timeout = \"100ms\", rise = 2, fall = 1 }}\n",
        up.addr
    ))
    .await;
    let c = client();
    assert_eq!(get(&c, &admin_url(&app, "/live")).await.status, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&c, &admin_url(&app, "/ready")).await.status, 503);
    let r = get(&c, &url(&app, "/x")).await;
    assert_eq!(r.status, 503, "no healthy member");
    assert!(String::from_utf8_lossy(&r.body).contains("pool \"p\""), "the 503 names the pool: {:?}", r.body);
    up.set_healthy(true);
    assert!(eventually(Duration::from_secs(3), async || get(&c, &admin_url(&app, "/ready")).await.status == 200).await);
    assert_eq!(get(&c, &url(&app, "/x")).await.status, 200);
    // fall = 1: one failed check takes it out again.
    up.set_healthy(false);
    assert!(eventually(Duration::from_secs(3), async || get(&c, &url(&app, "/x")).await.status == 503).await);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_token_protects_metrics_but_not_probes() {
    let dir = tempfile::tempdir().unwrap();
    write_token(dir.path(), "s3cret-admin-token");
    let text = "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\ntoken_file = \"token\"\n";
    let settings = prescale::config::parse(text, dir.path()).unwrap();
    let app = prescale::app::App::start(settings).await.unwrap();
    let c = client();
    assert_eq!(get(&c, &admin_url(&app, "/live")).await.status, 200);
    assert_eq!(get(&c, &admin_url(&app, "/metrics")).await.status, 401);
    let bad = Request::get(admin_url(&app, "/metrics")).header("authorization", "Bearer nope").body(Full::default());
    assert_eq!(send(&c, bad.unwrap()).await.status, 401);
    let good = Request::get(admin_url(&app, "/metrics"))
        .header("authorization", "Bearer s3cret-admin-token")
        .body(Full::default());
    let got = send(&c, good.unwrap()).await;
    assert_eq!(got.status, 200);
    assert!(String::from_utf8_lossy(&got.body).contains("prescale_connections_total"));
    app.stop().await;

    // Non-loopback admin without a token is refused at validation.
    let errs = prescale::config::parse("[admin]\naddr = \"0.0.0.0:9901\"\n", dir.path()).unwrap_err();
    assert!(errs[0].to_string().contains("admin.addr: 0.0.0.0:9901 is not loopback"), "{}", errs[0]);
}

/// Regression (issue 20, finding 10): a 1-byte or world-readable token file passed `check`
/// with a public admin address.
#[test]
fn weak_token_files_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let text = "[admin]\naddr = \"0.0.0.0:9901\"\ntoken_file = \"token\"\n";
    let p = write_token(dir.path(), "x");
    let errs = prescale::config::parse(text, dir.path()).unwrap_err();
    assert!(errs[0].to_string().contains("admin.token_file: \"token\" holds 1 bytes: use at least 16"), "{}", errs[0]);
    write_token(dir.path(), "a-long-enough-admin-token");
    assert!(prescale::config::parse(text, dir.path()).is_ok());
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let errs = prescale::config::parse(text, dir.path()).unwrap_err();
    assert!(errs[0].to_string().contains("is readable by everyone (mode 644): chmod 600"), "{}", errs[0]);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o622)).unwrap();
    let errs = prescale::config::parse(text, dir.path()).unwrap_err();
    assert!(errs[0].to_string().contains("is writable by everyone"), "{}", errs[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_stop_finishes_in_flight_requests() {
    let up = Upstream::start("u").await;
    let app = start(&format!(
        "[[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    ))
    .await;
    let addr = app.proxy_addr;
    let c = client();
    let inflight: Vec<_> = (0..5)
        .map(|_| {
            let (c, u) = (c.clone(), url(&app, "/sleep/500"));
            tokio::spawn(async move { get(&c, &u).await.status })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let started = std::time::Instant::now();
    app.stop().await;
    assert!(started.elapsed() >= Duration::from_millis(250), "stop waited for the requests");
    for t in inflight {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no longer accepting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_swaps_routes_and_keeps_member_state() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let base = "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n";
    let one = format!(
        "{base}[[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        a.addr
    );
    let mut app = start(&one).await;
    let c = client();
    assert_eq!(get(&c, &url(&app, "/x")).await.header("x-upstream"), Some("a"));
    let member_a = app.proxy.pool("p").unwrap().members()[0].clone();

    // New config: b replaces a in the pool, a new endpoint appears; listen.addr changes too,
    // which is reported as needing a restart.
    let two = format!(
        "[listen]\naddr = \"127.0.0.1:1\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n\
         [[endpoint]]\nname = \"extra\"\npath_prefix = \"/extra\"\npool = \"q\"\n\
         [[pool]]\nname = \"p\"\nmembers = [\"{}\", \"{}\"]\nbalance = \"round_robin\"\n\
         [[pool]]\nname = \"q\"\nmembers = [\"{}\"]\n",
        a.addr, b.addr, b.addr
    );
    let report = app.reload(prescale::config::parse(&two, std::path::Path::new(".")).unwrap());
    let waiting: Vec<String> = report.needs_restart.iter().map(|c| c.to_string()).collect();
    assert_eq!(waiting.len(), 1, "{waiting:?}");
    assert!(waiting[0].starts_with("listen.addr: 127.0.0.1:") && waiting[0].ends_with(" → 127.0.0.1:1"), "{waiting:?}");
    let applied: Vec<&str> = report.applied.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(applied, vec!["endpoint \"extra\"", "pool \"p\" members", "pool \"p\" balance", "pool \"q\""]);
    let balance = report.applied.iter().find(|c| c.key.ends_with("balance")).unwrap();
    assert_eq!((balance.old.as_str(), balance.new.as_str()), ("P2c", "RoundRobin"));
    let pool = app.proxy.pool("p").unwrap();
    assert!(std::sync::Arc::ptr_eq(&pool.members()[0], &member_a), "member a kept its state");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        seen.insert(get(&c, &url(&app, "/x")).await.header("x-upstream").unwrap().to_string());
    }
    assert_eq!(seen.len(), 2);
    assert_eq!(get(&c, &url(&app, "/extra/1")).await.header("x-upstream"), Some("b"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_log_records_each_call_when_enabled() {
    let up = Upstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\naccess_log = \"access.log\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    );
    let app = prescale::app::App::start(prescale::config::parse(&text, dir.path()).unwrap()).await.unwrap();
    let c = client();
    get(&c, &url(&app, "/a?secret=1")).await;
    get(&c, &url(&app, "/status/503")).await;
    let path = dir.path().join("access.log");
    let two_lines = async || std::fs::read_to_string(&path).map(|s| s.lines().count() == 2).unwrap_or(false);
    assert!(eventually(Duration::from_secs(3), two_lines).await);
    let log = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].contains(" GET \"/a\" 200 ") && lines[0].contains("endpoint=api"), "{}", lines[0]);
    assert!(!lines[0].contains("secret"), "query strings are not logged");
    assert!(lines[1].contains(" 503 ") && lines[1].contains(&format!("member={}", up.addr)), "{}", lines[1]);
    app.stop().await;
}

/// Regression (issue 21, section 4): with no health check and the only member down, every
/// request got 503 while `/ready` said 200. Ready now means every pool has a member that can
/// take a request: not failing on real traffic, not ejected, not draining. The 503 and the
/// `/ready` answer both name the pool.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_is_false_while_the_only_member_fails_without_a_health_check() {
    let dead = dead_addr();
    let app = start(&format!(
        "[[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"backends\"\n\
         [[pool]]\nname = \"backends\"\nmembers = [\"{dead}\"]\n"
    ))
    .await;
    let c = client();
    assert_eq!(get(&c, &admin_url(&app, "/ready")).await.status, 200, "nothing known against the member yet");
    let r = get(&c, &url(&app, "/x")).await;
    assert!(r.status == 502 || r.status == 503, "{}", r.status);
    let r = get(&c, &url(&app, "/x")).await;
    assert!(r.status == 502 || r.status == 503, "{}", r.status);
    if r.status == 503 {
        assert!(String::from_utf8_lossy(&r.body).contains("pool \"backends\""), "the 503 names the pool: {:?}", r.body);
    }
    let ready = get(&c, &admin_url(&app, "/ready")).await;
    assert_eq!(ready.status, 503, "every request fails: not ready");
    assert!(String::from_utf8_lossy(&ready.body).contains("pool \"backends\""), "names the pool: {:?}", ready.body);
    // The backend comes up on that address: the next request reaches it and readiness returns.
    let up = Upstream::start_on("u", dead).await;
    assert!(eventually(Duration::from_secs(5), async || get(&c, &url(&app, "/x")).await.status == 200).await);
    assert_eq!(get(&c, &admin_url(&app, "/ready")).await.status, 200);
    app.stop().await;
    drop(up);
}

/// Regression (issue 21, section 5): SIGHUP reported "takes effect only after a restart" again
/// after the change had been reverted (the unapplied value was remembered as if in force), and
/// never said which values changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reverted_restart_only_change_is_not_reported_again() {
    let up = Upstream::start("u").await;
    let cfg = |timeout: &str, max_body: u64| {
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\nheader_timeout = \"{timeout}\"\nmax_body_bytes = {max_body}\n\
             [admin]\naddr = \"127.0.0.1:0\"\n[upstream]\nconnect_timeout = \"{timeout}\"\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
            up.addr
        )
    };
    let parse = |t: String| prescale::config::parse(&t, std::path::Path::new(".")).unwrap();
    let mut app = start(&cfg("10s", 1000)).await;
    let r = app.reload(parse(cfg("20s", 2000)));
    let waiting: Vec<String> = r.needs_restart.iter().map(|c| c.to_string()).collect();
    assert_eq!(waiting, vec!["listen.header_timeout: 10s → 20s", "upstream.connect_timeout: 10s → 20s"]);
    assert_eq!(r.applied.iter().map(|c| c.to_string()).collect::<Vec<_>>(), vec!["listen.max_body_bytes: 1000 → 2000"]);
    // Reverted: nothing waits for a restart any more, and the body limit goes back.
    let r = app.reload(parse(cfg("10s", 1000)));
    assert!(r.needs_restart.is_empty(), "{:?}", r.needs_restart);
    assert_eq!(r.applied.iter().map(|c| c.to_string()).collect::<Vec<_>>(), vec!["listen.max_body_bytes: 2000 → 1000"]);
    // The same file again: nothing at all.
    let r = app.reload(parse(cfg("10s", 1000)));
    assert!(r.needs_restart.is_empty() && r.applied.is_empty());
    app.stop().await;
}
