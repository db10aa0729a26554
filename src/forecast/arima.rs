//! ARIMA on the deseasonalised series. The seasonal profile (mean deviation by phase over the
//! last seasons, up to a week of them) is subtracted; on what is left an ARIMA(p, d, q) with
//! p ≤ 3, d ≤ 1, q ≤ 2 is fitted by conditional sum of squares (bounded Nelder–Mead), the
//! order chosen by AIC over that grid. All candidates are scored on the same one-step errors of
//! the deseasonalised series, so AIC compares across d too. Forecasts run the ARMA recursion
//! with future shocks at zero, integrate, and add the profile back.
//!
//! Missing points (NaN) are imputed by the model's own one-step forecast (zero shock).
//! Intervals are empirical, as for every model: multi-step forecasts from the last days of the
//! training data checked against what followed.

use super::optimize::minimize;
use super::{ErrorQuantiles, Forecast, ForecastError, empirical_bands};

const MAX_P: usize = 3;
const MAX_Q: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArimaSpec {
    /// Season removed before the ARIMA; 1 = none.
    pub period: usize,
    pub horizon: usize,
}

/// Order and coefficients.
#[derive(Debug, Clone, PartialEq)]
pub struct ArimaParams {
    pub p: usize,
    pub d: usize,
    pub q: usize,
    pub c: f64,
    pub ar: Vec<f64>,
    pub ma: Vec<f64>,
    /// Deseasonalising profile by phase.
    pub profile: Vec<f64>,
    pub aic: f64,
}

/// The recursion's memory: recent values of the differenced series and recent shocks.
#[derive(Debug, Clone)]
struct State {
    /// Last `p` values of x (most recent first; p ≤ 3).
    xs: [f64; 3],
    /// Last `q` shocks (most recent first; q ≤ 2).
    es: [f64; 2],
    /// Last deseasonalised value (for d = 1).
    r_last: f64,
    /// Index of the next point.
    n: usize,
}

#[derive(Debug, Clone)]
pub struct ArimaFit {
    pub params: ArimaParams,
    state: State,
    bands: ErrorQuantiles,
}

impl ArimaParams {
    fn next_x(&self, st: &State) -> f64 {
        let mut v = self.c;
        for (a, x) in self.ar.iter().zip(&st.xs) {
            v += a * x;
        }
        for (b, e) in self.ma.iter().zip(&st.es) {
            v += b * e;
        }
        v
    }

    /// Takes the deseasonalised value `r` (NaN = missing); returns the shock.
    fn step(&self, st: &mut State, r: f64) -> f64 {
        let xhat = self.next_x(st);
        let (x, e) = if r.is_finite() {
            let x = if self.d == 1 { r - st.r_last } else { r };
            (x, x - xhat)
        } else {
            (xhat, 0.0)
        };
        st.r_last = if self.d == 1 { st.r_last + x } else { x };
        st.xs = [x, st.xs[0], st.xs[1]];
        st.es = [e, st.es[0]];
        st.n += 1;
        e
    }

    fn forecast(&self, st: &State, h: usize) -> Vec<f64> {
        let mut s = st.clone();
        let m = self.profile.len();
        (0..h)
            .map(|_| {
                let t = s.n;
                self.step(&mut s, f64::NAN);
                s.r_last + self.profile[t % m]
            })
            .collect()
    }

    fn start(&self, first: f64) -> State {
        State { xs: [0.0; 3], es: [0.0; 2], r_last: if first.is_finite() { first } else { 0.0 }, n: 0 }
    }
}

/// Mean deviation from each season's mean, by phase, over the last (up to 7) full seasons.
fn profile(y: &[f64], m: usize) -> Vec<f64> {
    if m < 2 {
        return vec![0.0];
    }
    let seasons = (y.len() / m).min(7);
    let end = y.len() - y.len() % m;
    let (mut sum, mut cnt) = (vec![0.0; m], vec![0usize; m]);
    for k in 0..seasons {
        let s = &y[end - (k + 1) * m..end - k * m];
        let fin: Vec<f64> = s.iter().copied().filter(|v| v.is_finite()).collect();
        if fin.is_empty() {
            continue;
        }
        let mean = fin.iter().sum::<f64>() / fin.len() as f64;
        for (i, v) in s.iter().enumerate() {
            if v.is_finite() {
                sum[i] += v - mean;
                cnt[i] += 1;
            }
        }
    }
    sum.iter().zip(&cnt).map(|(s, c)| if *c > 0 { s / *c as f64 } else { 0.0 }).collect()
}

