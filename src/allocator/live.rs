//! The live allocator: one `prescale-allocator` thread (libvirt calls block) that ticks every
//! pool's [`Controller`] each second on the injected clock, with the proxy's pools as
//! [`Membership`], the proxy's health check as [`Prober`] and the historian and forecast
//! views as [`Signals`]. Every decision goes to a ring (served at `/admin/api/decisions`) and,
//! with a `log` path, to a JSON-lines file. Operators' commands arrive on a channel and are
//! carried out at the next tick.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use crossbeam_channel::Sender;

use super::controller::{
    Command, Controller, Env, Fence, FleetRole, LoggedDecision, ManagedPool, Membership, Outcome, PoolStatus, Prober,
    Signals,
};
use super::plan::{ForecastInput, ForecastPoint};
use crate::clock::SharedClock;
use crate::feedback::score::HorizonAccuracy;
use crate::forecast::view::ForecastView;
use crate::historian::HistorianView;
use crate::proxy::Proxy;
use crate::proxy::pool::Pool;

const TICK: Duration = Duration::from_secs(1);
const RING: usize = 2000;
/// A booting VM's health check gets this long to answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub struct AllocatorState {
    pub pools: Vec<PoolStatus>,
    pub decisions: VecDeque<LoggedDecision>,
    /// Every scaling action decided since start, by pool, kind and outcome class (a counter:
    /// the ring above forgets, this does not).
    pub actions: BTreeMap<(String, &'static str, &'static str), u64>,
}

/// The allocator's queue is full or the thread has stopped.
#[derive(Debug, thiserror::Error)]
#[error("the allocator is busy or stopped")]
pub struct Busy;

#[derive(Clone)]
pub struct AllocatorView(Arc<ArcSwap<AllocatorState>>, Sender<Command>);

impl AllocatorView {
    pub fn state(&self) -> Arc<AllocatorState> {
        self.0.load_full()
    }

    /// Queues a command for the allocator's next tick (within a second).
    pub fn send(&self, c: Command) -> Result<(), Busy> {
        self.1.try_send(c).map_err(|_| Busy)
    }
}

/// A fleet's say over the pools (`[cluster]`; implemented by `crate::fleet`): only the
/// elected leader of a pool plans and acts, proving before each action that it still leads.
pub trait Coordinator: Send + Sync {
    fn role(&self, pool: &str) -> Role;
    /// Records `what` in etcd on condition that this instance still holds the pool's
    /// leadership lease; `Err` says why the action must not be carried out.
    fn fence(&self, pool: &str, what: &str) -> Result<(), String>;
    /// Other instances' requests/s over the last minute, summed over `endpoints`.
    fn peer_rps(&self, endpoints: &[String]) -> f64;
    /// Other instances' requests in flight to `addr` (a leader's drain waits for them);
    /// `None` until every other instance has reported on it (it may not have drained it yet).
    fn peer_in_flight(&self, addr: &str) -> Option<u32>;
    /// Follower: the members the pool's leader drains.
    fn draining(&self, pool: &str) -> Vec<String>;
    /// Hands this tick's part over for etcd.
    fn share(&self, pool: &str, shared: Shared);
    /// Follower: the leader's recent decisions, newest first.
    fn leader_decisions(&self, pool: &str) -> Vec<LoggedDecision>;
    /// `fleet/instance/term` for the metadata of VMs this instance makes for `pool`.
    fn owner(&self, pool: &str) -> String;
}

/// This instance's part in a pool.
#[derive(Debug, Clone, PartialEq)]
pub enum Role {
    Leader {
        term: i64,
    },
    /// Led by (id, admin address), when known.
    Follower {
        leader: Option<(String, String)>,
    },
    /// Nobody acts from here: etcd cannot be reached, or the lease was not renewed in time.
    Paused(String),
}

impl Role {
    fn status(&self) -> FleetRole {
        let mut r = FleetRole { role: "leader", leader: None, leader_admin: None, term: None, detail: None };
        match self {
            Role::Leader { term } => r.term = Some(*term),
            Role::Follower { leader } => {
                r.role = "follower";
                if let Some((id, admin)) = leader {
                    r.leader = Some(id.clone());
                    r.leader_admin = Some(admin.clone());
                }
            }
            Role::Paused(why) => {
                r.role = "paused";
                r.detail = Some(why.clone());
            }
        }
        r
    }

