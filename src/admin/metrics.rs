//! Prometheus text exposition of the proxy's counters.

use std::fmt::Write;
use std::sync::atomic::Ordering::Relaxed;

use crate::forecast::view::ForecastView;
use crate::historian::HistorianView;
use crate::proxy::Proxy;
use crate::proxy::stats::LATENCY_BOUNDS_US;

/// Escapes a label value per the exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// One line per pool member for a metric.
fn member_series(
    out: &mut String,
    pools: &[std::sync::Arc<crate::proxy::Pool>],
    name: &str,
    kind: &str,
    help: &str,
    value: impl Fn(&crate::proxy::Member) -> u64,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    for p in pools {
        for m in p.members().iter() {
            let _ = writeln!(
                out,
                "{name}{{pool=\"{}\",member=\"{}\"}} {}",
                label(&p.name),
                label(m.addr.as_str()),
                value(m)
            );
        }
    }
}

pub(super) fn render(
    proxy: &Proxy,
    historian: Option<&HistorianView>,
    forecasts: Option<&ForecastView>,
    allocator: Option<&crate::allocator::live::AllocatorView>,
) -> String {
    let mut out = String::with_capacity(4096);
    let g = &proxy.global;
    let _ = writeln!(out, "# HELP prescale_connections_active Client connections open now.");
    let _ = writeln!(out, "# TYPE prescale_connections_active gauge");
    let _ = writeln!(out, "prescale_connections_active {}", g.connections_active.load(Relaxed));
    let _ = writeln!(out, "# TYPE prescale_connections_total counter");
    let _ = writeln!(out, "prescale_connections_total {}", g.connections_total.load(Relaxed));
    let _ = writeln!(
        out,
        "# HELP prescale_tunnels_active Upgraded (WebSocket) tunnels open now; each holds a connection slot."
    );
    let _ = writeln!(out, "# TYPE prescale_tunnels_active gauge");
    let _ = writeln!(out, "prescale_tunnels_active {}", g.tunnels_active.load(Relaxed));
    let _ = writeln!(out, "# HELP prescale_tunnels_total Upgraded tunnels opened, and those closed for idleness.");
    let _ = writeln!(out, "# TYPE prescale_tunnels_total counter");
    let _ = writeln!(out, "prescale_tunnels_total{{result=\"opened\"}} {}", g.tunnels_total.load(Relaxed));
    let _ = writeln!(out, "prescale_tunnels_total{{result=\"idle_closed\"}} {}", g.tunnels_idle_closed.load(Relaxed));
    let _ = writeln!(out, "# HELP prescale_unrouted_requests_total Requests that matched no endpoint (404).");
    let _ = writeln!(out, "# TYPE prescale_unrouted_requests_total counter");
    let _ = writeln!(out, "prescale_unrouted_requests_total {}", g.unrouted.load(Relaxed));
    let _ = writeln!(out, "# TYPE prescale_upstream_retries_total counter");
    let _ = writeln!(out, "prescale_upstream_retries_total {}", g.upstream_retries.load(Relaxed));
    let _ = writeln!(out, "# TYPE prescale_access_log_dropped_total counter");
    let _ = writeln!(out, "prescale_access_log_dropped_total {}", g.access_log_dropped.load(Relaxed));

    let endpoints: Vec<_> = proxy.endpoint_stats().into_iter().map(|(n, s)| (n, s.totals())).collect();
    let _ = writeln!(out, "# HELP prescale_requests_total Responses by endpoint and status class.");
    let _ = writeln!(out, "# TYPE prescale_requests_total counter");
    for (name, s) in &endpoints {
        for (i, c) in s.by_class.iter().enumerate() {
            let _ =
                writeln!(out, "prescale_requests_total{{endpoint=\"{}\",class=\"{}xx\"}} {}", label(name), i + 1, c);
        }
    }
    let _ =
        writeln!(out, "# HELP prescale_requests_cancelled_total Calls the client abandoned before the response ended.");
    let _ = writeln!(out, "# TYPE prescale_requests_cancelled_total counter");
    for (name, s) in &endpoints {
        let _ = writeln!(out, "prescale_requests_cancelled_total{{endpoint=\"{}\"}} {}", label(name), s.cancelled);
    }
    let _ = writeln!(out, "# HELP prescale_request_duration_seconds Time to the end of the response body.");
    let _ = writeln!(out, "# TYPE prescale_request_duration_seconds histogram");
    for (name, s) in &endpoints {
        let name = label(name);
        let mut cum = 0;
        for (i, b) in LATENCY_BOUNDS_US.iter().enumerate() {
            cum += s.buckets[i];
            let _ = writeln!(
                out,
                "prescale_request_duration_seconds_bucket{{endpoint=\"{name}\",le=\"{}\"}} {cum}",
                *b as f64 / 1e6
            );
        }
        cum += s.buckets[LATENCY_BOUNDS_US.len()];
        let _ = writeln!(out, "prescale_request_duration_seconds_bucket{{endpoint=\"{name}\",le=\"+Inf\"}} {cum}");
        let _ = writeln!(
            out,
            "prescale_request_duration_seconds_sum{{endpoint=\"{name}\"}} {}",
            s.latency_sum_us as f64 / 1e6
        );
        let _ = writeln!(out, "prescale_request_duration_seconds_count{{endpoint=\"{name}\"}} {cum}");
    }

    let pools = proxy.pools();
    member_series(
        &mut out,
        &pools,
        "prescale_member_healthy",
        "gauge",
        "1 if the member can take traffic (healthy, not draining, not ejected).",
        |m| (m.is_healthy() && !m.is_draining() && !m.is_ejected()) as u64,
    );
    member_series(&mut out, &pools, "prescale_member_outstanding", "gauge", "Requests sent and not finished.", |m| {
        m.outstanding() as u64
    });
    member_series(&mut out, &pools, "prescale_member_requests_total", "counter", "Requests sent.", |m| {
        m.requests_total()
    });
    if let Some(h) = historian {
        let snap = h.snapshot();
        let c = &snap.counters;
        let _ = writeln!(
            out,
            "# HELP prescale_historian_records_total Call records accepted by the historian, or dropped because its channel was full."
        );
        let _ = writeln!(out, "# TYPE prescale_historian_records_total counter");
        let _ = writeln!(out, "prescale_historian_records_total{{result=\"accepted\"}} {}", c.accepted);
        let _ = writeln!(out, "prescale_historian_records_total{{result=\"dropped\"}} {}", h.dropped());
        let _ = writeln!(
            out,
            "# HELP prescale_historian_late_records_total Records whose bucket had already closed (counted, not in quantiles or on disk)."
        );
        let _ = writeln!(out, "# TYPE prescale_historian_late_records_total counter");
        let _ = writeln!(out, "prescale_historian_late_records_total {}", c.late);
        let _ = writeln!(out, "# TYPE prescale_historian_memory_bytes gauge");
        let _ = writeln!(out, "prescale_historian_memory_bytes {}", snap.memory_bytes);
        let _ = writeln!(out, "# TYPE prescale_historian_disk_bytes gauge");
        let _ = writeln!(out, "prescale_historian_disk_bytes {}", snap.disk_bytes);
        let _ = writeln!(out, "# TYPE prescale_historian_disk_errors_total counter");
        let _ = writeln!(out, "prescale_historian_disk_errors_total {}", c.disk_errors);
        let _ = writeln!(
            out,
            "# HELP prescale_historian_disk_ok 0 while closed buckets cannot be written (disk full, read-only, …) and wait in memory."
        );
        let _ = writeln!(out, "# TYPE prescale_historian_disk_ok gauge");
        let _ = writeln!(out, "prescale_historian_disk_ok {}", u8::from(c.disk_error.is_none()));
        let _ = writeln!(out, "# TYPE prescale_historian_disk_pending_buckets gauge");
        let _ = writeln!(out, "prescale_historian_disk_pending_buckets {}", c.disk_pending);
        let _ = writeln!(out, "# TYPE prescale_historian_disk_dropped_buckets_total counter");
        let _ = writeln!(out, "prescale_historian_disk_dropped_buckets_total {}", c.disk_dropped);
    }
    if let Some(f) = forecasts {
        let all = f.all();
        let mut names: Vec<&String> = all.endpoints.keys().collect();
        names.sort();
        let _ =
            writeln!(out, "# HELP prescale_forecast_rate Forecast calls per second for the next minute, with bands.");
        let _ = writeln!(out, "# TYPE prescale_forecast_rate gauge");
        for n in names {
            if let Some(p) = all.endpoints[n].points.first() {
                for (band, v) in
                    [("mean", p.rate), ("lo80", p.lo80), ("hi80", p.hi80), ("lo95", p.lo95), ("hi95", p.hi95)]
                {
                    let _ = writeln!(out, "prescale_forecast_rate{{endpoint=\"{}\",band=\"{band}\"}} {v}", label(n));
                }
            }
        }
    }
    if let Some(f) = forecasts {
        let all = f.all();
        let mut names: Vec<&String> = all.accuracy.keys().collect();
        names.sort();
        let _ = writeln!(out, "# HELP prescale_forecast_error Forecast scores over the last day, by horizon group.");
        let _ = writeln!(out, "# TYPE prescale_forecast_error gauge");
        for n in &names {
            for h in all.accuracy[*n].iter() {
                for (k, v) in [("mase", h.day.mase), ("smape", h.day.smape), ("under_rate", h.day.under_rate)] {
                    if let Some(v) = v {
                        let _ = writeln!(
                            out,
                            "prescale_forecast_error{{endpoint=\"{}\",horizon=\"{}m\",metric=\"{k}\"}} {v}",
                            label(n),
                            h.horizon_minutes
                        );
                    }
                }
            }
        }
        let _ = writeln!(out, "# HELP prescale_forecast_coverage Share of actuals inside the bands over the last day.");
        let _ = writeln!(out, "# TYPE prescale_forecast_coverage gauge");
        for n in &names {
            for h in all.accuracy[*n].iter() {
                for (band, v) in [("80", h.day.coverage80), ("95", h.day.coverage95)] {
                    if let Some(v) = v {
                        let _ = writeln!(
                            out,
                            "prescale_forecast_coverage{{endpoint=\"{}\",horizon=\"{}m\",band=\"{band}\"}} {v}",
                            label(n),
                            h.horizon_minutes
                        );
                    }
                }
            }
        }
    }
    if let Some(a) = allocator {
        let st = a.state();
        let _ = writeln!(out, "# HELP prescale_pool_vms VMs of a scaled pool by phase.");
        let _ = writeln!(out, "# TYPE prescale_pool_vms gauge");
        for p in &st.pools {
            for phase in ["booting", "serving", "draining", "suspended", "stopped"] {
                let n = p
                    .vms
                    .iter()
                    .filter(|v| {
                        serde_json::to_value(v.phase).ok().and_then(|x| x.as_str().map(str::to_owned)).as_deref()
                            == Some(phase)
                    })
                    .count();
                let _ = writeln!(out, "prescale_pool_vms{{pool=\"{}\",phase=\"{phase}\"}} {n}", label(&p.pool));
            }
        }
        let _ = writeln!(
            out,
            "# HELP prescale_pool_capacity_rps Capacity of serving and booting VMs, and the requirement."
        );
        let _ = writeln!(out, "# TYPE prescale_pool_capacity_rps gauge");
        for p in &st.pools {
            let _ = writeln!(
                out,
                "prescale_pool_capacity_rps{{pool=\"{}\",kind=\"capacity\"}} {}",
                label(&p.pool),
                p.capacity_rps
            );
            let _ = writeln!(
                out,
                "prescale_pool_capacity_rps{{pool=\"{}\",kind=\"required\"}} {}",
                label(&p.pool),
                p.required_rps
            );
        }
        let _ = writeln!(out, "# HELP prescale_pool_lead_time_seconds Lead time the planner uses.");
        let _ = writeln!(out, "# TYPE prescale_pool_lead_time_seconds gauge");
        for p in &st.pools {
            let _ =
                writeln!(out, "prescale_pool_lead_time_seconds{{pool=\"{}\"}} {}", label(&p.pool), p.lead.lead_time_s);
        }
        let _ = writeln!(out, "# HELP prescale_pool_degraded 1 while the pool's hypervisor cannot be reached.");
        let _ = writeln!(out, "# TYPE prescale_pool_degraded gauge");
        for p in &st.pools {
            let _ =
                writeln!(out, "prescale_pool_degraded{{pool=\"{}\"}} {}", label(&p.pool), p.degraded.is_some() as u8);
        }
        let mut by: std::collections::BTreeMap<(String, String, String), u64> = Default::default();
        for d in &st.decisions {
            let kind = d
                .action
                .as_ref()
                .and_then(|a| serde_json::to_value(a).ok())
                .and_then(|v| v["kind"].as_str().map(str::to_owned));
            let Some(kind) = kind else { continue };
            let outcome = d.outcome.class().to_string();
            *by.entry((d.pool.clone(), kind, outcome)).or_default() += 1;
        }
        let _ = writeln!(
            out,
            "# HELP prescale_pool_actions Scaling actions among the recent decisions, by kind and outcome."
        );
        let _ = writeln!(out, "# TYPE prescale_pool_actions gauge");
        for ((pool, kind, outcome), n) in by {
            let _ = writeln!(
                out,
                "prescale_pool_actions{{pool=\"{}\",kind=\"{kind}\",outcome=\"{outcome}\"}} {n}",
                label(&pool)
            );
        }
    }
    out
}
