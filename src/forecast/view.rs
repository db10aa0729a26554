//! The read side of the forecast thread: the latest published forecasts, and refit requests.

use std::sync::Arc;

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;

use crate::feedback::score::HorizonAccuracy;

use super::published::{EndpointForecast, Forecasts, PoolForecast};

/// The forecast thread's queue is full or the thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the forecast thread is busy or stopped")]
pub struct Busy;

/// Read side.
#[derive(Clone)]
pub struct ForecastView(
    pub(super) Arc<ArcSwap<Forecasts>>,
    pub(super) Sender<String>,
    pub(super) Arc<super::exclusions::ExclusionStore>,
);

impl ForecastView {
    /// Asks for `endpoint`'s model to be chosen again (within a second).
    pub fn refit(&self, endpoint: &str) -> Result<(), Busy> {
        self.1.try_send(endpoint.to_string()).map_err(|_| Busy)
    }

    pub fn get(&self, endpoint: &str) -> Option<Arc<EndpointForecast>> {
        self.0.load().endpoints.get(endpoint).cloned()
    }
    pub fn pool(&self, pool: &str) -> Option<Arc<PoolForecast>> {
        self.0.load().pools.get(pool).cloned()
    }
    pub fn accuracy(&self, endpoint: &str) -> Option<Arc<Vec<HorizonAccuracy>>> {
        self.0.load().accuracy.get(endpoint).cloned()
    }
    pub fn all(&self) -> Arc<Forecasts> {
        self.0.load_full()
    }

    /// Every excluded span in force (configured and added).
    pub fn exclusions(&self) -> Arc<Vec<super::exclusions::Exclusion>> {
        self.2.all()
    }

    /// Excludes `[from, to)` of `endpoint` from what its models learn and its scores (saved in
    /// the data_dir; the endpoint is fitted again within a second).
    pub fn exclude(
        &self,
        endpoint: &str,
        from: u64,
        to: u64,
        reason: &str,
    ) -> Result<(), super::exclusions::ExcludeError> {
        self.2.add(endpoint, from, to, reason)
    }
}
