//! Forecast scoring: every forecast point is kept until its minute has passed, then compared
//! with the actual count. Pure code: the forecast thread feeds it (`issue` once a minute, `observe`
//! each closed minute) and reads rolling summaries.
//!
//! Per horizon group — "5m" (points 1…5 minutes ahead) and "60m" (points 1…60 ahead), the
//! evaluation protocol's averaging — errors are accumulated into minute buckets for the last
//! hour and hour buckets for the last week, so a week of scores costs a few KiB per endpoint.
//! MASE divides the mean absolute error by the series' seasonal-naive MAE (given with each
//! forecast: the fit computes it).

use std::collections::VecDeque;

use serde::Serialize;

/// Horizon groups scored: points up to this many minutes ahead.
pub const HORIZONS: [usize; 2] = [5, 60];

/// Bins of the `actual ÷ hi80` histogram: log-spaced over [1/8, 8), 5 % wide.
const RATIO_BINS: usize = 86;
const RATIO_MIN: f64 = 0.125;
const RATIO_STEP: f64 = 1.05;

fn ratio_bin(r: f64) -> usize {
    if r <= RATIO_MIN {
        return 0;
    }
    ((r / RATIO_MIN).ln() / RATIO_STEP.ln()).floor().min((RATIO_BINS - 1) as f64) as usize
}

/// Upper edge of a bin.
fn ratio_edge(b: usize) -> f64 {
    RATIO_MIN * RATIO_STEP.powi(b as i32 + 1)
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    n: u64,
    abs: f64,
    scaled: f64,
    smape: f64,
    under: u64,
    in80: u64,
    in95: u64,
}

impl Sums {
    fn add(&mut self, o: &Sums) {
        self.n += o.n;
        self.abs += o.abs;
        self.scaled += o.scaled;
        self.smape += o.smape;
        self.under += o.under;
        self.in80 += o.in80;
        self.in95 += o.in95;
    }
}

/// One forecast as issued: points for the minutes `start`, `start + 1`, …
#[derive(Debug, Clone)]
struct Issued {
    start: u64,
    /// `(mean, lo80, hi80, lo95, hi95)` per minute, in calls per minute.
    points: Vec<[f64; 5]>,
    scale: f64,
}

/// A rolling summary.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Accuracy {
    pub points: u64,
    pub mase: Option<f64>,
    pub smape: Option<f64>,
    pub under_rate: Option<f64>,
    pub coverage80: Option<f64>,
    pub coverage95: Option<f64>,
}

impl From<Sums> for Accuracy {
    fn from(s: Sums) -> Self {
        let f = |v: f64| (s.n > 0).then(|| v / s.n as f64);
        Accuracy {
            points: s.n,
            mase: f(s.scaled),
            smape: f(s.smape),
            under_rate: f(s.under as f64),
            coverage80: f(s.in80 as f64),
            coverage95: f(s.in95 as f64),
        }
    }
}

/// Windows of one horizon group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HorizonAccuracy {
    pub horizon_minutes: usize,
    pub hour: Accuracy,
    pub day: Accuracy,
    pub week: Accuracy,
    /// Since the scorer started.
    pub all: Accuracy,
    /// Over the last day, what the upper 80 % band must be multiplied by to cover 80 % of
    /// actuals (> 1: it under-covers), and on how many points; 60-minute group only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub band_stretch80: Option<(f64, u64)>,
}

#[derive(Debug, Default)]
pub struct Scorer {
    issued: VecDeque<Issued>,
    /// `(minute, sums per horizon group)`, newest last, at most 60.
    minutes: VecDeque<(u64, [Sums; 2])>,
    /// `(hour, sums per horizon group)`, newest last, at most 168.
    hours: VecDeque<(u64, [Sums; 2])>,
    /// Everything scored since the start.
    all: [Sums; 2],
    /// `(hour, histogram of actual ÷ hi80)` for the 60-minute group, the last 24 hours.
    ratios: VecDeque<(u64, Box<[u32; RATIO_BINS]>)>,
    /// Minutes per index (0 is taken as 1): a replay of 5-minute data scores 5-minute buckets.
    step_min: u64,
}

impl Scorer {
    /// A scorer for buckets of `step_s` seconds (indices are epoch seconds ÷ `step_s`).
    pub fn with_step(step_s: u64) -> Self {
        Self { step_min: (step_s / 60).max(1), ..Self::default() }
    }

    fn step(&self) -> u64 {
        self.step_min.max(1)
    }

    /// Keeps a forecast whose first point is for bucket `start`. `points`: mean, lo80, hi80,
    /// lo95, hi95 per bucket (calls per bucket); `scale`: the MASE denominator.
    pub fn issue(&mut self, start: u64, points: Vec<[f64; 5]>, scale: f64) {
        if self.issued.back().is_some_and(|i| i.start >= start) {
            return;
        }
        self.issued.push_back(Issued { start, points, scale: if scale > 0.0 { scale } else { 1.0 } });
        // Forecasts whose every point has passed are no longer needed.
        while self.issued.len() as u64 > HORIZONS[1] as u64 / self.step() + 1 {
            self.issued.pop_front();
        }
    }

