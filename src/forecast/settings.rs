//! `[forecast]`, validated: the schedule of fits and the demand cost model's priors.

use std::collections::HashMap;
use std::time::Duration;

/// Cost of one request, before the feedback loop learns it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CostModel {
    /// CPU time per request, milliseconds.
    pub cpu_ms_per_request: f64,
    /// Memory held per request in flight, MiB.
    pub memory_mib_per_request: f64,
}

impl Default for CostModel {
    fn default() -> Self {
        Self { cpu_ms_per_request: 10.0, memory_mib_per_request: 8.0 }
    }
}

/// `[forecast]` settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ForecastConfig {
    /// Minutes ahead to forecast.
    pub horizon_min: usize,
    /// Parameters are re-estimated this often; the state is updated every minute in between.
    pub refit_every: Duration,
    /// The model family is chosen again this often.
    pub select_every: Duration,
    /// History used for a fit, in days.
    pub history_days: u64,
    pub cost: CostModel,
    /// Endpoint → query parameter whose values are its request classes (`class_param`);
    /// endpoints not named here have their classes detected.
    pub class_params: HashMap<String, String>,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            horizon_min: 60,
            refit_every: Duration::from_secs(15 * 60),
            select_every: Duration::from_secs(6 * 3600),
            history_days: 14,
            cost: CostModel::default(),
            class_params: HashMap::new(),
        }
    }
}