impl ArimaSpec {
    pub fn min_points(&self) -> usize {
        if self.period < 2 { 30 } else { 2 * self.period + 10 }
    }

    /// Chooses the order by AIC and estimates the coefficients.
    pub fn fit(&self, y: &[f64]) -> Result<ArimaFit, ForecastError> {
        self.check(y)?;
        let m = self.period.max(1);
        let prof = profile(y, m);
        let r: Vec<f64> = y.iter().enumerate().map(|(t, v)| v - prof[t % m]).collect();
        // Estimate on the recent part only: orders of magnitude cheaper, and recent dynamics
        // are what forecasts need.
        let est = &r[r.len().saturating_sub((3 * m).max(2000))..];
        let mut best: Option<ArimaParams> = None;
        for d in 0..=1 {
            for p in 0..=MAX_P {
                for q in 0..=MAX_Q {
                    let cand = fit_order(est, p, d, q, &prof);
                    if best.as_ref().is_none_or(|b| cand.aic < b.aic) {
                        best = Some(cand);
                    }
                }
            }
        }
        let params = best.ok_or(ForecastError::BadSpec("no ARIMA order could be fitted"))?;
        self.refilter(params, y)
    }

    /// Re-estimates the coefficients of a known order on `y` (the scheduled refit between
    /// selections: the order search is 24 fits, this is one).
    pub fn fit_order_of(&self, y: &[f64], order: &ArimaParams) -> Result<ArimaFit, ForecastError> {
        self.check(y)?;
        let m = self.period.max(1);
        let prof = profile(y, m);
        let r: Vec<f64> = y.iter().enumerate().map(|(t, v)| v - prof[t % m]).collect();
        let est = &r[r.len().saturating_sub((3 * m).max(2000))..];
        self.refilter(fit_order(est, order.p, order.d, order.q, &prof), y)
    }

    /// Keeps the coefficients (and profile) and re-runs the recursion over `y`.
    pub fn refilter(&self, params: ArimaParams, y: &[f64]) -> Result<ArimaFit, ForecastError> {
        self.check(y)?;
        let m = params.profile.len();
        let h = self.horizon.max(1);
        let window = (y.len() - self.min_points() + 10).min(4 * m.max(288));
        let from = y.len() - window;
        let mut st = params.start(y[0] - params.profile[0]);
        let mut preds = Vec::new();
        for (t, v) in y.iter().enumerate() {
            if t >= from && t + 1 < y.len() && (t - from).is_multiple_of(2) {
                preds.push((t, params.forecast(&st, h.min(y.len() - t))));
            }
            params.step(&mut st, v - params.profile[t % m]);
        }
        let bands = empirical_bands(y, &preds, h);
        Ok(ArimaFit { params, state: st, bands })
    }

    fn check(&self, y: &[f64]) -> Result<(), ForecastError> {
        let have = y.iter().filter(|v| v.is_finite()).count();
        if y.len() < self.min_points() || have < self.min_points() / 2 {
            return Err(ForecastError::NotEnoughData { need: self.min_points(), have });
        }
        Ok(())
    }
}

/// CSS estimate of one order on the deseasonalised series `r`.
fn fit_order(r: &[f64], p: usize, d: usize, q: usize, prof: &[f64]) -> ArimaParams {
    let fin: Vec<f64> = r.iter().copied().filter(|v| v.is_finite()).collect();
    let mean = fin.iter().sum::<f64>() / fin.len().max(1) as f64;
    let mean_x = if d == 1 { 0.0 } else { mean };
    let make = |x: &[f64]| {
        let ar: Vec<f64> = x[..p].to_vec();
        let ma: Vec<f64> = x[p..p + q].to_vec();
        // The constant is concentrated out: the process mean is the sample mean.
        let c = mean_x * (1.0 - ar.iter().sum::<f64>());
        ArimaParams { p, d, q, c, ar, ma, profile: prof.to_vec(), aic: 0.0 }
    };
    let css = |a: &ArimaParams| -> (f64, usize) {
        let mut st = a.start(r[0]);
        let (mut sse, mut n) = (0.0, 0usize);
        for (t, &v) in r.iter().enumerate() {
            let e = a.step(&mut st, v);
            // Every order is scored on the same points.
            if t > MAX_P + 1 && v.is_finite() {
                sse += e * e;
                n += 1;
            }
        }
        (sse, n)
    };
    let k = p + q;
    let x = if k == 0 {
        Vec::new()
    } else {
        let mut obj = |x: &[f64]| {
            let a = make(x);
            // Keep the AR part stationary-ish and the MA part invertible-ish.
            let pen = if a.ar.iter().map(|v| v.abs()).sum::<f64>() >= 1.0 { 1e3 } else { 1.0 };
            css(&a).0 * pen
        };
        let x0 = vec![0.1; k];
        let (lo, hi) = (vec![-0.99; k], vec![0.99; k]);
        minimize(&mut obj, &x0, &lo, &hi, 60 + 60 * k, 1e-8).0
    };
    let mut a = make(&x);
    let (sse, n) = css(&a);
    let n = n.max(1) as f64;
    a.aic = n * (sse / n).max(1e-12).ln() + 2.0 * (k + 1 - d) as f64;
    a
}