    /// Scores bucket `index`'s actual count against every kept forecast that covered it.
    pub fn observe(&mut self, index: u64, actual: f64) {
        self.observe_into(index, actual, None);
    }

    /// [`Self::observe`], also feeding each scored point to the endpoint's band calibration.
    pub fn observe_into(&mut self, index: u64, actual: f64, mut cal: Option<&mut super::conformal::Calibrator>) {
        if !actual.is_finite() {
            return;
        }
        let step = self.step();
        let mut sums = [Sums::default(); 2];
        let mut ratios: Vec<usize> = Vec::new();
        for f in &self.issued {
            let Some(h) = index.checked_sub(f.start).map(|d| d as usize + 1) else { continue };
            let Some(p) = f.points.get(h - 1) else { continue };
            let h = h * step as usize;
            if let Some(c) = cal.as_deref_mut() {
                c.observe((index + 1) * step, h as u64, *p, actual);
            }
            let [mean, lo80, hi80, lo95, hi95] = *p;
            let err = (actual - mean).abs();
            let one = Sums {
                n: 1,
                abs: err,
                scaled: err / f.scale,
                smape: if actual == 0.0 && mean == 0.0 { 0.0 } else { 200.0 * err / (actual.abs() + mean.abs()) },
                under: (actual > 1.2 * mean) as u64,
                in80: (lo80 <= actual && actual <= hi80) as u64,
                in95: (lo95 <= actual && actual <= hi95) as u64,
            };
            for (g, max_h) in HORIZONS.iter().enumerate() {
                if h <= *max_h {
                    sums[g].add(&one);
                }
            }
            if h <= HORIZONS[1] && (hi80 > 0.0 || actual > 0.0) {
                ratios.push(ratio_bin(if hi80 > 0.0 { actual / hi80 } else { f64::INFINITY }));
            }
        }
        let minute = index * step;
        if self.minutes.back().is_some_and(|m| m.0 >= minute) {
            return;
        }
        for (all, new) in self.all.iter_mut().zip(&sums) {
            all.add(new);
        }
        self.minutes.push_back((minute, sums));
        while self.minutes.len() > 60 {
            self.minutes.pop_front();
        }
        let hour = minute / 60;
        if !ratios.is_empty() {
            if self.ratios.back().is_none_or(|r| r.0 != hour) {
                self.ratios.push_back((hour, Box::new([0; RATIO_BINS])));
                while self.ratios.len() > 24 {
                    self.ratios.pop_front();
                }
            }
            let h = &mut self.ratios.back_mut().expect("just pushed").1;
            for b in ratios {
                h[b] += 1;
            }
        }
        match self.hours.back_mut() {
            Some((h, s)) if *h == hour => {
                for g in 0..2 {
                    s[g].add(&sums[g]);
                }
            }
            _ => self.hours.push_back((hour, sums)),
        }
        while self.hours.len() > 168 {
            self.hours.pop_front();
        }
    }

    /// Over the last 24 hours before index `now`, the `q` quantile of actual ÷ upper 80 % band
    /// (60-minute group) — what the band must be multiplied by to cover a fraction `q` — and
    /// the number of points it is based on. Resolution 5 %, rounded up.
    pub fn band_ratio_quantile(&self, q: f64, now: u64) -> Option<(f64, u64)> {
        let hour = now * self.step() / 60;
        let mut h = [0u64; RATIO_BINS];
        for (_, r) in self.ratios.iter().filter(|r| r.0 + 24 > hour) {
            h.iter_mut().zip(r.iter()).for_each(|(a, b)| *a += *b as u64);
        }
        let n: u64 = h.iter().sum();
        if n == 0 {
            return None;
        }
        let want = (q * n as f64).ceil() as u64;
        let mut seen = 0;
        for (b, c) in h.iter().enumerate() {
            seen += c;
            if seen >= want {
                return Some((ratio_edge(b), n));
            }
        }
        Some((ratio_edge(RATIO_BINS - 1), n))
    }

