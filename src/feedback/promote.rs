//! Promotion of a dry-run pool to `enabled` (opt-in: `auto_enable = true`): the pool's
//! forecasts must have been accurate without a break for `auto_enable_after`. Accurate, for
//! every endpoint of the pool with a forecast, over the last hour at the 60-minute horizon: at
//! least [`MIN_POINTS`] scored points, MASE ≤ [`MAX_MASE`] (better than seasonal naive) and 95 %
//! coverage ≥ [`MIN_COVERAGE95`]. Pure code; the allocator keeps the clock.

use crate::feedback::score::HorizonAccuracy;

pub(crate) const MIN_POINTS: u64 = 30;
pub(crate) const MAX_MASE: f64 = 1.0;
pub(crate) const MIN_COVERAGE95: f64 = 0.85;

/// Whether a pool's forecasts are accurate now, and why (not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Every endpoint's forecast is accurate: the summary.
    Accurate(String),
    /// Why not yet.
    NotYet(String),
}

/// The verdict on the pool's endpoints now.
pub(crate) fn accurate(endpoints: &[(String, Option<Vec<HorizonAccuracy>>)]) -> Verdict {
    if endpoints.is_empty() {
        return Verdict::NotYet("no endpoint routes to this pool".into());
    }
    let mut parts = Vec::new();
    for (e, acc) in endpoints {
        let Some(h) = acc.as_ref().and_then(|a| a.iter().find(|h| h.horizon_minutes == 60)).map(|h| &h.hour) else {
            return Verdict::NotYet(format!("{e}: no forecast scored yet"));
        };
        if h.points < MIN_POINTS {
            return Verdict::NotYet(format!("{e}: {} scored points in the last hour (< {MIN_POINTS})", h.points));
        }
        let mase = h.mase.unwrap_or(f64::INFINITY);
        let cov = h.coverage95.unwrap_or(0.0);
        if mase > MAX_MASE {
            return Verdict::NotYet(format!("{e}: MASE {mase:.2} > {MAX_MASE}"));
        }
        if cov < MIN_COVERAGE95 {
            let why = format!("{e}: 95 % band covered {:.0} % (< {:.0} %)", cov * 100.0, MIN_COVERAGE95 * 100.0);
            return Verdict::NotYet(why);
        }
        parts.push(format!("{e}: MASE {mase:.2}, 95 % coverage {:.0} %", cov * 100.0));
    }
    Verdict::Accurate(parts.join("; "))
}

/// One step of the promotion clock: `since` is when the forecasts became (and stayed)
/// accurate; returns the new `since` and, when due, the reason to promote.
pub(crate) fn step(since: Option<u64>, now: u64, after_s: u64, check: Verdict) -> (Option<u64>, Option<String>) {
    match check {
        Verdict::NotYet(_) => (None, None),
        Verdict::Accurate(summary) => {
            let since = since.unwrap_or(now);
            let due = now >= since + after_s;
            (Some(since), due.then(|| format!("auto_enable: forecasts accurate for {} s ({summary})", now - since)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feedback::score::Accuracy;

    fn acc(points: u64, mase: f64, cov95: f64) -> Option<Vec<HorizonAccuracy>> {
        let a = Accuracy {
            points,
            mase: Some(mase),
            smape: Some(10.0),
            under_rate: Some(0.1),
            coverage80: Some(0.8),
            coverage95: Some(cov95),
        };
        Some(vec![HorizonAccuracy {
            horizon_minutes: 60,
            hour: a.clone(),
            day: a.clone(),
            week: a.clone(),
            all: a,
            band_stretch80: None,
        }])
    }

    #[test]
    fn every_endpoint_must_be_accurate() {
        let Verdict::Accurate(ok) = accurate(&[("a".into(), acc(600, 0.6, 0.95)), ("b".into(), acc(600, 0.9, 0.9))])
        else {
            panic!("accurate")
        };
        assert!(ok.contains("a: MASE 0.60") && ok.contains("b: MASE 0.90"), "{ok}");
        let not_yet = |e: &[(String, Option<Vec<HorizonAccuracy>>)]| match accurate(e) {
            Verdict::NotYet(why) => why,
            Verdict::Accurate(s) => panic!("{s}"),
        };
        assert!(not_yet(&[("a".into(), acc(600, 1.3, 0.95))]).contains("MASE 1.30"));
        assert!(not_yet(&[("a".into(), acc(600, 0.5, 0.7))]).contains("covered 70 %"));
        assert!(not_yet(&[("a".into(), acc(10, 0.5, 0.95))]).contains("10 scored points"));
        assert!(not_yet(&[("a".into(), None)]).contains("no forecast"));
        assert_eq!(not_yet(&[]), "no endpoint routes to this pool");
    }

    #[test]
    fn promotion_needs_an_unbroken_period() {
        let good = || Verdict::Accurate("a: fine".to_string());
        let (s, p) = step(None, 100, 3600, good());
        assert_eq!((s, p.is_none()), (Some(100), true));
        let (s, p) = step(s, 3000, 3600, good());
        assert!(p.is_none());
        // A bad hour resets the clock.
        let (s, _) = step(s, 3100, 3600, Verdict::NotYet("MASE".into()));
        assert_eq!(s, None);
        let (s, p) = step(s, 3200, 3600, good());
        assert!(p.is_none() && s == Some(3200));
        let (_, p) = step(s, 3200 + 3600, 3600, good());
        assert!(p.unwrap().contains("accurate for 3600 s"));
    }
}
