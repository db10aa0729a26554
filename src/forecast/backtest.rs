//! The rolling-origin backtest of the project's evaluation protocol: origins every 60 min over
//! the last 48 h (an origin is used only if 60 min of data follow it), horizons 5 and 60 min,
//! parameters re-estimated every 12 origins with the state re-run over `y[:o]` in between,
//! forecasts clipped at 0. MASE scales each origin's MAE by the in-sample seasonal-naive MAE
//! (daily season) of `y[:o]`; sMAPE, under-forecast rate (y > 1.2 ŷ) and band coverage are
//! over all forecast points.

use std::time::Instant;

use serde::Serialize;

use super::auto::{AutoFit, AutoSpec, Kind, snaive_mae};
use super::{Forecast, ForecastError};

pub use crate::trace::{Series, read_csv};

/// One model's scores at one horizon.
#[derive(Debug, Clone, Serialize)]
pub struct Score {
    pub model: String,
    pub horizon_minutes: u64,
    pub mase: f64,
    pub smape: f64,
    pub under_rate: f64,
    pub coverage80: f64,
    pub coverage95: f64,
    pub fit_ms: f64,
    /// `auto` only: the model chosen at each refit, in order.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selected: Option<Vec<String>>,
}

/// The models the backtest knows: `auto` and every family of [`Kind`].
pub const MODELS: [&str; 9] = ["auto", "hw", "hw_mul", "dshw", "arima", "prophet", "snaive", "holt", "naive"];

/// A model under test: one family, or the automatic choice.
enum Fitted {
    One(super::auto::Fitted),
    Auto(AutoFit),
}

impl Fitted {
    fn predict(&self, h: usize) -> Forecast {
        match self {
            Fitted::One(f) => f.predict(h),
            Fitted::Auto(f) => f.predict(h),
        }
    }
    fn update(&mut self, v: f64) {
        match self {
            Fitted::One(f) => f.update(v),
            Fitted::Auto(f) => f.update(v),
        }
    }
}

/// Runs the protocol for `model` on `s`. Named families use the daily season of the protocol;
/// `auto` detects its own and chooses at every refit (the choices are in `Score::selected`).
pub fn run(s: &Series, model: &str) -> Result<Vec<Score>, ForecastError> {
    let step_min = (s.step_s / 60).max(1) as usize;
    let m = (86_400 / s.step_s) as usize;
    let (h5, h60) = ((5 / step_min).max(1), 60 / step_min);
    let n = s.values.len();
    let per_hour = (3600 / s.step_s) as usize;
    let first = n.checked_sub(48 * per_hour).ok_or(ForecastError::NotEnoughData { need: 48 * per_hour, have: n })?;
    let origins: Vec<usize> = (0..48).map(|k| first + k * per_hour).filter(|o| o + h60 <= n).collect();
    let y = &s.values;
    let kind = match model {
        "auto" => None,
        m => Some(Kind::parse(m).ok_or(ForecastError::BadSpec("unknown model (see prescale backtest --help)"))?),
    };

    let mut acc = [Acc::default(), Acc::default()];
    let mut fit_ms = Vec::new();
    let mut selected = Vec::new();
    let mut current: Option<(usize, Fitted)> = None;
    for (k, &o) in origins.iter().enumerate() {
        let train = &y[..o];
        // Full estimation every 12 origins (timed); in between the last parameters are kept and
        // the state runs on over the new points — the same recursion as re-running it over y[:o].
        let fitted = match current.take() {
            Some((at, mut f)) if !k.is_multiple_of(12) => {
                for &v in &y[at..o] {
                    f.update(v);
                }
                f
            }
            _ => {
                let t = Instant::now();
                let f = match kind {
                    Some(kind) => Fitted::One(kind.fit(train, Some(m), h60)?),
                    None => {
                        let a = AutoSpec::new(s.step_s, h60).fit(train)?;
                        selected.push(a.model());
                        Fitted::Auto(a)
                    }
                };
                fit_ms.push(t.elapsed().as_secs_f64() * 1000.0);
                f
            }
        };
        let f = fitted.predict(h60);
        let scale = snaive_mae(train, m);
        for (i, h) in [h5, h60].into_iter().enumerate() {
            acc[i].add(&y[o..o + h], &f, h, scale);
        }
        current = Some((o, fitted));
    }
    let mean_fit = fit_ms.iter().sum::<f64>() / fit_ms.len().max(1) as f64;
    let sel = kind.is_none().then_some(selected);
    Ok([5, 60].iter().zip(acc).map(|(hm, a)| a.score(model, *hm, mean_fit, sel.clone())).collect())
}

#[derive(Default)]
struct Acc {
    mase: Vec<f64>,
    smape_sum: f64,
    under: usize,
    in80: usize,
    in95: usize,
    points: usize,
}

impl Acc {
    fn add(&mut self, actual: &[f64], f: &Forecast, h: usize, scale: f64) {
        let mut abs = 0.0;
        for (j, &y) in actual.iter().enumerate().take(h) {
            let p = f.mean[j];
            abs += (y - p).abs();
            self.smape_sum += if y == 0.0 && p == 0.0 { 0.0 } else { 200.0 * (y - p).abs() / (y.abs() + p.abs()) };
            self.under += (y > 1.2 * p) as usize;
            self.in80 += (f.lo80[j] <= y && y <= f.hi80[j]) as usize;
            self.in95 += (f.lo95[j] <= y && y <= f.hi95[j]) as usize;
            self.points += 1;
        }
        self.mase.push(abs / h as f64 / scale);
    }

    fn score(self, model: &str, horizon_minutes: u64, fit_ms: f64, selected: Option<Vec<String>>) -> Score {
        let n = self.points.max(1) as f64;
        Score {
            model: model.to_string(),
            horizon_minutes,
            mase: self.mase.iter().sum::<f64>() / self.mase.len().max(1) as f64,
            smape: self.smape_sum / n,
            under_rate: self.under as f64 / n,
            coverage80: self.in80 as f64 / n,
            coverage95: self.in95 as f64 / n,
            fit_ms,
            selected,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_errors_name_the_line() {
        assert!(read_csv("timestamp,value\n0,1\n60,2\n120,3\n").is_ok());
        assert_eq!(
            read_csv("t,v\n0,1\n60,x\n").unwrap_err().to_string(),
            "line 3: value \"x\" is not a non-negative number"
        );
        assert!(read_csv("0,1\n60,2\n150,3\n").unwrap_err().to_string().starts_with("line 3: irregular step"));
        assert!(
            read_csv("0,1\n60,2\n30,3\n").unwrap_err().to_string().starts_with("line 3: timestamps not increasing")
        );
        assert!(read_csv("0,1\n").unwrap_err().to_string().starts_with("too short"));
    }

    #[test]
    fn protocol_on_a_generated_daily_series() {
        // 10 days at 5-min steps with a daily cycle and noise.
        let mut rng = fastrand::Rng::with_seed(5);
        let values: Vec<f64> = (0..288 * 10)
            .map(|t| 50.0 + 30.0 * (t as f64 / 288.0 * std::f64::consts::TAU).sin() + 5.0 * rng.f64())
            .collect();
        let s = Series { step_s: 300, start_s: 0, values };
        let hw = run(&s, "hw").unwrap();
        let sn = run(&s, "snaive").unwrap();
        assert_eq!(hw.len(), 2);
        assert_eq!(hw[1].horizon_minutes, 60);
        assert!(hw[1].mase < sn[1].mase, "hw {} vs snaive {}", hw[1].mase, sn[1].mase);
        assert!(hw[1].coverage95 > 0.8, "{}", hw[1].coverage95);
    }
}
