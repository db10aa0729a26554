//! The data plane: listener (+TLS), routing, forwarding, upstream pools, health checks.
//!
//! [`Proxy`] owns what requests need: the current route table (swapped whole on reload), the
//! pools (kept across reloads by name, so member health and in-flight counts survive), the
//! pooled upstream client and the counters. It must not import the forecast, allocator or
//! admin modules; they drive it through [`Proxy::pool`] and the [`Pool`] writer API.

pub mod access;
pub mod body;
pub mod error;
pub mod headers;
pub(crate) mod health;
pub mod listener;
pub mod otlp;
pub mod pool;
pub mod router;
pub mod settings;
pub(crate) mod stack;
pub mod stats;
pub mod target;
pub mod tls;
pub mod traceparent;
pub mod upstream;
pub mod worker;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{Either, Empty, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use pool::{Member, Pool};
use router::{Route, Router};
use settings::{Plane, UpstreamSettings};
use stats::{EndpointStats, GlobalStats};

/// Request body sent upstream: the client's stream under the size limit, or nothing.
pub type UpstreamBody = Either<body::Counting<Limited<Incoming>>, Empty<Bytes>>;
/// The health checks' client (the request path uses each worker's own pool, `upstream`).
pub(crate) type UpstreamClient = Client<HttpConnector, UpstreamBody>;

/// Per-request limits that a reload may change.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: u64,
    pub response_timeout: Duration,
    /// Paths with `.`/`..` segments: normalised before routing, or refused.
    pub dot_segments: target::DotSegments,
    /// Client-sent `Forwarded`, `X-Real-IP` and `X-Forwarded-*` are believed (and passed on)
    /// only when trusted proxies stand in front of prescale (`historian.trusted_hops` > 0).
    pub trust_forwarded: bool,
}

/// What one request needs, swapped whole on reload.
#[derive(Debug)]
pub struct RouteTable {
    pub router: Router,
    pub limits: Limits,
}

/// The shared state of the data plane.
pub struct Proxy {
    table: ArcSwap<RouteTable>,
    /// Pools by name; reused across reloads. Locked only by reload and the control plane.
    pools: Mutex<HashMap<String, Arc<Pool>>>,
    /// Per-endpoint counters by name; reused across reloads.
    endpoint_stats: Mutex<HashMap<String, Arc<EndpointStats>>>,
    /// Health-check task per pool, stopped when the pool leaves the config.
    health_tasks: Mutex<HashMap<String, CancellationToken>>,
    pub global: Arc<GlobalStats>,
    /// Client for health checks (on the control runtime); workers have their own pools.
    client: UpstreamClient,
    access: Option<access::AccessLogger>,
    /// Exports spans (`[tracing]`), for calls and for the allocator's decisions.
    pub(crate) otlp: Option<otlp::Exporter>,
    /// Hands finished calls to the historian (absent when recording is off).
    recorder: Option<crate::historian::Recorder>,
    /// Tracks upgraded (WebSocket) tunnels and health tasks so shutdown can wait for them.
    pub(crate) tasks: TaskTracker,
    pub(crate) shutdown: CancellationToken,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").finish_non_exhaustive()
    }
}

