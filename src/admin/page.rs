//! The `/admin` page: server-rendered HTML with inline SVG charts and one embedded stylesheet —
//! no script, nothing fetched from elsewhere, a strict Content-Security-Policy. It refreshes
//! itself every 10 s (`?refresh=0` stops that) and keeps its filters in the query string.
//!
//! Sections: per endpoint, the last 24 h of calls per minute with the forecast for the next
//! hour (80 % and 95 % bands) and what was forecast 15 minutes ahead over the day; forecast
//! accuracy; pools (mode, capacity vs forecast demand, lead time, cost model, usage, VMs) with
//! the operator's actions (POST forms carrying the admin token); the decision log; recent calls
//! with filters; the historian's dropped-record counter. Markup is written with `maud`, whose
//! templates escape every interpolated value: no recorded string reaches the page unescaped.

use std::collections::HashMap;
use std::fmt::Write;

use maud::{DOCTYPE, Markup, html};

use super::Shared;
use crate::forecast::published::EndpointForecast;
use crate::historian::series::Point;

pub(super) const STYLE: &str = r#"
*{box-sizing:border-box}body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#f6f7f9}
header{background:#1f2d3d;color:#fff;padding:10px 16px;display:flex;flex-wrap:wrap;gap:16px;align-items:baseline}
header h1{font-size:18px;margin:0}header a{color:#cde}header span{opacity:.85}
main.login{max-width:420px;margin:48px auto;background:#fff;padding:16px 20px;border-radius:6px}
main.login input{display:block;width:100%;margin:6px 0 12px;padding:6px}p.error{color:#b00020}
main{padding:12px;max-width:1400px;margin:auto}section{margin-bottom:20px}h2{font-size:16px;margin:8px 0}
.cards{display:flex;flex-wrap:wrap;gap:12px}.card{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px;flex:1 1 420px;min-width:0}
.card.endpoint{max-width:720px}.card h3{font-size:14px;margin:0 0 4px;display:flex;justify-content:space-between;gap:8px;flex-wrap:wrap}
.card svg{width:100%;height:auto;display:block}.muted{color:#667}.small{font-size:12px}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}th,td{border-bottom:1px solid #e4e6ea;padding:4px 6px;text-align:left;vertical-align:top}
th{background:#eef1f5;font-weight:600}td.num,th.num{text-align:right}.scroll{overflow-x:auto}
.ok{color:#1a7f37}.warn{color:#b35900}.bad{color:#c62828}form.inline{display:inline}button{font:inherit;padding:2px 8px;cursor:pointer}
input,select{font:inherit;padding:2px 4px;max-width:100%}.legend span{margin-right:10px;white-space:nowrap}
.sw{display:inline-block;width:12px;height:8px;margin-right:4px;vertical-align:middle}
.events{margin-bottom:8px}.events tr.active td{background:#fff6e0}
.sw.x{background:#efe3f7}.sw.a{background:#555}.sw.f{background:#1f77b4}.sw.b80{background:#9ecae1}.sw.b95{background:#deebf7}.sw.p{background:#ff7f0e}
@media (max-width:600px){main{padding:6px}.card{flex-basis:100%}th,td{padding:3px}}
"#;

fn ago(now: u64, t: u64) -> String {
    let d = now.saturating_sub(t);
    match d {
        0..=119 => format!("{d} s ago"),
        120..=7199 => format!("{} min ago", d / 60),
        _ => format!("{:.1} h ago", d as f64 / 3600.0),
    }
}

/// "in 3.5 days".
fn ago_future(now: u64, t: u64) -> String {
    format!("in {:.1} days", t.saturating_sub(now) as f64 / 86_400.0)
}

fn hhmm(t: u64) -> String {
    format!("{:02}:{:02}:{:02}", t % 86_400 / 3600, t % 3600 / 60, t % 60)
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |v| format!("{v:.digits$}"))
}

/// A forecast point in calls/min: t, mean, lo80, hi80, lo95, hi95.
type Fp = (u64, f64, f64, f64, f64, f64);

/// The two views of an endpoint's chart.
#[derive(Clone, Copy, PartialEq, Eq)]
enum View {
    /// The last 24 h (5-minute means) and the next hour.
    Day,
    /// The last 2 h (each minute) and the next hour, large enough to read the forecast.
    NextHour,
}

/// One endpoint's chart (see [`View`]): calls/min recorded, the forecast's mean with its 80 %
/// and 95 % bands, the forecasts made 15 min ahead (dashed), and — for a scaled pool — the
/// pool's capacity now (dashed red). Minutes prescale did not record break the line; they are
/// not drawn as zeros. Width 600 in SVG units, scaled by CSS.
fn chart(
    points: &[Point],
    f: Option<&EndpointForecast>,
    now: u64,
    view: View,
    capacity: Option<f64>,
    excluded: &[crate::forecast::exclusions::Exclusion],
) -> Markup {
    let (w, h, l, r, top, bottom) = (600.0, if view == View::Day { 170.0 } else { 140.0 }, 34.0, 6.0, 6.0, 18.0);
    let (t0, col_s) = match view {
        View::Day => (now.saturating_sub(86_400), 300),
        View::NextHour => (now.saturating_sub(7200), 60),
    };
    let t1 = now + 3600;
    let x = |t: u64| l + (t.saturating_sub(t0)) as f64 / (t1 - t0) as f64 * (w - l - r);
    // Actuals per column: the mean of the recorded minutes, calls/min (like the forecast).
    let mut cols: Vec<(u64, f64, u32)> = Vec::new();
    for p in points.iter().filter(|p| !p.missing && p.t >= t0) {
        let c = p.t - p.t % col_s;
        match cols.last_mut() {
            Some(last) if last.0 == c => {
                last.1 += p.count as f64;
                last.2 += 1;
            }
            _ => cols.push((c, p.count as f64, 1)),
        }
    }
    let cols: Vec<(u64, f64)> = cols.into_iter().map(|(t, sum, n)| (t, sum / n as f64)).collect();
    let fc: Vec<Fp> = f
        .map(|f| {
            f.points
                .iter()
                .map(|p| (p.t, p.rate * 60.0, p.lo80 * 60.0, p.hi80 * 60.0, p.lo95 * 60.0, p.hi95 * 60.0))
                .collect()
        })
        .unwrap_or_default();
    let past: Vec<(u64, f64)> =
        f.map(|f| f.past.iter().filter(|p| p.t >= t0).map(|p| (p.t, p.mean * 60.0)).collect()).unwrap_or_default();
    let highest = cols
        .iter()
        .map(|c| c.1)
        .chain(fc.iter().map(|p| p.5))
        .chain(past.iter().map(|p| p.1))
        .chain(capacity)
        .fold(0.0f64, f64::max);
    // At least 3 calls/min of axis, so an idle endpoint's grid reads 0, 1, 2, 3, not 1, 1, 0, 0.
    let ymax = (highest * 1.08).max(3.0);
    let y = |v: f64| top + (h - top - bottom) * (1.0 - v / ymax);
    let (class, label) = match view {
        View::Day => ("day", "calls per minute over the last day and the next hour's forecast"),
        View::NextHour => ("next-hour", "calls per minute over the last two hours and the next hour's forecast"),
    };
    let grid: Vec<(f64, String)> = (0..=3)
        .map(|k| {
            let v = ymax / 3.0 * k as f64;
            let text = if v >= 1000.0 {
                format!("{:.1}k", v / 1000.0)
            } else if ymax < 30.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.0}")
            };
            (y(v), text)
        })
        .collect();
    let ticks: &[(i64, &str)] = match view {
        View::Day => &[(-86_400, "-24h"), (-64_800, "-18h"), (-43_200, "-12h"), (-21_600, "-6h")],
        View::NextHour => &[(-7200, "-2h"), (-3600, "-1h"), (3600, "+1h")],
    };
    // A path through points; `line` breaks it (a new subpath) where it returns false.
    let path = |pts: &mut dyn Iterator<Item = (f64, f64)>| {
        let mut d = String::new();
        for (px, py) in pts {
            let _ = write!(d, "{}{px:.1},{py:.1}", if d.is_empty() { "M" } else { " L" });
        }
        d
    };
    let band = |lo: fn(&Fp) -> f64, hi: fn(&Fp) -> f64| {
        let upper = path(&mut fc.iter().map(|p| (x(p.0), y(hi(p)))));
        let mut d = upper;
        for p in fc.iter().rev() {
            let _ = write!(d, " L{:.1},{:.1}", x(p.0), y(lo(p)));
        }
        d + " Z"
    };
    // A new subpath after a gap: unrecorded minutes are not zeros.
    let actual = {
        let mut d = String::new();
        let mut prev: Option<u64> = None;
        for (t, v) in &cols {
            let cmd = if prev.is_some_and(|p| t - p <= col_s) { " L" } else { " M" };
            let _ = write!(d, "{cmd}{:.1},{:.1}", x(*t), y(*v));
            prev = Some(*t);
        }
        d.trim_start().to_string()
    };
    let past_step = if view == View::Day { 5 } else { 1 };
    let f1 = |v: f64| format!("{v:.1}");
    let xn = f1(x(now));
    // Excluded spans inside the chart, clipped to it.
    let shaded: Vec<(f64, f64, &str)> = excluded
        .iter()
        .filter(|e| e.to > t0 && e.from < t1)
        .map(|e| (x(e.from.max(t0)), x(e.to.min(t1)), e.reason.as_str()))
        .collect();
    html! {
        svg class=(class) viewBox={ "0 0 " (w) " " (h) } role="img" aria-label=(label) {
            @for (x0, x1, why) in &shaded {
                rect.excluded x=(f1(*x0)) y=(top) width=(f1((x1 - x0).max(1.0))) height=(h - top - bottom) fill="#efe3f7" {
                    title { "excluded from the models: " (why) }
                }
            }
            @for (yy, text) in &grid {
                line x1=(l) x2=(w - r) y1=(f1(*yy)) y2=(f1(*yy)) stroke="#eee" {}
                text x=(l - 3.0) y=(f1(yy + 3.0)) font-size="9" text-anchor="end" fill="#666" { (text) }
            }
            @for (dt, name) in ticks {
                text x=(f1(x((now as i64 + dt).max(0) as u64).max(l + 8.0))) y=(h - 5.0) font-size="9" fill="#666"
                    text-anchor=(if *dt > 0 { "end" } else { "middle" }) { (name) }
            }
            line x1=(xn) x2=(xn) y1=(top) y2=(h - bottom) stroke="#999" stroke-dasharray="3,3" {}
            text x=(xn) y=(h - 5.0) font-size="9" fill="#666" text-anchor="middle" { "now" }
            @if !fc.is_empty() {
                path.band95 d=(band(|p| p.4, |p| p.5)) fill="#deebf7" {}
                path.band80 d=(band(|p| p.2, |p| p.3)) fill="#9ecae1" {}
                path.forecast d=(path(&mut fc.iter().map(|p| (x(p.0), y(p.1))))) fill="none" stroke="#1f77b4" stroke-width="1.5" {}
            }
            @if cols.is_empty() {
                text.empty x=(f1((l + w - r) / 2.0)) y=(f1((top + h - bottom) / 2.0)) font-size="11" fill="#888" text-anchor="middle" {
                    "no calls recorded in this window"
                }
            } @else {
                path.actual d=(actual) fill="none" stroke="#555" stroke-width="1" {}
            }
            @if past.len() > 1 {
                path.past d=(path(&mut past.iter().step_by(past_step).map(|(t, v)| (x(*t), y(*v))))) fill="none"
                    stroke="#ff7f0e" stroke-width="1" stroke-dasharray="4,3" {}
            }
            @if let Some(c) = capacity {
                line.capacity x1=(l) x2=(w - r) y1=(f1(y(c))) y2=(f1(y(c))) stroke="#d62728" stroke-width="1" stroke-dasharray="6,3" {}
            }
        }
    }
}

/// ", term N" of a pool's leader.
fn opt_term(t: Option<i64>) -> String {
    t.map_or(String::new(), |t| format!(" (term {t})"))
}

fn action_form(csrf: &str, fields: &[(&str, &str)], label: &str) -> Markup {
    html! {
        form.inline method="post" action="/admin/action" {
            input type="hidden" name="csrf" value=(csrf);
            @for (k, v) in fields { input type="hidden" name=(k) value=(v); }
            button type="submit" { (label) }
        }
        " "
    }
}

/// The page's `<head>`.
fn head(title: &str, refresh: bool) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            @if refresh { meta http-equiv="refresh" content="10"; }
            title { (title) }
            link rel="stylesheet" href="/admin/style.css";
        }
    }
}

/// The page.
pub(super) fn render(shared: &Shared, p: &HashMap<String, String>, csrf: &str, now: u64) -> String {
    let refresh = p.get("refresh").map(String::as_str) != Some("0");
    let snap = shared.historian.as_ref().map(|h| h.snapshot());
    let dropped = shared.historian.as_ref().map_or(0, |h| h.dropped());
    let calls: u64 = snap.as_ref().map_or(0, |s| s.endpoints.iter().map(|e| e.calls_total).sum());
    let forecasts = shared.forecasts.as_ref().map(|f| f.all());
    let alloc = shared.allocator.as_ref().map(|a| a.state());
    // Only a message prescale stored for an action's redirect: never text from the URL.
    let msg = p.get("msg").and_then(|id| shared.messages.get(id));
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            (head("prescale admin", refresh))
            body {
                header {
                    h1 { "prescale" }
                    span #summary {
                        (snap.as_ref().map_or(0, |s| s.endpoints.len())) " endpoints · " (calls) " calls recorded · "
                        span #dropped class=(if dropped > 0 { "warn" } else { "ok" }) { (dropped) " records dropped" }
                    }
                    span { (hhmm(now)) " UTC" }
                    a href="#endpoints" { "endpoints" }
                    a href="#accuracy" { "accuracy" }
                    a href="#pools" { "pools" }
                    a href="#decisions" { "decisions" }
                    a href="#calls" { "calls" }
                    a href={ "?refresh=" (if refresh { "0" } else { "1" }) } { (if refresh { "pause refresh" } else { "auto-refresh" }) }
                    @if shared.token.is_some() {
                        form.inline method="post" action="/admin/logout" { button #logout type="submit" { "sign out" } }
                    }
                }
                main {
                    @if let Some(c) = snap.as_ref().map(|s| &s.counters) && let Some(e) = &c.disk_error {
                        p #disk .bad {
                            "history is not being written to disk: " (e) " — " (c.disk_pending) " closed buckets kept in memory and retried"
                            @if c.disk_dropped > 0 { ", " (c.disk_dropped) " dropped" }
                        }
                    }
                    @if let Some(m) = &msg { p #msg .warn { (m) } }
                    (endpoints(shared, p, csrf, now, snap.as_deref(), forecasts.as_deref(), alloc.as_deref()))
                    (accuracy(forecasts.as_deref()))
                    (pools(shared, now, csrf, forecasts.as_deref(), alloc.as_deref()))
                    (decisions(now, alloc.as_deref()))
                    (recent_calls(p, snap.as_deref()))
                }
            }
        }
    };
    page.into_string()
}

fn endpoints(
    shared: &Shared,
    p: &HashMap<String, String>,
    csrf: &str,
    now: u64,
    snap: Option<&crate::historian::Snapshot>,
    forecasts: Option<&crate::forecast::published::Forecasts>,
    alloc: Option<&crate::allocator::live::AllocatorState>,
) -> Markup {
    let filter_ep = p.get("endpoint").filter(|e| !e.is_empty());
    let mut eps: Vec<_> = snap
        .map(|s| s.endpoints.iter().filter(|e| filter_ep.is_none_or(|f| **f == *e.name)).collect())
        .unwrap_or_default();
    eps.sort_by(|a, b| b.calls_total.cmp(&a.calls_total).then(a.name.cmp(&b.name)));
    let shown = eps.len().min(if filter_ep.is_some() { 1 } else { 60 });
    html! {
        section #endpoints {
            h2 { "Endpoints" }
            p.legend.small {
                span { i.sw.a {} "calls/min recorded (5-min mean over the day)" }
                span { i.sw.f {} "forecast" }
                span { i.sw.b80 {} "80 %" }
                span { i.sw.b95 {} "95 %" }
                span { i.sw.p {} "forecast 15 min ahead" }
                span { i.sw.x {} "excluded from the models" }
            }
            div.cards {
                @if snap.is_none() {
                    p.muted { "The historian is disabled." }
                }
                @if let Some(f) = filter_ep && eps.is_empty() {
                    p.error #no-endpoint { "No endpoint named “" (f) "”. " a href="/admin?refresh=0" { "Show all endpoints" } }
                }
                @for e in &eps[..shown] {
                    @let pts = e.tiers.iter().find(|t| t.step_s == 60).map_or(Vec::new(), |t| t.points(now - 86_400, now, 60));
                    @let f = forecasts.and_then(|fs| fs.endpoints.get(&*e.name).cloned());
                    @let model = f.as_ref().map_or("no forecast".to_string(), |f| {
                        f.note.clone().map_or_else(|| format!("{} ({})", f.model, f.fit_reason), |n| format!("no forecast: {n}"))
                    });
                    @let next = f.as_ref().and_then(|f| f.points.first()).map(|p| p.rate * 60.0);
                    @let excluded: Vec<crate::forecast::exclusions::Exclusion> = shared.forecasts.as_ref().map(|fv| fv.exclusions().iter().filter(|x| *x.endpoint == *e.name).cloned().collect()).unwrap_or_default();
                    // The capacity of the endpoint's pool, when it scales (shared by the pool's endpoints).
                    @let route_pool = shared.proxy.table().router.routes().iter().find(|r| *r.name == *e.name).map(|r| r.pool.name.clone());
                    @let capacity = alloc.and_then(|a| a.pools.iter().find(|p| Some(&p.pool) == route_pool.as_ref()).map(|p| p.capacity_rps * 60.0));
                    div.card.endpoint data-endpoint=(e.name) {
                        h3 {
                            span { (e.name) }
                            span.muted.small { (e.calls_total) " calls · model " (model) " · next min " (opt(next, 0)) " calls" }
                        }
                        (chart(&pts, f.as_deref(), now, View::Day, capacity, &excluded))
                        p.small.muted {
                            "next hour, each minute"
                            @if capacity.is_some() { " · red: the pool's capacity now, calls/min (shared by its endpoints)" }
                        }
                        (chart(&pts, f.as_deref(), now, View::NextHour, capacity, &excluded))
                        @if f.is_some() {
                            (action_form(csrf, &[("action", "refit"), ("endpoint", &e.name)], "choose the model again"))
                        }
                    }
                }
                @if eps.len() > shown {
                    p.muted { (eps.len() - shown) " more endpoints: filter by name below." }
                }
            }
        }
    }
}

