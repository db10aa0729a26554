//! Season length from the data: the autocorrelation of the series (after removing a slow
//! trend) at every lag up to a day and a half, with the daily and weekly periods as priors —
//! they win whenever their correlation is near the best peak, since traffic follows the clock.
//! A series with no clear cycle gets none, and the models fall back to trend-only forms.

/// What the detector found.
#[derive(Debug, Clone, PartialEq)]
pub struct Seasons {
    /// The main period in steps, if any.
    pub period: Option<usize>,
    /// A weekly cycle on top of the daily one (only looked for with two weeks of data).
    pub weekly: bool,
    /// Autocorrelation at the chosen period (0 when none).
    pub strength: f64,
}

/// Correlation under which a peak is not a season.
const MIN_ACF: f64 = 0.3;

fn acf(x: &[f64], lag: usize) -> f64 {
    let (mut num, mut den) = (0.0, 0.0);
    for t in lag..x.len() {
        num += x[t] * x[t - lag];
    }
    for v in x {
        den += v * v;
    }
    // Per pair, so long lags (fewer pairs) are not biased towards zero.
    if den == 0.0 || lag >= x.len() { 0.0 } else { (num / (x.len() - lag) as f64) / (den / x.len() as f64) }
}

/// Detects the season of `y` (NaN = missing) sampled every `step_s` seconds.
pub fn detect(y: &[f64], step_s: u64) -> Seasons {
    let daily = (86_400 / step_s.max(1)) as usize;
    let none = Seasons { period: None, weekly: false, strength: 0.0 };
    // Centre on a moving average one day wide (or a tenth of the data) and fill gaps with 0.
    let w = daily.min(y.len() / 10).max(3);
    let mut x = Vec::with_capacity(y.len());
    let (mut sum, mut cnt) = (0.0, 0usize);
    let mut ma = Vec::with_capacity(y.len());
    for (t, v) in y.iter().enumerate() {
        if v.is_finite() {
            sum += v;
            cnt += 1;
        }
        if t >= w && y[t - w].is_finite() {
            sum -= y[t - w];
            cnt -= 1;
        }
        ma.push(if cnt > 0 { sum / cnt as f64 } else { 0.0 });
    }
    for (t, v) in y.iter().enumerate() {
        // The window ending at t + w/2 is centred on t.
        let c = ma[(t + w / 2).min(y.len() - 1)];
        x.push(if v.is_finite() { v - c } else { 0.0 });
    }
    let max_lag = (daily + daily / 2).min(y.len() / 2);
    if max_lag < 4 {
        return none;
    }
    // Best local peak of the autocorrelation; lags are scanned with a stride so that 1-min data
    // costs no more than 5-min data, then refined around the winner.
    let stride = (max_lag / 400).max(1);
    let mut peaks: Vec<(usize, f64)> = Vec::new();
    let mut prev = (acf(&x, 2), acf(&x, 2 + stride));
    let mut lag = 2 + 2 * stride;
    while lag <= max_lag {
        let cur = acf(&x, lag);
        if prev.1 > prev.0 && prev.1 >= cur {
            peaks.push((lag - stride, prev.1));
        }
        prev = (prev.1, cur);
        lag += stride;
    }
    // Multiples of a period correlate as well as the period itself: take the shortest peak
    // nearly as strong as the strongest.
    let top = peaks.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    let mut best = peaks.iter().copied().find(|p| p.1 >= top - 0.05).unwrap_or((0, f64::MIN));
    if stride > 1 && best.0 > 0 {
        let lo = best.0.saturating_sub(stride).max(2);
        for l in lo..=(best.0 + stride).min(max_lag) {
            let v = acf(&x, l);
            if v > best.1 {
                best = (l, v);
            }
        }
    }
    let daily_acf = if y.len() >= 2 * daily { acf(&x, daily) } else { f64::MIN };
    let (period, strength) = if daily_acf >= MIN_ACF && daily_acf >= best.1 - 0.1 {
        (daily, daily_acf)
    } else if best.1 >= MIN_ACF && y.len() >= 2 * best.0 {
        (best.0, best.1)
    } else {
        return none;
    };
    // Weekly: on the series centred on its overall mean (a one-day moving average would take
    // out the very weekday/weekend difference looked for).
    let weekly = period == daily && y.len() >= 14 * daily && {
        let fin: Vec<f64> = y.iter().copied().filter(|v| v.is_finite()).collect();
        let mean = fin.iter().sum::<f64>() / fin.len().max(1) as f64;
        let raw: Vec<f64> = y.iter().map(|v| if v.is_finite() { v - mean } else { 0.0 }).collect();
        let (d, w) = (acf(&raw, daily), acf(&raw, 7 * daily));
        w >= MIN_ACF && w > d + 0.05
    };
    Seasons { period: Some(period), weekly, strength }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, period: f64, weekly: bool, seed: u64) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|t| {
                let w = if weekly && (t / 288) % 7 >= 5 { 0.3 } else { 1.0 };
                (50.0 + 40.0 * (t as f64 / period * std::f64::consts::TAU).sin()) * w + 10.0 * rng.f64()
            })
            .collect()
    }

    #[test]
    fn finds_the_daily_cycle_at_5_min() {
        let s = detect(&series(288 * 5, 288.0, false, 1), 300);
        assert_eq!(s.period, Some(288));
        assert!(!s.weekly);
    }

    #[test]
    fn finds_a_weekly_cycle_with_two_weeks() {
        let s = detect(&series(288 * 21, 288.0, true, 2), 300);
        assert_eq!(s.period, Some(288));
        assert!(s.weekly, "{s:?}");
    }

    #[test]
    fn finds_an_odd_period() {
        let s = detect(&series(2000, 37.0, false, 3), 300);
        assert_eq!(s.period, Some(37), "{s:?}");
    }

    #[test]
    fn noise_has_no_season() {
        let mut rng = fastrand::Rng::with_seed(4);
        let y: Vec<f64> = (0..2000).map(|_| 100.0 + rng.f64()).collect();
        assert_eq!(detect(&y, 300).period, None);
    }
}
