//! Holt–Winters: additive damped trend, additive seasonality of any period (1,440 at 1-min
//! data is fine: the state is one array, each step O(1)). Parameters (α, β, γ, φ) minimise the
//! one-step squared error with a bounded Nelder–Mead; the initial state comes from the first two
//! seasons. Missing points (NaN) are skipped: the state moves on without correcting.
//!
//! Prediction intervals are empirical: the model is run over the last days of its training data,
//! forecasting 1…H steps from every point; the errors, scaled by the forecast's size (traffic is
//! heteroscedastic — noisier when busier), give per-horizon quantiles.

use super::optimize::minimize;
use super::{ErrorQuantiles, Forecast, ForecastError, empirical_bands};

/// What to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HwSpec {
    pub period: usize,
    /// Longest horizon intervals are calibrated for.
    pub horizon: usize,
}

/// Smoothing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HwParams {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
}

/// A fitted model: parameters, the state after the last point, interval quantiles.
#[derive(Debug, Clone)]
pub struct HwFit {
    pub params: HwParams,
    pub period: usize,
    level: f64,
    trend: f64,
    /// Seasonal terms by phase (`t % period`).
    season: Vec<f64>,
    /// Number of points filtered (the next point's index).
    n: usize,
    bands: ErrorQuantiles,
    pub sse: f64,
}

struct State {
    level: f64,
    trend: f64,
    season: Vec<f64>,
}

fn init(y: &[f64], m: usize) -> State {
    let mean = |s: &[f64]| {
        let v: Vec<f64> = s.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 }
    };
    let seasons = (y.len() / m).clamp(1, 3);
    let means: Vec<f64> = (0..seasons).map(|k| mean(&y[k * m..(k + 1) * m])).collect();
    let trend = if seasons >= 2 { (means[seasons - 1] - means[0]) / ((seasons - 1) * m) as f64 } else { 0.0 };
    let mut season = vec![0.0; m];
    for (i, s) in season.iter_mut().enumerate() {
        let mut acc = 0.0;
        let mut k_n = 0;
        for (k, mk) in means.iter().enumerate() {
            let v = y[k * m + i];
            if v.is_finite() {
                // Remove the within-season trend so it is not mistaken for seasonality.
                acc += v - (mk + trend * (i as f64 - (m as f64 - 1.0) / 2.0));
                k_n += 1;
            }
        }
        *s = if k_n > 0 { acc / k_n as f64 } else { 0.0 };
    }
    let avg = season.iter().sum::<f64>() / m as f64;
    season.iter_mut().for_each(|s| *s -= avg);
    State { level: means[0] - trend * (m as f64 - 1.0) / 2.0, trend, season }
}

/// Runs the recursions over `y`; returns the final state and the sum of squared one-step
/// errors. `each(t, level, trend, season)` sees the state *before* point `t`.
fn filter(y: &[f64], m: usize, p: &HwParams, each: impl FnMut(usize, f64, f64, &[f64])) -> (State, f64) {
    filter_from(init(y, m), y, m, p, each)
}

fn filter_from(
    mut st: State,
    y: &[f64],
    m: usize,
    p: &HwParams,
    mut each: impl FnMut(usize, f64, f64, &[f64]),
) -> (State, f64) {
    let mut sse = 0.0;
    let HwParams { alpha, beta, gamma, phi } = *p;
    for (t, &v) in y.iter().enumerate() {
        each(t, st.level, st.trend, &st.season);
        let i = t % m;
        let (l, b, s) = (st.level, st.trend, st.season[i]);
        if !v.is_finite() {
            st.level = l + phi * b;
            st.trend = phi * b;
            continue;
        }
        let e = v - (l + phi * b + s);
        sse += e * e;
        let nl = alpha * (v - s) + (1.0 - alpha) * (l + phi * b);
        st.trend = beta * (nl - l) + (1.0 - beta) * phi * b;
        st.season[i] = gamma * (v - l - phi * b) + (1.0 - gamma) * s;
        st.level = nl;
    }
    (st, sse)
}

/// Sum φ + φ² + … + φ^h.
fn damp_sum(phi: f64, h: usize) -> f64 {
    if (phi - 1.0).abs() < 1e-12 { h as f64 } else { phi * (1.0 - phi.powi(h as i32)) / (1.0 - phi) }
}

impl HwSpec {
    /// Points needed: two full seasons plus a little.
    pub fn min_points(&self) -> usize {
        2 * self.period + 10
    }

