//! Balancing, weights, dead members, ejection and re-admission, retries, draining.

use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;

use crate::util::*;

fn pool_config(balance: &str, members: &str, extra: &str) -> String {
    format!(
        "[[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n\
         [[pool]]\nname = \"p\"\nbalance = \"{balance}\"\nmembers = [{members}]\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_is_spread_and_weights_are_honoured() {
    let ups = [Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await];
    let members = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect::<Vec<_>>().join(", ");
    let app = start(&pool_config("round_robin", &members, "")).await;
    let c = client();
    for _ in 0..300 {
        assert_eq!(get(&c, &url(&app, "/x")).await.status, 200);
    }
    assert_eq!(ups.iter().map(|u| u.hits()).collect::<Vec<_>>(), vec![100, 100, 100]);
    app.stop().await;

    // p2c (default) with sequential requests still uses every member.
    let app = start(&pool_config("p2c", &members, "")).await;
    for _ in 0..300 {
        get(&c, &url(&app, "/x")).await;
    }
    assert!(ups.iter().all(|u| u.hits() > 100 + 30), "{:?}", ups.iter().map(|u| u.hits()).collect::<Vec<_>>());
    app.stop().await;

    let (w1, w3) = (Upstream::start("w1").await, Upstream::start("w3").await);
    let members = format!("{{ addr = \"{}\", weight = 1 }}, {{ addr = \"{}\", weight = 3 }}", w1.addr, w3.addr);
    let app = start(&pool_config("weighted", &members, "")).await;
    for _ in 0..800 {
        get(&c, &url(&app, "/x")).await;
    }
    let (a, b) = (w1.hits(), w3.hits());
    assert_eq!(a + b, 800);
    assert!((140..260).contains(&a), "weight 1 got {a}, weight 3 got {b}");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_member_gives_502_fast_is_ejected_and_comes_back_when_healthy() {
    let dead = dead_addr();
    let extra = "[pool.passive]\nmax_failures = 2\neject_for = \"30s\"\n\
                 [pool.health_check]\npath = \"/health\"\ninterval = \"100ms\"\ntimeout = \"100ms\"\nrise = 1\nfall = 1\n";
    let live = Upstream::start("live").await;
    let app = start(&pool_config("round_robin", &format!("\"{dead}\", \"{}\"", live.addr), extra)).await;
    let c = client();
    let up = async || get(&c, &admin_url(&app, "/ready")).await.status == 200;
    assert!(eventually(Duration::from_secs(3), up).await, "ready once the live member passed a check");

    // Only the dead member: a POST (not retried) fails with 502, quickly.
    let dead_only = start(&pool_config("round_robin", &format!("\"{dead}\""), "")).await;
    let t = Instant::now();
    let got = send(&c, Request::post(url(&dead_only, "/x")).body(Full::from("b")).unwrap()).await;
    assert_eq!(got.status, 502);
    assert!(t.elapsed() < Duration::from_secs(1), "took {:?}", t.elapsed());
    dead_only.stop().await;

    // Mixed pool: health checks take the dead member out; every request succeeds.
    for _ in 0..50 {
        assert_eq!(get(&c, &url(&app, "/x")).await.status, 200);
    }
    let metrics = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/metrics")).await.body).into_owned();
    assert_eq!(metric(&metrics, &format!("prescale_member_healthy{{pool=\"p\",member=\"{dead}\"}}")), Some(0.0));
    assert_eq!(metric(&metrics, &format!("prescale_member_healthy{{pool=\"p\",member=\"{}\"}}", live.addr)), Some(1.0));

    // The member recovers: its first passing check brings it back and it gets traffic again.
    let revived = Upstream::start_on("revived", dead).await;
    let mut back = false;
    for _ in 0..100 {
        get(&c, &url(&app, "/x")).await;
        if revived.hits() > 0 {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "revived member re-admitted");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passive_ejection_and_idempotent_retry() {
    let dead = dead_addr();
    let live = Upstream::start("live").await;
    let extra = "[pool.passive]\nmax_failures = 2\neject_for = \"1s\"\n";
    let app = start(&pool_config("round_robin", &format!("\"{dead}\", \"{}\"", live.addr), extra)).await;
    let c = client();
    // GETs without a body are retried on the other member: none fails.
    for _ in 0..20 {
        assert_eq!(get(&c, &url(&app, "/x")).await.status, 200);
    }
    let metrics = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/metrics")).await.body).into_owned();
    let retries = metric(&metrics, "prescale_upstream_retries_total").unwrap();
    assert!((1.0..=2.0).contains(&retries), "ejected after 2 failures, so at most 2 retries: {retries}");
    assert_eq!(metric(&metrics, &format!("prescale_member_healthy{{pool=\"p\",member=\"{dead}\"}}")), Some(0.0));
    // After eject_for the member is tried again (and fails again, so it is retried again).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..4 {
        assert_eq!(get(&c, &url(&app, "/x")).await.status, 200);
    }
    let metrics = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/metrics")).await.body).into_owned();
    assert!(metric(&metrics, "prescale_upstream_retries_total").unwrap() > retries);
    // A POST with a body is not retried: it may fail, but it is never sent twice.
    let mut failed = 0;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for _ in 0..4 {
        let got = send(&c, Request::post(url(&app, "/x")).body(Full::from("b")).unwrap()).await;
        failed += (got.status == 502) as u32;
    }
    assert!(failed >= 1, "the dead member was tried by a POST and not retried");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_timeout_is_504() {
    let up = Upstream::start("slow").await;
    let app = start(&format!(
        "[upstream]\nresponse_timeout = \"200ms\"\n{}",
        pool_config("p2c", &format!("\"{}\"", up.addr), "")
    ))
    .await;
    let t = Instant::now();
    let got = get(&client(), &url(&app, "/sleep/3000")).await;
    assert_eq!(got.status, 504);
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(get(&client(), &url(&app, "/fast")).await.status, 200);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_member_finishes_in_flight_and_gets_nothing_new() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let app = start(&pool_config("round_robin", &format!("\"{}\", \"{}\"", a.addr, b.addr), "")).await;
    let c = client();
    // Park one slow request on each member.
    let slow: Vec<_> = (0..2)
        .map(|_| {
            let (c, u) = (c.clone(), url(&app, "/sleep/600"));
            tokio::spawn(async move { get(&c, &u).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let pool = app.proxy.pool("p").unwrap();
    assert!(pool.drain(&a.addr.to_string().parse().unwrap()));
    let before = a.hits();
    for _ in 0..20 {
        assert_eq!(get(&c, &url(&app, "/x")).await.header("x-upstream"), Some("b"));
    }
    assert_eq!(a.hits(), before, "no new request reached the draining member");
    for s in slow {
        assert_eq!(s.await.unwrap().status, 200, "in-flight request on the draining member finished");
    }
    assert_eq!(pool.members()[0].outstanding(), 0);
    assert!(pool.remove(&a.addr.to_string().parse().unwrap()));
    assert_eq!(get(&c, &url(&app, "/x")).await.status, 200);
    app.stop().await;
}

/// An upstream killed mid-load (its listener and every open connection closed at once, with
/// requests in flight on them): GETs that were on it are sent again to another member, so none
/// fails; the killed member is ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_killed_under_load_fails_no_get() {
    let ups = vec![Upstream::start("a").await, Upstream::start("b").await, Upstream::start("c").await];
    let members = ups.iter().map(|u| format!("\"{}\"", u.addr)).collect::<Vec<_>>().join(", ");
    let app = start(&pool_config("p2c", &members, "[pool.passive]\nmax_failures = 2\neject_for = \"30s\"\n")).await;
    let until = Instant::now() + Duration::from_millis(2500);
    let mut clients = Vec::new();
    for _ in 0..16 {
        let (c, u) = (client(), url(&app, "/sleep/20"));
        clients.push(tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            while Instant::now() < until {
                match get(&c, &u).await.status {
                    200 => ok += 1,
                    s => failed.push(s),
                }
            }
            (ok, failed)
        }));
    }
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut ups = ups;
    let killed = ups.remove(1);
    let hits_before = killed.hits();
    killed.stop().await;
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.await.unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(hits_before > 0, "the killed member had taken load");
    assert!(failed.is_empty(), "no GET failed: {failed:?} ({ok} succeeded)");
    assert!(ok > 200, "load kept flowing: {ok}");
    let metrics = String::from_utf8_lossy(&get(&client(), &admin_url(&app, "/metrics")).await.body).into_owned();
    assert!(metric(&metrics, "prescale_upstream_retries_total").unwrap() >= 1.0, "{metrics}");
    app.stop().await;
}
