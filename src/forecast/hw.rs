//! Holt–Winters (exponential smoothing): additive damped trend with additive, multiplicative or
//! no seasonality (the last is Holt's linear method). Seasons of any period — 1,440 at 1-min
//! data is fine: the state is one array and each step is O(1). Parameters (α, β, γ, φ) minimise
//! the one-step squared error with a bounded Nelder–Mead; the initial state comes from the first
//! seasons. Missing points (NaN) are skipped: the state moves on without correcting.
//!
//! Robustness, on by default (`robust`): an error beyond seven times the running mean absolute
//! error (seven, not three: real traffic is bursty) is clipped before it updates the state, so
//! one spike does not leave a ghost in the seasonal profile a day later; a run of clipped errors of one sign is a level shift, and the
//! level jumps by the run's mean error instead of crawling there.
//!
//! Prediction intervals are empirical: the model is run over the last days of its training data,
//! forecasting 1…H steps from every other point; the errors, scaled by the forecast's size
//! (traffic is noisier when busier), give per-horizon quantiles.

use super::optimize::minimize;
use super::{ErrorQuantiles, Forecast, ForecastError, empirical_bands};

/// The seasonal component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seasonality {
    Additive,
    /// Seasonal factors multiply the level; needs every value > 0.
    Multiplicative,
    /// Holt's linear (damped) trend, no season.
    None,
}

/// What to fit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HwSpec {
    pub period: usize,
    /// Longest horizon intervals are calibrated for.
    pub horizon: usize,
    pub seasonality: Seasonality,
    /// Clip outlying errors and jump level shifts (see the module doc).
    pub robust: bool,
}

impl HwSpec {
    /// Additive seasonality of `period`, robust.
    pub fn additive(period: usize, horizon: usize) -> Self {
        Self { period, horizon, seasonality: Seasonality::Additive, robust: true }
    }
    pub fn multiplicative(period: usize, horizon: usize) -> Self {
        Self { period, horizon, seasonality: Seasonality::Multiplicative, robust: true }
    }
    /// Holt's damped trend without season.
    pub fn holt(horizon: usize) -> Self {
        Self { period: 1, horizon, seasonality: Seasonality::None, robust: true }
    }
}

/// Smoothing parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HwParams {
    pub alpha: f64,
    pub beta: f64,
    pub gamma: f64,
    pub phi: f64,
}

/// The recursion's state plus the robustness tracker; one `step` per observation.
#[derive(Debug, Clone)]
struct State {
    level: f64,
    trend: f64,
    /// Seasonal terms by phase (`t % period`); all 0 (additive) or 1 (multiplicative) without a
    /// season.
    season: Vec<f64>,
    /// Phase of the next point (`n % period`, kept incrementally: no division per step).
    phase: usize,
    /// Running mean absolute one-step error (NaN until warmed up).
    mae: f64,
    warm_sum: f64,
    warm_n: usize,
    /// Current run of clipped errors of one sign: length and sum of raw errors.
    run: usize,
    run_sum: f64,
    level_shifts: usize,
}

const ADD: u8 = 0;
const MUL: u8 = 1;
const NONE: u8 = 2;

/// Running-MAE weight; clipping threshold in running MAEs; warm-up points.
const MAE_W: f64 = 0.02;
const CLIP: f64 = 7.0;
const WARM: usize = 60;

impl State {
    fn new(level: f64, trend: f64, season: Vec<f64>) -> Self {
        Self {
            level,
            trend,
            season,
            phase: 0,
            mae: f64::NAN,
            warm_sum: 0.0,
            warm_n: 0,
            run: 0,
            run_sum: 0.0,
            level_shifts: 0,
        }
    }

    /// Forecasts 1…`damp.len()` steps ahead; `damp[j − 1]` = φ + … + φʲ.
    fn means(&self, kind: Seasonality, damp: &[f64]) -> Vec<f64> {
        let m = self.season.len();
        let mut i = self.phase;
        damp.iter()
            .map(|d| {
                let s = self.season[i];
                i = if i + 1 == m { 0 } else { i + 1 };
                let base = self.level + d * self.trend;
                if kind == Seasonality::Multiplicative { base * s } else { base + s }
            })
            .collect()
    }

