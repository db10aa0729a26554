//! The forecast thread through the running app: history imported, forecasts served.

use std::time::Duration;

use serde_json::Value;

use crate::util::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forecasts_are_served_from_imported_history() {
    let dir = tempfile::tempdir().unwrap();
    // Three days of 1-minute counts with a daily cycle, ending at the current minute.
    let now_min = prescale::clock::now_us() / 60_000_000;
    let mut rng = fastrand::Rng::with_seed(3);
    let pattern = |m: u64| 600.0 + 400.0 * ((m % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin();
    let mut csv = String::from("timestamp,value\n");
    for m in now_min - 3 * 1440..now_min {
        csv.push_str(&format!("{},{}\n", m * 60, (pattern(m) + 20.0 * rng.f64()).round()));
    }
    std::fs::write(dir.path().join("t.csv"), csv).unwrap();
    let cfg = dir.path().join("p.toml");
    std::fs::write(
        &cfg,
        "[listen]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[historian]\ndata_dir = \"data\"\n\
         [[endpoint]]\nname = \"api\"\npath_prefix = \"/api\"\npool = \"p\"\n\
         [[endpoint]]\nname = \"new\"\npath_prefix = \"/new\"\npool = \"p\"\n\
         [[pool]]\nname = \"p\"\nmembers = [\"127.0.0.1:9\"]\n",
    )
    .unwrap();
    import(&cfg, "api", &dir.path().join("t.csv"), &[]);

    let app = prescale::app::App::start(prescale::config::load(&cfg).unwrap()).await.unwrap();
    let c = client();
    let url = admin_url(&app, "/admin/api/forecast?endpoint=api");
    let ready = async || {
        let g = get(&c, &url).await;
        g.status == 200 && g.json()["model"] != "none"
    };
    assert!(eventually(Duration::from_secs(30), ready).await, "a forecast is published");
    let f: Value = get(&c, &url).await.json();
    // The daily cycle was found and the choice is shown with every candidate's score.
    assert_eq!(f["season_minutes"], 1440, "{}", f["selection"]);
    assert_eq!(f["fit_reason"], "first");
    let sel = f["selection"].as_array().unwrap();
    assert!(sel.iter().any(|s| s["model"] == "hw" && s["mase"].as_f64().is_some()), "{sel:?}");
    assert!(sel.iter().any(|s| s["model"] == "arima"), "{sel:?}");
    // Demand follows the rate through the cost model (10 ms of CPU per request by default).
    let d = &f["demand"];
    assert_eq!(d["cpu_ms_per_request"], 10.0);
    let (p0, d0) = (&f["points"][0], &d["points"][0]);
    assert!((d0["cpu_cores"].as_f64().unwrap() - p0["rate"].as_f64().unwrap() * 0.01).abs() < 1e-9, "{d0}");
    assert!(d0["cpu_cores_hi95"].as_f64().unwrap() >= d0["cpu_cores"].as_f64().unwrap());
    // The pool's forecast sums its endpoints.
    let pool: Value = get(&c, &admin_url(&app, "/admin/api/forecast?pool=p")).await.json();
    assert_eq!(pool["endpoints"], serde_json::json!(["api"]));
    assert_eq!(pool["rate"][0]["rate"], p0["rate"]);
    assert_eq!(pool["demand"][0]["cpu_cores"], d0["cpu_cores"]);
    assert_eq!(get(&c, &admin_url(&app, "/admin/api/forecast")).await.status, 400);
    // Scoring is wired: every forecast is kept for the 5- and 60-minute groups (points arrive as
    // minutes close; the arithmetic is unit-tested in feedback::score).
    let acc: Value = get(&c, &admin_url(&app, "/admin/api/accuracy?endpoint=api")).await.json();
    assert_eq!(acc["endpoint"], "api");
    let hs: Vec<u64> =
        acc["horizons"].as_array().unwrap().iter().map(|h| h["horizon_minutes"].as_u64().unwrap()).collect();
    assert_eq!(hs, [5, 60]);
    for w in ["hour", "day", "week"] {
        assert!(acc["horizons"][1][w]["points"].is_u64(), "{acc}");
    }
    let pts = f["points"].as_array().unwrap();
    assert_eq!(pts.len(), 60);
    assert_eq!(f["step"], 60);
    let mut abs_err = 0.0;
    for (i, p) in pts.iter().enumerate() {
        let t = p["t"].as_u64().unwrap();
        if i > 0 {
            assert_eq!(t, pts[i - 1]["t"].as_u64().unwrap() + 60);
        }
        let v = |k: &str| p[k].as_f64().unwrap();
        assert!(
            v("lo95") <= v("lo80") && v("lo80") <= v("rate") && v("rate") <= v("hi80") && v("hi80") <= v("hi95"),
            "{p}"
        );
        // Rates are per second; the pattern is per minute.
        abs_err += (v("rate") * 60.0 - (pattern(t / 60) + 10.0)).abs();
    }
    let mae = abs_err / 60.0;
    assert!(mae < 60.0, "mean absolute error {mae:.1} calls/min against a pattern of 200–1000");
    // An endpoint without history says what it lacks.
    let new_url = admin_url(&app, "/admin/api/forecast?endpoint=new");
    assert!(eventually(Duration::from_secs(15), async || get(&c, &new_url).await.status == 200).await);
    let none: Value = get(&c, &new_url).await.json();
    assert_eq!(none["model"], "none");
    assert!(none["note"].as_str().unwrap().contains("not enough data"), "{none}");
    let metrics = String::from_utf8_lossy(&get(&c, &admin_url(&app, "/metrics")).await.body).into_owned();
    assert!(
        metric(&metrics, "prescale_forecast_requests_per_second{endpoint=\"api\",band=\"mean\"}")
            .is_some_and(|v| v > 0.0)
    );
    assert_eq!(get(&c, &admin_url(&app, "/admin/api/forecast?endpoint=nope")).await.status, 404);
    app.stop().await;
}