pub(crate) fn build_client(u: &UpstreamSettings) -> UpstreamClient {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(u.connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(true);
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(u.pool_idle_timeout)
        .pool_max_idle_per_host(u.max_idle_per_member)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .build(connector)
}

impl Proxy {
    /// The span exporter, when `[tracing]` is on.
    pub fn otlp(&self) -> Option<&otlp::Exporter> {
        self.otlp.as_ref()
    }

    /// Builds the data plane from validated settings. Must be called inside a tokio runtime
    /// (health-check tasks are spawned on it).
    pub fn new(
        settings: Plane<'_>,
        access: Option<access::AccessLogger>,
        global: Arc<GlobalStats>,
        shutdown: CancellationToken,
        recorder: Option<crate::historian::Recorder>,
        otlp: Option<otlp::Exporter>,
    ) -> Arc<Self> {
        let proxy = Arc::new(Self {
            table: ArcSwap::from_pointee(RouteTable {
                router: Router::default(),
                limits: Limits {
                    max_body_bytes: 0,
                    response_timeout: Duration::ZERO,
                    dot_segments: target::DotSegments::Normalize,
                    trust_forwarded: false,
                },
            }),
            pools: Mutex::new(HashMap::new()),
            endpoint_stats: Mutex::new(HashMap::new()),
            health_tasks: Mutex::new(HashMap::new()),
            global,
            client: build_client(settings.upstream),
            access,
            recorder,
            otlp,
            tasks: TaskTracker::new(),
            shutdown,
        });
        proxy.tasks.spawn(listener::give_back_parked_memory(proxy.global.clone(), proxy.shutdown.clone()));
        proxy.apply(settings);
        proxy
    }

    /// The current route table (lock-free).
    pub fn table(&self) -> arc_swap::Guard<Arc<RouteTable>> {
        self.table.load()
    }

    /// The upstream client (the allocator's health checks share it).
    pub(crate) fn upstream_client(&self) -> UpstreamClient {
        self.client.clone()
    }

    /// A pool by name, for the control plane.
    pub fn pool(&self, name: &str) -> Option<Arc<Pool>> {
        lock(&self.pools).get(name).cloned()
    }

    /// All pools, sorted by name.
    pub fn pools(&self) -> Vec<Arc<Pool>> {
        let mut v: Vec<_> = lock(&self.pools).values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Installs new routing and pool settings atomically. Pools and endpoint counters with
    /// the same name keep their state; settings that need a restart are the caller's to report.
    pub fn apply(self: &Arc<Self>, settings: Plane<'_>) {
        let mut pools = lock(&self.pools);
        let mut next = HashMap::new();
        for ps in settings.pools {
            let pool = match pools.remove(&ps.name) {
                Some(p) => {
                    p.reconcile(ps);
                    p
                }
                None => Pool::from_settings(ps),
            };
            next.insert(ps.name.clone(), pool);
        }
        let removed: Vec<String> = pools.keys().cloned().collect();
        *pools = next;

        let mut stats = lock(&self.endpoint_stats);
        let routes = settings
            .endpoints
            .iter()
            .map(|e| Route {
                name: e.name.as_str().into(),
                prefix: e.path_prefix.clone(),
                methods: e.methods.clone(),
                host: e.host.clone(),
                pool: pools[&e.pool].clone(),
                stats: stats.entry(e.name.clone()).or_default().clone(),
                hold: e.hold,
                hold_queue: e.hold_queue,
            })
            .collect();
        stats.retain(|name, _| settings.endpoints.iter().any(|e| &e.name == name));
        self.table.store(Arc::new(RouteTable {
            router: Router::new(routes),
            limits: Limits {
                max_body_bytes: settings.listen.max_body_bytes,
                response_timeout: settings.upstream.response_timeout,
                dot_segments: settings.listen.dot_segments,
                trust_forwarded: settings.trust_forwarded,
            },
        }));

        let mut tasks = lock(&self.health_tasks);
        for name in removed {
            if let Some(t) = tasks.remove(&name) {
                t.cancel();
            }
        }
        for (name, pool) in pools.iter() {
            if !tasks.contains_key(name) {
                let token = self.shutdown.child_token();
                tasks.insert(name.clone(), token.clone());
                self.tasks.spawn(health::run(pool.clone(), self.client.clone(), token));
            }
        }
    }

    /// Per-endpoint counters, by endpoint name (sorted).
    pub fn endpoint_stats(&self) -> Vec<(String, Arc<EndpointStats>)> {
        let mut v: Vec<_> = lock(&self.endpoint_stats).iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Pools without a member that can take a request now (see `Pool::has_routable_member`),
    /// sorted; ready when empty.
    pub fn unready_pools(&self) -> Vec<String> {
        let mut v: Vec<String> =
            lock(&self.pools).iter().filter(|(_, p)| !p.has_routable_member()).map(|(n, _)| n.to_string()).collect();
        v.sort();
        v
    }
}

/// Locks a control-plane mutex, recovering from poisoning (a panicked holder cannot leave
/// these maps half-updated in a way that matters more than stopping the proxy would).
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