    /// Takes observation `v` (NaN = missing); returns the squared (clipped) one-step error.
    fn step(&mut self, v: f64, kind: Seasonality, p: &HwParams, robust: bool, shift_run: usize) -> f64 {
        match (kind, robust) {
            (Seasonality::Additive, true) => self.step_g::<ADD, true>(v, p, shift_run),
            (Seasonality::Additive, false) => self.step_g::<ADD, false>(v, p, shift_run),
            (Seasonality::Multiplicative, true) => self.step_g::<MUL, true>(v, p, shift_run),
            (Seasonality::Multiplicative, false) => self.step_g::<MUL, false>(v, p, shift_run),
            (Seasonality::None, true) => self.step_g::<NONE, true>(v, p, shift_run),
            (Seasonality::None, false) => self.step_g::<NONE, false>(v, p, shift_run),
        }
    }

    /// Runs `step` over `y`, specialised once for the kind (the loop is the whole fit's cost).
    fn run(&mut self, y: &[f64], kind: Seasonality, p: &HwParams, robust: bool, shift_run: usize) -> f64 {
        fn go<const K: u8, const R: bool>(st: &mut State, y: &[f64], p: &HwParams, shift: usize) -> f64 {
            y.iter().map(|&v| st.step_g::<K, R>(v, p, shift)).sum()
        }
        match (kind, robust) {
            (Seasonality::Additive, true) => go::<ADD, true>(self, y, p, shift_run),
            (Seasonality::Additive, false) => go::<ADD, false>(self, y, p, shift_run),
            (Seasonality::Multiplicative, true) => go::<MUL, true>(self, y, p, shift_run),
            (Seasonality::Multiplicative, false) => go::<MUL, false>(self, y, p, shift_run),
            (Seasonality::None, true) => go::<NONE, true>(self, y, p, shift_run),
            (Seasonality::None, false) => go::<NONE, false>(self, y, p, shift_run),
        }
    }

    #[inline(always)]
    fn step_g<const K: u8, const ROBUST: bool>(&mut self, v: f64, p: &HwParams, shift_run: usize) -> f64 {
        let (kind, robust) = (
            match K {
                ADD => Seasonality::Additive,
                MUL => Seasonality::Multiplicative,
                _ => Seasonality::None,
            },
            ROBUST,
        );
        let i = self.phase;
        self.phase = if i + 1 == self.season.len() { 0 } else { i + 1 };
        let HwParams { alpha, beta, gamma, phi } = *p;
        let (l, b, s) = (self.level, self.trend, self.season[i]);
        let base = l + phi * b;
        if !v.is_finite() {
            self.level = base;
            self.trend = phi * b;
            return 0.0;
        }
        let fc = if kind == Seasonality::Multiplicative { base * s } else { base + s };
        let raw = v - fc;
        let mut e = raw;
        if robust {
            if self.mae.is_finite() {
                let lim = CLIP * self.mae.max(1e-9);
                if raw.abs() > lim {
                    e = lim.copysign(raw);
                    if self.run > 0 && self.run_sum.signum() != raw.signum() {
                        self.run = 0;
                        self.run_sum = 0.0;
                    }
                    self.run += 1;
                    self.run_sum += raw;
                } else {
                    self.run = 0;
                    self.run_sum = 0.0;
                }
                self.mae += MAE_W * (e.abs() - self.mae);
            } else {
                self.warm_sum += raw.abs();
                self.warm_n += 1;
                if self.warm_n >= WARM {
                    self.mae = self.warm_sum / self.warm_n as f64;
                }
            }
        }
        let y = fc + e;
        match kind {
            Seasonality::Multiplicative => {
                let s = s.max(1e-6);
                let nl = alpha * (y / s) + (1.0 - alpha) * base;
                self.trend = beta * (nl - l) + (1.0 - beta) * phi * b;
                if base.abs() > 1e-9 {
                    self.season[i] = (gamma * (y / base) + (1.0 - gamma) * s).max(1e-6);
                }
                self.level = nl;
            }
            _ => {
                let nl = alpha * (y - s) + (1.0 - alpha) * base;
                self.trend = beta * (nl - l) + (1.0 - beta) * phi * b;
                if kind == Seasonality::Additive {
                    self.season[i] = gamma * (y - base) + (1.0 - gamma) * s;
                }
                self.level = nl;
            }
        }
        if robust && self.run >= shift_run {
            // A level shift: move the level by what the run's errors said, in level units.
            let mean = self.run_sum / self.run as f64;
            self.level += if kind == Seasonality::Multiplicative { mean / s.max(1e-6) } else { mean };
            self.run = 0;
            self.run_sum = 0.0;
            self.level_shifts += 1;
        }
        e * e
    }
}

/// A fitted model: specification, parameters, state after the last point, interval quantiles.
#[derive(Debug, Clone)]
pub struct HwFit {
    pub params: HwParams,
    pub spec: HwSpec,
    state: State,
    bands: ErrorQuantiles,
    pub sse: f64,
}

