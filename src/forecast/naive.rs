//! Seasonal naive: the value one season ago. The baseline every model must beat; its bands
//! come from its own recent errors, like every model's.

use super::{ErrorQuantiles, Forecast, ForecastError, empirical_bands};

#[derive(Debug, Clone)]
pub struct SeasonalNaive {
    period: usize,
    /// The last season of data (NaN where missing).
    last: Vec<f64>,
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
        let last = (0..period).map(|i| value_at(n + i)).collect();
        Ok(Self { period, last, bands })
    }

    pub fn predict(&self, h: usize) -> Forecast {
        let mean = (0..h).map(|j| self.last[j % self.period]).collect();
        Forecast::with_bands(mean, &self.bands)
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
