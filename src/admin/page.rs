//! The `/admin` page: server-rendered HTML with inline SVG charts and one embedded stylesheet —
//! no script, nothing fetched from elsewhere, a strict Content-Security-Policy. It refreshes
//! itself every 10 s (`?refresh=0` stops that) and keeps its filters in the query string.
//!
//! Sections: per endpoint, the last 24 h of calls per minute with the forecast for the next
//! hour (80 % and 95 % bands) and what was forecast 15 minutes ahead over the day; forecast
//! accuracy; pools (mode, capacity vs forecast demand, lead time, cost model, usage, VMs) with
//! the operator's actions (POST forms carrying the admin token); the decision log; recent calls
//! with filters; the historian's dropped-record counter. Every recorded string is escaped.

use std::collections::HashMap;
use std::fmt::Write;

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
.sw.a{background:#555}.sw.f{background:#1f77b4}.sw.b80{background:#9ecae1}.sw.b95{background:#deebf7}.sw.p{background:#ff7f0e}
@media (max-width:600px){main{padding:6px}.card{flex-basis:100%}th,td{padding:3px}}
"#;

/// Escapes text for HTML (element content and quoted attributes).
pub(super) fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c if c.is_control() => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

fn ago(now: u64, t: u64) -> String {
    let d = now.saturating_sub(t);
    match d {
        0..=119 => format!("{d} s ago"),
        120..=7199 => format!("{} min ago", d / 60),
        _ => format!("{:.1} h ago", d as f64 / 3600.0),
    }
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
fn chart(points: &[Point], f: Option<&EndpointForecast>, now: u64, view: View, capacity: Option<f64>) -> String {
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
    let label = match view {
        View::Day => "calls per minute over the last day and the next hour's forecast",
        View::NextHour => "calls per minute over the last two hours and the next hour's forecast",
    };
    let mut s = format!(
        r#"<svg class="{}" viewBox="0 0 {w} {h}" role="img" aria-label="{label}">"#,
        match view {
            View::Day => "day",
            View::NextHour => "next-hour",
        }
    );
    for k in 0..=3 {
        let v = ymax / 3.0 * k as f64;
        let text = if v >= 1000.0 {
            format!("{:.1}k", v / 1000.0)
        } else if ymax < 30.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.0}")
        };
        let _ = write!(
            s,
            r##"<line x1="{l}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="9" text-anchor="end" fill="#666">{text}</text>"##,
            w - r,
            l - 3.0,
            y(v) + 3.0,
            yy = y(v)
        );
    }
    let ticks: &[(i64, &str)] = match view {
        View::Day => &[(-86_400, "-24h"), (-64_800, "-18h"), (-43_200, "-12h"), (-21_600, "-6h")],
        View::NextHour => &[(-7200, "-2h"), (-3600, "-1h"), (3600, "+1h")],
    };
    for (dt, name) in ticks {
        let t = (now as i64 + dt).max(0) as u64;
        let anchor = if *dt > 0 { "end" } else { "middle" };
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="{}" font-size="9" fill="#666" text-anchor="{anchor}">{name}</text>"##,
            x(t).max(l + 8.0),
            h - 5.0
        );
    }
    let _ = write!(
        s,
        r##"<line x1="{xn:.1}" x2="{xn:.1}" y1="{top}" y2="{}" stroke="#999" stroke-dasharray="3,3"/><text x="{xn:.1}" y="{}" font-size="9" fill="#666" text-anchor="middle">now</text>"##,
        h - bottom,
        h - 5.0,
        xn = x(now)
    );
    if !fc.is_empty() {
        let band = |lo: fn(&Fp) -> f64, hi: fn(&Fp) -> f64| {
            let mut d = String::new();
            for p in &fc {
                let _ = write!(d, "{}{:.1},{:.1}", if d.is_empty() { "M" } else { " L" }, x(p.0), y(hi(p)));
            }
            for p in fc.iter().rev() {
                let _ = write!(d, " L{:.1},{:.1}", x(p.0), y(lo(p)));
            }
            d + " Z"
        };
        let _ = write!(s, r##"<path class="band95" d="{}" fill="#deebf7"/>"##, band(|p| p.4, |p| p.5));
        let _ = write!(s, r##"<path class="band80" d="{}" fill="#9ecae1"/>"##, band(|p| p.2, |p| p.3));
        let mut d = String::new();
        for p in &fc {
            let _ = write!(d, "{}{:.1},{:.1}", if d.is_empty() { "M" } else { " L" }, x(p.0), y(p.1));
        }
        let _ = write!(s, r##"<path class="forecast" d="{d}" fill="none" stroke="#1f77b4" stroke-width="1.5"/>"##);
    }
    if !cols.is_empty() {
        // A new subpath after a gap: unrecorded minutes are not zeros.
        let mut d = String::new();
        let mut prev: Option<u64> = None;
        for (t, v) in &cols {
            let cmd = if prev.is_some_and(|p| t - p <= col_s) { " L" } else { " M" };
            let _ = write!(d, "{cmd}{:.1},{:.1}", x(*t), y(*v));
            prev = Some(*t);
        }
        let _ =
            write!(s, r##"<path class="actual" d="{}" fill="none" stroke="#555" stroke-width="1"/>"##, d.trim_start());
    } else {
        let _ = write!(
            s,
            r##"<text class="empty" x="{:.1}" y="{:.1}" font-size="11" fill="#888" text-anchor="middle">no calls recorded in this window</text>"##,
            (l + w - r) / 2.0,
            (top + h - bottom) / 2.0
        );
    }
    if past.len() > 1 {
        let mut d = String::new();
        let step = if view == View::Day { 5 } else { 1 };
        for (t, v) in past.iter().step_by(step) {
            let _ = write!(d, "{}{:.1},{:.1}", if d.is_empty() { "M" } else { " L" }, x(*t), y(*v));
        }
        let _ = write!(
            s,
            r##"<path class="past" d="{d}" fill="none" stroke="#ff7f0e" stroke-width="1" stroke-dasharray="4,3"/>"##
        );
    }
    if let Some(c) = capacity {
        let _ = write!(
            s,
            r##"<line class="capacity" x1="{l}" x2="{}" y1="{yy:.1}" y2="{yy:.1}" stroke="#d62728" stroke-width="1" stroke-dasharray="6,3"/>"##,
            w - r,
            yy = y(c)
        );
    }
    s.push_str("</svg>");
    s
}

fn action_form(out: &mut String, csrf: &str, fields: &[(&str, &str)], label: &str) {
    let _ = write!(
        out,
        r#"<form class="inline" method="post" action="/admin/action"><input type="hidden" name="csrf" value="{}">"#,
        esc(csrf)
    );
    for (k, v) in fields {
        let _ = write!(out, r#"<input type="hidden" name="{}" value="{}">"#, esc(k), esc(v));
    }
    let _ = write!(out, r#"<button type="submit">{}</button></form> "#, esc(label));
}

/// The page.
pub(super) fn render(shared: &Shared, p: &HashMap<String, String>, csrf: &str, now: u64) -> String {
    let mut o = String::with_capacity(64 * 1024);
    let refresh = p.get("refresh").map(String::as_str) != Some("0");
    let filter_ep = p.get("endpoint").filter(|e| !e.is_empty());
    let _ = write!(
        o,
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">{}<title>prescale admin</title><link rel="stylesheet" href="/admin/style.css"></head><body>"#,
        if refresh { r#"<meta http-equiv="refresh" content="10">"# } else { "" }
    );
    let snap = shared.historian.as_ref().map(|h| h.snapshot());
    let dropped = shared.historian.as_ref().map_or(0, |h| h.dropped());
    let calls: u64 = snap.as_ref().map_or(0, |s| s.endpoints.iter().map(|e| e.calls_total).sum());
    let _ = write!(
        o,
        r##"<header><h1>prescale</h1><span id="summary">{} endpoints · {calls} calls recorded · <span id="dropped" class="{}">{dropped} records dropped</span></span><span>{} UTC</span><a href="#endpoints">endpoints</a><a href="#accuracy">accuracy</a><a href="#pools">pools</a><a href="#decisions">decisions</a><a href="#calls">calls</a><a href="?refresh={}">{}</a>{}</header><main>"##,
        snap.as_ref().map_or(0, |s| s.endpoints.len()),
        if dropped > 0 { "warn" } else { "ok" },
        hhmm(now),
        if refresh { "0" } else { "1" },
        if refresh { "pause refresh" } else { "auto-refresh" },
        if shared.token.is_some() {
            r#"<form class="inline" method="post" action="/admin/logout"><button type="submit" id="logout">sign out</button></form>"#
        } else {
            ""
        }
    );
    if let Some(c) = snap.as_ref().map(|s| &s.counters)
        && let Some(e) = &c.disk_error
    {
        let _ = write!(
            o,
            r#"<p id="disk" class="bad">history is not being written to disk: {} — {} closed buckets kept in memory and retried{}</p>"#,
            esc(e),
            c.disk_pending,
            if c.disk_dropped > 0 { format!(", {} dropped", c.disk_dropped) } else { String::new() }
        );
    }
    // Only a message prescale stored for an action's redirect: never text from the URL.
    if let Some(msg) = p.get("msg").and_then(|id| shared.messages.get(id)) {
        let _ = write!(o, r#"<p id="msg" class="warn">{}</p>"#, esc(&msg));
    }

    // Endpoints.
    let forecasts = shared.forecasts.as_ref().map(|f| f.all());
    let alloc = shared.allocator.as_ref().map(|a| a.state());
    o.push_str(r#"<section id="endpoints"><h2>Endpoints</h2><p class="legend small"><span><i class="sw a"></i>calls/min recorded (5-min mean over the day)</span><span><i class="sw f"></i>forecast</span><span><i class="sw b80"></i>80 %</span><span><i class="sw b95"></i>95 %</span><span><i class="sw p"></i>forecast 15 min ahead</span></p><div class="cards">"#);
    if let Some(snap) = &snap {
        let mut eps: Vec<_> = snap.endpoints.iter().filter(|e| filter_ep.is_none_or(|f| **f == *e.name)).collect();
        eps.sort_by(|a, b| b.calls_total.cmp(&a.calls_total).then(a.name.cmp(&b.name)));
        let shown = eps.len().min(if filter_ep.is_some() { 1 } else { 60 });
        if let Some(f) = filter_ep
            && eps.is_empty()
        {
            let _ = write!(
                o,
                r#"<p class="error" id="no-endpoint">No endpoint named “{}”. <a href="/admin?refresh=0">Show all endpoints</a></p>"#,
                esc(f)
            );
        }
        for e in &eps[..shown] {
            let pts = e.tiers.iter().find(|t| t.step_s == 60).map_or(Vec::new(), |t| t.points(now - 86_400, now, 60));
            let f = forecasts.as_ref().and_then(|fs| fs.endpoints.get(&*e.name).cloned());
            let model = f.as_ref().map_or("no forecast".to_string(), |f| {
                f.note
                    .clone()
                    .map_or_else(|| format!("{} ({})", f.model, f.fit_reason), |n| format!("no forecast: {n}"))
            });
            let next = f.as_ref().and_then(|f| f.points.first()).map(|p| p.rate * 60.0);
            // The capacity of the endpoint's pool, when it scales (shared by the pool's endpoints).
            let route_pool =
                shared.proxy.table().router.routes().iter().find(|r| *r.name == *e.name).map(|r| r.pool.name.clone());
            let capacity = alloc.as_ref().and_then(|a| {
                a.pools.iter().find(|p| Some(&p.pool) == route_pool.as_ref()).map(|p| p.capacity_rps * 60.0)
            });
            let _ = write!(
                o,
                r#"<div class="card endpoint" data-endpoint="{n}"><h3><span>{n}</span><span class="muted small">{} calls · model {} · next min {} calls</span></h3>{}<p class="small muted">next hour, each minute{}</p>{}"#,
                e.calls_total,
                esc(&model),
                opt(next, 0),
                chart(&pts, f.as_deref(), now, View::Day, capacity),
                if capacity.is_some() {
                    " · red: the pool's capacity now, calls/min (shared by its endpoints)"
                } else {
                    ""
                },
                chart(&pts, f.as_deref(), now, View::NextHour, capacity),
                n = esc(&e.name)
            );
            if f.is_some() {
                action_form(&mut o, csrf, &[("action", "refit"), ("endpoint", &e.name)], "choose the model again");
            }
            o.push_str("</div>");
        }
        if eps.len() > shown {
            let _ = write!(o, r#"<p class="muted">{} more endpoints: filter by name below.</p>"#, eps.len() - shown);
        }
    } else {
        o.push_str(r#"<p class="muted">The historian is disabled.</p>"#);
    }
    o.push_str("</div></section>");

    // Accuracy.
    o.push_str(r#"<section id="accuracy"><h2>Forecast accuracy</h2><div class="scroll"><table><tr><th>endpoint</th><th>horizon</th><th class="num">points (day)</th><th class="num">MASE hour</th><th class="num">MASE day</th><th class="num">sMAPE day</th><th class="num">under-rate day</th><th class="num">80 % cover day</th><th class="num">95 % cover day</th></tr>"#);
    if let Some(fs) = &forecasts {
        let mut names: Vec<&String> = fs.accuracy.keys().collect();
        names.sort();
        for n in names {
            for a in fs.accuracy[n].iter() {
                let _ = write!(
                    o,
                    r#"<tr><td>{}</td><td>{} min</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td><td class="num">{}</td></tr>"#,
                    esc(n),
                    a.horizon_minutes,
                    a.day.points,
                    opt(a.hour.mase, 3),
                    opt(a.day.mase, 3),
                    opt(a.day.smape, 1),
                    opt(a.day.under_rate, 3),
                    opt(a.day.coverage80, 3),
                    opt(a.day.coverage95, 3)
                );
            }
        }
    }
    o.push_str("</table></div></section>");

    // Pools.
    o.push_str(r#"<section id="pools"><h2>Pools</h2>"#);
    for pool in shared.proxy.pools().iter().map(|p| p.name.clone()) {
        let st = alloc.as_ref().and_then(|a| a.pools.iter().find(|p| p.pool == pool));
        let pf = forecasts.as_ref().and_then(|fs| fs.pools.get(&pool).cloned());
        let _ = write!(o, r#"<div class="card pool" data-pool="{p}"><h3><span>pool {p}</span>"#, p = esc(&pool));
        match st {
            None => o.push_str(r#"<span class="muted small">static members (no [pool.scaling])</span></h3>"#),
            Some(st) => {
                let mode = format!("{:?}", st.mode).to_lowercase();
                let _ = write!(
                    o,
                    r#"<span class="small">mode <b class="mode">{}</b> "#,
                    if mode == "dryrun" { "dry_run" } else { "enabled" }
                );
                let other = if mode == "dryrun" { "enabled" } else { "dry_run" };
                action_form(
                    &mut o,
                    csrf,
                    &[("action", "mode"), ("pool", &pool), ("mode", other)],
                    &format!("switch to {other}"),
                );
                action_form(&mut o, csrf, &[("action", "scale"), ("pool", &pool), ("delta", "1")], "+1 VM");
                action_form(&mut o, csrf, &[("action", "scale"), ("pool", &pool), ("delta", "-1")], "−1 VM");
                o.push_str("</span></h3>");
                if let Some(d) = &st.degraded {
                    let _ = write!(o, r#"<p class="bad">degraded: {}</p>"#, esc(d));
                }
                let peak = pf.as_ref().and_then(|f| f.rate.iter().map(|p| p.hi80).reduce(f64::max));
                let _ = write!(
                    o,
                    // One unit on the whole page: calls per minute.
                    r#"<p class="small">capacity <b class="capacity">{:.0}</b>/min · required {:.0}/min · forecast upper band in window {}/min · next-hour peak (80 %) {}/min · measured {:.0}/min<br>lead time <b>{} s</b> ({}; {} launches, p50 {} s, p90 {} s) · cost {} ({:.1}/min per vCPU, {:.2} cores used) · memory model {} · headroom {:.2}{}</p>"#,
                    st.capacity_rps * 60.0,
                    st.required_rps * 60.0,
                    opt(st.forecast_hi_rps.map(|v| v * 60.0), 0),
                    opt(peak.map(|v| v * 60.0), 0),
                    st.measured_rps * 60.0,
                    st.lead.lead_time_s,
                    if st.lead.auto { "learned" } else { "fixed" },
                    st.lead.launches,
                    opt(st.lead.launch_p50_s, 1),
                    opt(st.lead.launch_p90_s, 1),
                    st.cost.source.word(),
                    st.cost.capacity_rps_per_vcpu * 60.0,
                    st.cost.cores_used,
                    st.cost.memory_source.word(),
                    st.cost.headroom,
                    st.usage.as_ref().map_or(String::new(), |u| format!(
                        " · usage {:.2} cores, RSS {} MiB, {:.1} in flight",
                        u.cores,
                        opt(u.rss_mib, 0),
                        u.concurrency
                    ))
                );
                o.push_str(r#"<div class="scroll"><table><tr><th>VM</th><th>phase</th><th>state</th><th class="num">vCPUs</th><th class="num">memory MiB</th><th>address</th><th>in pool</th><th>in flight</th></tr>"#);
                for v in &st.vms {
                    let _ = write!(
                        o,
                        r#"<tr class="vm"><td>{}</td><td>{}</td><td>{}</td><td class="num">{}/{}</td><td class="num">{}/{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                        esc(&v.info.name),
                        esc(&format!("{:?}", v.phase).to_lowercase()),
                        esc(&format!("{:?}", v.info.state).to_lowercase()),
                        v.info.vcpus,
                        v.info.max_vcpus,
                        v.info.memory_mib,
                        v.info.max_memory_mib,
                        esc(v.info.addr.as_deref().unwrap_or("–")),
                        if v.in_pool { "yes" } else { "no" },
                        esc(&v.in_flight.map(|p| p.to_string()).unwrap_or_default())
                    );
                }
                o.push_str("</table></div>");
            }
        }
        o.push_str("</div>");
    }
    o.push_str("</section>");

    // Decisions.
    o.push_str(r#"<section id="decisions"><h2>Scaling decisions</h2><div class="scroll"><table><tr><th>when</th><th>pool</th><th>mode</th><th>action</th><th>reason</th><th>outcome</th></tr>"#);
    if let Some(a) = &alloc {
        for d in a.decisions.iter().take(50) {
            let action = d.action.as_ref().map_or("hold".to_string(), |a| a.to_string());
            let _ = write!(
                o,
                r#"<tr class="decision"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td><td>{}</td></tr>"#,
                ago(now, d.t),
                esc(&d.pool),
                esc(&format!("{:?}", d.mode).to_lowercase()),
                esc(&action),
                if d.reactive { "<b>reactive</b>: " } else { "" },
                esc(&d.reason),
                esc(&d.outcome.as_text())
            );
        }
    }
    o.push_str("</table></div></section>");

    // Recent calls with filters.
    let status = p.get("status").map(String::as_str).unwrap_or("");
    let path_has = p.get("path").map(String::as_str).unwrap_or("");
    let _ = write!(
        o,
        r#"<section id="calls"><h2>Recent calls</h2><form method="get" action="/admin"><label>endpoint <input name="endpoint" value="{}"></label> <label>status <select name="status"><option value="">any</option>{}</select></label> <label>path contains <input name="path" value="{}"></label> <button type="submit">filter</button></form><div class="scroll"><table><tr><th>time</th><th>endpoint</th><th>method</th><th>path</th><th>params</th><th class="num">status</th><th class="num">ms</th><th>client</th></tr>"#,
        esc(filter_ep.map_or("", |s| s.as_str())),
        ["2xx", "3xx", "4xx", "5xx"]
            .iter()
            .map(|s| format!(r#"<option{}>{s}</option>"#, if *s == status { " selected" } else { "" }))
            .collect::<String>(),
        esc(path_has)
    );
    if let Some(snap) = &snap {
        let class = status.chars().next().and_then(|c| c.to_digit(10)).map(|d| d as u16);
        for c in snap
            .recent
            .iter()
            .filter(|c| filter_ep.is_none_or(|f| f == &*c.endpoint))
            .filter(|c| class.is_none_or(|k| c.status / 100 == k))
            .filter(|c| path_has.is_empty() || c.path().contains(path_has))
            .take(100)
        {
            let _ = write!(
                o,
                r#"<tr class="call"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{:.1}</td><td>{}</td></tr>"#,
                hhmm(c.start_us / 1_000_000),
                esc(&c.endpoint),
                esc(c.method.as_str()),
                esc(c.path()),
                esc(c.params()),
                c.status,
                c.latency_us as f64 / 1000.0,
                esc(&c.client.to_string())
            );
        }
    }
    o.push_str("</table></div></section></main></body></html>");
    o
}

/// The sign-in page (for a browser without a session when `admin.token_file` is set).
pub(super) fn login(next: &str, failed: bool) -> String {
    format!(
        r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>prescale admin: sign in</title><link rel="stylesheet" href="/admin/style.css"></head><body><header><h1>prescale</h1></header><main class="login"><p>This admin page needs the admin token: the contents of the file named by <code>admin.token_file</code>.</p>{}<form method="post" action="/admin/login"><label>Admin token<input type="password" name="token" id="token" autocomplete="current-password" required autofocus></label><input type="hidden" name="next" value="{}"><button type="submit" id="sign-in">Sign in</button></form></main></body></html>"#,
        if failed { r#"<p class="error" id="login-error">That is not the admin token.</p>"# } else { "" },
        esc(next)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_controls() {
        assert_eq!(esc(r#"<script>alert("x")</script>"#), "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;");
        assert_eq!(esc("a&b 'c'"), "a&amp;b &#39;c&#39;");
        assert_eq!(esc("bell\u{7}"), "bell\u{fffd}");
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
        let svg = chart(&pts, None, now, View::Day, None);
        assert!(svg.contains(r#"class="actual""#) && !svg.contains(r#"class="forecast""#));
        // The y axis tops out just above the highest 5-minute mean (107 calls/min).
        assert!(svg.contains(">38<") || svg.contains(">39<"), "grid label a third of the way: {svg}");
        // Regression (issue 21, section 5): a gap was drawn as a slope; now it breaks the line.
        let gappy: Vec<Point> =
            pts.iter().filter(|p| !(600..700).contains(&((p.t - (now - 86_400)) / 60))).cloned().collect();
        let svg = chart(&gappy, None, now, View::Day, None);
        let d = svg.split(r#"class="actual" d=""#).nth(1).unwrap().split('"').next().unwrap();
        assert_eq!(d.matches('M').count(), 2, "two runs of data, two subpaths: {d}");
        // An idle endpoint: a readable axis and a note, not "1, 1, 0, 0".
        let svg = chart(&[], None, now, View::NextHour, None);
        assert!(svg.contains("no calls recorded") && svg.contains(">1.0<") && svg.contains(">3.0<"), "{svg}");
        // A scaled pool's capacity is drawn.
        assert!(chart(&pts, None, now, View::NextHour, Some(150.0)).contains(r#"class="capacity""#));
    }
}
