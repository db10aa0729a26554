//! The demo's terminal output: a one-line status every second and each scaling step.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;
use hyper_util::rt::TokioExecutor;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;

use super::clock::ScaledClock;
use super::load::{LoadStats, demo_rate, weekday_name};

/// One status line a second: virtual time, orders' rate vs forecast, VMs, requests.
pub(super) async fn status_line(
    admin: SocketAddr,
    clock: Arc<ScaledClock>,
    replay: Arc<Option<Vec<(u64, f64)>>>,
    stats: Arc<LoadStats>,
    stop: CancellationToken,
) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let mut printed_decisions = 0u64;
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<Bytes>> =
        hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build_http();
    let get = |path: &str| {
        let client = client.clone();
        let uri: http::Uri = format!("http://{admin}{path}").parse().expect("valid admin URI");
        async move {
            use http_body_util::BodyExt;
            let fetch = async {
                let r = client.get(uri).await.ok()?;
                r.into_body().collect().await.ok().map(|b| b.to_bytes())
            };
            let b = tokio::time::timeout(Duration::from_secs(2), fetch).await.ok()??;
            serde_json::from_slice::<serde_json::Value>(&b).ok()
        }
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let t = clock.now_us() / 1_000_000;
        let f = get("/admin/api/forecast?endpoint=orders").await;
        let pools = get("/admin/api/pools").await;
        let fc = f.as_ref().and_then(|f| f["points"].get(0).map(|p| p["rate"].as_f64().unwrap_or(0.0) * 60.0));
        let model = f.as_ref().and_then(|f| f["model"].as_str().map(String::from)).unwrap_or_else(|| "-".into());
        let pool = pools.as_ref().and_then(|p| p.as_array()?.iter().find(|p| p["pool"] == "orders").cloned());
        let vms = pool.as_ref().and_then(|p| p["vms"].as_array().cloned()).unwrap_or_default();
        let vcpus: u64 = vms.iter().filter_map(|v| v["vcpus"].as_u64()).sum();
        let (n, lat) = (stats.lat_n.swap(0, Relaxed), stats.lat_us.swap(0, Relaxed));
        // Every scaling action once, on its own line, with the virtual time it was taken.
        if let Some(ds) = get("/admin/api/decisions?pool=orders&limit=50").await.and_then(|d| d.as_array().cloned()) {
            let mut new: Vec<&serde_json::Value> = ds
                .iter()
                .filter(|d| d["t"].as_u64().is_some_and(|dt| dt > printed_decisions) && !d["action"].is_null())
                .collect();
            new.reverse();
            for d in new {
                let dt = d["t"].as_u64().unwrap_or(0);
                printed_decisions = printed_decisions.max(dt);
                let what = match d["action"]["kind"].as_str() {
                    Some("launch" | "resume") => "scale-out",
                    Some("set_vcpus" | "set_cap") if d["action"]["to"].as_u64() > d["action"]["from"].as_u64() => {
                        "scale-up"
                    }
                    Some("set_vcpus" | "set_cap") => "scale-down",
                    Some("drain" | "stop" | "suspend") => "scale-in",
                    // Memory and weight follow the vCPUs: not part of the story.
                    _ => continue,
                };
                let clear = if tty { "\r\x1b[K" } else { "" };
                eprintln!(
                    "{clear}{:02}:{:02} UTC  {what}: {} — {}",
                    dt % 86_400 / 3600,
                    dt % 3600 / 60,
                    action_words(&d["action"]),
                    d["reason"].as_str().unwrap_or("")
                );
            }
        }
        if !tty {
            // A pipe gets the decisions only (no carriage-return status line).
            continue;
        }
        eprint!(
            "\r\x1b[K{} {:02}:{:02} UTC | orders now {:>4.0}/min, forecast {} ({model}) | VMs {} ({vcpus} vCPUs), capacity {:.0}/min | ok {} failed {} | latency {:.0} ms",
            &weekday_name(t)[..3],
            t % 86_400 / 3600,
            t % 3600 / 60,
            demo_rate(&replay, "orders", t),
            fc.map_or("-".into(), |v| format!("{v:.0}/min")),
            vms.len(),
            pool.as_ref().and_then(|p| p["capacity_rps"].as_f64()).unwrap_or(0.0) * 60.0,
            stats.ok.load(Relaxed),
            stats.failed.load(Relaxed),
            if n > 0 { lat as f64 / n as f64 / 1000.0 } else { 0.0 }
        );
    }
}

/// A decision's action (as the API gives it) in words.
pub(super) fn action_words(a: &serde_json::Value) -> String {
    serde_json::from_value::<crate::allocator::plan::Action>(a.clone())
        .map(|a| a.to_string())
        .unwrap_or_else(|_| a.to_string())
}