    /// Estimates the parameters on `y`, then filters.
    pub fn fit(&self, y: &[f64]) -> Result<HwFit, ForecastError> {
        self.check(y)?;
        let m = self.period;
        let mut obj = |x: &[f64]| {
            let p = HwParams { alpha: x[0], beta: x[1] * x[0], gamma: x[2] * (1.0 - x[0]), phi: x[3] };
            filter(y, m, &p, |_, _, _, _| {}).1
        };
        // β ≤ α and γ ≤ 1 − α (the usual admissible region) through the parametrisation.
        let (x, _) =
            minimize(&mut obj, &[0.3, 0.1, 0.1, 0.95], &[0.001, 0.0, 0.0, 0.8], &[0.999, 1.0, 1.0, 0.98], 300, 1e-7);
        let params = HwParams { alpha: x[0], beta: x[1] * x[0], gamma: x[2] * (1.0 - x[0]), phi: x[3] };
        self.refilter(params, y)
    }

    /// Keeps `params` and re-runs the state over `y` (the cheap update between refits).
    pub fn refilter(&self, params: HwParams, y: &[f64]) -> Result<HwFit, ForecastError> {
        self.check(y)?;
        let m = self.period;
        let h = self.horizon.max(1);
        // Forecasts made inside the calibration window, checked against what followed.
        let window = (y.len() - 2 * m).min(7 * 1440).min(4 * m.max(288));
        let from = y.len() - window;
        let mut preds: Vec<(usize, Vec<f64>)> = Vec::new();
        let (st, sse) = filter(y, m, &params, |t, l, b, s| {
            if t >= from && t + 1 < y.len() && (t - from).is_multiple_of(2) {
                let k = h.min(y.len() - t);
                preds.push((t, (1..=k).map(|j| l + damp_sum(params.phi, j) * b + s[(t + j - 1) % m]).collect()));
            }
        });
        let bands = empirical_bands(y, &preds, h);
        Ok(HwFit { params, period: m, level: st.level, trend: st.trend, season: st.season, n: y.len(), bands, sse })
    }

    fn check(&self, y: &[f64]) -> Result<(), ForecastError> {
        if self.period < 2 {
            return Err(ForecastError::BadSpec("season period must be at least 2"));
        }
        let have = y.iter().filter(|v| v.is_finite()).count();
        if y.len() < self.min_points() || have < self.min_points() / 2 {
            return Err(ForecastError::NotEnoughData { need: self.min_points(), have });
        }
        Ok(())
    }
}

impl HwFit {
    /// Runs the recursions from a given initial state (no estimation, no bands): for checking
    /// the equations against other implementations.
    pub fn from_state(params: HwParams, level: f64, trend: f64, season: Vec<f64>, y: &[f64]) -> Self {
        let period = season.len();
        let (st, sse) = filter_from(State { level, trend, season }, y, period, &params, |_, _, _, _| {});
        HwFit {
            params,
            period,
            level: st.level,
            trend: st.trend,
            season: st.season,
            n: y.len(),
            bands: ErrorQuantiles::default(),
            sse,
        }
    }

    /// Takes one new observation into the state (O(1); NaN = missing). Parameters and band
    /// quantiles stay until the next refit.
    pub fn update(&mut self, v: f64) {
        let HwParams { alpha, beta, gamma, phi } = self.params;
        let i = self.n % self.period;
        let (l, b, s) = (self.level, self.trend, self.season[i]);
        self.n += 1;
        if !v.is_finite() {
            self.level = l + phi * b;
            self.trend = phi * b;
            return;
        }
        let nl = alpha * (v - s) + (1.0 - alpha) * (l + phi * b);
        self.trend = beta * (nl - l) + (1.0 - beta) * phi * b;
        self.season[i] = gamma * (v - l - phi * b) + (1.0 - gamma) * s;
        self.level = nl;
    }