impl ArimaFit {
    pub fn update(&mut self, v: f64) {
        let m = self.params.profile.len();
        let r = v - self.params.profile[self.state.n % m];
        self.params.step(&mut self.state, r);
    }

    pub fn mean(&self, h: usize) -> Vec<f64> {
        self.params.forecast(&self.state, h)
    }

    pub fn predict(&self, h: usize) -> Forecast {
        Forecast::with_bands(self.mean(h), &self.bands)
    }

    /// `"ARIMA(p,d,q)"`.
    pub fn order(&self) -> String {
        format!("ARIMA({},{},{})", self.params.p, self.params.d, self.params.q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauss(rng: &mut fastrand::Rng) -> f64 {
        (-2.0 * (1.0 - rng.f64()).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos()
    }

    #[test]
    fn recovers_an_ar1_and_forecasts_its_decay() {
        let mut rng = fastrand::Rng::with_seed(11);
        let mut x = 0.0;
        let y: Vec<f64> = (0..3000)
            .map(|_| {
                x = 0.7 * x + gauss(&mut rng);
                50.0 + x
            })
            .collect();
        let fit = ArimaSpec { period: 1, horizon: 10 }.fit(&y).unwrap();
        assert_eq!(fit.params.d, 0, "{}", fit.order());
        let lag1: f64 = fit.params.ar.first().copied().unwrap_or(0.0) + fit.params.ma.first().copied().unwrap_or(0.0);
        assert!((lag1 - 0.7).abs() < 0.1, "{} {:?} {:?}", fit.order(), fit.params.ar, fit.params.ma);
        // The forecast decays from the last value towards the mean.
        let last = y[y.len() - 1] - 50.0;
        let f = fit.mean(30);
        assert!((f[29] - 50.0).abs() < 0.5 + 0.1 * last.abs(), "{f:?}");
    }

    #[test]
    fn random_walk_gets_differenced() {
        let mut rng = fastrand::Rng::with_seed(12);
        let mut x = 100.0;
        let y: Vec<f64> = (0..3000)
            .map(|_| {
                x += gauss(&mut rng);
                x
            })
            .collect();
        let fit = ArimaSpec { period: 1, horizon: 5 }.fit(&y).unwrap();
        assert_eq!(fit.params.d, 1, "{}", fit.order());
        assert!((fit.mean(1)[0] - y[y.len() - 1]).abs() < 1.0);
    }

    #[test]
    fn seasonal_profile_is_added_back_and_updates_match_refilter() {
        let m = 24;
        let mut rng = fastrand::Rng::with_seed(13);
        let y: Vec<f64> = (0..m * 30)
            .map(|t| 100.0 + 30.0 * (t as f64 / m as f64 * std::f64::consts::TAU).sin() + gauss(&mut rng))
            .collect();
        let spec = ArimaSpec { period: m, horizon: 12 };
        let mut fit = spec.fit(&y[..m * 28]).unwrap();
        for &v in &y[m * 28..] {
            fit.update(v);
        }
        let again = spec.refilter(fit.params.clone(), &y).unwrap();
        assert_eq!(fit.mean(12), again.mean(12));
        let truth: Vec<f64> =
            (m * 30..m * 30 + 12).map(|t| 100.0 + 30.0 * (t as f64 / m as f64 * std::f64::consts::TAU).sin()).collect();
        for (f, v) in fit.mean(12).iter().zip(&truth) {
            assert!((f - v).abs() < 3.0, "{f} vs {v}");
        }
    }
}
