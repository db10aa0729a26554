//! The forecast thread: reads the historian's 1-minute series through its snapshot (never
//! blocking it), fits each endpoint's model on a schedule, feeds it every newly closed minute in
//! between (an O(1) state update for Holt–Winters), and publishes immutable forecasts through
//! `ArcSwap` for the admin API (and, later, the allocator).
//!
//! Model choice for now: Holt–Winters with a daily season when at least two days of history
//! exist, else nothing (the endpoint says how much history it still needs). Selection among
//! several models is not built yet.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use super::hw::{HwFit, HwSpec};
use crate::clock::SharedClock;
use crate::historian::HistorianView;

/// `[forecast]` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForecastConfig {
    /// Minutes ahead to forecast.
    pub horizon_min: usize,
    /// Parameters are re-estimated this often; the state is updated every minute in between.
    pub refit_every: Duration,
    /// History used for a fit, in days.
    pub history_days: u64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self { horizon_min: 60, refit_every: Duration::from_secs(15 * 60), history_days: 14 }
    }
}

/// How often the thread looks for newly closed minutes.
const TICK: Duration = Duration::from_secs(5);
const STEP_S: u64 = 60;
const DAY: usize = 1440;

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

/// What `/admin/api/forecast` serves for one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct EndpointForecast {
    pub endpoint: String,
    /// `"hw"`, or `"none"` while history is too short.
    pub model: &'static str,
    /// Epoch seconds of the last parameter fit.
    pub fitted_at: u64,
    pub step: u64,
    pub points: Vec<RatePoint>,
    /// Why there is no forecast, when there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Published forecasts by endpoint.
pub type Forecasts = HashMap<String, Arc<EndpointForecast>>;

/// Read side.
#[derive(Clone)]
pub struct ForecastView(Arc<ArcSwap<Forecasts>>);

impl ForecastView {
    pub fn get(&self, endpoint: &str) -> Option<Arc<EndpointForecast>> {
        self.0.load().get(endpoint).cloned()
    }
    pub fn all(&self) -> Arc<Forecasts> {
        self.0.load_full()
    }
}

pub struct Forecaster {
    view: ForecastView,
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

struct Model {
    fit: HwFit,
    /// Index (epoch minute) of the next minute the state has not seen.
    next: u64,
    fitted_at: u64,
}

impl Forecaster {
    pub fn start(cfg: ForecastConfig, historian: HistorianView, clock: SharedClock) -> std::io::Result<Self> {
        let view = ForecastView(Arc::new(ArcSwap::from_pointee(HashMap::new())));
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let publish = view.0.clone();
        let thread = std::thread::Builder::new()
            .name("prescale-forecast".into())
            .spawn(move || run(cfg, historian, clock, publish, stopped))?;
        Ok(Self { view, stop, thread: Some(thread) })
    }

    pub fn view(&self) -> ForecastView {
        self.view.clone()
    }

    pub fn stop(mut self) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Forecaster {
    fn drop(&mut self) {
        let _ = self.stop.try_send(());
    }
}

fn run(
    cfg: ForecastConfig,
    historian: HistorianView,
    clock: SharedClock,
    publish: Arc<ArcSwap<Forecasts>>,
    stop: Receiver<()>,
) {
    let mut models: HashMap<String, Model> = HashMap::new();
    loop {
        let snap = historian.snapshot();
        let now_s = clock.now_us() / 1_000_000;
        let mut out: Forecasts = HashMap::new();
        for ep in &snap.endpoints {
            let Some(tier) = ep.tiers.iter().find(|t| t.step_s == STEP_S) else { continue };
            let end = tier.next(); // first minute not closed yet
            let name = ep.name.to_string();
            let due =
                models.get(&name).is_none_or(|m| now_s >= m.fitted_at + cfg.refit_every.as_secs() || m.next > end);
            if due {
                let from = end.saturating_sub(cfg.history_days * DAY as u64);
                let y: Vec<f64> = tier
                    .points(from * STEP_S, end * STEP_S, STEP_S)
                    .iter()
                    .map(|p| if p.missing { f64::NAN } else { p.count as f64 })
                    .collect();
                // Leading missing minutes (before any history) are not part of the series.
                let first = y.iter().position(|v| v.is_finite()).unwrap_or(y.len());
                let spec = HwSpec::additive(DAY, cfg.horizon_min);
                match spec.fit(&y[first..]) {
                    Ok(fit) => {
                        models.insert(name.clone(), Model { fit, next: end, fitted_at: now_s });
                    }
                    Err(e) => {
                        models.remove(&name);
                        out.insert(
                            name.clone(),
                            Arc::new(EndpointForecast {
                                endpoint: name,
                                model: "none",
                                fitted_at: 0,
                                step: STEP_S,
                                points: Vec::new(),
                                note: Some(format!("{e} (1-minute buckets)")),
                            }),
                        );
                        continue;
                    }
                }
            }
            let Some(m) = models.get_mut(&name) else { continue };
            // Feed the minutes closed since the last look.
            if m.next < end {
                for p in tier.points(m.next * STEP_S, end * STEP_S, STEP_S) {
                    m.fit.update(if p.missing { f64::NAN } else { p.count as f64 });
                }
                m.next = end;
            }
            let f = m.fit.predict(cfg.horizon_min);
            let points = (0..cfg.horizon_min)
                .map(|j| RatePoint {
                    t: (end + j as u64) * STEP_S,
                    rate: f.mean[j] / STEP_S as f64,
                    lo80: f.lo80[j] / STEP_S as f64,
                    hi80: f.hi80[j] / STEP_S as f64,
                    lo95: f.lo95[j] / STEP_S as f64,
                    hi95: f.hi95[j] / STEP_S as f64,
                })
                .collect();
            out.insert(
                name.clone(),
                Arc::new(EndpointForecast {
                    endpoint: name,
                    model: "hw",
                    fitted_at: m.fitted_at,
                    step: STEP_S,
                    points,
                    note: None,
                }),
            );
        }
        publish.store(Arc::new(out));
        // Stop on a message or when the handle is gone; else look again after a tick.
        if !matches!(stop.recv_timeout(TICK), Err(crossbeam_channel::RecvTimeoutError::Timeout)) {
            return;
        }
    }
}