    /// What a refused operator's action is told.
    fn refusal(&self, pool: &str) -> String {
        match self {
            Role::Follower { leader: Some((id, admin)) } => {
                format!("refused: pool {pool} is led by instance {id} (admin http://{admin}); ask it")
            }
            Role::Follower { leader: None } => format!("refused: pool {pool} has no leader yet; try again shortly"),
            Role::Paused(why) => format!("refused: scaling of pool {pool} is paused ({why})"),
            Role::Leader { .. } => String::new(),
        }
    }
}

/// One tick's part of a pool for the fleet.
#[derive(Debug, Clone, Default)]
pub struct Shared {
    /// This instance led the pool in this tick.
    pub leading: bool,
    /// Leader: the decisions made (written to etcd under the fence).
    pub decisions: Vec<LoggedDecision>,
    /// Leader: the members it drains.
    pub draining: Vec<String>,
    /// Follower: requests in flight to the members the leader drains.
    pub in_flight: Vec<(String, u32)>,
}

struct PoolFence<'a> {
    coordinator: &'a dyn Coordinator,
    pool: &'a str,
}

impl Fence for PoolFence<'_> {
    fn check(&self, action: &super::plan::Action) -> Result<(), String> {
        self.coordinator.fence(self.pool, &action.to_string())
    }
    fn owner(&self) -> String {
        self.coordinator.owner(self.pool)
    }
}

/// The leader's view of a member's requests in flight: its own plus every follower's.
struct FleetMembership<'a> {
    inner: &'a mut ProxyPool,
    coordinator: &'a dyn Coordinator,
}

impl Membership for FleetMembership<'_> {
    fn join(&mut self, addr: &str, weight: u32) {
        self.inner.join(addr, weight)
    }
    fn drain(&mut self, addr: &str) {
        self.inner.drain(addr)
    }
    fn remove(&mut self, addr: &str) {
        self.inner.remove(addr)
    }
    fn set_weight(&mut self, addr: &str, weight: u32) {
        self.inner.set_weight(addr, weight)
    }
    fn in_flight(&self, addr: &str) -> Option<u32> {
        // Until every instance has said how many it still has, count one: not drained yet.
        self.inner.in_flight(addr).map(|n| n + self.coordinator.peer_in_flight(addr).unwrap_or(1))
    }
}

/// A decision as a span of its own trace (`[tracing]`): what was decided, why, and how it went.
fn decision_span(d: &LoggedDecision) -> crate::proxy::otlp::SpanRecord {
    use crate::proxy::otlp::{Attr, SpanRecord};
    let t = crate::proxy::traceparent::TraceContext::from_headers(&http::HeaderMap::new());
    let kind = d.action.as_ref().map_or("hold", |a| a.kind());
    let start_us = d.t * 1_000_000;
    SpanRecord {
        trace_id: t.trace_id,
        span_id: t.span_id,
        parent_id: None,
        name: format!("scaling decision {}: {kind}", d.pool),
        server: false,
        start_us,
        end_us: start_us + d.duration_ms.unwrap_or(0) * 1000,
        error: d.outcome.class() == "error",
        attributes: vec![
            ("prescale.pool", Attr::Str(d.pool.clone())),
            ("prescale.action", Attr::Str(kind.to_string())),
            ("prescale.action.detail", Attr::Str(d.action.as_ref().map_or(String::new(), |a| a.to_string()))),
            ("prescale.reason", Attr::Str(d.reason.clone())),
            ("prescale.outcome", Attr::Str(d.outcome.as_text().into_owned())),
            ("prescale.reactive", Attr::Bool(d.reactive)),
            ("prescale.required_rps", Attr::Str(format!("{:.3}", d.inputs.required_rps))),
            ("prescale.capacity_rps", Attr::Str(format!("{:.3}", d.inputs.capacity_rps))),
        ],
    }
}

pub struct Allocator {
    view: AllocatorView,
    stop: Sender<()>,
    thread: Option<JoinHandle<()>>,
}

/// The proxy's pool of one controller.
struct ProxyPool(Option<Arc<Pool>>);

fn authority(addr: &str) -> Option<http::uri::Authority> {
    addr.parse().ok()
}

