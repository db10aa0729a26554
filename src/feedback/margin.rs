//! Margin calibration: the allocator's headroom follows how the forecast bands actually cover.
//! The forecast scorer knows, over the last day, by how much the upper 80 % band would have had
//! to be stretched to cover 80 % of actuals (its promise). Above 1 the band under-covers and the
//! headroom widens to that stretch; at or below 1 it over-covers and the headroom narrows —
//! always within bounds, at most once an hour, only with enough scored points to mean something,
//! and only for a change of at least [`MIN_CHANGE`] (no churn).

/// The least change worth making, and the least number of scored points for one.
pub(crate) const MIN_CHANGE: f64 = 0.025;
pub(crate) const MIN_POINTS: u64 = 120;

/// The new headroom and why, or `None` to keep it. `stretch80`: `(factor, points)` from the
/// scorer ([`crate::feedback::score::HorizonAccuracy::band_stretch80`]).
pub(crate) fn calibrate(headroom: f64, stretch80: Option<(f64, u64)>, bounds: (f64, f64)) -> Option<(f64, String)> {
    let (factor, points) = stretch80?;
    if points < MIN_POINTS || !factor.is_finite() {
        return None;
    }
    let (lo, hi) = bounds;
    let h = (factor - 1.0).clamp(lo, hi);
    if (h - headroom).abs() < MIN_CHANGE {
        return None;
    }
    let how = if factor > 1.0 { "under-covers" } else { "covers" };
    Some((
        h,
        format!(
            "the 80 % band {how}: over the last day 80 % of {points} actuals were within {factor:.2} × its upper \
             edge; headroom {headroom:.2} → {h:.2}"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widens_after_misses_and_narrows_after_a_quiet_period() {
        let b = (0.0, 0.5);
        // Misses: the band had to stretch 1.3× to keep its promise → headroom 0.3.
        let (h, why) = calibrate(0.1, Some((1.3, 500)), b).unwrap();
        assert!((h - 0.3).abs() < 1e-12 && why.contains("under-covers") && why.contains("0.10 → 0.30"), "{why}");
        // A quiet period: the band over-covers → back to the lower bound.
        let (h, why) = calibrate(0.3, Some((0.9, 500)), b).unwrap();
        assert_eq!(h, 0.0, "{why}");
        assert_eq!(calibrate(0.3, Some((1.31, 500)), b), None, "within MIN_CHANGE: keep");
        assert_eq!(calibrate(0.0, Some((2.0, 50)), b), None, "too few points");
        assert_eq!(calibrate(0.5, Some((3.0, 500)), b), None, "at the bound");
        assert_eq!(calibrate(0.2, Some((3.0, 500)), b).unwrap().0, 0.5, "clamped to the bound");
        assert_eq!(calibrate(0.2, None, b), None, "nothing scored");
    }
}
