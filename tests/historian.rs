//! The historian through the proxy: exact accounting, overflow, restart, crash, import.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use http::Request;
use http_body_util::Full;
use serde_json::Value;
use tokio::io::AsyncWriteExt;

use crate::util::*;

async fn api(c: &TestClient, app: &prescale::app::App, path: &str) -> Value {
    let got = get(c, &admin_url(app, path)).await;
    assert_eq!(got.status, 200, "{path}: {}", String::from_utf8_lossy(&got.body));
    got.json()
}

/// Sum of `count` over the 1-s series of an endpoint.
async fn series_sum(c: &TestClient, app: &prescale::app::App, endpoint: &str, from: u64) -> (u64, u64) {
    let to = prescale::clock::now_us() / 1_000_000 + 1;
    let s = api(c, app, &format!("/admin/api/series?endpoint={endpoint}&step=1&from={from}&to={to}")).await;
    let pts = s["points"].as_array().unwrap();
    (pts.iter().map(|p| p["count"].as_u64().unwrap()).sum(), pts.iter().map(|p| p["errors"].as_u64().unwrap()).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_is_accounted_for_exactly_once() {
    let up = Upstream::start("u").await;
    let dead = dead_addr();
    let app = start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [upstream]\nresponse_timeout = \"1500ms\"\n\
         [historian]\nclose_after = \"300ms\"\n\
         [[endpoint]]\nname = \"a\"\npath_prefix = \"/a\"\npool = \"p\"\n\
         [[endpoint]]\nname = \"b\"\npath_prefix = \"/b\"\npool = \"p\"\n\
         [[endpoint]]\nname = \"dead\"\npath_prefix = \"/dead\"\npool = \"d\"\n\
         [[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n[[pool]]\nname = \"d\"\nmembers = [\"{dead}\"]\n",
        up.addr
    ))
    .await;
    let from = prescale::clock::now_us() / 1_000_000 - 1;
    let c = client();
    let mut expect: HashMap<&str, (u64, u64)> = HashMap::new(); // endpoint → (calls, errors)
    let mut outcomes: HashMap<&str, u64> = HashMap::new();
    for _ in 0..30 {
        assert_eq!(get(&c, &url(&app, "/a/x?token=s3cret&q=1")).await.status, 200);
    }
    let r = send(&c, Request::post(url(&app, "/a/upload")).body(Full::from("hello world")).unwrap()).await;
    assert_eq!(r.status, 200);
    for _ in 0..10 {
        assert_eq!(get(&c, &url(&app, "/a/status/404")).await.status, 404);
    }
    for _ in 0..5 {
        assert_eq!(get(&c, &url(&app, "/b/status/500")).await.status, 500);
    }
    for _ in 0..7 {
        let r = send(&c, Request::post(url(&app, "/dead/x")).body(Full::from("x")).unwrap()).await;
        assert_eq!(r.status, 502);
    }
    let slow: Vec<_> = (0..3)
        .map(|_| {
            let (c, u) = (c.clone(), url(&app, "/b/sleep/3000"));
            tokio::spawn(async move { get(&c, &u).await.status })
        })
        .collect();
    // Clients that leave before the response starts.
    for _ in 0..4 {
        let mut s = tokio::net::TcpStream::connect(app.proxy_addr).await.unwrap();
        s.write_all(b"GET /b/sleep/600 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(s);
    }
    for s in slow {
        assert_eq!(s.await.unwrap(), 504);
    }
    expect.insert("a", (41, 10));
    expect.insert("b", (12, 12)); // 5 × 500, 3 × 504, 4 × 499
    expect.insert("dead", (7, 7));
    outcomes.insert("ok", 31);
    outcomes.insert("client_error", 10);
    outcomes.insert("upstream_error", 12);
    outcomes.insert("timeout", 3);
    outcomes.insert("cancelled", 4);

    // Buckets close 300 ms after they end; the aborted calls end when their upstream answers.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    for (ep, (calls, errors)) in &expect {
        let ok = eventually(Duration::from_secs(5), async || series_sum(&c, &app, ep, from).await == (*calls, *errors))
            .await;
        assert!(ok, "{ep}: series sums {:?}, expected {:?}", series_sum(&c, &app, ep, from).await, (calls, errors));
    }
    let eps = api(&c, &app, "/admin/api/endpoints").await;
    for e in eps.as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        assert_eq!(e["calls_total"].as_u64(), Some(expect[name].0), "{name}");
        assert_eq!(e["errors_total"].as_u64(), Some(expect[name].1), "{name}");
        assert_eq!(e["dropped_records_total"].as_u64(), Some(0));
    }
    let calls = api(&c, &app, "/admin/api/calls?limit=1000").await;
    let calls = calls.as_array().unwrap();
    assert_eq!(calls.len(), 60);
    let mut got: HashMap<String, u64> = HashMap::new();
    for call in calls {
        *got.entry(call["outcome"].as_str().unwrap().to_string()).or_default() += 1;
    }
    for (k, v) in &outcomes {
        assert_eq!(got.get(*k), Some(v), "outcome {k}: {got:?}");
    }
    let cancelled: Vec<_> = calls.iter().filter(|c| c["outcome"] == "cancelled").collect();
    assert!(cancelled.iter().all(|c| c["status"] == 499 && c["path"] == "/b/sleep/600"));
    // Parameters are stored redacted; filters work.
    let a = api(&c, &app, "/admin/api/calls?endpoint=a&status=2xx&limit=5").await;
    let a = a.as_array().unwrap();
    assert_eq!(a.len(), 5);
    assert!(a[1..].iter().all(|c| c["params"] == "token=[redacted]&q=1" && c["upstream"] == up.addr.to_string()));
    let dead_calls = api(&c, &app, "/admin/api/calls?endpoint=dead&status=502").await;
    assert_eq!(dead_calls.as_array().unwrap().len(), 7);
    // The dead member never got the body: nothing was read from the client.
    assert_eq!(dead_calls[0]["bytes_in"], 0);
    let post = api(&c, &app, "/admin/api/calls?endpoint=a&status=2xx&limit=1").await;
    assert_eq!(post[0]["method"], "POST");
    assert_eq!(post[0]["bytes_in"], 11, "{}", post[0]);
    // Bad parameters are 400 with a message naming them.
    let bad = get(&c, &admin_url(&app, "/admin/api/series?endpoint=a&step=abc")).await;
    assert_eq!(bad.status, 400);
    assert!(String::from_utf8_lossy(&bad.body).contains("step"));
    assert_eq!(get(&c, &admin_url(&app, "/admin/api/series?endpoint=nope")).await.status, 404);
    // Regression (issue 21, section 5): calls?endpoint=nope was [] while series 404'd; both
    // are 404 now, naming the known endpoints.
    let nope = get(&c, &admin_url(&app, "/admin/api/calls?endpoint=nope")).await;
    assert_eq!(nope.status, 404);
    let msg = nope.json()["error"].as_str().unwrap().to_string();
    assert!(msg.contains("known: [\"a\", \"b\", \"dead\"]"), "{msg}");
    // Regression: calls?from= was seconds while records carry t_us; from_us/to_us take the
    // records' own unit (and both units at once is a 400).
    let newest = calls[0]["t_us"].as_u64().unwrap();
    let since = api(&c, &app, &format!("/admin/api/calls?from_us={newest}&limit=1000")).await;
    assert!(!since.as_array().unwrap().is_empty());
    assert!(since.as_array().unwrap().iter().all(|c| c["t_us"].as_u64().unwrap() >= newest));
    let before = api(&c, &app, &format!("/admin/api/calls?to_us={newest}&limit=1000")).await;
    assert_eq!(before.as_array().unwrap().len() + since.as_array().unwrap().len(), 60);
    let both = get(&c, &admin_url(&app, &format!("/admin/api/calls?from=1&from_us={newest}"))).await;
    assert_eq!(both.status, 400);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_channel_drops_records_never_requests() {
    let up = Upstream::start("u").await;
    let app = start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\nchannel_capacity = 1\n\
         [[endpoint]]\nname = \"a\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    ))
    .await;
    let c = client();
    let n = 400;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (c, u) = (c.clone(), url(&app, "/x"));
            tokio::spawn(async move { get(&c, &u).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200, "every request is served");
    }
    let text = async || String::from_utf8_lossy(&get(&c, &admin_url(&app, "/metrics")).await.body).into_owned();
    let accounted = async || {
        let t = text().await;
        let acc = metric(&t, "prescale_historian_records_total{result=\"accepted\"}").unwrap_or(0.0);
        let drop = metric(&t, "prescale_historian_records_total{result=\"dropped\"}").unwrap_or(0.0);
        acc + drop == n as f64
    };
    assert!(eventually(Duration::from_secs(3), accounted).await);
    let t = text().await;
    let dropped = metric(&t, "prescale_historian_records_total{result=\"dropped\"}").unwrap();
    assert!(dropped > 0.0, "a one-slot channel under concurrency drops: {t}");
    app.stop().await;
}

