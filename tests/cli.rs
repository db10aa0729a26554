//! The binary: `check` output and exit codes, signals (SIGTERM, SIGHUP) on a real process.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_prescale"))
}

#[test]
fn check_reports_every_problem_with_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[listen]\naddr = \"nowhere\"\nheader_timout = \"1s\"\n\n[[endpoint]]\nname = \"e\"\npath_prefix = \"/\"\npool = \"missing\"\n\n[[pool]]\nname = \"p\"\nmembers = [\"10.0.0.1\", \"127.0.0.1:80\"]\nbalance = \"random\"\n",
    )
    .unwrap();
    let out = bin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "line 2: listen.addr: \"nowhere\" is not an IP:port address",
        "line 3: listen.header_timout: unknown key",
        "line 8: endpoint[0].pool: no pool named \"missing\"",
        "line 12: pool[0].members[0]: \"10.0.0.1\" is not host:port",
        "line 13: pool[0].balance: \"random\" is not one of",
        "5 problem(s) found",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_accepts_the_shipped_config() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let out = bin().args(["check", "--config"]).arg(&path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("ok: listen 127.0.0.1:8080") && s.contains("2 endpoint(s)"), "{s}");
}

#[test]
fn run_with_a_bad_config_exits_2_without_listening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "[listen]\naddr = 1\n").unwrap();
    let out = bin().args(["run", "--config"]).arg(&path).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// Starts `prescale run` and returns it with its proxy address (read from its first line).