fn accuracy(forecasts: Option<&crate::forecast::published::Forecasts>) -> Markup {
    let mut names: Vec<&String> = forecasts.map(|fs| fs.accuracy.keys().collect()).unwrap_or_default();
    names.sort();
    html! {
        section #accuracy {
            h2 { "Forecast accuracy" }
            div.scroll { table {
                tr {
                    th { "endpoint" } th { "horizon" } th.num { "points (day)" } th.num { "MASE hour" } th.num { "MASE day" }
                    th.num { "sMAPE day" } th.num { "under-rate day" } th.num { "80 % cover day" } th.num { "95 % cover day" }
                }
                @if let Some(fs) = forecasts {
                    @for n in &names {
                        @for a in fs.accuracy[*n].iter() {
                            tr {
                                td { (n) } td { (a.horizon_minutes) " min" } td.num { (a.day.points) }
                                td.num { (opt(a.hour.mase, 3)) } td.num { (opt(a.day.mase, 3)) } td.num { (opt(a.day.smape, 1)) }
                                td.num { (opt(a.day.under_rate, 3)) } td.num { (opt(a.day.coverage80, 3)) } td.num { (opt(a.day.coverage95, 3)) }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn pools(
    shared: &Shared,
    now_s: u64,
    csrf: &str,
    forecasts: Option<&crate::forecast::published::Forecasts>,
    alloc: Option<&crate::allocator::live::AllocatorState>,
) -> Markup {
    html! {
        section #pools {
            h2 { "Pools" }
            @for pool in shared.proxy.pools().iter().map(|p| p.name.clone()) {
                @let st = alloc.and_then(|a| a.pools.iter().find(|p| p.pool == pool));
                @let pf = forecasts.and_then(|fs| fs.pools.get(&pool).cloned());
                div.card.pool data-pool=(pool) {
                    @match st {
                        None => h3 { span { "pool " (pool) } span.muted.small { "static members (no [pool.scaling])" } },
                        Some(st) => {
                            @let dry = matches!(st.mode, crate::allocator::Mode::DryRun);
                            @let other = if dry { "enabled" } else { "dry_run" };
                            h3 {
                                span { "pool " (pool) }
                                span.small {
                                    "mode " b.mode { (if dry { "dry_run" } else { "enabled" }) } " "
                                    (action_form(csrf, &[("action", "mode"), ("pool", &pool), ("mode", other)], &format!("switch to {other}")))
                                    (action_form(csrf, &[("action", "scale"), ("pool", &pool), ("delta", "1")], "+1 VM"))
                                    (action_form(csrf, &[("action", "scale"), ("pool", &pool), ("delta", "-1")], "−1 VM"))
                                }
                            }
                            @if let Some(d) = &st.degraded { p.bad { "degraded: " (d) } }
                            @if let Some(f) = &st.fleet {
                                p.small.fleet {
                                    "fleet: " b { (f.role) }
                                    @match (f.role, &f.leader, &f.leader_admin) {
                                        ("leader", ..) => { " — this instance plans and acts" (opt_term(f.term)) }
                                        ("follower", Some(l), Some(a)) => { " — led by instance " b { (l) } " (admin " (a) "); actions go there" }
                                        ("follower", ..) => { " — no leader yet" }
                                        _ => { " — nobody acts from here" }
                                    }
                                }
                            }
                            @let peak = pf.as_ref().and_then(|f| f.rate.iter().map(|p| p.hi80).reduce(f64::max));
                            // One unit on the whole page: calls per minute.
                            p.small {
                                "capacity " b.capacity { (format!("{:.0}", st.capacity_rps * 60.0)) } "/min · required "
                                (format!("{:.0}", st.required_rps * 60.0)) "/min · forecast in window "
                                (opt(st.forecast_hi_rps.map(|v| v * 60.0), 0)) "/min (" (format!("{:.1}", st.cost.quantile * 100.0))
                                " % quantile) · next-hour peak (80 %) "
                                (opt(peak.map(|v| v * 60.0), 0)) "/min · measured " (format!("{:.0}", st.measured_rps * 60.0)) "/min"
                                @if let Some(e) = &st.caps_refused {
                                    br; "CPU caps off (scale-in drains whole VMs): " (e)
                                }
                                @let spares: Vec<_> = st.vms.iter().filter(|v| v.phase == crate::allocator::plan::Phase::Suspended).collect();
                                @if !spares.is_empty() {
                                    " · warm spares " b { (spares.len()) } " (suspended: "
                                    (spares.iter().map(|v| v.info.memory_mib).sum::<u64>()) " MiB held, "
                                    (spares.iter().map(|v| v.info.vcpus).sum::<u32>()) " vCPUs not billed)"
                                }
                                br;
                                "lead time " b { (st.lead.lead_time_s) " s" } " (" (if st.lead.auto { "learned" } else { "fixed" }) "; "
                                (st.lead.launches) " launches, p50 " (opt(st.lead.launch_p50_s, 1)) " s, p90 " (opt(st.lead.launch_p90_s, 1))
                                " s) · cost " (st.cost.source.word()) " (" (format!("{:.1}", st.cost.capacity_rps_per_vcpu * 60.0))
                                "/min per vCPU, " (format!("{:.2}", st.cost.cores_used)) " cores used) · memory model "
                                (st.cost.memory_source.word()) " · headroom " (format!("{:.2}", st.cost.headroom))
                                @if let Some(u) = &st.usage {
                                    " · usage " (format!("{:.2}", u.cores)) " cores, RSS " (opt(u.rss_mib, 0)) " MiB, "
                                    (format!("{:.1}", u.concurrency)) " in flight"
                                }
                            }
                            @if !st.events.is_empty() {
                                div.scroll { table.events {
                                    tr { th { "known event" } th { "when" } th { "capacity floor" } th { "forecast ×" } th { "now" } }
                                    @for e in &st.events {
                                        tr.event.active[e.active] {
                                            td { (e.event.reason) }
                                            td { (e.event.when) }
                                            td { (opt(e.event.min_capacity_rps.map(|v| v * 60.0), 0)) @if e.event.min_capacity_rps.is_some() { "/min" } }
                                            td { (opt(e.event.forecast_multiplier, 2)) }
                                            td {
                                                @match (e.active, e.next_change) {
                                                    (true, Some(t)) => { b { "running" } " until " (hhmm(t)) " UTC" }
                                                    (true, None) => b { "running" },
                                                    (false, Some(t)) => { "next at " (hhmm(t)) " UTC" @if t > now_s + 86_400 { " (" (ago_future(now_s, t)) ")" } }
                                                    (false, None) => "not within a week",
                                                }
                                            }
                                        }
                                    }
                                } }
                            }
                            div.scroll { table {
                                tr {
                                    th { "VM" } th { "phase" } th { "state" } th.num { "vCPUs" } th.num { "memory MiB" }
                                    th { "address" } th { "in pool" } th { "in flight" }
                                }
                                @for v in &st.vms {
                                    tr.vm {
                                        td { (v.info.name) }
                                        td { (format!("{:?}", v.phase).to_lowercase()) }
                                        td { (format!("{:?}", v.info.state).to_lowercase()) }
                                        td.num {
                                            @if let Some(c) = v.cap_vcpus { "capped " (c) " of " }
                                            (v.info.vcpus) "/" (v.info.max_vcpus)
                                        }
                                        td.num { (v.info.memory_mib) "/" (v.info.max_memory_mib) }
                                        td { (v.info.addr.as_deref().unwrap_or("–")) }
                                        td { (if v.in_pool { "yes" } else { "no" }) }
                                        td { (v.in_flight.map(|p| p.to_string()).unwrap_or_default()) }
                                    }
                                }
                            } }
                        }
                    }
                }
            }
        }
    }
}

fn decisions(now: u64, alloc: Option<&crate::allocator::live::AllocatorState>) -> Markup {
    html! {
        section #decisions {
            h2 { "Scaling decisions" }
            div.scroll { table {
                tr { th { "when" } th { "pool" } th { "mode" } th { "action" } th { "reason" } th { "outcome" } }
                @for d in alloc.map(|a| a.decisions.iter().take(50).collect::<Vec<_>>()).unwrap_or_default() {
                    tr.decision {
                        td { (ago(now, d.t)) }
                        td { (d.pool) }
                        td { (format!("{:?}", d.mode).to_lowercase()) }
                        td { (d.action.as_ref().map_or("hold".to_string(), |a| a.to_string())) }
                        td { @if d.reactive { b { "reactive" } ": " } (d.reason) }
                        td { (d.outcome.as_text()) }
                    }
                }
            } }
        }
    }
}

fn recent_calls(p: &HashMap<String, String>, snap: Option<&crate::historian::Snapshot>) -> Markup {
    let filter_ep = p.get("endpoint").filter(|e| !e.is_empty());
    let status = p.get("status").map(String::as_str).unwrap_or("");
    let path_has = p.get("path").map(String::as_str).unwrap_or("");
    let class = status.chars().next().and_then(|c| c.to_digit(10)).map(|d| d as u16);
    let calls: Vec<_> = snap
        .map(|s| {
            s.recent
                .iter()
                .filter(|c| filter_ep.is_none_or(|f| f == &*c.endpoint))
                .filter(|c| class.is_none_or(|k| c.status / 100 == k))
                .filter(|c| path_has.is_empty() || c.path().contains(path_has))
                .take(100)
                .collect()
        })
        .unwrap_or_default();
    html! {
        section #calls {
            h2 { "Recent calls" }
            form method="get" action="/admin" {
                label { "endpoint " input name="endpoint" value=(filter_ep.map_or("", |s| s.as_str())); } " "
                label { "status " select name="status" {
                    option value="" { "any" }
                    @for s in ["2xx", "3xx", "4xx", "5xx"] { option selected[s == status] { (s) } }
                } } " "
                label { "path contains " input name="path" value=(path_has); } " "
                button type="submit" { "filter" }
            }
            div.scroll { table {
                tr {
                    th { "time" } th { "endpoint" } th { "method" } th { "path" } th { "params" } th.num { "status" }
                    th.num { "ms" } th { "client" } th { "trace" }
                }
                @for c in &calls {
                    tr.call {
                        td { (hhmm(c.start_us / 1_000_000)) }
                        td { (c.endpoint) }
                        td { (c.method.as_str()) }
                        td { (c.path()) }
                        td { (c.params()) }
                        td.num { (c.status) }
                        td.num { (format!("{:.1}", c.latency_us as f64 / 1000.0)) }
                        td { (c.client) }
                        td.small.muted { (crate::historian::record::trace_id_hex(&c.trace_id).unwrap_or_default()) }
                    }
                }
            } }
        }
    }
}

/// The sign-in page (for a browser without a session when `admin.token_file` is set).
pub(super) fn login(next: &str, failed: bool) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            (head("prescale admin: sign in", false))
            body {
                header { h1 { "prescale" } }
                main.login {
                    p { "This admin page needs the admin token: the contents of the file named by " code { "admin.token_file" } "." }
                    @if failed { p.error #login-error { "That is not the admin token." } }
                    form method="post" action="/admin/login" {
                        label { "Admin token" input #token type="password" name="token" autocomplete="current-password" required autofocus; }
                        input type="hidden" name="next" value=(next);
                        button #sign-in type="submit" { "Sign in" }
                    }
                }
            }
        }
    }
    .into_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_page_escapes_what_it_echoes() {
        let page = login(r#""><script>alert(1)</script>"#, true);
        assert!(!page.contains("<script>"), "{page}");
        assert!(page.contains(r#"value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;""#), "{page}");
        assert!(page.contains(r#"id="login-error""#) && page.starts_with("<!DOCTYPE html>"));
    }

    #[test]
    fn the_chart_draws_actuals_forecast_bands_and_past_forecasts() {
        let now = 1_800_000_000;
        let pts: Vec<Point> = (0..1440u64)
            .map(|m| Point {
                t: now - 86_400 + m * 60,
                count: 100 + m % 10,
                errors: 0,
                errors_4xx: 0,
                errors_5xx: 0,
                p50_ms: 1.0,
                p90_ms: 1.0,
                p99_ms: 1.0,
                max_ms: 1.0,
                missing: false,
            })
            .collect();
        let svg = chart(&pts, None, now, View::Day, None, &[]).into_string();
        assert!(svg.contains(r#"class="actual""#) && !svg.contains(r#"class="forecast""#));
        // The y axis tops out just above the highest 5-minute mean (107 calls/min).
        assert!(svg.contains(">38<") || svg.contains(">39<"), "grid label a third of the way: {svg}");
        // Regression (issue 21, section 5): a gap was drawn as a slope; now it breaks the line.
        let gappy: Vec<Point> =
            pts.iter().filter(|p| !(600..700).contains(&((p.t - (now - 86_400)) / 60))).cloned().collect();
        let svg = chart(&gappy, None, now, View::Day, None, &[]).into_string();
        let d = svg.split(r#"class="actual" d=""#).nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "two runs of data, two subpaths: {d}");
        // An idle endpoint: a readable axis and a note, not "1, 1, 0, 0".
        let svg = chart(&[], None, now, View::NextHour, None, &[]).into_string();
        assert!(svg.contains("no calls recorded") && svg.contains(">1.0<") && svg.contains(">3.0<"), "{svg}");
        // A scaled pool's capacity is drawn.
        assert!(chart(&pts, None, now, View::NextHour, Some(150.0), &[]).into_string().contains(r#"class="capacity""#));
        // An excluded span is shaded with its reason, clipped to the chart.
        let x = crate::forecast::exclusions::Exclusion {
            endpoint: "api".into(),
            from: now - 100_000,
            to: now - 80_000,
            reason: "load <test>".into(),
            source: "admin".into(),
        };
        let svg = chart(&pts, None, now, View::Day, None, &[x]).into_string();
        assert!(svg.contains(r#"class="excluded" x="34.0""#), "clipped at the left edge: {svg}");
        assert!(svg.contains("excluded from the models: load &lt;test&gt;"));
    }
}
