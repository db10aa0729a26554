//! Double-seasonal Holt–Winters (Taylor, 2003): damped additive trend, an additive daily and an
//! additive weekly seasonal term, in error-correction form. Traffic has both cycles (weekends
//! differ from weekdays); a single daily season forecasts every Saturday like a Friday.
//!
//! ŷ = l + φb + d[t mod m₁] + w[t mod m₂]; with e = y − ŷ:
//! l ← l + φb + αe, b ← φb + βe, d ← d + γe, w ← w + δe.
//! Initial state from the first two weeks; parameters by bounded Nelder–Mead on one-step SSE.

use super::optimize::minimize;
use super::{ErrorQuantiles, Forecast, ForecastError, empirical_bands};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DshwSpec {
    /// Daily period in steps.
    pub daily: usize,
    /// Weekly period in steps (a multiple of `daily`).
    pub weekly: usize,
    pub horizon: usize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DshwParams {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub delta: f64,
    pub phi: f64,
}

#[derive(Debug, Clone)]
pub struct DshwFit {
    pub params: DshwParams,
    spec: DshwSpec,
    level: f64,
    trend: f64,
    day: Vec<f64>,
    week: Vec<f64>,
    n: usize,
    bands: ErrorQuantiles,
}

struct State {
    level: f64,
    trend: f64,
    day: Vec<f64>,
    week: Vec<f64>,
}

fn mean_finite(s: &[f64]) -> f64 {
    let (sum, n) = s.iter().filter(|v| v.is_finite()).fold((0.0, 0usize), |(a, n), v| (a + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn init(y: &[f64], m1: usize, m2: usize) -> State {
    let w0 = mean_finite(&y[..m2]);
    let w1 = mean_finite(&y[m2..2 * m2]);
    let trend = (w1 - w0) / m2 as f64;
    let level = w0 - trend * (m2 as f64 - 1.0) / 2.0;
    // Daily profile: average over the first two weeks of deviations from the weekly mean.
    let mut day = vec![0.0; m1];
    let mut counts = vec![0usize; m1];
    for (t, v) in y[..2 * m2].iter().enumerate() {
        if v.is_finite() {
            let base = if t < m2 { w0 } else { w1 };
            day[t % m1] += v - base;
            counts[t % m1] += 1;
        }
    }
    day.iter_mut().zip(&counts).for_each(|(d, c)| *d /= (*c).max(1) as f64);
    let dm = day.iter().sum::<f64>() / m1 as f64;
    day.iter_mut().for_each(|d| *d -= dm);
    // Weekly term: what the daily profile leaves, per phase of the week.
    let mut week = vec![0.0; m2];
    let mut wc = vec![0usize; m2];
    for (t, v) in y[..2 * m2].iter().enumerate() {
        if v.is_finite() {
            let base = if t < m2 { w0 } else { w1 };
            week[t % m2] += v - base - day[t % m1];
            wc[t % m2] += 1;
        }
    }
    week.iter_mut().zip(&wc).for_each(|(w, c)| *w /= (*c).max(1) as f64);
    let wm = week.iter().sum::<f64>() / m2 as f64;
    week.iter_mut().for_each(|w| *w -= wm);
    State { level, trend, day, week }
}

fn filter(y: &[f64], spec: &DshwSpec, p: &DshwParams, mut each: impl FnMut(usize, &State)) -> (State, f64) {
    let (m1, m2) = (spec.daily, spec.weekly);
    let mut st = init(y, m1, m2);
    let mut sse = 0.0;
    for (t, &v) in y.iter().enumerate() {
        each(t, &st);
        sse += st.step(p, t % m1, t % m2, v);
    }
    (st, sse)
}

impl State {
    /// Takes observation `v` (NaN = missing) at daily phase `i`, weekly phase `j`; returns the
    /// squared one-step error.
    fn step(&mut self, p: &DshwParams, i: usize, j: usize, v: f64) -> f64 {
        let fc = self.level + p.phi * self.trend + self.day[i] + self.week[j];
        if !v.is_finite() {
            self.level += p.phi * self.trend;
            self.trend *= p.phi;
            return 0.0;
        }
        let e = v - fc;
        self.level += p.phi * self.trend + p.alpha * e;
        self.trend = p.phi * self.trend + p.beta * e;
        self.day[i] += p.gamma * e;
        self.week[j] += p.delta * e;
        e * e
    }
}

fn damp_sum(phi: f64, h: usize) -> f64 {
    if (phi - 1.0).abs() < 1e-12 { h as f64 } else { phi * (1.0 - phi.powi(h as i32)) / (1.0 - phi) }
}

fn params(x: &[f64]) -> DshwParams {
    DshwParams { alpha: x[0], beta: x[1] * x[0], gamma: x[2], delta: x[3], phi: x[4] }
}

impl DshwSpec {
    /// Two full weeks plus a little.
    pub fn min_points(&self) -> usize {
        2 * self.weekly + 10
    }

    pub fn fit(&self, y: &[f64]) -> Result<DshwFit, ForecastError> {
        self.check(y)?;
        let mut obj = |x: &[f64]| filter(y, self, &params(x), |_, _| {}).1;
        let (x, _) = minimize(
            &mut obj,
            &[0.2, 0.05, 0.1, 0.1, 0.95],
            &[0.001, 0.0, 0.0, 0.0, 0.8],
            &[0.999, 1.0, 0.9, 0.9, 0.98],
            400,
            1e-7,
        );
        self.refilter(params(&x), y)
    }

    pub fn refilter(&self, p: DshwParams, y: &[f64]) -> Result<DshwFit, ForecastError> {
        self.check(y)?;
        let h = self.horizon.max(1);
        let window = (y.len() - 2 * self.weekly).min(4 * self.daily.max(288));
        let from = y.len() - window;
        let mut preds: Vec<(usize, Vec<f64>)> = Vec::new();
        let (st, _) = filter(y, self, &p, |t, s| {
            if t >= from && t + 1 < y.len() && (t - from).is_multiple_of(2) {
                let k = h.min(y.len() - t);
                preds.push((t, (1..=k).map(|j| forecast_at(s, &p, self, t, j)).collect()));
            }
        });
        let bands = empirical_bands(y, &preds, h);
        Ok(DshwFit {
            params: p,
            spec: *self,
            level: st.level,
            trend: st.trend,
            day: st.day,
            week: st.week,
            n: y.len(),
            bands,
        })
    }

    fn check(&self, y: &[f64]) -> Result<(), ForecastError> {
        if self.daily < 2 || self.weekly < 2 * self.daily || !self.weekly.is_multiple_of(self.daily) {
            return Err(ForecastError::BadSpec("weekly period must be a multiple of the daily one"));
        }
        let have = y.iter().filter(|v| v.is_finite()).count();
        if y.len() < self.min_points() || have < self.min_points() / 2 {
            return Err(ForecastError::NotEnoughData { need: self.min_points(), have });
        }
        Ok(())
    }
}

/// `j`-step forecast from the state before point `t`.
fn forecast_at(s: &State, p: &DshwParams, spec: &DshwSpec, t: usize, j: usize) -> f64 {
    let k = t + j - 1;
    s.level + damp_sum(p.phi, j) * s.trend + s.day[k % spec.daily] + s.week[k % spec.weekly]
}

impl DshwFit {
    /// Takes one new observation into the state (O(1); NaN = missing).
    pub fn update(&mut self, v: f64) {
        let (i, j) = (self.n % self.spec.daily, self.n % self.spec.weekly);
        self.n += 1;
        let mut st = State {
            level: self.level,
            trend: self.trend,
            day: std::mem::take(&mut self.day),
            week: std::mem::take(&mut self.week),
        };
        st.step(&self.params, i, j, v);
        (self.level, self.trend, self.day, self.week) = (st.level, st.trend, st.day, st.week);
    }

    pub fn mean(&self, h: usize) -> Vec<f64> {
        (1..=h)
            .map(|j| {
                let k = self.n + j - 1;
                self.level
                    + damp_sum(self.params.phi, j) * self.trend
                    + self.day[k % self.spec.daily]
                    + self.week[k % self.spec.weekly]
            })
            .collect()
    }

    pub fn predict(&self, h: usize) -> Forecast {
        Forecast::with_bands(self.mean(h), &self.bands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_weekly_pattern_a_daily_model_cannot() {
        // 24 steps a day, weekends at 40 % of weekdays.
        let (m1, m2) = (24, 168);
        let mut rng = fastrand::Rng::with_seed(2);
        let y: Vec<f64> = (0..m2 * 6 + 48)
            .map(|t| {
                let day = 50.0 + 30.0 * (t as f64 / m1 as f64 * std::f64::consts::TAU).sin();
                let weekend = (t / m1) % 7 >= 5;
                day * if weekend { 0.4 } else { 1.0 } + rng.f64()
            })
            .collect();
        // Forecast the first 24 steps of a Saturday from the end of Friday.
        let cut = m2 * 5 + 5 * m1;
        let f = DshwSpec { daily: m1, weekly: m2, horizon: 24 }.fit(&y[..cut]).unwrap().predict(24);
        let d = super::super::hw::HwSpec::additive(m1, 24).fit(&y[..cut]).unwrap().predict(24);
        let mae = |p: &[f64]| p.iter().zip(&y[cut..cut + 24]).map(|(a, b)| (a - b).abs()).sum::<f64>() / 24.0;
        assert!(mae(&f.mean) < 0.5 * mae(&d.mean), "double {} vs daily {}", mae(&f.mean), mae(&d.mean));
        assert!(mae(&f.mean) < 3.0, "{}", mae(&f.mean));
    }

    #[test]
    fn needs_two_weeks() {
        let e = DshwSpec { daily: 24, weekly: 168, horizon: 6 }.fit(&[1.0; 200]).unwrap_err();
        assert_eq!(e, ForecastError::NotEnoughData { need: 346, have: 200 });
    }

    #[test]
    fn updates_match_a_refilter() {
        let (m1, m2) = (12, 84);
        let y: Vec<f64> = (0..m2 * 4).map(|t| 50.0 + 20.0 * (t as f64 / m1 as f64).sin() + (t % 5) as f64).collect();
        let spec = DshwSpec { daily: m1, weekly: m2, horizon: 6 };
        let mut fit = spec.fit(&y[..m2 * 3]).unwrap();
        for &v in &y[m2 * 3..] {
            fit.update(v);
        }
        let again = spec.refilter(fit.params, &y).unwrap();
        for (a, b) in fit.mean(6).iter().zip(again.mean(6)) {
            assert!((a - b).abs() < 1e-9, "{a} vs {b}");
        }
    }
}
