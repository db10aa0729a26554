//! What operators plug prescale into, with their own tools: `/metrics` checked by `promtool`
//! and scraped by a real Prometheus server (Debian's `prometheus` package; `scripts/deps
//! --tests` unpacks its binaries when they are not installed), the shipped rules checked and
//! unit-tested by `promtool`, and the README's metrics table equal to the code's.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::hypervisor::fixture;
use crate::util::*;

/// `promtool` or `prometheus`: on `PATH`, or where `scripts/deps --tests` unpacked them.
fn tool(name: &str) -> PathBuf {
    find_tool(name, &[repo("target/tools/prometheus/usr/bin")], "Debian's prometheus package")
}

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

#[test]
fn shipped_rules_pass_promtool_and_their_unit_tests() {
    let check = Command::new(tool("promtool"))
        .arg("check")
        .arg("rules")
        .arg(repo("docker/prometheus/rules.yml"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let test = Command::new(tool("promtool"))
        .args(["test", "rules", "rules_test.yml"])
        .current_dir(repo("docker/prometheus"))
        .output()
        .unwrap();
    assert!(
        test.status.success(),
        "{}{}",
        String::from_utf8_lossy(&test.stdout),
        String::from_utf8_lossy(&test.stderr)
    );
    // Every metric a rule reads is one prescale exposes.
    let names = prescale::admin::metrics::table();
    let rules = std::fs::read_to_string(repo("docker/prometheus/rules.yml")).unwrap();
    let mut read = 0;
    for word in rules.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':')) {
        if let Some(m) = word.strip_prefix("prescale_").map(|_| word) {
            let family = m.strip_suffix("_bucket").unwrap_or(m);
            assert!(names.contains(&format!("`{family}`")), "rules.yml reads {m}, which /metrics does not have");
            read += 1;
        }
    }
    assert!(read >= 6, "{read}");
}

#[test]
fn readme_metrics_table_is_the_codes() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let table = prescale::admin::metrics::table();
    assert!(
        readme.contains(&table),
        "README's metrics table differs from the code's; put this under \"Prometheus metrics\":\n{table}"
    );
}