    /// Summaries as of index `now`: last 60 minutes, last 24 hours, last 7 days, and
    /// everything since the start.
    pub fn summary(&self, now: u64) -> Vec<HorizonAccuracy> {
        let now = now * self.step();
        HORIZONS
            .iter()
            .enumerate()
            .map(|(g, h)| {
                let total = |it: &mut dyn Iterator<Item = Sums>| {
                    let mut s = Sums::default();
                    it.for_each(|x| s.add(&x));
                    s
                };
                let hour = total(&mut self.minutes.iter().filter(|m| m.0 + 60 > now).map(|m| m.1[g]));
                let day = total(&mut self.hours.iter().filter(|x| (x.0 + 24) * 60 > now).map(|x| x.1[g]));
                let week = total(&mut self.hours.iter().map(|x| x.1[g]));
                HorizonAccuracy {
                    horizon_minutes: *h,
                    hour: hour.into(),
                    day: day.into(),
                    week: week.into(),
                    all: self.all[g].into(),
                    band_stretch80: if g == 1 { self.band_ratio_quantile(0.8, now / self.step()) } else { None },
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_match_hand_computed_values() {
        let mut s = Scorer::default();
        // Issued at minute 100 for minutes 100..102: means 10, 20, 30; bands ±5 (80 %), ±10 (95 %).
        let pts = |m: [f64; 3]| m.iter().map(|v| [*v, v - 5.0, v + 5.0, v - 10.0, v + 10.0]).collect();
        s.issue(100, pts([10.0, 20.0, 30.0]), 2.0);
        // Issued at minute 101 for 101..103: 22, 28, 40.
        s.issue(101, pts([22.0, 28.0, 40.0]), 4.0);
        s.observe(100, 14.0); // vs 10 (h1): err 4, scaled 2, smape 200·4/24, under (14 > 12), in80, in95
        s.observe(101, 27.0); // vs 20 (h2): err 7, scaled 3.5, under (27 > 24), out80, in95
        //                      vs 22 (h1): err 5, scaled 1.25, under (27 > 26.4), in80 (edge), in95
        let sum = s.summary(101);
        let five = &sum[0];
        assert_eq!(five.horizon_minutes, 5);
        assert_eq!(five.hour.points, 3);
        let mase = (2.0 + 3.5 + 1.25) / 3.0;
        assert!((five.hour.mase.unwrap() - mase).abs() < 1e-12, "{:?}", five.hour);
        let smape = (200.0 * 4.0 / 24.0 + 200.0 * 7.0 / 47.0 + 200.0 * 5.0 / 49.0) / 3.0;
        assert!((five.hour.smape.unwrap() - smape).abs() < 1e-9);
        assert_eq!(five.hour.under_rate, Some(1.0));
        assert!((five.hour.coverage80.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(five.hour.coverage95, Some(1.0));
        // The day and week windows hold the same points; an hour later the hour window is empty.
        assert_eq!(five.day, five.hour);
        assert_eq!(s.summary(101 + 60)[0].hour.points, 0);
        assert_eq!(s.summary(101 + 60)[0].week.points, 3);
        assert_eq!(s.summary(101 + 60)[0].all.points, 3);
    }

    #[test]
    fn band_ratio_quantile_says_how_far_the_band_must_stretch() {
        // hi80 is 100 for every minute; actuals rise evenly from 50 to 148.
        let mut one = Scorer::default();
        one.issue(0, vec![[80.0, 60.0, 100.0, 50.0, 120.0]; 100], 1.0);
        for m in 0..60u64 {
            one.observe(m, 50.0 + m as f64 * 100.0 / 60.0);
        }
        let (r80, n) = one.band_ratio_quantile(0.8, 59).unwrap();
        assert_eq!(n, 60);
        // The 80th percentile of actual/100 is 1.283 (the 48th of 60); 5 % bins, rounded up.
        assert!((1.283..1.283 * 1.05).contains(&r80), "{r80}");
        let (r50, _) = one.band_ratio_quantile(0.5, 59).unwrap();
        assert!((0.983..0.983 * 1.05).contains(&r50), "{r50}");
        // A day later the ratios have aged out.
        assert_eq!(one.band_ratio_quantile(0.8, 59 + 24 * 60), None);
        assert_eq!(Scorer::default().band_ratio_quantile(0.8, 0), None, "nothing observed");
    }

    #[test]
    fn coarser_buckets_score_by_minutes_ahead() {
        // 5-minute buckets: point 1 is 5 minutes ahead (in the 5m group), point 2 is 10.
        let mut s = Scorer::with_step(300);
        s.issue(10, vec![[10.0, 8.0, 12.0, 5.0, 15.0]; 12], 1.0);
        s.observe(10, 11.0);
        s.observe(11, 13.0);
        let sum = s.summary(11);
        assert_eq!(sum[0].hour.points, 1);
        assert_eq!(sum[1].hour.points, 2);
        assert_eq!(sum[1].hour.mase, Some(2.0));
        // Twelve buckets later (an hour) the hour window is empty, the whole-run total is not.
        assert_eq!(s.summary(11 + 12)[1].hour.points, 0);
        assert_eq!(s.summary(11 + 12)[1].all.points, 2);
    }

    #[test]
    fn horizon_groups_split_by_distance() {
        let mut s = Scorer::default();
        s.issue(0, (0..60).map(|_| [10.0, 8.0, 12.0, 5.0, 15.0]).collect(), 1.0);
        for m in 0..60 {
            s.observe(m, 10.0);
        }
        let sum = s.summary(59);
        assert_eq!(sum[0].hour.points, 5, "points 1..5 ahead");
        assert_eq!(sum[1].hour.points, 60);
        assert_eq!(sum[1].hour.mase, Some(0.0));
        assert_eq!(sum[1].all, sum[1].hour);
        // Missing minutes are not scored.
        s.observe(60, f64::NAN);
        assert_eq!(s.summary(60)[1].week.points, 60);
    }
}
