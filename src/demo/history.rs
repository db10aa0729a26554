//! The demo's seeded week of history (or the user's trace), imported before it starts.

use std::path::Path;

use crate::config::Settings;

use super::load::pattern;

/// Writes a week of generated history (or the user's trace, shifted to end now) and imports
/// it; returns what `orders` will be replayed from: `(t, calls/min)` by minute, if a trace.
pub(super) fn seed(
    dir: &Path,
    settings: &Settings,
    now_s: u64,
    trace: Option<&Path>,
) -> anyhow::Result<Option<Vec<(u64, f64)>>> {
    let h = settings.historian.as_ref().expect("the demo config has a historian");
    std::fs::create_dir_all(dir)?;
    let mut replay = None;
    for ep in ["orders", "reports", "search"] {
        let csv = dir.join(format!("{ep}.csv"));
        if ep == "orders"
            && let Some(t) = trace
        {
            let r = crate::historian::import::import(
                t,
                ep,
                dir,
                &h.store.tiers,
                &crate::historian::import::ImportOptions {
                    shift_to_s: Some(now_s),
                    skip_bad: true,
                    ..Default::default()
                },
            )?;
            anyhow::ensure!(r.calls > 0, "{}: no calls imported", t.display());
            let series = crate::historian::import::recorded_series(dir, ep)?;
            let per_min = series.step_s as f64 / 60.0;
            replay = Some(
                series
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        (series.start_s + i as u64 * series.step_s, if v.is_finite() { v / per_min } else { 0.0 })
                    })
                    .collect(),
            );
            continue;
        }
        let mut text = String::from("timestamp,value\n");
        let start = (now_s / 60 - 7 * 1440) * 60;
        let mut rng = fastrand::Rng::with_seed(ep.len() as u64);
        for m in 0..7 * 1440u64 {
            let t = start + m * 60;
            let mean = pattern(ep, t);
            let noise = 1.0 + 0.1 * (rng.f64() * 2.0 - 1.0);
            text.push_str(&format!("{t},{}\n", (mean * noise).round() as u64));
        }
        std::fs::write(&csv, text)?;
        crate::historian::import::import(&csv, ep, dir, &h.store.tiers, &Default::default())?;
    }
    Ok(replay)
}
