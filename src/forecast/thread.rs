//! The forecast thread: reads the historian's 1-minute series through its snapshot (never
//! blocking it), fits each endpoint's model on a schedule, feeds it every newly closed minute in
//! between (an O(1) state update), and publishes immutable forecasts through `ArcSwap` for the
//! admin API and the allocator.
//!
//! Schedule per endpoint: the model is *chosen* (`AutoSpec`, a backtest of every family on
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

use super::engine::Engine;
use crate::clock::SharedClock;
use crate::feedback::classes::ClassSplit;
use crate::historian::HistorianView;

use super::demand::{call_costs, class_splits, demand};
use super::published::{ClassForecast, Forecasts, PoolForecast};
use super::settings::ForecastConfig;
use super::view::ForecastView;

/// How often the thread looks for newly closed minutes.
const TICK: Duration = Duration::from_secs(1);
/// Fitting time per tick at most.
const BUDGET: Duration = Duration::from_millis(500);
const STEP_S: u64 = 60;

pub(crate) struct Forecaster {
    view: ForecastView,
    routes: Arc<ArcSwap<HashMap<String, String>>>,
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Forecaster {
    /// `routes` maps endpoint names to pool names (for the pool sums).
    pub(crate) fn start(
        cfg: ForecastConfig,
        historian: HistorianView,
        clock: SharedClock,
        routes: HashMap<String, String>,
        exclusions: Arc<super::exclusions::ExclusionStore>,
    ) -> std::io::Result<Self> {
        let (refits, inbox) = crossbeam_channel::bounded::<String>(64);
        let view = ForecastView(Arc::new(ArcSwap::from_pointee(Forecasts::default())), refits, exclusions.clone());
        let routes = Arc::new(ArcSwap::from_pointee(routes));
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let publish = view.0.clone();
        let r = routes.clone();
        let thread = std::thread::Builder::new()
            .name("prescale-forecast".into())
            .spawn(move || run(cfg, historian, clock, r, publish, stopped, Operators { refits: inbox, exclusions }))?;
        Ok(Self { view, routes, stop, thread: Some(thread) })
    }

    pub(crate) fn view(&self) -> ForecastView {
        self.view.clone()
    }

    /// New endpoint → pool routes (after a reload).
    pub(crate) fn set_routes(&self, routes: HashMap<String, String>) {
        self.routes.store(Arc::new(routes));
    }

    pub(crate) fn stop(mut self) {
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

/// What operators change at run time: refits asked for, excluded periods.
struct Operators {
    refits: Receiver<String>,
    exclusions: Arc<super::exclusions::ExclusionStore>,
}

fn run(
    cfg: ForecastConfig,
    historian: HistorianView,
    clock: SharedClock,
    routes: Arc<ArcSwap<HashMap<String, String>>>,
    publish: Arc<ArcSwap<Forecasts>>,
    stop: Receiver<()>,
    ops: Operators,
) {
    let Operators { refits, exclusions } = ops;
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
            engine.set_exclusions(&ep.name, exclusions.of(&ep.name));
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
