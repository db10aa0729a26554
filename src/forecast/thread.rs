//! The forecast thread: reads the historian's 1-minute series through its snapshot (never
//! blocking it), fits each endpoint's model on a schedule, feeds it every newly closed minute in
//! between (an O(1) state update), and publishes immutable forecasts through `ArcSwap` for the
//! admin API and the allocator.
//!
//! Schedule per endpoint: the model is *chosen* ([`AutoSpec`], a backtest of every family on
//! the endpoint's own recent history) every `select_every`, *re-estimated* (same family, new
//! parameters) every `refit_every`, and *updated* every minute. Refits are staggered: each
//! endpoint's first refit comes at its own phase of the interval, and one tick spends at most
//! half a second of every second fitting, so a hundred endpoints never refit in one burst. Ten
//! minutes in a row outside the 95 % band on the same side is a level shift, and a last-hour
//! error more than twice what the selection backtest promised is a broken model: either way the
//! endpoint is re-chosen at once. Every forecast is scored as its minutes close
//! ([`crate::feedback::score`]).
//!
//! Demand: calls/s with bands become CPU cores, memory and I/O through a cost model — CPU
//! seconds per request (configured prior), memory per request in flight × in-flight requests
//! by Little's law (rate × mean latency, measured from recent calls), bytes per request
//! (measured). Pools sum their endpoints' demand; summing the upper bands is conservative
//! (the bands of a sum are narrower), which is the right side to err on for capacity.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, Sender};
use serde::Serialize;

use super::auto::{CandidateScore, Level};
use super::engine::Engine;
use crate::clock::SharedClock;
use crate::feedback::classes::{self, ClassSplit};
use crate::feedback::score::HorizonAccuracy;
use crate::historian::HistorianView;

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

/// How often the thread looks for newly closed minutes.
const TICK: Duration = Duration::from_secs(1);
/// Fitting time per tick at most.
const BUDGET: Duration = Duration::from_millis(500);
const STEP_S: u64 = 60;

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

/// The forecast thread's queue is full or the thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the forecast thread is busy or stopped")]
pub struct Busy;

/// Read side.
#[derive(Clone)]
pub struct ForecastView(Arc<ArcSwap<Forecasts>>, Sender<String>);

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
}

