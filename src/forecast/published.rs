//! What the forecast thread publishes: per endpoint and per pool, rates with bands, demand in
//! cores, memory and I/O, request classes, and the model's scores.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::auto::{CandidateScore, Level};
use crate::feedback::classes::ClassSplit;
use crate::feedback::score::HorizonAccuracy;

/// One forecast point: calls per second over the minute starting at `t`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RatePoint {
    pub t: u64,
    pub rate: f64,
    pub lo80: f64,
    pub hi80: f64,
    pub lo95: f64,
    pub hi95: f64,
}

/// Sums the rates and bands of another endpoint's point for the same minute (a pool's sum).
impl std::ops::AddAssign<&RatePoint> for RatePoint {
    fn add_assign(&mut self, b: &RatePoint) {
        self.rate += b.rate;
        self.lo80 += b.lo80;
        self.hi80 += b.hi80;
        self.lo95 += b.lo95;
        self.hi95 += b.hi95;
    }
}

/// Resources one forecast point needs.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct DemandPoint {
    pub t: u64,
    pub cpu_cores: f64,
    pub cpu_cores_hi80: f64,
    pub cpu_cores_hi95: f64,
    pub memory_mib: f64,
    pub memory_mib_hi95: f64,
    pub io_bytes_per_s: f64,
    pub io_bytes_per_s_hi95: f64,
}

/// Sums another endpoint's demand for the same minute (a pool's sum).
impl std::ops::AddAssign<&DemandPoint> for DemandPoint {
    fn add_assign(&mut self, b: &DemandPoint) {
        self.cpu_cores += b.cpu_cores;
        self.cpu_cores_hi80 += b.cpu_cores_hi80;
        self.cpu_cores_hi95 += b.cpu_cores_hi95;
        self.memory_mib += b.memory_mib;
        self.memory_mib_hi95 += b.memory_mib_hi95;
        self.io_bytes_per_s += b.io_bytes_per_s;
        self.io_bytes_per_s_hi95 += b.io_bytes_per_s_hi95;
    }
}

/// The cost model as applied to one endpoint, and the demand it gives.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Demand {
    pub cpu_ms_per_request: f64,
    pub memory_mib_per_request: f64,
    /// Mean latency of recent calls (Little's law); 0 with none recorded.
    pub latency_ms: f64,
    /// Mean bytes in + out of recent calls.
    pub bytes_per_request: f64,
    pub points: Vec<DemandPoint>,
}

/// What `/admin/api/forecast?endpoint=NAME` serves.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointForecast {
    pub endpoint: String,
    /// The chosen family (`"hw"`), a weighted mean (`"hw+arima"`), or `"none"` while history is
    /// too short.
    pub model: String,
    /// Epoch seconds of the last parameter fit and of the last model choice.
    pub fitted_at: u64,
    pub selected_at: u64,
    /// Why the last fit happened: `"first"`, `"schedule"`, `"selection"`, `"level_shift"`,
    /// `"broken"` (live error far above the backtest's), `"manual"` (asked on /admin).
    pub fit_reason: &'static str,
    pub step: u64,
    pub points: Vec<RatePoint>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub demand: Option<Demand>,
    /// Every candidate's holdout MASE at the last choice.
    pub selection: Vec<CandidateScore>,
    /// Detected season in minutes, if any, and whether a weekly cycle was found.
    pub season_minutes: Option<usize>,
    pub weekly: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<Level>,
    /// Why a simpler model than double-seasonal was used, when one was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Why there is no forecast, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Request classes and the forecast split by them, when the endpoint has classes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub classes: Option<ClassSplit>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub class_forecast: Vec<ClassForecast>,
    /// What was forecast 15 minutes ahead over the last day (for the admin chart).
    #[serde(skip)]
    pub past: Arc<std::collections::VecDeque<super::engine::PastPoint>>,
}

/// One class's part of the forecast: its share of the calls, and CPU at its relative cost.
#[derive(Debug, Clone, Serialize)]
pub struct ClassForecast {
    pub value: String,
    /// Calls/s per forecast point.
    pub rate: Vec<f64>,
    pub cpu_cores: Vec<f64>,
}

/// A pool's summed forecast: what the allocator plans with.
#[derive(Debug, Clone, Serialize)]
pub struct PoolForecast {
    pub pool: String,
    /// Endpoints with a forecast that route to this pool.
    pub endpoints: Vec<String>,
    pub step: u64,
    pub rate: Vec<RatePoint>,
    pub demand: Vec<DemandPoint>,
}

/// Everything published at one tick.
#[derive(Debug, Default)]
pub struct Forecasts {
    pub endpoints: HashMap<String, Arc<EndpointForecast>>,
    pub pools: HashMap<String, Arc<PoolForecast>>,
    /// Rolling forecast accuracy by endpoint (the feedback loop's scoring).
    pub accuracy: HashMap<String, Arc<Vec<HorizonAccuracy>>>,
}

impl EndpointForecast {
    /// No forecast, and why.
    pub fn none(endpoint: String, note: String, step: u64) -> Self {
        EndpointForecast {
            endpoint,
            model: "none".into(),
            fitted_at: 0,
            selected_at: 0,
            fit_reason: "first",
            step,
            points: Vec::new(),
            demand: None,
            selection: Vec::new(),
            season_minutes: None,
            weekly: false,
            level: None,
            fallback: None,
            note: Some(note),
            classes: None,
            class_forecast: Vec::new(),
            past: Default::default(),
        }
    }
}
