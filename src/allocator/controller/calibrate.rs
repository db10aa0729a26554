//! Phase 4: the feedback loop's effect on the pool. A dry-run pool whose forecasts have been
//! accurate for `auto_enable_after` becomes enabled (if the user opted in); once an hour the
//! headroom follows how far the pool's endpoints' 80 % bands had to stretch to keep their
//! promise (the largest stretch among endpoints with enough points).

use super::{Controller, Env, LoggedDecision};
use crate::allocator::Mode;
use crate::feedback::score::HorizonAccuracy;

/// How often the margin calibration looks at the scores.
const CALIBRATE_EVERY_US: u64 = 3_600_000_000;

pub(super) fn run(c: &mut Controller, env: &Env<'_>, now_us: u64, out: &mut Vec<LoggedDecision>) {
    let now = now_us / 1_000_000;
    if c.p.settings.auto_enable && c.p.settings.mode == Mode::DryRun {
        let accs: Vec<(String, Option<Vec<HorizonAccuracy>>)> =
            c.p.endpoints.iter().map(|e| (e.clone(), env.signals.accuracy(e))).collect();
        let check = crate::feedback::promote::accurate(&accs);
        let (since, promote) =
            crate::feedback::promote::step(c.accurate_since, now, c.p.settings.auto_enable_after.as_secs(), check);
        c.accurate_since = since;
        if let Some(why) = promote {
            c.p.settings.mode = Mode::Enabled;
            tracing::info!(pool = %c.p.name, "{why}");
            out.push(LoggedDecision::note(&c.p.name, c.p.settings.mode, now, why));
        }
    }
    if c.calibrated_us.is_some_and(|t| now_us < t + CALIBRATE_EVERY_US) {
        return;
    }
    c.calibrated_us = Some(now_us);
    let stretch =
        c.p.endpoints
            .iter()
            .filter_map(|e| env.signals.accuracy(e)?.iter().find(|h| h.horizon_minutes == 60)?.band_stretch80)
            .filter(|s| s.1 >= crate::feedback::margin::MIN_POINTS)
            .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((h, why)) = crate::feedback::margin::calibrate(c.headroom, stretch, c.p.settings.headroom_bounds) {
        c.headroom = h;
        out.push(LoggedDecision::note(&c.p.name, c.p.settings.mode, now, format!("margin calibration: {why}")));
    }
}
