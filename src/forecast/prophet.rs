//! Prophet-style regression: y(t) = trend(t) + daily(t) + weekly(t) + ε, where the trend is
//! piecewise linear with changepoints spread over the first 80 % of the history and the seasons
//! are Fourier series (10 daily, 5 weekly harmonics). Fitted by ridge-regularised least
//! squares: the penalty on slope changes keeps the trend from chasing noise (Prophet puts a
//! Laplace prior there and samples with Stan; a closed-form ridge solve is enough here). The
//! forecast extends the last slope.
//!
//! No recursion: `update` only advances time. Intervals come from the in-sample residuals of
//! the last days, by horizon like every model.

use super::{ErrorQuantiles, Forecast, ForecastError, empirical_bands};

const CHANGEPOINTS: usize = 25;
const DAILY_K: usize = 10;
const WEEKLY_K: usize = 5;
/// Ridge weights (on standardised data): slope changes, Fourier terms.
const LAMBDA_CP: f64 = 0.05;
const LAMBDA_F: f64 = 1e-4;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProphetSpec {
    /// Daily period in steps (weekly = 7 × daily); < 2 = no seasonal terms.
    pub daily: usize,
    pub horizon: usize,
}

#[derive(Debug, Clone)]
pub struct ProphetFit {
    /// Coefficients in column order (see `row`).
    beta: Vec<f64>,
    changepoints: Vec<f64>,
    /// Time scaling: t_scaled = (t − t0) / span.
    t0: usize,
    span: f64,
    daily: usize,
    weekly: bool,
    /// Scale of y the coefficients are in.
    y_mean: f64,
    y_scale: f64,
    /// Index of the next point.
    n: usize,
    bands: ErrorQuantiles,
}

fn row(out: &mut Vec<f64>, ts: f64, t: usize, cps: &[f64], daily: usize, weekly: bool) {
    out.clear();
    out.push(1.0);
    out.push(ts);
    out.extend(cps.iter().map(|c| (ts - c).max(0.0)));
    if daily >= 2 {
        let w = std::f64::consts::TAU * (t % daily) as f64 / daily as f64;
        for k in 1..=DAILY_K.min(daily / 2) {
            out.push((k as f64 * w).sin());
            out.push((k as f64 * w).cos());
        }
        if weekly {
            let wk = 7 * daily;
            let w = std::f64::consts::TAU * (t % wk) as f64 / wk as f64;
            for k in 1..=WEEKLY_K {
                out.push((k as f64 * w).sin());
                out.push((k as f64 * w).cos());
            }
        }
    }
}

