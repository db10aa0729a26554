//! Forecasting: models as pure code (no clock, no threads, no I/O), the automatic choice among
//! them, the rolling-origin backtest that scores them, and the thread that runs them.
//!
//! A model spec `fit`s a series (NaN = missing) into a fitted model that `update`s with each new
//! point and `predict`s the next points with 80 % and 95 % bands. Families: Holt–Winters
//! ([`hw`]: additive/multiplicative/no season, damped trend, robust), double-seasonal
//! Holt–Winters ([`dshw`]), ARIMA on the deseasonalised series ([`arima`]), a Prophet-style
//! regression ([`prophet`]), seasonal naive and naive ([`naive`]). [`season`] finds the period;
//! [`auto`] chooses per series by backtest and falls back along a chain when history is short;
//! [`backtest`] is the project's evaluation protocol; [`engine`] is the per-endpoint schedule
//! (update, score, refit, re-choose) shared by [`thread`] (the forecast thread) and the
//! simulator. [`settings`] is `[forecast]` validated, [`published`] what the thread publishes,
//! [`view`] the read side, [`demand`] the conversion of rates to cores, memory and I/O.

pub mod arima;
pub mod auto;
pub mod backtest;
pub(crate) mod demand;
pub mod dshw;
pub(crate) mod engine;
pub mod exclusions;
pub mod hw;
pub mod naive;
pub(crate) mod optimize;
pub mod prophet;
pub mod published;
pub mod season;
pub mod settings;
pub(crate) mod thread;
pub mod view;

/// Why a model could not be fitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForecastError {
    #[error("not enough data: need {need} points, have {have}")]
    NotEnoughData { need: usize, have: usize },
    #[error("bad model specification: {0}")]
    BadSpec(&'static str),
}

/// Point forecasts with bands, all clipped at zero.
#[derive(Debug, Clone, PartialEq)]
pub struct Forecast {
    pub mean: Vec<f64>,
    pub lo80: Vec<f64>,
    pub hi80: Vec<f64>,
    pub lo95: Vec<f64>,
    pub hi95: Vec<f64>,
}

/// Per-horizon quantiles (2.5 %, 10 %, 90 %, 97.5 %) of forecast errors divided by the
/// forecast's scale, plus the floor of that scale.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ErrorQuantiles {
    pub q: Vec<[f64; 4]>,
    pub floor: f64,
}

impl Forecast {
    /// Bands from empirical error quantiles; horizons beyond those calibrated reuse the last.
    pub fn with_bands(mean: Vec<f64>, b: &ErrorQuantiles) -> Self {
        let n = mean.len();
        let mut f = Forecast { mean: Vec::with_capacity(n), lo80: vec![], hi80: vec![], lo95: vec![], hi95: vec![] };
        for (j, m) in mean.into_iter().enumerate() {
            let q = b.q.get(j).or(b.q.last()).copied().unwrap_or([0.0; 4]);
            let scale = m.max(b.floor);
            f.mean.push(m.max(0.0));
            f.lo95.push((m + q[0] * scale).max(0.0));
            f.lo80.push((m + q[1] * scale).max(0.0));
            f.hi80.push((m + q[2] * scale).max(0.0));
            f.hi95.push((m + q[3] * scale).max(0.0));
        }
        f
    }
}

/// Quantiles of scaled errors per horizon from `(t, forecasts of y[t..t+k])` pairs.
pub fn empirical_bands(y: &[f64], preds: &[(usize, Vec<f64>)], h: usize) -> ErrorQuantiles {
    let finite: Vec<f64> = y.iter().copied().filter(|v| v.is_finite()).collect();
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    let floor = (0.05 * mean).max(1.0);
    let mut q = Vec::with_capacity(h);
    let mut prev = [0.0; 4];
    for j in 0..h {
        let mut errs: Vec<f64> = preds
            .iter()
            .filter_map(|(t, f)| {
                let (v, p) = (*y.get(t + j)?, *f.get(j)?);
                v.is_finite().then(|| (v - p) / p.max(floor))
            })
            .collect();
        if errs.len() < 20 {
            q.push(prev);
            continue;
        }
        errs.sort_by(|a, b| a.total_cmp(b));
        let at = |p: f64| errs[((errs.len() - 1) as f64 * p).round() as usize];
        prev = [at(0.025), at(0.10), at(0.90), at(0.975)];
        q.push(prev);
    }
    ErrorQuantiles { q, floor }
}