fn persisted_config(up: std::net::SocketAddr, data: &std::path::Path) -> String {
    format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [historian]\ndata_dir = {data:?}\nclose_after = \"200ms\"\n\
         tiers = [{{ step = \"1s\", keep = \"1h\", persist = true }}, {{ step = \"1m\", keep = \"1d\", persist = true }}]\n\
         [[endpoint]]\nname = \"a\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{up}\"]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_history() {
    let up = Upstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();
    let from = prescale::clock::now_us() / 1_000_000 - 1;
    let app = start(&persisted_config(up.addr, dir.path())).await;
    let c = client();
    for _ in 0..25 {
        get(&c, &url(&app, "/x")).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(series_sum(&c, &app, "a", from).await.0, 25);
    app.stop().await;
    let app = start(&persisted_config(up.addr, dir.path())).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(series_sum(&c, &app, "a", from).await.0, 25, "history survived the restart");
    app.stop().await;
}

/// Kills `prescale run` with SIGKILL at random moments under load; after each restart the
/// store loads and every second that had closed before the kill holds exactly the calls the
/// client made in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_at_most_the_open_buckets() {
    let up = Upstream::start("u").await;
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    let data = dir.path().join("data");
    std::fs::write(&cfg, persisted_config(up.addr, &data)).unwrap();
    // Per second: calls certainly started in it, and calls that may have (the client's clock
    // straddled a second boundary around the request).
    let mut sent: HashMap<u64, (u64, u64)> = HashMap::new();
    let c = client();
    let mut rng = fastrand::Rng::with_seed(7);
    // `scripts/faults kill9` runs this longer (the hardening issue asks for ≥ 20 kills).
    let rounds: usize = std::env::var("PRESCALE_KILL_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(4);
    let clients = 8;
    let mut calls = 0u64;
    for round in 0..=rounds {
        let (mut child, addr, admin) = spawn_run(&cfg);
        // Earlier rounds' history is all there.
        if round > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let from = sent.keys().min().copied().unwrap_or(0);
            let to = prescale::clock::now_us() / 1_000_000 + 1;
            let got: Value =
                get(&c, &format!("http://{admin}/admin/api/series?endpoint=a&step=1&from={from}&to={to}")).await.json();
            let by_t: HashMap<u64, u64> = got["points"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| (p["t"].as_u64().unwrap(), p["count"].as_u64().unwrap()))
                .collect();
            for (t, (certain, maybe)) in &sent {
                let got = by_t.get(t).copied().unwrap_or(0);
                assert!(
                    *certain <= got && got <= certain + maybe,
                    "round {round}: second {t} holds {got}, client made {certain} (+{maybe} at a boundary)"
                );
            }
        }
        if round == rounds {
            let checked: u64 = sent.values().map(|v| v.0).sum();
            eprintln!(
                "kill -9: {rounds} kills under {clients} clients, {calls} calls; after every restart all {} closed seconds ({checked} calls) were there",
                sent.len()
            );
            assert!(checked * 4 > calls, "a good share of the calls was checked: {checked} of {calls}");
            break;
        }
        // Load from `clients` concurrent clients for a random time, then SIGKILL without warning.
        let until = Instant::now() + Duration::from_millis(rng.u64(4000..6000));
        let mut loaders = Vec::new();
        for _ in 0..clients {
            let (c, url) = (client(), format!("http://{addr}/x"));
            loaders.push(tokio::spawn(async move {
                let (mut seen, mut ok): (HashMap<u64, (u64, u64)>, u64) = (HashMap::new(), 0);
                while Instant::now() < until {
                    let t0 = prescale::clock::now_us() / 1_000_000;
                    if get(&c, &url).await.status == 200 {
                        ok += 1;
                        let t1 = prescale::clock::now_us() / 1_000_000;
                        if t0 == t1 {
                            seen.entry(t0).or_default().0 += 1;
                        } else {
                            seen.entry(t0).or_default().1 += 1;
                            seen.entry(t1).or_default().1 += 1;
                        }
                    }
                }
                (seen, ok)
            }));
        }
        let mut this_round: HashMap<u64, (u64, u64)> = HashMap::new();
        for l in loaders {
            let (seen, ok) = l.await.unwrap();
            calls += ok;
            for (t, (a, b)) in seen {
                let e = this_round.entry(t).or_default();
                e.0 += a;
                e.1 += b;
            }
        }
        // Seconds that closed (end + close_after) well before the kill must be on disk.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..400))).await;
        let kill_s = prescale::clock::now_us() as f64 / 1e6;
        child.0.kill().unwrap();
        child.0.wait().unwrap();
        for (t, n) in this_round {
            // A request's start second can differ from the client's by its latency; only
            // seconds closed a safe margin before the kill are checked.
            if (t as f64) + 1.0 + 0.2 + 0.6 < kill_s {
                sent.insert(t, n);
            }
        }
    }
}

