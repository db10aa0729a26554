//! Seasonal naive: the value one season ago (period 1: the last value, plain naive). The baseline every model must beat; its bands
//! come from its own recent errors, like every model's.

use super::{ErrorQuantiles, Forecast, ForecastError, empirical_bands};

#[derive(Debug, Clone)]
pub struct SeasonalNaive {
    period: usize,
    /// The last season of data by phase (`t % period`).
    last: Vec<f64>,
    /// Index of the next point.
    n: usize,
    bands: ErrorQuantiles,
}

impl SeasonalNaive {
    pub fn fit(y: &[f64], period: usize, horizon: usize) -> Result<Self, ForecastError> {
        if y.len() < 2 * period {
            return Err(ForecastError::NotEnoughData { need: 2 * period, have: y.len() });
        }
        let value_at = |t: usize| -> f64 {
            // The most recent finite value at the same phase, up to 4 seasons back.
            (1..=4).filter_map(|k| t.checked_sub(k * period)).map(|i| y[i]).find(|v| v.is_finite()).unwrap_or(0.0)
        };
        let window = (y.len() - period).min(4 * period.max(288));
        let from = y.len() - window;
        let h = horizon.max(1);
        let preds: Vec<(usize, Vec<f64>)> = (from..y.len())
            .step_by(2)
            .map(|t| (t, (0..h.min(y.len() - t)).map(|j| value_at(t + j)).collect()))
            .collect();
        let bands = empirical_bands(y, &preds, h);
        let n = y.len();
        let mut last = vec![0.0; period];
        for t in n..n + period {
            last[t % period] = value_at(t);
        }
        Ok(Self { period, last, n, bands })
    }

    pub fn bands(&self) -> &ErrorQuantiles {
        &self.bands
    }

    /// Takes one observation (NaN = missing: the older value at that phase stays).
    pub fn update(&mut self, v: f64) {
        if v.is_finite() {
            self.last[self.n % self.period] = v;
        }
        self.n += 1;
    }

    pub fn mean(&self, h: usize) -> Vec<f64> {
        (0..h).map(|j| self.last[(self.n + j) % self.period]).collect()
    }

    pub fn predict(&self, h: usize) -> Forecast {
        Forecast::with_bands(self.mean(h), &self.bands)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_the_last_season() {
        let y: Vec<f64> = (0..40).map(|t| (t % 4) as f64 * 10.0 + (t / 4) as f64).collect();
        let f = SeasonalNaive::fit(&y, 4, 4).unwrap().predict(6);
        assert_eq!(f.mean, vec![9.0, 19.0, 29.0, 39.0, 9.0, 19.0]);
        assert!(SeasonalNaive::fit(&y[..5], 4, 1).is_err());
    }
}
