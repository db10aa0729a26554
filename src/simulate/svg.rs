//! The replay as an SVG: demand (grey area), the forecast's 80 % band a lead time ahead (blue),
//! each policy's ready capacity (a line per policy) and its actions (ticks under the plot: solid
//! up, dashed down). Two panels: the whole evaluated part, and the 24 hours around its highest demand.

use std::fmt::Write;

use super::Report;

const W: f64 = 1100.0;
const PANEL_H: f64 = 260.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 180.0;
const COLORS: [&str; 5] = ["#d62728", "#7f7f7f", "#2ca02c", "#1f77b4", "#9467bd"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders the report's timeline.
pub(crate) fn render(r: &Report) -> String {
    let tl = &r.timeline;
    let n = tl.demand.len();
    let rows = tl.ready.len() as f64;
    let panel_total = PANEL_H + 30.0 + rows * 10.0 + 30.0;
    let h = 40.0 + 2.0 * panel_total + 10.0;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = write!(out, r#"<rect width="{W}" height="{h}" fill="white"/>"#);
    let _ = write!(
        out,
        r#"<text x="{LEFT}" y="20" font-size="14" font-weight="bold">{} — demand vs ready capacity (vCPUs), {} s ticks</text>"#,
        esc(&r.trace),
        tl.tick_s
    );
    if n == 0 {
        out.push_str("</svg>");
        return out;
    }
    // The busiest day: 24 h centred on the highest demand.
    let day = (86_400 / tl.tick_s.max(1)) as usize;
    let peak = tl.demand.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i);
    let from = peak.saturating_sub(day / 2).min(n.saturating_sub(day));
    let to = (from + day).min(n);
    panel(&mut out, r, 0, n, 40.0, "whole evaluated part");
    panel(&mut out, r, from, to, 40.0 + panel_total, "the 24 hours around the highest demand");
    out.push_str("</svg>");
    out
}

fn panel(out: &mut String, r: &Report, from: usize, to: usize, y0: f64, title: &str) {
    let tl = &r.timeline;
    let plot_w = W - LEFT - RIGHT;
    let cols = (plot_w as usize).min(to - from).max(1);
    let per_col = (to - from) as f64 / cols as f64;
    let col_range = |c: usize| {
        let a = from + (c as f64 * per_col) as usize;
        let b = (from + ((c + 1) as f64 * per_col) as usize).max(a + 1).min(to);
        a..b
    };
    let t_of = |i: usize| tl.t0 + i as u64 * tl.tick_s;
    let (t_from, t_to) = (t_of(from), t_of(to));
    // Per column: highest demand, lowest ready capacity per policy (dips must show).
    let demand: Vec<f32> = (0..cols).map(|c| tl.demand[col_range(c)].iter().copied().fold(0.0, f32::max)).collect();
    let ready: Vec<Vec<f32>> = tl
        .ready
        .iter()
        .map(|(_, v)| (0..cols).map(|c| v[col_range(c)].iter().copied().fold(f32::MAX, f32::min)).collect())
        .collect();
    let band: Vec<&(u64, f32, f32)> = tl.band.iter().filter(|b| b.0 >= t_from && b.0 < t_to).collect();
    let ymax =
        demand.iter().chain(ready.iter().flatten()).copied().chain(band.iter().map(|b| b.2)).fold(1.0f32, f32::max)
            as f64
            * 1.05;
    let top = y0 + 20.0;
    let y = |v: f64| top + PANEL_H - v / ymax * PANEL_H;
    let x = |t: u64| LEFT + (t.saturating_sub(t_from)) as f64 / (t_to - t_from).max(1) as f64 * plot_w;
    let xc = |c: usize| LEFT + (c as f64 + 0.5) / cols as f64 * plot_w;
    let _ = write!(out, r#"<text x="{LEFT}" y="{}" font-weight="bold">{}</text>"#, y0 + 12.0, esc(title));
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{top}" width="{plot_w}" height="{PANEL_H}" fill="#fafafa" stroke="#ccc"/>"##
    );
    // Y grid.
    for k in 0..=4 {
        let v = ymax / 4.0 * k as f64;
        let _ = write!(
            out,
            r##"<line x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#e5e5e5"/><text x="{}" y="{:.1}" text-anchor="end">{v:.0}</text>"##,
            LEFT + plot_w,
            LEFT - 4.0,
            y(v) + 4.0,
            y = y(v)
        );
    }
    // X labels: days (or hours in a short panel).
    let span = t_to - t_from;
    let every = if span > 3 * 86_400 { 86_400 } else { 3 * 3600 };
    let mut t = t_from.div_ceil(every) * every;
    while t < t_to {
        let label =
            if every == 86_400 { format!("d{}", (t - tl.t0) / 86_400) } else { format!("{:02}:00", t % 86_400 / 3600) };
        let _ = write!(
            out,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{label}</text>"##,
            top + PANEL_H,
            top + PANEL_H + 12.0,
            x = x(t)
        );
        t += every;
    }
    // Forecast band.
    if !band.is_empty() {
        let mut d = String::new();
        for b in &band {
            let _ = write!(d, "{}{:.1},{:.1} ", if d.is_empty() { "M" } else { "L" }, x(b.0), y(b.2 as f64));
        }
        for b in band.iter().rev() {
            let _ = write!(d, "L{:.1},{:.1} ", x(b.0), y(b.1 as f64));
        }
        let _ = write!(out, r##"<path d="{d}Z" fill="#9ecae1" fill-opacity="0.5" stroke="none"/>"##);
    }
    // Demand area.
    let mut d = format!("M{LEFT:.1},{:.1} ", y(0.0));
    for (c, v) in demand.iter().enumerate() {
        let _ = write!(d, "L{:.1},{:.1} ", xc(c), y(*v as f64));
    }
    let _ = write!(d, "L{:.1},{:.1} Z", LEFT + plot_w, y(0.0));
    let _ = write!(out, r##"<path d="{d}" fill="#bbb" fill-opacity="0.7" stroke="#888" stroke-width="0.5"/>"##);
    // Ready capacity per policy.
    for (k, v) in ready.iter().enumerate() {
        let mut d = String::new();
        for (c, r) in v.iter().enumerate() {
            let _ = write!(d, "{}{:.1},{:.1} ", if c == 0 { "M" } else { "L" }, xc(c), y(*r as f64));
        }
        let _ = write!(out, r#"<path d="{d}" fill="none" stroke="{}" stroke-width="1.2"/>"#, COLORS[k % COLORS.len()]);
    }
    // Legend.
    let lx = LEFT + plot_w + 10.0;
    let _ = write!(
        out,
        r##"<rect x="{lx}" y="{}" width="12" height="8" fill="#bbb"/><text x="{}" y="{}">demand</text>"##,
        top + 2.0,
        lx + 16.0,
        top + 10.0
    );
    let _ = write!(
        out,
        r##"<rect x="{lx}" y="{}" width="12" height="8" fill="#9ecae1"/><text x="{}" y="{}">forecast 80 % band</text>"##,
        top + 16.0,
        lx + 16.0,
        top + 24.0
    );
    for (k, (name, _)) in tl.ready.iter().enumerate() {
        let yy = top + 30.0 + k as f64 * 14.0;
        let _ = write!(
            out,
            r#"<line x1="{lx}" x2="{}" y1="{}" y2="{}" stroke="{}" stroke-width="2"/><text x="{}" y="{}">{}</text>"#,
            lx + 12.0,
            yy + 4.0,
            yy + 4.0,
            COLORS[k % COLORS.len()],
            lx + 16.0,
            yy + 8.0,
            esc(name)
        );
    }
    // Action ticks, one row per policy.
    let rows_top = top + PANEL_H + 22.0;
    for (k, acts) in tl.actions.iter().enumerate() {
        let yy = rows_top + k as f64 * 10.0;
        let name = tl.ready.get(k).map_or("", |r| r.0.as_str());
        let _ = write!(
            out,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="9">{}</text>"#,
            LEFT - 4.0,
            yy + 7.0,
            esc(name)
        );
        let mut d_up = String::new();
        let mut d_down = String::new();
        for (t, up) in acts.iter().filter(|a| a.0 >= t_from && a.0 < t_to) {
            let xx = x(*t);
            let _ = write!(if *up { &mut d_up } else { &mut d_down }, "M{xx:.1},{:.1} v8 ", yy);
        }
        let c = COLORS[k % COLORS.len()];
        let _ = write!(out, r#"<path d="{d_up}" stroke="{c}" stroke-width="1"/>"#);
        let _ = write!(out, r#"<path d="{d_down}" stroke="{c}" stroke-width="1" stroke-dasharray="2,2"/>"#);
    }
}