    /// Forecast for the next `h` points with 80 % and 95 % bands, clipped at zero.
    pub fn predict(&self, h: usize) -> Forecast {
        let mean: Vec<f64> = (1..=h)
            .map(|j| {
                self.level + damp_sum(self.params.phi, j) * self.trend + self.season[(self.n + j - 1) % self.period]
            })
            .collect();
        Forecast::with_bands(mean, &self.bands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(n: usize, m: usize, noise: f64, seed: u64) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..n)
            .map(|t| {
                let s = 20.0 * (t as f64 / m as f64 * std::f64::consts::TAU).sin();
                // Gaussian noise (Box–Muller) with standard deviation `noise`.
                let g = (-2.0 * (1.0 - rng.f64()).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos();
                100.0 + 0.01 * t as f64 + s + noise * g
            })
            .collect()
    }

    #[test]
    fn forecasts_a_clean_seasonal_series() {
        let m = 48;
        let y = synthetic(48 * 20, m, 0.0, 1);
        let spec = HwSpec { period: m, horizon: 24 };
        let fit = spec.fit(&y).unwrap();
        let truth = synthetic(48 * 20 + 24, m, 0.0, 1);
        let f = fit.predict(24);
        for (j, v) in f.mean.iter().enumerate() {
            assert!((v - truth[48 * 20 + j]).abs() < 1.0, "h={j}: {v} vs {}", truth[48 * 20 + j]);
        }
    }

    #[test]
    fn intervals_cover_known_noise() {
        let m = 24;
        let (n, h) = (24 * 60, 6);
        let mut hits = [0usize; 2];
        let mut total = 0;
        for seed in 0..40 {
            let y = synthetic(n + h, m, 4.0, seed);
            let fit = HwSpec { period: m, horizon: h }.fit(&y[..n]).unwrap();
            let f = fit.predict(h);
            for j in 0..h {
                let v = y[n + j];
                hits[0] += (f.lo80[j] <= v && v <= f.hi80[j]) as usize;
                hits[1] += (f.lo95[j] <= v && v <= f.hi95[j]) as usize;
                total += 1;
            }
        }
        let (c80, c95) = (hits[0] as f64 / total as f64, hits[1] as f64 / total as f64);
        assert!((0.65..=0.92).contains(&c80), "80 % band covered {c80}");
        assert!((0.85..=1.0).contains(&c95), "95 % band covered {c95}");
    }

    /// Reference values computed once with statsmodels 0.15.0 (pip-installed):
    /// `ExponentialSmoothing(y, trend="add", damped_trend=True, seasonal="add",
    /// seasonal_periods=12, initialization_method="known", initial_level=100, initial_trend=0.5,
    /// initial_seasonal=[10 sin(2πi/12)]).fit(smoothing_level=0.3, smoothing_trend=0.1,
    /// smoothing_seasonal=0.2, damping_trend=0.9, optimized=False)` on
    /// `y = 100 + 0.5t + 10 sin(2πt/12) + round(3 cos 7t, 3)`, t = 0‥95.
    #[test]
    fn recursions_match_statsmodels() {
        let m = 12;
        let y: Vec<f64> = (0..96)
            .map(|t| {
                let t = t as f64;
                let noise = ((3.0 * (7.0 * t).cos()) * 1000.0).round() / 1000.0;
                100.0 + 0.5 * t + 10.0 * (std::f64::consts::TAU * t / m as f64).sin() + noise
            })
            .collect();
        let season: Vec<f64> = (0..m).map(|i| 10.0 * (std::f64::consts::TAU * i as f64 / m as f64).sin()).collect();
        let p = HwParams { alpha: 0.3, beta: 0.1, gamma: 0.2, phi: 0.9 };
        let fit = HwFit::from_state(p, 100.0, 0.5, season, &y);
        let want = [
            146.545372328,
            151.985414371,
            156.074544196,
            157.720817541,
            156.506543943,
            152.814218038,
            147.719080164,
            142.68011509,
            139.123071957,
            138.03840277,
            139.715285183,
            142.844429787,
        ];
        // The in-sample recursions agree exactly: SSE and final level and trend.
        assert!((fit.sse - 685.058043).abs() < 1e-4, "sse {}", fit.sse);
        assert!((fit.level - 145.36550974628668).abs() < 1e-9, "level {}", fit.level);
        assert!((fit.trend - 0.26166066667110777).abs() < 1e-9, "trend {}", fit.trend);
        // Forecasts agree for h < m. At h = m statsmodels uses the seasonal term of one season
        // earlier (s_{t−m}); we use the textbook s_{t+h−m} = s_t, the one just updated.
        let got = fit.predict(12).mean;
        for (g, w) in got.iter().zip(want).take(m - 1) {
            assert!((g - w).abs() < 1e-6, "{got:?}");
        }
        assert!((got[m - 1] - (want[m - 1] + (-3.37623111 - -4.21091965))).abs() < 1e-6, "{got:?}");
    }

    #[test]
    fn incremental_updates_match_a_refilter() {
        let m = 24;
        let y = synthetic(24 * 30, m, 3.0, 9);
        let spec = HwSpec { period: m, horizon: 6 };
        let mut fit = spec.fit(&y[..24 * 25]).unwrap();
        for &v in &y[24 * 25..] {
            fit.update(v);
        }
        let again = spec.refilter(fit.params, &y).unwrap();
        let (a, b) = (fit.predict(6).mean, again.predict(6).mean);
        for (x, z) in a.iter().zip(&b) {
            assert!((x - z).abs() < 1e-9, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn too_little_data_is_a_typed_error() {
        let e = HwSpec { period: 1440, horizon: 60 }.fit(&[1.0; 100]).unwrap_err();
        assert_eq!(e, ForecastError::NotEnoughData { need: 2890, have: 100 });
    }

    #[test]
    fn missing_points_are_skipped() {
        let m = 48;
        let mut y = synthetic(48 * 20, m, 0.0, 3);
        for v in &mut y[500..560] {
            *v = f64::NAN;
        }
        let fit = HwSpec { period: m, horizon: 12 }.fit(&y).unwrap();
        let truth = synthetic(48 * 20 + 12, m, 0.0, 3);
        let f = fit.predict(12);
        assert!(f.mean.iter().enumerate().all(|(j, v)| (v - truth[48 * 20 + j]).abs() < 2.0), "{:?}", f.mean);
    }
}