impl Membership for ProxyPool {
    fn join(&mut self, addr: &str, weight: u32) {
        if let (Some(p), Some(a)) = (&self.0, authority(addr)) {
            p.add_member(a, weight);
        }
    }
    fn drain(&mut self, addr: &str) {
        if let (Some(p), Some(a)) = (&self.0, authority(addr)) {
            p.drain(&a);
        }
    }
    fn remove(&mut self, addr: &str) {
        if let (Some(p), Some(a)) = (&self.0, authority(addr)) {
            p.remove(&a);
        }
    }
    fn set_weight(&mut self, addr: &str, weight: u32) {
        if let (Some(p), Some(a)) = (&self.0, authority(addr)) {
            p.set_weight(&a, weight);
        }
    }
    fn in_flight(&self, addr: &str) -> Option<u32> {
        let (p, a) = (self.0.as_ref()?, authority(addr)?);
        p.member(&a).map(|m| m.outstanding())
    }
}

/// The proxy's own health check, run to completion on the allocator's thread.
struct HttpProber {
    rt: tokio::runtime::Runtime,
    client: crate::proxy::UpstreamClient,
}

impl Prober for HttpProber {
    fn healthy(&mut self, addr: &str, path: &str) -> bool {
        let Some(a) = authority(addr) else { return false };
        self.rt.block_on(crate::proxy::health::probe(&self.client, &a, path, PROBE_TIMEOUT))
    }
}

/// Load and forecasts of one pool's endpoints, from the historian and forecast threads.
struct Views<'a> {
    endpoints: &'a [String],
    pool: &'a str,
    historian: Option<&'a HistorianView>,
    forecasts: Option<&'a ForecastView>,
    /// The fleet's other instances' load (`[cluster]`).
    coordinator: Option<&'a dyn Coordinator>,
    /// Requests the proxy holds now for this pool's endpoints (no member could take them).
    held: usize,
}

impl Signals for Views<'_> {
    fn measured_rps(&self) -> f64 {
        // The last seconds (the 1-second tier), so a burst is answered in seconds; a request held
        // for want of a ready member is demand the historian has not seen complete yet (with
        // `min_vms = 0`, the only sign of it): each counts as one request/s.
        let local = self.historian.map_or(0.0, |h| {
            let snap = h.snapshot();
            self.endpoints
                .iter()
                .filter_map(|e| snap.endpoint(e))
                .map(|e| e.burst_rate(super::REACTIVE_WINDOW_S, super::REACTIVE_BURST_S, snap.taken_us / 1_000_000))
                .sum()
        });
        local + self.held as f64 + self.coordinator.map_or(0.0, |c| c.peer_rps(self.endpoints))
    }

    fn forecast(&self) -> ForecastInput {
        self.forecasts
            .and_then(|f| f.pool(self.pool))
            .map(|pf| ForecastInput {
                points: pf
                    .rate
                    .iter()
                    .map(|p| ForecastPoint { t: p.t, mean: p.rate, hi80: p.hi80, hi95: p.hi95 })
                    .collect(),
            })
            .unwrap_or_default()
    }

    fn load_detail(&self) -> (f64, f64) {
        let Some(h) = self.historian else { return (0.0, 0.0) };
        let snap = h.snapshot();
        // Cost-weighted requests/s: each endpoint's rate × the cost of its current class mix
        // relative to its usual one (1 without classes).
        let weighted = self
            .endpoints
            .iter()
            .map(|e| {
                let rate = snap.endpoint(e).map_or(0.0, |v| v.recent_rate(60));
                let w = self
                    .forecasts
                    .and_then(|f| f.get(e))
                    .and_then(|f| f.classes.as_ref().map(|c| c.weight_now()))
                    .unwrap_or(1.0);
                rate * w
            })
            .sum();
        (concurrency(&snap, self.endpoints), weighted)
    }

    fn accuracy(&self, endpoint: &str) -> Option<Vec<HorizonAccuracy>> {
        self.forecasts?.accuracy(endpoint).map(|a| a.to_vec())
    }
}