fn mean_finite(s: &[f64]) -> f64 {
    let (sum, n) = s.iter().filter(|v| v.is_finite()).fold((0.0, 0usize), |(a, n), v| (a + v, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

fn init(y: &[f64], spec: &HwSpec) -> State {
    let m = spec.period;
    if spec.seasonality == Seasonality::None {
        let k = y.len().min(10);
        let neutral = 0.0;
        return State::new(mean_finite(&y[..k]), 0.0, vec![neutral; 1]);
    }
    let seasons = (y.len() / m).clamp(1, 3);
    let means: Vec<f64> = (0..seasons).map(|k| mean_finite(&y[k * m..(k + 1) * m])).collect();
    let trend = if seasons >= 2 { (means[seasons - 1] - means[0]) / ((seasons - 1) * m) as f64 } else { 0.0 };
    let mul = spec.seasonality == Seasonality::Multiplicative;
    let mut season = vec![0.0; m];
    for (i, s) in season.iter_mut().enumerate() {
        let (mut acc, mut k_n) = (0.0, 0);
        for (k, mk) in means.iter().enumerate() {
            let v = y[k * m + i];
            if v.is_finite() {
                // Remove the within-season trend so it is not mistaken for seasonality.
                let base = mk + trend * (i as f64 - (m as f64 - 1.0) / 2.0);
                acc += if mul { v / base.max(1e-9) } else { v - base };
                k_n += 1;
            }
        }
        *s = if k_n > 0 {
            acc / k_n as f64
        } else if mul {
            1.0
        } else {
            0.0
        };
    }
    let avg = season.iter().sum::<f64>() / m as f64;
    if mul {
        season.iter_mut().for_each(|s| *s = (*s / avg.max(1e-9)).max(1e-3));
    } else {
        season.iter_mut().for_each(|s| *s -= avg);
    }
    State::new(means[0] - trend * (m as f64 - 1.0) / 2.0, trend, season)
}

/// Sum φ + φ² + … + φ^h.
pub(crate) fn damp_sum(phi: f64, h: usize) -> f64 {
    if (phi - 1.0).abs() < 1e-12 { h as f64 } else { phi * (1.0 - phi.powi(h as i32)) / (1.0 - phi) }
}

impl HwSpec {
    /// Points needed: two full seasons plus a little (Holt: 10).
    pub fn min_points(&self) -> usize {
        if self.seasonality == Seasonality::None { 10 } else { 2 * self.period + 10 }
    }

    /// Length of a run of clipped same-sign errors that counts as a level shift: a quarter hour
    /// at 1-min data, 20 minutes at 5-min data.
    fn shift_run(&self) -> usize {
        (self.period / 96).clamp(4, 15)
    }

    /// Runs the recursion over `y` from the initial state; `each(t, state)` sees the state
    /// before point `t`. Returns the final state and the sum of squared (clipped) errors.
    fn filter(&self, p: &HwParams, y: &[f64], mut each: impl FnMut(usize, &State)) -> (State, f64) {
        let mut st = init(y, self);
        let shift = self.shift_run();
        let mut sse = 0.0;
        for (t, &v) in y.iter().enumerate() {
            each(t, &st);
            sse += st.step(v, self.seasonality, p, self.robust, shift);
        }
        (st, sse)
    }

    /// `filter` without looking at the states: the optimiser's objective.
    fn sse(&self, p: &HwParams, y: &[f64]) -> f64 {
        let mut st = init(y, self);
        st.run(y, self.seasonality, p, self.robust, self.shift_run())
    }

    /// Estimates the parameters on `y`, then filters.
    pub fn fit(&self, y: &[f64]) -> Result<HwFit, ForecastError> {
        self.check(y)?;
        let seasonal = self.seasonality != Seasonality::None;
        let to_params = |x: &[f64]| HwParams {
            alpha: x[0],
            beta: x[1] * x[0],
            gamma: if seasonal { x[2] * (1.0 - x[0]) } else { 0.0 },
            phi: x[3],
        };
        let mut obj = |x: &[f64]| self.sse(&to_params(x), y);
        // β ≤ α and γ ≤ 1 − α (the usual admissible region) through the parametrisation.
        let (x, _) =
            minimize(&mut obj, &[0.3, 0.1, 0.1, 0.95], &[0.001, 0.0, 0.0, 0.8], &[0.999, 1.0, 1.0, 0.98], 300, 1e-6);
        self.refilter(to_params(&x), y)
    }

    /// Keeps `params` and re-runs the state over `y` (the cheap update between refits).
    pub fn refilter(&self, params: HwParams, y: &[f64]) -> Result<HwFit, ForecastError> {
        self.check(y)?;
        let m = self.period;
        let h = self.horizon.max(1);
        // Forecasts made inside the calibration window, checked against what followed.
        let window = (y.len() - self.min_points() + 10).min(4 * m.max(288));
        let from = y.len() - window;
        let mut preds: Vec<(usize, Vec<f64>)> = Vec::new();
        let kind = self.seasonality;
        let damp: Vec<f64> = (1..=h).map(|j| damp_sum(params.phi, j)).collect();
        let (state, sse) = self.filter(&params, y, |t, s| {
            if t >= from && t + 1 < y.len() && (t - from).is_multiple_of(2) {
                let k = h.min(y.len() - t);
                preds.push((t, s.means(kind, &damp[..k])));
            }
        });
        let bands = empirical_bands(y, &preds, h);
        Ok(HwFit { params, spec: *self, state, bands, sse })
    }

    fn check(&self, y: &[f64]) -> Result<(), ForecastError> {
        if self.period < 2 && self.seasonality != Seasonality::None {
            return Err(ForecastError::BadSpec("season period must be at least 2"));
        }
        if self.seasonality == Seasonality::Multiplicative && y.iter().any(|v| *v <= 0.0) {
            return Err(ForecastError::BadSpec("multiplicative seasonality needs every value > 0"));
        }
        let have = y.iter().filter(|v| v.is_finite()).count();
        if y.len() < self.min_points() || have < self.min_points() / 2 {
            return Err(ForecastError::NotEnoughData { need: self.min_points(), have });
        }
        Ok(())
    }
}

impl HwFit {
    /// Runs the additive recursions from a given initial state (no estimation, no bands, no
    /// clipping): for checking the equations against other implementations.
    pub fn from_state(params: HwParams, level: f64, trend: f64, season: Vec<f64>, y: &[f64]) -> Self {
        let spec = HwSpec { period: season.len(), horizon: 1, seasonality: Seasonality::Additive, robust: false };
        let mut state = State::new(level, trend, season);
        let sse = y.iter().map(|&v| state.step(v, spec.seasonality, &params, false, usize::MAX)).sum();
        HwFit { params, spec, state, bands: ErrorQuantiles::default(), sse }
    }

    /// Takes one new observation into the state (O(1); NaN = missing). Parameters and band
    /// quantiles stay until the next refit.
    pub fn update(&mut self, v: f64) {
        let shift = self.spec.shift_run();
        self.state.step(v, self.spec.seasonality, &self.params, self.spec.robust, shift);
    }

    /// Level shifts detected (and jumped) so far.
    pub fn level_shifts(&self) -> usize {
        self.state.level_shifts
    }

    /// Point forecasts for the next `h` points (not clipped).
    pub fn mean(&self, h: usize) -> Vec<f64> {
        let damp: Vec<f64> = (1..=h).map(|j| damp_sum(self.params.phi, j)).collect();
        self.state.means(self.spec.seasonality, &damp)
    }

    /// Forecast for the next `h` points with 80 % and 95 % bands, clipped at zero.
    pub fn predict(&self, h: usize) -> Forecast {
        Forecast::with_bands(self.mean(h), &self.bands)
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
        let spec = HwSpec::additive(m, 24);
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
            let fit = HwSpec::additive(m, h).fit(&y[..n]).unwrap();
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
        assert!((fit.state.level - 145.36550974628668).abs() < 1e-9, "level {}", fit.state.level);
        assert!((fit.state.trend - 0.26166066667110777).abs() < 1e-9, "trend {}", fit.state.trend);
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
        let spec = HwSpec::additive(m, 6);
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
        let e = HwSpec::additive(1440, 60).fit(&[1.0; 100]).unwrap_err();
        assert_eq!(e, ForecastError::NotEnoughData { need: 2890, have: 100 });
    }

    #[test]
    fn missing_points_are_skipped() {
        let m = 48;
        let mut y = synthetic(48 * 20, m, 0.0, 3);
        for v in &mut y[500..560] {
            *v = f64::NAN;
        }
        let fit = HwSpec::additive(m, 12).fit(&y).unwrap();
        let truth = synthetic(48 * 20 + 12, m, 0.0, 3);
        let f = fit.predict(12);
        assert!(f.mean.iter().enumerate().all(|(j, v)| (v - truth[48 * 20 + j]).abs() < 2.0), "{:?}", f.mean);
    }

    /// Simulates the additive damped model itself with known parameters and Gaussian shocks.
    fn simulate(p: HwParams, m: usize, n: usize, seed: u64) -> Vec<f64> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut season: Vec<f64> = (0..m).map(|i| 10.0 * (std::f64::consts::TAU * i as f64 / m as f64).sin()).collect();
        let (mut l, mut b) = (100.0, 0.1);
        (0..n)
            .map(|t| {
                let g = (-2.0 * (1.0 - rng.f64()).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos();
                let s = season[t % m];
                let y = l + p.phi * b + s + g;
                let nl = l + p.phi * b + p.alpha * g;
                b = p.phi * b + p.beta * g;
                season[t % m] = s + p.gamma * g;
                l = nl;
                y
            })
            .collect()
    }

    #[test]
    fn recovers_known_parameters() {
        // Simulated in error-correction form; the fit reports the component form, where the
        // trend's gain on a shock is α·β and the season's is γ.
        let truth = HwParams { alpha: 0.4, beta: 0.04, gamma: 0.15, phi: 0.9 };
        let y = simulate(truth, 24, 24 * 250, 21);
        let spec = HwSpec { robust: false, ..HwSpec::additive(24, 6) };
        let p = spec.fit(&y).unwrap().params;
        assert!((p.alpha - truth.alpha).abs() < 0.08, "{p:?}");
        assert!((p.alpha * p.beta - truth.beta).abs() < 0.03, "{p:?}");
        assert!((p.gamma - truth.gamma).abs() < 0.08, "{p:?}");
        assert!((p.phi - truth.phi).abs() < 0.06, "{p:?}");
    }

    #[test]
    fn one_spike_does_not_wreck_the_next_season() {
        let m = 48;
        let clean = synthetic(48 * 20, m, 0.5, 8);
        let mut y = clean.clone();
        let at = 48 * 19 + 10;
        y[at] *= 30.0;
        let err = |robust: bool| {
            let spec = HwSpec { robust, ..HwSpec::additive(m, m) };
            let f = spec.fit(&y).unwrap().predict(m).mean;
            let truth = synthetic(48 * 21, m, 0.0, 8);
            // One season later, at the spike's phase.
            (f[10] - truth[48 * 20 + 10]).abs()
        };
        let (robust, plain) = (err(true), err(false));
        assert!(robust < 5.0, "robust error {robust}");
        assert!(robust < plain / 3.0, "robust {robust} vs plain {plain}");
    }

    #[test]
    fn a_level_shift_is_detected_and_jumped() {
        let m = 96;
        let mut y = synthetic(96 * 14, m, 1.0, 9);
        let n = y.len();
        for v in &mut y[n - 40..] {
            *v += 80.0;
        }
        let fit = HwSpec::additive(m, 12).fit(&y).unwrap();
        assert!(fit.level_shifts() >= 1);
        let truth = synthetic(96 * 14 + 12, m, 0.0, 9);
        let f = fit.predict(12).mean;
        for (j, v) in f.iter().enumerate() {
            assert!((v - (truth[n + j] + 80.0)).abs() < 12.0, "h={j}: {v} vs {}", truth[n + j] + 80.0);
        }
    }

    #[test]
    fn multiplicative_and_holt_forecast_their_shapes() {
        let m = 24;
        // Season amplitude grows with the level: multiplicative.
        let y: Vec<f64> = (0..m * 20)
            .map(|t| (50.0 + 0.2 * t as f64) * (1.0 + 0.5 * (std::f64::consts::TAU * t as f64 / m as f64).sin()))
            .collect();
        let n = y.len();
        let f = HwSpec::multiplicative(m, 12).fit(&y).unwrap().predict(12).mean;
        for (j, v) in f.iter().enumerate() {
            let t = (n + j) as f64;
            let want = (50.0 + 0.2 * t) * (1.0 + 0.5 * (std::f64::consts::TAU * t / m as f64).sin());
            assert!((v - want).abs() < 0.05 * want, "h={j}: {v} vs {want}");
        }
        assert!(HwSpec::multiplicative(m, 1).fit(&[0.0; 100]).is_err());
        // A straight line: Holt follows it (damped, so a little under).
        let line: Vec<f64> = (0..200).map(|t| 10.0 + 0.5 * t as f64).collect();
        let f = HwSpec::holt(5).fit(&line).unwrap().predict(5).mean;
        assert!((f[0] - 110.0).abs() < 1.0 && f[4] > f[0], "{f:?}");
    }
}