fn spawn_run(path: &std::path::Path) -> (KillOnDrop, String) {
    let mut child = bin()
        .args(["run", "--config"])
        .arg(path)
        .env("PRESCALE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let addr = line.split("http://").nth(1).and_then(|s| s.split(',').next()).expect("address line").to_string();
    (KillOnDrop(child), addr)
}

/// Writes `config` to `p.toml` in `dir` and starts `prescale run` on it.
fn run_with(dir: &tempfile::TempDir, config: String) -> (KillOnDrop, String) {
    let path = dir.path().join("p.toml");
    std::fs::write(&path, config).unwrap();
    spawn_run(&path)
}

/// Sends a signal with the shell's built-in `kill` (no procps needed).
fn signal(child: &Child, sig: &str) {
    let cmd = format!("kill {sig} {}", child.id());
    assert!(Command::new("sh").args(["-c", &cmd]).status().unwrap().success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> Option<i32> {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code();
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    None
}

/// Regression: with SO_REUSEPORT a second `prescale run` on a taken address started and the
/// kernel split the traffic between the two (21 and 16 of 40 calls); the error also printed the
/// OS error twice without naming the setting. Now it exits 1 at once, naming `listen.addr`.
#[test]
fn a_second_instance_on_a_taken_address_exits_1() {
    let up = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let port = dead_addr().port();
    let dir = tempfile::tempdir().unwrap();
    let text = config(up, false).replacen("127.0.0.1:0", &format!("127.0.0.1:{port}"), 1);
    let (_first, addr) = run_with(&dir, text.clone());
    assert_eq!(addr, format!("127.0.0.1:{port}"));
    let second_cfg = dir.path().join("second.toml");
    std::fs::write(&second_cfg, text).unwrap();
    let mut second = bin()
        .args(["run", "--config"])
        .arg(&second_cfg)
        .env("PRESCALE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let code = wait_exit(&mut second, Duration::from_secs(5));
    let mut err = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(code, Some(1), "the second instance kept running (sharing the port): {err}");
    assert!(err.contains(&format!("cannot listen on 127.0.0.1:{port} (listen.addr)")), "{err}");
    assert_eq!(err.matches("os error 98").count(), 0, "{err}");
    assert_eq!(err.matches("another process is listening on this address").count(), 1, "{err}");
    // Regression (issue 21, section 5): logs to a pipe were coloured.
    assert!(!err.contains('\x1b'), "colour codes in a piped log: {err:?}");
}

/// Regression (issue 21, section 5): `prescale import … | head` exited 101 (a panic on EPIPE).
#[test]
fn one_shot_output_into_a_closed_pipe_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("proxy.toml");
    let mut child =
        bin().args(["check", "--config"]).arg(&path).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take()); // the reader is gone before anything is written
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_ne!(status.code(), Some(101), "panicked: {err}");
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?} {err}");
    assert!(!err.contains("panicked"), "{err}");
}

fn config(upstream: std::net::SocketAddr, extra_endpoint: bool) -> String {
    let mut s = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"a\"\npath_prefix = \"/a\"\npool = \"p\"\n\
         [[pool]]\nname = \"p\"\nmembers = [\"{upstream}\"]\n"
    );
    if extra_endpoint {
        s.push_str("[[endpoint]]\nname = \"b\"\npath_prefix = \"/b\"\npool = \"p\"\n");
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let (up, dir) = (Upstream::start("u").await, tempfile::tempdir().unwrap());
    let (mut child, addr) = run_with(&dir, config(up.addr, false));
    let c = client();
    let slow = tokio::spawn({
        let c = c.clone();
        let addr = addr.clone();
        async move { get(&c, &format!("http://{addr}/a/sleep/800")).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child.0, "-TERM");
    let got = slow.await.unwrap();
    assert_eq!(got.status, 200, "in-flight request finished");
    assert_eq!(tokio::task::block_in_place(|| wait_exit(&mut child.0, Duration::from_secs(10))), Some(0));
    // The listener is gone.
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_applies_a_good_config_and_keeps_the_old_one_on_a_bad_one() {
    let (up, dir) = (Upstream::start("u").await, tempfile::tempdir().unwrap());
    let path = dir.path().join("p.toml");
    let (mut child, addr) = run_with(&dir, config(up.addr, false));
    let c = client();
    assert_eq!(get(&c, &format!("http://{addr}/a/x")).await.status, 200);
    assert_eq!(get(&c, &format!("http://{addr}/b/x")).await.status, 404);
    // Load during both reloads: four clients in a loop on /a until told to stop; every
    // response must be a 200 (no request fails across a good or a broken reload).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, url) = (stop.clone(), format!("http://{addr}/a/x"));
            tokio::spawn(async move {
                let c = client();
                let (mut ok, mut bad) = (0u32, 0u32);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if get(&c, &url).await.status == 200 { ok += 1 } else { bad += 1 }
                }
                (ok, bad)
            })
        })
        .collect();

    std::fs::write(&path, config(up.addr, true)).unwrap();
    signal(&child.0, "-HUP");
    let url_b = format!("http://{addr}/b/x");
    assert!(eventually(Duration::from_secs(5), async || get(&c, &url_b).await.status == 200).await, "reload applied");

    std::fs::write(&path, "[listen]\naddr = \"127.0.0.1:0\"\n[[endpoint]]\nname = \"broken\"\n").unwrap();
    signal(&child.0, "-HUP");
    tokio::time::sleep(Duration::from_millis(300)).await;
    for _ in 0..20 {
        assert_eq!(get(&c, &format!("http://{addr}/a/x")).await.status, 200);
        assert_eq!(get(&c, &url_b).await.status, 200, "old config kept after a bad reload");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut bad) = (0, 0);
    for l in load {
        let (o, b) = l.await.unwrap();
        (ok, bad) = (ok + o, bad + b);
    }
    assert!(ok > 50, "the load ran ({ok} requests)");
    assert_eq!(bad, 0, "no request failed across the reloads ({ok} ok)");
    assert!(child.0.try_wait().unwrap().is_none(), "still running");
    signal(&child.0, "-INT");
    assert_eq!(tokio::task::block_in_place(|| wait_exit(&mut child.0, Duration::from_secs(10))), Some(0));
}

#[test]
fn backtest_scores_models_and_rejects_bad_traces() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("gen.csv");
    // 6 days at 5-min steps: a daily cycle with noise.
    let mut rng = fastrand::Rng::with_seed(11);
    let mut csv = String::from("timestamp,value\n");
    for t in 0..288 * 6 {
        let v = 40.0 + 25.0 * (t as f64 / 288.0 * std::f64::consts::TAU).sin() + 6.0 * rng.f64();
        csv.push_str(&format!("{},{}\n", 1_700_000_000 + t * 300, v.round()));
    }
    std::fs::write(&good, csv).unwrap();
    let out = bin().args(["backtest", "--json", "--input"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Six days are too few for the weekly model: skipped, and said so.
    assert!(String::from_utf8_lossy(&out.stderr).contains("dshw: skipped (not enough data"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["step"], 300);
    let results = v["results"].as_array().unwrap();
    // Every model but dshw, at two horizons.
    assert_eq!(results.len(), 2 * 8, "{v}");
    let get = |m: &str, h: u64| results.iter().find(|r| r["model"] == m && r["horizon_minutes"] == h).unwrap().clone();
    let (hw, sn, auto) = (get("hw", 60), get("snaive", 60), get("auto", 60));
    assert!(hw["mase"].as_f64().unwrap() < sn["mase"].as_f64().unwrap(), "{hw} vs {sn}");
    assert!(auto["mase"].as_f64().unwrap() < sn["mase"].as_f64().unwrap(), "{auto} vs {sn}");
    // auto says what it chose at each refit.
    let chosen = auto["selected"].as_array().unwrap();
    assert!(!chosen.is_empty() && chosen.iter().all(|c| c.as_str().is_some_and(|s| !s.is_empty())), "{auto}");
    assert!(get("hw", 5).get("selected").is_none());
    for r in results {
        for k in ["mase", "smape", "under_rate", "coverage80", "coverage95", "fit_ms"] {
            assert!(r[k].as_f64().unwrap().is_finite(), "{k} in {r}");
        }
    }

    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "timestamp,value\n0,1\n60,2\n120,-3\n").unwrap();
    let out = bin().args(["backtest", "--input"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("line 4: value \"-3\""),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(&bad, "0,1\n60,2\n").unwrap();
    let out = bin().args(["backtest", "--input"]).arg(&bad).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("too short"));
}

#[test]
fn simulate_replays_a_trace_and_what_prescale_recorded() {
    let dir = tempfile::tempdir().unwrap();
    // Three days of 1-minute data with a daily cycle and a burst on the last afternoon.
    let start = 1_700_006_400u64;
    let mut csv = String::from("timestamp,value\n");
    for m in 0..3 * 1440u64 {
        let day = ((m % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin();
        let burst = if (2 * 1440 + 900..2 * 1440 + 930).contains(&m) { 300.0 } else { 0.0 };
        csv.push_str(&format!("{},{}\n", start + m * 60, (100.0 + 80.0 * day + burst + (m * 7 % 13) as f64) as u64));
    }
    let trace = dir.path().join("t.csv");
    std::fs::write(&trace, &csv).unwrap();
    // Regression (issue 21, section 5): a one-day trace printed MASE 17–20 without a word.
    let one_day: String = csv.lines().take(1 + 1440).map(|l| format!("{l}\n")).collect();
    let short = dir.path().join("short.csv");
    std::fs::write(&short, one_day).unwrap();
    let out = bin().args(["simulate", "--policy", "reactive", "--trace"]).arg(&short).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("warning: the trace covers 24.0 h"), "{err}");
    let svg = dir.path().join("t.svg");
    let out = bin().args(["simulate", "--json", "--trace"]).arg(&trace).arg("--svg").arg(&svg).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["trace"], "t");
    assert_eq!(r["settings"]["boot_s"], 120.0);
    let names: Vec<&str> = r["policies"].as_array().unwrap().iter().map(|p| p["policy"].as_str().unwrap()).collect();
    assert_eq!(names, ["reactive", "static", "predictive", "predictive+reactive", "oracle"]);
    let by = |n: &str| r["policies"].as_array().unwrap().iter().find(|p| p["policy"] == n).unwrap().clone();
    for key in [
        "slo_violation_minutes",
        "unserved_fraction",
        "vcpu_hours",
        "vm_hours",
        "actions",
        "under_accuracy",
        "over_accuracy",
        "under_timeshare",
        "over_timeshare",
    ] {
        assert!(by("reactive")[key].is_number(), "{key}");
    }
    // The static fleet is sized for the peak: never short. The oracle is never later than
    // the reactive policy, and costs less than static.
    assert_eq!(by("static")["slo_violation_minutes"], 0);
    assert!(by("oracle")["slo_violation_minutes"].as_u64() <= by("reactive")["slo_violation_minutes"].as_u64());
    assert!(by("oracle")["vcpu_hours"].as_f64() < by("static")["vcpu_hours"].as_f64());
    assert!(r["forecast"]["points_60"].as_u64().unwrap() > 0);
    let drawn = std::fs::read_to_string(&svg).unwrap();
    assert!(drawn.starts_with("<svg") && drawn.contains("predictive+reactive") && drawn.ends_with("</svg>"));

    // The readable table, one policy.
    let out = bin().args(["simulate", "--policy", "reactive", "--trace"]).arg(&trace).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("slo_min") && text.contains("reactive") && !text.contains("oracle"), "{text}");

    // Bad input: the line, the key, the policy are named; exit code 2.
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "timestamp,value\n1700000000,5\n1700000060,five\n1700000120,5\n").unwrap();
    let out = bin().args(["simulate", "--trace"]).arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3"), "{}", String::from_utf8_lossy(&out.stderr));
    let cfg = dir.path().join("sim.toml");
    std::fs::write(&cfg, "[simulate]\ntarget_utilization = 0\n").unwrap();
    let out = bin().args(["simulate", "--config"]).arg(&cfg).arg("--trace").arg(&trace).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("simulate.target_utilization"));

    // --from-history: import the trace into a data directory, replay it from there.
    let pcfg = dir.path().join("p.toml");
    std::fs::write(
        &pcfg,
        "[listen]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n[[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    import(&pcfg, "api", &trace, &["--shift-to-now"]);
    let out = bin()
        .args(["simulate", "--json", "--policy", "reactive,oracle", "--endpoint", "api", "--from-history"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let h: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(h["trace"], "api");
    assert_eq!(h["resolved"]["step_s"], 60);
    // The same calls, replayed from the historian: the same rates, so the same sizing.
    assert_eq!(h["resolved"]["p99_rps"], r["resolved"]["p99_rps"]);
    let out =
        bin().args(["simulate", "--endpoint", "nope", "--from-history"]).arg(dir.path().join("data")).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"api\""), "names what was recorded");
}

/// Regression (issue 21, section 3): the demo's clock started at the real time of day (a run
/// at 17:43 began after the peak: no scale-out before it, no scale-in after), and the load
/// started only once the VMs were up, leaving minutes of recorded zeros between the seeded
/// history and live traffic. Now the virtual day starts at 06:00 UTC, the clock waits for the
/// first VMs, and a run of a couple of minutes tells the story: capacity added ahead of the
/// 14:00 peak, taken away after it, no failed request.
#[test]
fn the_demo_scales_out_before_the_peak_and_in_after_it() {
    let out = bin()
        .args(["demo", "--seconds", "140", "--speed", "288", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .env("PRESCALE_LOG", "warn")
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("seeded up to") && stdout.contains("06:00 UTC"), "{stdout}");
    // "HH:MM UTC  scale-out: launch 1 VM of 2 vCPUs — forecast upper band …"
    let events: Vec<(u64, &str, &str)> = stderr
        .lines()
        .filter_map(|l| {
            let (hm, rest) = l.split_once(" UTC  ")?;
            let (h, m) = hm.split_once(':')?;
            let (kind, what) = rest.split_once(": ")?;
            Some((h.parse::<u64>().ok()? * 60 + m.parse::<u64>().ok()?, kind, what))
        })
        .collect();
    let peak = 14 * 60;
    let ahead = events
        .iter()
        .filter(|(t, k, w)| *t < peak && (*k == "scale-out" || *k == "scale-up") && w.contains("— forecast "))
        .count();
    assert!(ahead >= 1, "capacity added ahead of the peak from the forecast: {events:?}\n{stderr}");
    assert!(
        events
            .iter()
            .any(|(t, k, w)| *t < peak && *k == "scale-out" && w.starts_with("launch") && w.contains("forecast")),
        "a VM launched from the forecast before the peak: {events:?}"
    );
    // Capacity taken away after the peak: a CPU cap (seconds) or a drained VM.
    assert!(
        events.iter().any(|(t, k, _)| *t > peak && (*k == "scale-in" || *k == "scale-down")),
        "scale-in after the peak: {events:?}"
    );
    let last = stdout.lines().find(|l| l.starts_with("demo: ")).expect("a summary line");
    let num = |after: &str| -> u64 { last.split(after).next().unwrap().rsplit(' ').next().unwrap().parse().unwrap() };
    let (ok, failed) = (num(" requests ok"), num(" failed"));
    eprintln!("demo: {} events, {ahead} ahead of the peak; {ok} ok, {failed} failed", events.len());
    assert!(ok > 10_000 && failed * 200 <= ok, "{last}");
}