#[test]
fn import_reports_bad_lines_and_imports_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[historian]\ndata_dir = \"data\"\n[[endpoint]]\nname = \"e\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:1\"]\n",
    )
    .unwrap();
    let csv = dir.path().join("t.csv");
    std::fs::write(
        &csv,
        "timestamp,value\n1800000000,5\n1800000060,seven\n1800000120,9\n1800000180\n1800000240,0\n1800000300,2\n",
    )
    .unwrap();
    // 2027 is in the future of this test's writing: refused by default (issue 20, finding 7)...
    let refused = import_output(&cfg, "e", &csv, &[]);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    if now < 1_800_000_000 {
        let err = String::from_utf8_lossy(&refused.stderr);
        assert!(err.contains("t.csv:2: dated") && err.contains("future rows are refused"), "{err}");
        assert_eq!(refused.status.code(), Some(1), "{err}");
        assert!(err.contains("nothing was written"), "{err}");
    }
    // ...and taken with --allow-future (and the malformed lines skipped with --skip-bad).
    let out = import_output(&cfg, "e", &csv, &["--allow-future", "--skip-bad"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("t.csv:3: ") && err.contains("t.csv:5: "), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 16 calls") && stdout.contains("csv step 60s"), "{stdout}");

    let log = dir.path().join("access.log");
    std::fs::write(
        &log,
        "1.2.3.4 - - [15/Jan/2027:08:00:01 +0000] \"GET /api/x HTTP/1.1\" 200 512\n\
         1.2.3.4 - - [15/Jan/2027:08:00:30 +0000] \"GET /other HTTP/1.1\" 200 10\n\
         not a log line\n\
         1.2.3.4 - - [15/Jan/2027:08:02:00 +0000] \"POST /api/y HTTP/1.1\" 503 0 \"-\" \"curl\"\n",
    )
    .unwrap();
    let out = import_output(&cfg, "logs", &log, &["--allow-future", "--skip-bad", "--path-prefix", "/api"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("access.log:3: "));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("imported 2 calls from 4 lines into"), "{stdout}");

    // What was written loads back: minutes of the CSV, and of the log with its quiet minute
    // (08:01) as a real zero.
    let settings = prescale::config::load(&cfg).unwrap();
    let h = settings.historian.unwrap();
    let mut disk = prescale::historian::disk::Disk::open(h.data_dir.as_ref().unwrap()).unwrap();
    let mut rows = Vec::new();
    let spec = &h.store.tiers[1];
    let mut logs = Vec::new();
    disk.load(1, spec, 1_800_000_300, &mut |n, i, f| {
        if &*n == "e" {
            rows.push((i * 60, f.calls));
        } else {
            logs.push((i * 60, f.calls, f.e5));
        }
    });
    // Rows that were malformed are missing (absent), a 0 row is a real zero.
    assert_eq!(rows, vec![(1_800_000_000, 5), (1_800_000_120, 9), (1_800_000_240, 0), (1_800_000_300, 2)]);
    let t = 1_800_000_000; // 2027-01-15 08:00 UTC
    assert_eq!(logs, vec![(t, 1, 0), (t + 60, 0, 0), (t + 120, 1, 1)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_comes_from_the_trusted_forwarded_hop_and_filters_apply() {
    let up = Upstream::start("u").await;
    let app = start(&format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ntrusted_hops = 2\n\
         [[endpoint]]\nname = \"a\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        up.addr
    ))
    .await;
    let c = client();
    for (xff, n) in [("198.51.100.7, 10.0.0.2", 3), ("203.0.113.9, 198.51.100.1, 10.0.0.2", 2)] {
        for _ in 0..n {
            let req = Request::get(url(&app, "/x")).header("x-forwarded-for", xff).body(Full::default()).unwrap();
            assert_eq!(send(&c, req).await.status, 200);
        }
    }
    // Fewer entries than hops: the leftmost; none at all: the peer.
    let req = Request::get(url(&app, "/x")).header("x-forwarded-for", "192.0.2.1").body(Full::default()).unwrap();
    send(&c, req).await;
    get(&c, &url(&app, "/x")).await;
    let count = async |client: &str| {
        api(&c, &app, &format!("/admin/api/calls?client={client}")).await.as_array().unwrap().len()
    };
    let all = async || api(&c, &app, "/admin/api/calls").await.as_array().unwrap().len() == 7;
    assert!(eventually(Duration::from_secs(3), all).await, "all 7 calls published");
    assert_eq!(count("198.51.100.7").await, 3);
    assert_eq!(count("198.51.100.1").await, 2);
    assert_eq!(count("192.0.2.1").await, 1);
    assert_eq!(count("127.0.0.1").await, 1);
    // Time-range filter: nothing before the epoch's 2000s, everything after.
    assert_eq!(api(&c, &app, "/admin/api/calls?to=946684800").await.as_array().unwrap().len(), 0);
    assert_eq!(api(&c, &app, "/admin/api/calls?from=946684800").await.as_array().unwrap().len(), 7);
    app.stop().await;
}

fn minutes_on_disk(cfg: &std::path::Path, endpoint: &str, now_s: u64) -> Vec<(u64, u64)> {
    let h = prescale::config::load(cfg).unwrap().historian.unwrap();
    let mut disk = prescale::historian::disk::Disk::open(h.data_dir.as_ref().unwrap()).unwrap();
    let mut rows = Vec::new();
    disk.load(1, &h.store.tiers[1], now_s, &mut |n, i, f| {
        if &*n == endpoint {
            rows.push((i * 60, f.calls));
        }
    });
    rows
}

/// Regression (issue 21, section 4): ISO-8601 timestamps gave "imported 0 calls … 2999 lines
/// skipped" and exit 0; a malformed word in the middle of a CSV was taken for a header and
/// skipped unlisted. Now ISO-8601 and the access-log time format are read, every skipped line
/// is listed, and skipped lines make the import fail — writing nothing — unless `--skip-bad`.
#[test]
fn import_reads_iso_timestamps_and_fails_on_skipped_lines_unless_told() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[historian]\ndata_dir = \"data\"\n").unwrap();
    let now = prescale::clock::now_us() / 1_000_000;
    let base = (now - 2 * 86_400) / 86_400 * 86_400; // midnight two days ago, UTC
    let iso = |t: u64, style: u8| {
        let (d, s) = (t / 86_400, t % 86_400);
        // Civil date from days since the epoch (Hinnant), to write the test's own input.
        let z = d as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        let (h, m, sec) = (s / 3600, s % 3600 / 60, s % 60);
        match style {
            0 => format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{sec:02}Z"),
            // The same instant written two hours ahead, with an offset.
            1 => format!("{year:04}-{month:02}-{day:02}T{:02}:{m:02}:{sec:02}.000+02:00", h + 2),
            _ => format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{sec:02}"),
        }
    };
    let csv = dir.path().join("iso.csv");
    let mut text = String::from("time,requests\n");
    for (i, style) in [0u8, 1, 2, 0].iter().enumerate() {
        text.push_str(&format!("{},{}\n", iso(base + i as u64 * 60, *style), i + 1));
    }
    std::fs::write(&csv, &text).unwrap();
    let out = import_output(&cfg, "api", &csv, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 10 calls from"), "{out:?}");
    let got = minutes_on_disk(&cfg, "api", now);
    assert_eq!(got, vec![(base, 1), (base + 60, 2), (base + 120, 3), (base + 180, 4)]);

    // A word in the middle is a bad line, listed; the import fails and writes nothing.
    let csv = dir.path().join("bad.csv");
    std::fs::write(&csv, format!("timestamp,count\n{},5\nbroken,row\n{},7\n", base + 3600, base + 3660)).unwrap();
    let out = import_output(&cfg, "other", &csv, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("bad.csv:3: "), "the middle line is listed: {err}");
    assert!(err.contains("--skip-bad"), "{err}");
    assert!(minutes_on_disk(&cfg, "other", now).is_empty(), "nothing written");
    // With --skip-bad the rest goes in, and exit is 0.
    let out = import_output(&cfg, "other", &csv, &["--skip-bad"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad.csv:3: "));
    assert_eq!(minutes_on_disk(&cfg, "other", now), vec![(base + 3600, 5), (base + 3660, 7)]);
}

/// Regression (issue 21, section 4): a 2025 access log imported "fine" and the next `run`
/// deleted it as past retention, with no hint. Rows older than the history kept are refused
/// with the way out (`--shift-to-now`).
#[test]
fn import_refuses_rows_that_retention_would_delete_and_names_shift_to_now() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(&cfg, "[historian]\ndata_dir = \"data\"\n").unwrap();
    let log = dir.path().join("access.log");
    std::fs::write(
        &log,
        "1.2.3.4 - - [15/Jan/2024:08:00:01 +0000] \"GET /api/x HTTP/1.1\" 200 512\n\
         1.2.3.4 - - [15/Jan/2024:08:01:30 +0000] \"GET /api/x HTTP/1.1\" 200 10\n",
    )
    .unwrap();
    let out = import_output(&cfg, "api", &log, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("older than the history kept") && err.contains("--shift-to-now"), "{err}");
    let now = prescale::clock::now_us() / 1_000_000;
    assert!(minutes_on_disk(&cfg, "api", now).is_empty());
    let out = import_output(&cfg, "api", &log, &["--shift-to-now"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = minutes_on_disk(&cfg, "api", now);
    assert_eq!(got.iter().map(|r| r.1).collect::<Vec<_>>(), vec![1, 1]);
}

/// Regression (issue 21, section 4): an import into a running instance's data_dir was invisible
/// until a restart, and a second `run` could share the directory. The directory is locked: both
/// refuse, naming the directory; a `data_dir` that is a file is named too.
#[test]
fn a_data_dir_in_use_is_refused_by_import_and_by_a_second_run() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    let (first, _, _) = spawn_run(&cfg);
    let csv = dir.path().join("t.csv");
    let now = prescale::clock::now_us() / 1_000_000;
    std::fs::write(&csv, format!("{},3\n", now - 3600)).unwrap();
    let out = import_output(&cfg, "api", &csv, &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("in use by prescale") && err.contains(&format!("pid {}", first.0.id())), "{err}");
    let second = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["run", "--config"])
        .arg(&cfg)
        .env("PRESCALE_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(err.contains("data") && err.contains("in use by prescale"), "{err}");
    drop(first);
    // Free again once the first instance is gone.
    let out = import_output(&cfg, "api", &csv, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A data_dir that is a file: the error names it.
    let file_cfg = dir.path().join("f.toml");
    std::fs::write(dir.path().join("afile"), "x").unwrap();
    std::fs::write(
        &file_cfg,
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"afile\"\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_prescale")).args(["run", "--config"]).arg(&file_cfg).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0));
    assert!(err.contains("afile"), "the path is named: {err}");
}