/// Runs `promtool check metrics` on an exposition; returns its complaints.
fn promtool_check(text: &str) -> (bool, String) {
    use std::io::Write;
    let mut p = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = p.wait_with_output().unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A Prometheus server scraping `target` every second, on a free loopback port; killed on drop.
struct Prometheus {
    _child: KillOnDrop,
    url: String,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Self {
        let cfg = dir.join("prometheus.yml");
        std::fs::write(
            &cfg,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: prescale\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = dead_addr().port();
        let child = Command::new(tool("prometheus"))
            .arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
            .spawn()
            .expect("prometheus starts");
        Self { _child: KillOnDrop(child), url: format!("http://127.0.0.1:{port}") }
    }

    /// An instant query's samples: labels and value.
    async fn query(&self, c: &TestClient, q: &str) -> Vec<(Value, f64)> {
        let mut u = format!("{}/api/v1/query?query=", self.url);
        for b in q.bytes() {
            if b.is_ascii_alphanumeric() || b"_-.".contains(&b) {
                u.push(b as char);
            } else {
                u.push_str(&format!("%{b:02X}"));
            }
        }
        // Refused until the server is up.
        let Ok(r) = c.get(u.parse().unwrap()).await else { return Vec::new() };
        if r.status() != 200 {
            return Vec::new();
        }
        let Ok(body) = http_body_util::BodyExt::collect(r.into_body()).await else { return Vec::new() };
        let v: Value = serde_json::from_slice(&body.to_bytes()).unwrap_or_default();
        v["data"]["result"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|s| {
                        (s["metric"].clone(), s["value"][1].as_str().and_then(|x| x.parse().ok()).unwrap_or(f64::NAN))
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_what_the_admin_api_says() {
    let dir = tempfile::tempdir().unwrap();
    let uri = fixture(dir.path(), "node.xml", 4, 8, "");
    let up = Upstream::start("live").await;
    let port = 20_000 + fastrand::u16(0..20_000);
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n\
             [[endpoint]]\nname = \"live\"\npath_prefix = \"/live\"\npool = \"static\"\n\
             [[pool]]\nname = \"static\"\nmembers = [\"{}\"]\n\
             [[pool]]\nname = \"p\"\nmembers = []\n\
             [pool.scaling]\nuri = \"{uri}\"\ntemplate = \"tpl\"\nmode = \"enabled\"\nmin_vms = 0\nmax_vms = 2\n\
             vcpus = [1, 1]\nmemory_mib = [256, 512]\ncapacity_rps_per_vcpu = 5.0\ntarget_utilization = 1.0\n\
             headroom = 0.0\nlead_time = \"60s\"\nwindow = \"5m\"\nmax_step = 2\nports = [{port}, {}]\n\
             health_path = \"/health\"\n\
             [[pool.schedule]]\nreason = \"every day <b>batch</b>\"\nweekly = {{ days = [\"mon\", \"tue\", \"wed\", \"thu\", \"fri\", \"sat\", \"sun\"], from = \"00:00\", to = \"23:59\" }}\n\
             forecast_multiplier = 1.0\n",
            up.addr,
            port + 50
        ),
    )
    .unwrap();
    peak_history(dir.path(), &cfg);
    let app = prescale::app::App::start(prescale::config::load(&cfg).unwrap()).await.unwrap();
    let c = client();
    const CALLS: usize = 250;
    for i in 0..CALLS {
        assert_eq!(get(&c, &url(&app, &format!("/live/{i}"))).await.status, 200);
    }
    // The planner launches for the forecast peak (so the pool and VM families have samples).
    let launched = async || {
        let p: Value = get(&c, &admin_url(&app, "/admin/api/pools")).await.json();
        p[0]["vms"].as_array().is_some_and(|v| v.len() == 2)
    };
    assert!(eventually(Duration::from_secs(60), launched).await);

    // The known event is shown on the pool (running now), escaped on the page.
    let pools: Value = get(&c, &admin_url(&app, "/admin/api/pools")).await.json();
    let ev = &pools[0]["events"][0];
    assert_eq!(ev["reason"], "every day <b>batch</b>", "{pools}");
    assert_eq!(ev["when"]["kind"], "weekly");
    let page = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/admin?refresh=0")).await.body).into_owned();
    assert!(page.contains("every day &lt;b&gt;batch&lt;/b&gt;") && !page.contains("<b>batch"), "escaped");
    assert!(page.contains("mon, tue, wed, thu, fri, sat, sun 00:00–23:59 UTC"), "{page}");

    // promtool accepts the exposition as it is, every family with HELP and TYPE, no lint.
    let text = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/metrics")).await.body).into_owned();
    let (ok, complaints) = promtool_check(&text);
    assert!(ok && complaints.trim().is_empty(), "promtool check metrics:\n{complaints}\n---\n{text}");
    for family in [
        "prescale_request_duration_seconds",
        "prescale_pool_actions_total",
        "process_cpu_seconds_total",
        "prescale_vm_vcpus",
        "prescale_forecast_requests_per_second",
    ] {
        assert!(text.contains(&format!("# HELP {family} ")), "{family} missing:\n{text}");
    }
    let launches = metric(&text, "prescale_pool_actions_total{pool=\"p\",kind=\"launch\",outcome=\"ok\"}");
    let decisions: Value = get(&c, &admin_url(&app, "/admin/api/decisions?pool=p")).await.json();
    let logged = decisions
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"]["kind"] == "launch" && d["outcome"] == "ok")
        .count();
    assert_eq!(launches, Some(logged as f64), "{decisions}");
    // OpenMetrics when asked for it.
    let req = http::Request::get(admin_url(&app, "/metrics"))
        .header("accept", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5")
        .body(http_body_util::Full::default())
        .unwrap();
    let om = send(&c, req).await;
    assert!(om.headers["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    let om = String::from_utf8_lossy(&om.body).into_owned();
    assert!(om.ends_with("# EOF\n") && om.contains("# UNIT prescale_request_duration_seconds seconds\n"), "{om}");

    // A real Prometheus scrapes it; PromQL answers what the admin API says.
    let prom = Prometheus::start(dir.path(), &app.admin_addr.to_string());
    let endpoints = async || -> Value { get(&c, &admin_url(&app, "/admin/api/endpoints")).await.json() };
    let calls_total = |e: &Value| {
        e.as_array().unwrap().iter().find(|e| e["name"] == "live").map(|e| e["calls_total"].as_u64().unwrap())
    };
    assert!(eventually(Duration::from_secs(10), async || calls_total(&endpoints().await) == Some(CALLS as u64)).await);
    let counted = async || {
        prom.query(&c, "sum by (endpoint) (prescale_requests_total{endpoint=\"live\"})").await.first().map(|s| s.1)
            == Some(CALLS as f64)
    };
    assert!(
        eventually(Duration::from_secs(30), counted).await,
        "Prometheus never saw {CALLS} calls: {}",
        std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default()
    );
    // The forecast: the same number in PromQL as in the admin API (read before and after the
    // query, so a forecast republished in between is not mistaken for a difference).
    let forecast = async || -> Option<f64> {
        get(&c, &admin_url(&app, "/admin/api/forecast?endpoint=api")).await.json()["points"][0]["rate"].as_f64()
    };
    let same = async || {
        let before = forecast().await;
        let q = prom.query(&c, "prescale_forecast_requests_per_second{endpoint=\"api\",band=\"mean\"}").await;
        let after = forecast().await;
        before.is_some() && before == after && q.first().map(|s| s.1) == before
    };
    assert!(
        eventually(Duration::from_secs(30), same).await,
        "{:?} vs {:?}",
        forecast().await,
        prom.query(&c, "prescale_forecast_requests_per_second").await
    );
    // process_* metrics are there for the usual dashboards.
    let cpu = prom.query(&c, "process_cpu_seconds_total").await;
    assert!(cpu.first().is_some_and(|s| s.1 > 0.0), "{cpu:?}");

    // `prescale status` shows the same instance in the terminal.
    let admin = format!("http://{}", app.admin_addr);
    let status = move |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["status", "--admin", &admin])
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let table = tokio::task::spawn_blocking({
        let status = status.clone();
        move || status(&[])
    })
    .await
    .unwrap();
    let pool_line = table.lines().find(|l| l.starts_with("p ")).unwrap_or_else(|| panic!("{table}"));
    assert!(pool_line.contains("enabled"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("p-1 ")) && table.lines().any(|l| l.starts_with("p-2 ")), "{table}");
    let api_line = table.lines().find(|l| l.starts_with("api ")).unwrap_or_else(|| panic!("{table}"));
    assert!(api_line.split_whitespace().nth(2).is_some_and(|m| m != "-" && m != "none"), "a model: {table}");
    assert!(table.contains("launch"), "the launch decision: {table}");
    let json: Value =
        serde_json::from_str(&tokio::task::spawn_blocking(move || status(&["--json"])).await.unwrap()).unwrap();
    let pools: Value = get(&c, &admin_url(&app, "/admin/api/pools")).await.json();
    assert_eq!(json["pools"][0]["vms"].as_array().map(Vec::len), pools[0]["vms"].as_array().map(Vec::len));
    let names: Vec<&str> =
        json["endpoints"].as_array().unwrap().iter().map(|e| e["endpoint"]["name"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(
        json["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["forecast"]["points"].as_array().is_some_and(|p| p.len() == 60))
    );
    app.stop().await;
    up.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_needs_the_token_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let token = write_token(dir.path(), "status-token-for-tests-0123456789");
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\ntoken_file = \"{}\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:9\"]\n",
        token.display()
    );
    let app = prescale::app::App::start(prescale::config::parse(&text, dir.path()).unwrap()).await.unwrap();
    let admin = format!("http://{}", app.admin_addr);
    let run = move |extra: Vec<String>| {
        Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["status", "--admin", &admin])
            .args(extra)
            .env_remove("PRESCALE_ADMIN_TOKEN")
            .output()
            .unwrap()
    };
    let without = tokio::task::spawn_blocking({
        let run = run.clone();
        move || run(vec![])
    })
    .await
    .unwrap();
    assert_eq!(without.status.code(), Some(1));
    let err = String::from_utf8_lossy(&without.stderr);
    assert!(err.contains("401") && err.contains("token"), "{err}");
    let with = tokio::task::spawn_blocking(move || run(vec!["--token-file".into(), token.display().to_string()]))
        .await
        .unwrap();
    assert!(with.status.success(), "{}", String::from_utf8_lossy(&with.stderr));
    let out = String::from_utf8_lossy(&with.stdout);
    assert!(out.contains("No scaled pools.") && out.contains("api "), "{out}");
    app.stop().await;
    // Nobody there: a clear error, not a hang.
    let dead = Command::new(env!("CARGO_BIN_EXE_prescale"))
        .args(["status", "--admin", &format!("http://{}", dead_addr())])
        .output()
        .unwrap();
    assert_eq!(dead.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&dead.stderr).contains("is prescale running?"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_reaches_the_upstream_the_records_and_the_json_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let up = Upstream::start("u").await;
    let log = dir.path().join("access.jsonl");
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\naccess_log = \"{}\"\naccess_log_format = \"json\"\n\
         access_log_fields = [\"trace_id\", \"method\", \"path\", \"status\", \"duration_ms\", \"member\"]\n\
         [admin]\naddr = \"127.0.0.1:0\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/\"\npool = \"p\"\n[[pool]]\nname = \"p\"\nmembers = [\"{}\"]\n",
        log.display(),
        up.addr
    );
    let app = prescale::app::App::start(prescale::config::parse(&text, dir.path()).unwrap()).await.unwrap();
    let c = client();
    let echo = async |req: http::Request<http_body_util::Full<bytes::Bytes>>| -> Value {
        let g = send(&c, req).await;
        assert_eq!(g.status, 200);
        g.json()["headers"].clone()
    };

    // A client's trace is continued: same trace id and flags, prescale's span as the parent,
    // tracestate untouched.
    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let h = echo(
        http::Request::get(url(&app, "/continued"))
            .header("traceparent", CLIENT)
            .header("tracestate", "vendor=abc")
            .body(Default::default())
            .unwrap(),
    )
    .await;
    let sent = h["traceparent"].as_str().unwrap();
    assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && sent.ends_with("-01"), "{sent}");
    assert_ne!(&sent[36..52], "00f067aa0ba902b7");
    assert_eq!(h["tracestate"], "vendor=abc");

    // Without one (a stray tracestate is dropped), prescale starts a trace.
    let h = echo(
        http::Request::get(url(&app, "/started")).header("tracestate", "vendor=abc").body(Default::default()).unwrap(),
    )
    .await;
    let started = h["traceparent"].as_str().unwrap().to_string();
    assert_eq!(started.len(), 55, "{started}");
    assert!(started.starts_with("00-") && !started.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
    assert!(h.get("tracestate").is_none(), "{h}");
    let started_id = &started[3..35];

    // The trace ids are in the recent calls, which can be looked up by one.
    let calls_of = async |id: &str| -> Vec<Value> {
        get(&c, &admin_url(&app, &format!("/admin/api/calls?trace_id={id}")))
            .await
            .json()
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    assert!(eventually(Duration::from_secs(10), async || calls_of(started_id).await.len() == 1).await);
    let call = &calls_of("4bf92f3577b34da6a3ce929d0e0e4736").await[0];
    assert_eq!(call["path"], "/continued", "{call}");
    assert_eq!(call["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(calls_of(started_id).await[0]["path"], "/started");

    // The JSON access log: one object per call, the configured fields in order, nothing else.
    let lines =
        async || std::fs::read_to_string(&log).unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>();
    assert!(eventually(Duration::from_secs(10), async || lines().await.len() == 2).await, "{:?}", lines().await);
    let l = lines().await;
    let first: Value = serde_json::from_str(&l[0]).unwrap();
    assert_eq!(first["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(first["path"], "/continued");
    assert_eq!(first["status"], 200);
    assert_eq!(first["member"], up.addr.to_string());
    assert!(first["duration_ms"].as_f64().unwrap() > 0.0);
    assert!(l[0].starts_with("{\"trace_id\":") && l[0].find("\"method\"") < l[0].find("\"path\""), "{}", l[0]);
    assert_eq!(first.as_object().unwrap().len(), 6);
    let second: Value = serde_json::from_str(&l[1]).unwrap();
    assert_eq!(second["trace_id"], started_id);
    app.stop().await;
    up.stop().await;

    // A field that does not exist is named with its key.
    let bad = text.replace("\"member\"]", "\"member\", \"user_agent\"]");
    let errs = prescale::config::parse(&bad, dir.path()).unwrap_err();
    let msg = format!("{errs:?}");
    assert!(msg.contains("listen.access_log_fields[6]") && msg.contains("user_agent"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn excluded_periods_from_the_config_and_the_cli_are_kept_refit_and_shaded() {
    let dir = tempfile::tempdir().unwrap();
    let now = prescale::clock::now_us() / 1_000_000;
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        format!(
            "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n\
             [[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n\
             exclude = [{{ from = \"{}\", to = \"{}\", reason = \"load test\" }}]\n\
             [[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:9\"]\n",
            now - 6 * 3600,
            now - 5 * 3600
        ),
    )
    .unwrap();
    peak_history(dir.path(), &cfg);
    let app = prescale::app::App::start(prescale::config::load(&cfg).unwrap()).await.unwrap();
    let c = client();
    let forecast = async || -> Value { get(&c, &admin_url(&app, "/admin/api/forecast?endpoint=api")).await.json() };
    assert!(
        eventually(Duration::from_secs(30), async || forecast().await["model"].as_str().is_some_and(|m| m != "none"))
            .await
    );
    let fitted_at = forecast().await["fitted_at"].as_u64().unwrap();

    // An operator excludes an incident from the terminal (no token: the page's form secret).
    let admin = format!("http://{}", app.admin_addr);
    let (from, to) = ((now - 3 * 3600).to_string(), (now - 2 * 3600).to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args([
                "exclude",
                "--admin",
                &admin,
                "--endpoint",
                "api",
                "--from",
                &from,
                "--to",
                &to,
                "--reason",
                "incident <7>",
            ])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got = get(&c, &admin_url(&app, "/admin/api/exclusions")).await;
    assert_eq!(got.status, 200, "{}", String::from_utf8_lossy(&got.body));
    let list: Value = got.json();
    let reasons: Vec<&str> = list.as_array().unwrap().iter().map(|x| x["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, ["load test", "incident <7>"], "{list}");
    assert_eq!(list[1]["source"], "admin");
    // The model is fitted again without the excluded hours …
    let refit = async || {
        let f = forecast().await;
        f["fit_reason"] == "manual" && f["fitted_at"].as_u64().is_some_and(|t| t >= fitted_at)
    };
    assert!(eventually(Duration::from_secs(15), refit).await, "{}", forecast().await);
    // … the charts shade both spans (escaped) …
    let page = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/admin?refresh=0")).await.body).into_owned();
    assert_eq!(page.matches(r#"class="excluded""#).count(), 2, "two spans on the day chart");
    assert!(page.contains("excluded from the models: incident &lt;7&gt;"));
    // … and the operator's one is kept in the data_dir for the next start.
    let saved = std::fs::read_to_string(dir.path().join("data/exclusions.json")).unwrap();
    assert!(saved.contains("incident <7>") && !saved.contains("load test"), "{saved}");
    // A bad period is refused, named.
    let admin = format!("http://{}", app.admin_addr);
    let bad = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_prescale"))
            .args(["exclude", "--admin", &admin, "--endpoint", "api", "--from", "later", "--to", "1", "--reason", "x"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("from: \"later\" is not a time"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    app.stop().await;
}

/// An OTLP/HTTP collector on loopback: every export it receives, decoded with the
/// OpenTelemetry protobuf definitions.
struct Collector {
    addr: std::net::SocketAddr,
    spans: std::sync::Arc<std::sync::Mutex<Vec<opentelemetry_proto::tonic::trace::v1::Span>>>,
}

impl Collector {
    async fn start() -> Self {
        use http_body_util::BodyExt;
        use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
        use prost::Message;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let got = spans.clone();
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else { return };
                let got = got.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let got = got.clone();
                        async move {
                            let ok = req.uri().path() == "/v1/traces"
                                && req.headers()["content-type"] == "application/x-protobuf";
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            let decoded = ExportTraceServiceRequest::decode(body);
                            let status = match (ok, decoded) {
                                (true, Ok(r)) => {
                                    for rs in r.resource_spans {
                                        for ss in rs.scope_spans {
                                            got.lock().unwrap().extend(ss.spans);
                                        }
                                    }
                                    200
                                }
                                _ => 400,
                            };
                            let mut resp = http::Response::new(http_body_util::Full::new(bytes::Bytes::new()));
                            *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        Self { addr, spans }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_of_requests_and_decisions_reach_an_otlp_collector() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start().await;
    let uri = fixture(dir.path(), "node.xml", 4, 8, "");
    let up = Upstream::start("u").await;
    let port = 20_000 + fastrand::u16(0..20_000);
    let text = format!(
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [tracing]\notlp_endpoint = \"http://{}/v1/traces\"\nservice_name = \"edge-proxy\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"static\"\n\
         [[pool]]\nname = \"static\"\nmembers = [\"{}\"]\n\
         [[pool]]\nname = \"p\"\nmembers = []\n\
         [pool.scaling]\nuri = \"{uri}\"\ntemplate = \"tpl\"\nmode = \"enabled\"\nmin_vms = 1\nmax_vms = 1\n\
         vcpus = [1, 1]\nmemory_mib = [256, 256]\nports = [{port}, {}]\n",
        collector.addr,
        up.addr,
        port + 10
    );
    let app = prescale::app::App::start(prescale::config::parse(&text, dir.path()).unwrap()).await.unwrap();
    let c = client();
    const CLIENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let g = send(
        &c,
        http::Request::get(url(&app, "/api/x")).header("traceparent", CLIENT).body(Default::default()).unwrap(),
    )
    .await;
    let sent = g.json()["headers"]["traceparent"].as_str().unwrap().to_string();
    // Not sampled by the client: no span.
    let unsampled = "00-11111111111111111111111111111111-00f067aa0ba902b7-00";
    let g = send(
        &c,
        http::Request::get(url(&app, "/api/y")).header("traceparent", unsampled).body(Default::default()).unwrap(),
    )
    .await;
    assert_eq!(g.status, 200);

    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let find = |pred: &dyn Fn(&opentelemetry_proto::tonic::trace::v1::Span) -> bool| {
        collector.spans.lock().unwrap().iter().find(|s| pred(s)).cloned()
    };
    let request = async || find(&|s| hex(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736").is_some();
    assert!(eventually(Duration::from_secs(10), request).await, "no request span");
    let span = find(&|s| hex(&s.trace_id) == "4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
    assert_eq!(hex(&span.parent_span_id), "00f067aa0ba902b7", "the client's span is the parent");
    assert_eq!(hex(&span.span_id), sent[36..52], "the upstream's parent is this span");
    assert_eq!(span.name, "GET api");
    let attr = |s: &opentelemetry_proto::tonic::trace::v1::Span, k: &str| {
        s.attributes.iter().find(|a| a.key == k).and_then(|a| a.value.clone()).and_then(|v| v.value)
    };
    use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
    assert_eq!(attr(&span, "http.response.status_code"), Some(V::IntValue(200)));
    assert_eq!(attr(&span, "url.path"), Some(V::StringValue("/api/x".into())));
    assert!(span.end_time_unix_nano > span.start_time_unix_nano);
    // The decision to launch the pool's first VM is a span too.
    let decision = async || find(&|s| s.name == "scaling decision p: launch").is_some();
    assert!(eventually(Duration::from_secs(10), decision).await, "no decision span");
    let d = find(&|s| s.name == "scaling decision p: launch").unwrap();
    assert!(matches!(attr(&d, "prescale.reason"), Some(V::StringValue(r)) if r.contains("below min_vms")));
    assert!(find(&|s| hex(&s.trace_id).starts_with("1111")).is_none(), "an unsampled trace is not exported");
    let m = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/metrics")).await.body).into_owned();
    assert!(metric(&m, "prescale_trace_spans_total{result=\"exported\"}").is_some_and(|v| v >= 2.0), "{m}");
    assert_eq!(metric(&m, "prescale_trace_spans_total{result=\"dropped\"}"), Some(0.0));
    app.stop().await;
    up.stop().await;
}