/// Solves the symmetric positive definite system `a x = b` (Cholesky); `a` is n×n row-major.
fn solve_spd(mut a: Vec<f64>, mut b: Vec<f64>, n: usize) -> Option<Vec<f64>> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 {
            return None;
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            for k in 0..j {
                s -= a[i * n + k] * a[j * n + k];
            }
            a[i * n + j] = s / d;
        }
    }
    for i in 0..n {
        let mut s = b[i];
        for k in 0..i {
            s -= a[i * n + k] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    for i in (0..n).rev() {
        let mut s = b[i];
        for k in i + 1..n {
            s -= a[k * n + i] * b[k];
        }
        b[i] = s / a[i * n + i];
    }
    Some(b)
}

impl ProphetSpec {
    pub fn min_points(&self) -> usize {
        if self.daily >= 2 { 2 * self.daily } else { 50 }
    }

    pub fn fit(&self, y: &[f64]) -> Result<ProphetFit, ForecastError> {
        let have = y.iter().filter(|v| v.is_finite()).count();
        if y.len() < self.min_points() || have < self.min_points() / 2 {
            return Err(ForecastError::NotEnoughData { need: self.min_points(), have });
        }
        // The last four weeks at most.
        let t0 = y.len().saturating_sub(28 * self.daily.max(48));
        let ys = &y[t0..];
        let fin: Vec<f64> = ys.iter().copied().filter(|v| v.is_finite()).collect();
        let y_mean = fin.iter().sum::<f64>() / fin.len() as f64;
        let var = fin.iter().map(|v| (v - y_mean).powi(2)).sum::<f64>() / fin.len() as f64;
        let y_scale = var.sqrt().max(1e-9);
        let weekly = self.daily >= 2 && ys.len() >= 14 * self.daily;
        let span = ys.len() as f64;
        let changepoints: Vec<f64> = (1..=CHANGEPOINTS).map(|k| 0.8 * k as f64 / (CHANGEPOINTS + 1) as f64).collect();
        let mut x = Vec::new();
        row(&mut x, 0.0, t0, &changepoints, self.daily, weekly);
        let k = x.len();
        let (mut xtx, mut xty) = (vec![0.0; k * k], vec![0.0; k]);
        for (i, v) in ys.iter().enumerate() {
            if !v.is_finite() {
                continue;
            }
            row(&mut x, i as f64 / span, t0 + i, &changepoints, self.daily, weekly);
            let z = (v - y_mean) / y_scale;
            for a in 0..k {
                let xa = x[a];
                xty[a] += xa * z;
                for b in 0..=a {
                    xtx[a * k + b] += xa * x[b];
                }
            }
        }
        let nf = fin.len() as f64;
        for a in 0..k {
            for b in 0..a {
                xtx[b * k + a] = xtx[a * k + b];
            }
            let lambda = match a {
                0 | 1 => 1e-9,
                a if a < 2 + CHANGEPOINTS => LAMBDA_CP,
                _ => LAMBDA_F,
            };
            xtx[a * k + a] += lambda * nf;
        }
        let beta = solve_spd(xtx, xty, k).ok_or(ForecastError::BadSpec("regression is singular"))?;
        let mut fit = ProphetFit {
            beta,
            changepoints,
            t0,
            span,
            daily: self.daily,
            weekly,
            y_mean,
            y_scale,
            n: y.len(),
            bands: ErrorQuantiles::default(),
        };
        let h = self.horizon.max(1);
        let from = y.len().saturating_sub(4 * self.daily.max(288)).max(t0);
        let preds: Vec<(usize, Vec<f64>)> =
            (from..y.len()).step_by(2).map(|t| (t, (0..h.min(y.len() - t)).map(|j| fit.at(t + j)).collect())).collect();
        fit.bands = empirical_bands(y, &preds, h);
        Ok(fit)
    }
}

impl ProphetFit {
    /// The model's value at absolute index `t`.
    fn at(&self, t: usize) -> f64 {
        let mut x = Vec::with_capacity(self.beta.len());
        let ts = (t as f64 - self.t0 as f64) / self.span;
        row(&mut x, ts, t, &self.changepoints, self.daily, self.weekly);
        let z: f64 = x.iter().zip(&self.beta).map(|(a, b)| a * b).sum();
        self.y_mean + self.y_scale * z
    }

    pub fn update(&mut self, _v: f64) {
        self.n += 1;
    }

    pub fn mean(&self, h: usize) -> Vec<f64> {
        (0..h).map(|j| self.at(self.n + j)).collect()
    }

    pub fn predict(&self, h: usize) -> Forecast {
        Forecast::with_bands(self.mean(h), &self.bands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_a_trend_change_and_both_seasons() {
        let m = 48;
        let f = |t: usize| {
            let trend = if t < 10 * m {
                100.0 + 0.05 * t as f64
            } else {
                100.0 + 0.05 * (10 * m) as f64 - 0.02 * (t - 10 * m) as f64
            };
            let day = 20.0 * (t as f64 / m as f64 * std::f64::consts::TAU).sin();
            let weekend = if (t / m) % 7 >= 5 { -15.0 } else { 0.0 };
            trend + day + weekend
        };
        let mut rng = fastrand::Rng::with_seed(4);
        let n = 21 * m;
        let y: Vec<f64> = (0..n).map(|t| f(t) + rng.f64() - 0.5).collect();
        let fit = ProphetSpec { daily: m, horizon: m }.fit(&y).unwrap();
        let mean = fit.mean(m);
        let mae = mean.iter().enumerate().map(|(j, v)| (v - f(n + j)).abs()).sum::<f64>() / m as f64;
        assert!(mae < 4.0, "mae {mae}");
    }

    #[test]
    fn solves_a_small_system() {
        let x = solve_spd(vec![4.0, 2.0, 2.0, 3.0], vec![6.0, 5.0], 2).unwrap();
        assert!((x[0] - 1.0).abs() < 1e-12 && (x[1] - 1.0).abs() < 1e-12, "{x:?}");
        assert!(solve_spd(vec![0.0, 0.0, 0.0, 0.0], vec![1.0, 1.0], 2).is_none());
    }
}
