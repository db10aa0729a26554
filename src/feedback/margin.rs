//! Margin calibration: the allocator's headroom follows how the forecast bands actually cover.
//! When the 80 % band of the pool's endpoints covered less than 75 % of the last day's actuals
//! (the forecast misses upward more than it should), headroom widens by a step; when it covered
//! more than 90 %, it narrows; always within bounds, at most once an hour, and only with enough
//! scored points to mean something.

/// Step, bounds, and the least number of scored points for a change.
pub const STEP: f64 = 0.05;
pub const MIN_POINTS: u64 = 120;

/// The new headroom and why, or `None` to keep it.
pub fn calibrate(headroom: f64, coverage80: Option<f64>, points: u64, bounds: (f64, f64)) -> Option<(f64, String)> {
    let c = coverage80?;
    if points < MIN_POINTS {
        return None;
    }
    let (lo, hi) = bounds;
    if c < 0.75 && headroom < hi {
        let h = (headroom + STEP).min(hi);
        Some((
            h,
            format!(
                "80 % band covered {:.0} % of {points} actuals (< 75 %): headroom {headroom:.2} → {h:.2}",
                c * 100.0
            ),
        ))
    } else if c > 0.90 && headroom > lo {
        let h = (headroom - STEP).max(lo);
        Some((
            h,
            format!(
                "80 % band covered {:.0} % of {points} actuals (> 90 %): headroom {headroom:.2} → {h:.2}",
                c * 100.0
            ),
        ))
    } else {
        None
    }
}

/// Cores used between two readings of a VM's cumulative CPU time.
pub fn cores_used(prev_cpu_ns: u64, prev_at_ns: u64, cpu_ns: u64, at_ns: u64) -> Option<f64> {
    let wall = at_ns.checked_sub(prev_at_ns).filter(|w| *w > 0)?;
    let cpu = cpu_ns.checked_sub(prev_cpu_ns)?;
    Some(cpu as f64 / wall as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widens_after_misses_and_narrows_after_a_quiet_period() {
        let b = (0.0, 0.5);
        let (h, why) = calibrate(0.2, Some(0.6), 500, b).unwrap();
        assert!((h - 0.25).abs() < 1e-12 && why.contains("60 %"), "{why}");
        assert!((calibrate(0.2, Some(0.95), 500, b).unwrap().0 - 0.15).abs() < 1e-12);
        assert_eq!(calibrate(0.2, Some(0.8), 500, b), None, "calibrated: keep");
        assert_eq!(calibrate(0.2, Some(0.1), 50, b), None, "too few points");
        assert_eq!(calibrate(0.5, Some(0.1), 500, b), None, "at the bound");
        assert_eq!(calibrate(0.0, Some(1.0), 500, b), None, "at the bound");
        // Repeated misses walk it up to the bound and no further.
        let mut h = 0.0;
        for _ in 0..20 {
            if let Some((n, _)) = calibrate(h, Some(0.5), 500, b) {
                h = n;
            }
        }
        assert!((h - 0.5).abs() < 1e-12);
    }

    #[test]
    fn cpu_time_becomes_cores() {
        assert_eq!(cores_used(1_000_000_000, 0, 2_500_000_000, 1_000_000_000), Some(1.5));
        assert_eq!(cores_used(5, 10, 4, 20), None, "counter reset");
        assert_eq!(cores_used(0, 10, 5, 10), None, "no time passed");
    }
}