pub struct Forecaster {
    view: ForecastView,
    routes: Arc<ArcSwap<HashMap<String, String>>>,
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Forecaster {
    /// `routes` maps endpoint names to pool names (for the pool sums).
    pub fn start(
        cfg: ForecastConfig,
        historian: HistorianView,
        clock: SharedClock,
        routes: HashMap<String, String>,
    ) -> std::io::Result<Self> {
        let (refits, inbox) = crossbeam_channel::bounded::<String>(64);
        let view = ForecastView(Arc::new(ArcSwap::from_pointee(Forecasts::default())), refits);
        let routes = Arc::new(ArcSwap::from_pointee(routes));
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let publish = view.0.clone();
        let r = routes.clone();
        let thread = std::thread::Builder::new()
            .name("prescale-forecast".into())
            .spawn(move || run(cfg, historian, clock, r, publish, stopped, inbox))?;
        Ok(Self { view, routes, stop, thread: Some(thread) })
    }

    pub fn view(&self) -> ForecastView {
        self.view.clone()
    }

    /// New endpoint → pool routes (after a reload).
    pub fn set_routes(&self, routes: HashMap<String, String>) {
        self.routes.store(Arc::new(routes));
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

/// Mean latency (ms) and bytes per call by endpoint, from the most recent calls.
fn call_costs(snap: &crate::historian::store::Snapshot) -> HashMap<Arc<str>, (f64, f64)> {
    let mut acc: HashMap<Arc<str>, (f64, f64, u64)> = HashMap::new();
    for c in snap.recent.iter().take(20_000) {
        let e = acc.entry(c.endpoint.clone()).or_default();
        e.0 += c.latency_us as f64 / 1000.0;
        e.1 += (c.bytes_in + c.bytes_out) as f64;
        e.2 += 1;
    }
    acc.into_iter().map(|(k, (l, b, n))| (k, (l / n as f64, b / n as f64))).collect()
}

/// Request classes per endpoint from the recent calls (the last minute's are the current mix).
fn class_splits(
    snap: &crate::historian::store::Snapshot,
    configured: &HashMap<String, String>,
    now_us: u64,
) -> HashMap<String, ClassSplit> {
    let mut by: HashMap<&str, Vec<classes::Call>> = HashMap::new();
    for c in snap.recent.iter() {
        by.entry(&c.endpoint).or_default().push(classes::Call {
            query: c.params(),
            latency_us: c.latency_us,
            recent: c.start_us + 60_000_000 >= now_us,
        });
    }
    by.into_iter()
        .filter_map(|(e, calls)| {
            classes::detect(&calls, configured.get(e).map(String::as_str)).map(|s| (e.to_string(), s))
        })
        .collect()
}

fn demand(cost: CostModel, latency_ms: f64, bytes: f64, points: &[RatePoint]) -> Demand {
    let cpu = |r: f64| r * cost.cpu_ms_per_request / 1000.0;
    let mem = |r: f64| r * latency_ms / 1000.0 * cost.memory_mib_per_request;
    Demand {
        cpu_ms_per_request: cost.cpu_ms_per_request,
        memory_mib_per_request: cost.memory_mib_per_request,
        latency_ms,
        bytes_per_request: bytes,
        points: points
            .iter()
            .map(|p| DemandPoint {
                t: p.t,
                cpu_cores: cpu(p.rate),
                cpu_cores_hi80: cpu(p.hi80),
                cpu_cores_hi95: cpu(p.hi95),
                memory_mib: mem(p.rate),
                memory_mib_hi95: mem(p.hi95),
                io_bytes_per_s: p.rate * bytes,
                io_bytes_per_s_hi95: p.hi95 * bytes,
            })
            .collect(),
    }
}

fn run(
    cfg: ForecastConfig,
    historian: HistorianView,
    clock: SharedClock,
    routes: Arc<ArcSwap<HashMap<String, String>>>,
    publish: Arc<ArcSwap<Forecasts>>,
    stop: Receiver<()>,
    refits: Receiver<String>,
) {
    let cost = cfg.cost;
    let class_params = cfg.class_params.clone();
    let mut engine = Engine::new(cfg, STEP_S);
    let mut splits: HashMap<String, ClassSplit> = HashMap::new();
    let mut ticks = 0u64;
    loop {
        let tick = Instant::now();
        let snap = historian.snapshot();
        let now_s = clock.now_us() / 1_000_000;
        let costs = call_costs(&snap);
        while let Ok(e) = refits.try_recv() {
            engine.force(&e);
        }
        if ticks.is_multiple_of(10) {
            splits = class_splits(&snap, &class_params, clock.now_us());
        }
        ticks += 1;
        let tiers: Vec<Option<&crate::historian::series::Tier>> =
            snap.endpoints.iter().map(|ep| ep.tiers.iter().find(|t| t.step_s == STEP_S)).collect();
        // Feed closed minutes; collect who is due, most overdue first.
        let mut due: Vec<(u64, usize, &'static str)> = Vec::new();
        for (i, ep) in snap.endpoints.iter().enumerate() {
            let Some(t) = tiers[i] else { continue };
            if let Some((when, reason)) = engine.feed(&ep.name, t, now_s) {
                due.push((when, i, reason));
            }
        }
        due.sort();
        for (_, i, reason) in due {
            if tick.elapsed() >= BUDGET {
                break;
            }
            if let Some(t) = tiers[i] {
                engine.fit(&snap.endpoints[i].name, t, now_s, reason);
            }
        }
        let routes = routes.load();
        let mut out = Forecasts::default();
        for (i, ep) in snap.endpoints.iter().enumerate() {
            let Some(t) = tiers[i] else { continue };
            let Some(mut f) = engine.forecast(&ep.name, t) else { continue };
            let name = ep.name.to_string();
            if let Some(acc) = engine.accuracy(&name, t) {
                out.accuracy.insert(name.clone(), Arc::new(acc));
            }
            if f.note.is_none() {
                let (lat, bytes) = costs.get(&ep.name).copied().unwrap_or((0.0, 0.0));
                let d = demand(cost, lat, bytes, &f.points);
                if let Some(pool) = routes.get(&name) {
                    match out.pools.entry(pool.clone()) {
                        std::collections::hash_map::Entry::Vacant(v) => {
                            v.insert(Arc::new(PoolForecast {
                                pool: pool.clone(),
                                endpoints: vec![name.clone()],
                                step: STEP_S,
                                rate: f.points.clone(),
                                demand: d.points.clone(),
                            }));
                        }
                        std::collections::hash_map::Entry::Occupied(mut o) => {
                            let pf = Arc::make_mut(o.get_mut());
                            pf.endpoints.push(name.clone());
                            pf.rate.iter_mut().zip(&f.points).for_each(|(a, b)| *a += b);
                            pf.demand.iter_mut().zip(&d.points).for_each(|(a, b)| *a += b);
                        }
                    }
                }
                if let Some(split) = splits.get(&name) {
                    f.class_forecast = split
                        .classes
                        .iter()
                        .map(|c| ClassForecast {
                            value: c.value.clone(),
                            rate: f.points.iter().map(|p| p.rate * c.share).collect(),
                            cpu_cores: f
                                .points
                                .iter()
                                .map(|p| p.rate * c.share * c.relative_cost * cost.cpu_ms_per_request / 1000.0)
                                .collect(),
                        })
                        .collect();
                    f.classes = Some(split.clone());
                }
                f.demand = Some(d);
            }
            out.endpoints.insert(name, Arc::new(f));
        }
        publish.store(Arc::new(out));
        // Stop on a message or when the handle is gone; else look again after a tick.
        let wait = TICK.saturating_sub(tick.elapsed()).max(Duration::from_millis(200));
        if !matches!(stop.recv_timeout(wait), Err(crossbeam_channel::RecvTimeoutError::Timeout)) {
            return;
        }
    }
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