/// Requests in flight for `endpoints` by Little's law: each endpoint's rate over the last
/// minute × the mean latency of its most recent calls (up to 2,000 of them).
fn concurrency(snap: &crate::historian::store::Snapshot, endpoints: &[String]) -> f64 {
    endpoints
        .iter()
        .map(|e| {
            let rate = snap.endpoint(e).map_or(0.0, |v| v.recent_rate(60));
            let lat: Vec<f64> = snap
                .recent
                .iter()
                .filter(|c| &*c.endpoint == e.as_str())
                .take(2000)
                .map(|c| c.latency_us as f64)
                .collect();
            if lat.is_empty() { 0.0 } else { rate * lat.iter().sum::<f64>() / lat.len() as f64 / 1e6 }
        })
        .sum()
}

impl Allocator {
    /// Starts the thread; `log` is the JSON-lines decision file, if any; `coordinator` the
    /// fleet's say (`[cluster]`), if any.
    pub fn start(
        pools: Vec<ManagedPool>,
        proxy: Arc<Proxy>,
        forecasts: Option<ForecastView>,
        historian: Option<HistorianView>,
        clock: SharedClock,
        log: Option<std::path::PathBuf>,
        coordinator: Option<Arc<dyn Coordinator>>,
    ) -> std::io::Result<Self> {
        let (commands, inbox) = crossbeam_channel::bounded::<Command>(64);
        let view = AllocatorView(Arc::new(ArcSwap::from_pointee(AllocatorState::default())), commands);
        let (stop, stopped) = crossbeam_channel::bounded(1);
        let publish = view.0.clone();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let mut prober = HttpProber { rt, client: proxy.upstream_client() };
        let thread = std::thread::Builder::new().name("prescale-allocator".into()).spawn(move || {
            let mut controllers: Vec<Controller> =
                pools.into_iter().map(|p| Controller::new(p, clock.clone())).collect();
            let mut decisions: VecDeque<LoggedDecision> = VecDeque::new();
            let mut actions = BTreeMap::new();
            let mut file = log.and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&p)
                    .map_err(|e| tracing::warn!(path = %p.display(), error = %e, "cannot open the decision log"))
                    .ok()
            });
            type Actions = BTreeMap<(String, &'static str, &'static str), u64>;
            let otlp = proxy.otlp().cloned();
            let mut keep = |decisions: &mut VecDeque<LoggedDecision>, actions: &mut Actions, d: LoggedDecision| {
                if let Some(a) = &d.action {
                    *actions.entry((d.pool.clone(), a.kind(), d.outcome.class())).or_default() += 1;
                }
                if let Some(x) = &otlp {
                    x.send(decision_span(&d));
                }
                if let Some(f) = file.as_mut()
                    && let Ok(line) = serde_json::to_string(&d)
                {
                    let _ = writeln!(f, "{line}");
                }
                decisions.push_front(d);
                decisions.truncate(RING);
            };
            // Each pool's last role kind, to log its changes.
            let mut roles: BTreeMap<String, &'static str> = BTreeMap::new();
            loop {
                let mut commands: Vec<Command> = inbox.try_iter().collect();
                let mut statuses = Vec::new();
                let mut followed: Vec<LoggedDecision> = Vec::new();
                for c in &mut controllers {
                    let name = c.name().to_string();
                    let endpoints = c.p.endpoints.clone();
                    let mut membership = ProxyPool(proxy.pool(&name));
                    let coord = coordinator.as_deref();
                    let signals = Views {
                        endpoints: &endpoints,
                        pool: &name,
                        historian: historian.as_ref(),
                        forecasts: forecasts.as_ref(),
                        coordinator: coord,
                        held: proxy
                            .endpoint_stats()
                            .iter()
                            .filter(|(e, _)| endpoints.contains(e))
                            .map(|(_, s)| s.held_now.load(std::sync::atomic::Ordering::Relaxed))
                            .sum(),
                    };
                    let (mine, rest): (Vec<Command>, Vec<Command>) =
                        commands.drain(..).partition(|cmd| cmd.pool() == name);
                    commands = rest;
                    let role = coord.map(|k| k.role(&name));
                    if let Some(r) = &role {
                        let kind = r.status().role;
                        if roles.insert(name.clone(), kind) != Some(kind) {
                            let reason = match r {
                                Role::Leader { term } => format!("fleet: this instance leads the pool (term {term})"),
                                Role::Follower { leader: Some((id, _)) } => {
                                    format!("fleet: following instance {id}, which leads the pool")
                                }
                                Role::Follower { leader: None } => "fleet: waiting for a leader".to_string(),
                                Role::Paused(why) => format!("fleet: scaling paused ({why})"),
                            };
                            let now = clock.now_us() / 1_000_000;
                            keep(
                                &mut decisions,
                                &mut actions,
                                LoggedDecision::note(&name, c.settings().mode, now, reason),
                            );
                        }
                    }
                    match (&role, coord) {
                        (Some(r @ (Role::Follower { .. } | Role::Paused(_))), Some(k)) => {
                            let draining =
                                if matches!(r, Role::Follower { .. }) { k.draining(&name) } else { Vec::new() };
                            let mut env = Env {
                                membership: &mut membership,
                                prober: &mut prober,
                                signals: &signals,
                                fence: None,
                            };
                            for cmd in mine {
                                // A reload is this instance's own business; the rest is the leader's.
                                if let Command::Reconfigure { .. } = cmd {
                                    if let Some(d) = c.command(&mut env, cmd) {
                                        keep(&mut decisions, &mut actions, d);
                                    }
                                    continue;
                                }
                                let now = clock.now_us() / 1_000_000;
                                let mut d = LoggedDecision::note(&name, c.settings().mode, now, r.refusal(&name));
                                d.outcome = Outcome::Fenced(r.refusal(&name));
                                keep(&mut decisions, &mut actions, d);
                            }
                            for d in c.observe(&mut env, &draining) {
                                keep(&mut decisions, &mut actions, d);
                            }
                            // Every draining member is reported, 0 when it is not one here.
                            let in_flight =
                                draining.iter().map(|a| (a.clone(), membership.in_flight(a).unwrap_or(0))).collect();
                            k.share(&name, Shared { leading: false, in_flight, ..Default::default() });
                            if matches!(r, Role::Follower { .. }) {
                                followed.extend(k.leader_decisions(&name));
                            }
                        }
                        _ => {
                            let fence = coord.map(|k| PoolFence { coordinator: k, pool: &name });
                            let mut fleet_membership;
                            let membership: &mut dyn Membership = match coord {
                                Some(k) => {
                                    fleet_membership = FleetMembership { inner: &mut membership, coordinator: k };
                                    &mut fleet_membership
                                }
                                None => &mut membership,
                            };
                            let mut env = Env {
                                membership,
                                prober: &mut prober,
                                signals: &signals,
                                fence: fence.as_ref().map(|f| f as &dyn Fence),
                            };
                            let mut made = Vec::new();
                            for cmd in mine {
                                made.extend(c.command(&mut env, cmd));
                            }
                            made.extend(c.tick(&mut env));
                            if let Some(k) = coord {
                                k.share(
                                    &name,
                                    Shared {
                                        leading: true,
                                        decisions: made.clone(),
                                        draining: c.draining(),
                                        ..Default::default()
                                    },
                                );
                            }
                            for d in made {
                                keep(&mut decisions, &mut actions, d);
                            }
                        }
                    }
                    let mut st = c.status();
                    if let Some(r) = &role {
                        st.fleet = Some(r.status());
                        if let Role::Paused(why) = r {
                            let msg = format!("scaling paused: {why}");
                            st.degraded = Some(match st.degraded.take() {
                                Some(d) => format!("{msg}; {d}"),
                                None => msg,
                            });
                        }
                    }
                    statuses.push(st);
                }
                let shown = if followed.is_empty() {
                    decisions.clone()
                } else {
                    // A follower shows the leader's decisions with its own notes.
                    let mut all: Vec<LoggedDecision> = decisions.iter().cloned().chain(followed).collect();
                    all.sort_by_key(|d| std::cmp::Reverse(d.t));
                    all.truncate(RING);
                    all.into()
                };
                publish.store(Arc::new(AllocatorState { pools: statuses, decisions: shown, actions: actions.clone() }));
                if !matches!(stopped.recv_timeout(TICK), Err(crossbeam_channel::RecvTimeoutError::Timeout)) {
                    return;
                }
            }
        })?;
        Ok(Self { view, stop, thread: Some(thread) })
    }

    pub fn view(&self) -> AllocatorView {
        self.view.clone()
    }

    pub fn stop(mut self) {
        let _ = self.stop.try_send(());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Allocator {
    fn drop(&mut self) {
        let _ = self.stop.try_send(());
    }
}
