//! The fleet (`[cluster]`): several prescale instances in front of the same pools, coordinated
//! through etcd. Without `[cluster]` none of this runs.
//!
//! - **History**: each instance publishes its closed 1-minute buckets (all endpoints of a
//!   minute in one key, [`codec`]) under a lease that ends them after `history`; every
//!   instance reads its peers' buckets (a paged read of the retained history at start, then a
//!   watch) and adds them to its own series in the historian ([`crate::historian::PeerSink`]):
//!   the fleet series the forecasts, the allocator and the admin page read. Peers' request
//!   rates of the last minute are shared every few seconds for the allocator's measured load.
//! - **Leadership**: one leader per scaled pool, elected by creating `leader/<pool>` under the
//!   instance's lease (whoever holds the key leads; its create revision is the term). A leader
//!   that has not renewed its lease within the TTL stops acting by itself, and every action is
//!   written first in a transaction that compares the leader key's lease with its own
//!   ([`FleetView::fence`]): an ex-leader's action is refused even if it never noticed.
//! - **Sharing**: the leader's decisions and the members it drains go to etcd; followers show
//!   the decisions, drain the same members, and report requests still in flight to them so
//!   that the leader stops a VM only when every instance is done with it.
//! - **Trouble**: while etcd cannot be reached every instance keeps proxying and recording;
//!   scaling pauses (shown as degraded), closed buckets wait in memory and are published when
//!   etcd is back, and leadership is taken again.
//!
//! One thread (`prescale-fleet`) owns the etcd client on a small tokio runtime; the allocator
//! calls in through [`FleetView`] (the [`Coordinator`] trait), reading shared state lock-free.

mod codec;
mod etcd;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::allocator::controller::LoggedDecision;
use crate::allocator::live::{Coordinator, Role, Shared};
pub use codec::{decode_minute, encode_minute};

/// `[cluster]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSettings {
    /// etcd client URLs.
    pub etcd: Vec<String>,
    /// The fleet's name: instances with the same name share pools and history.
    pub name: String,
    /// This instance's id; `None`: kept in the data directory (made once), else host:port.
    pub id: Option<String>,
    /// Lease of the instance's keys and leadership: a dead leader is replaced after this.
    pub lease_ttl: Duration,
    /// How long published buckets stay in etcd.
    pub history: Duration,
    pub username: Option<String>,
    pub password_file: Option<PathBuf>,
    /// TLS: the CA that signed etcd's certificate, and a client certificate and key.
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            etcd: Vec::new(),
            name: "prescale".into(),
            id: None,
            lease_ttl: Duration::from_secs(10),
            history: Duration::from_secs(8 * 86_400),
            username: None,
            password_file: None,
            ca: None,
            cert: None,
            key: None,
        }
    }
}

/// A fleet or instance name: 1–64 letters, digits, `-`, `_`, `.` (it becomes part of keys).
pub fn valid_name(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

/// This instance's id: configured; else the one kept in `data_dir/instance-id` (made on first
/// start: host name and a random suffix), so a restart keeps it; else host name and port.
pub fn instance_id(s: &ClusterSettings, data_dir: Option<&Path>, port: u16) -> std::io::Result<String> {
    if let Some(id) = &s.id {
        return Ok(id.clone());
    }
    let host: String = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_else(|_| "host".into())
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let host = if host.is_empty() { "host".to_string() } else { host };
    let Some(dir) = data_dir else { return Ok(format!("{host}-{port}")) };
    let path = dir.join("instance-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if valid_name(id.trim()) => Ok(id.trim().to_string()),
        _ => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos(),
            );
            h.write_u32(std::process::id());
            let id = format!("{host}-{:08x}", h.finish() as u32);
            std::fs::create_dir_all(dir)?;
            std::fs::write(&path, format!("{id}\n"))?;
            Ok(id)
        }
    }
}

/// The etcd key of `instance`'s published minute in `fleet` (tools that seed or inspect a
/// fleet's history use it).
pub fn bucket_key(fleet: &str, minute: u64, instance: &str) -> String {
    etcd::Keys::new(fleet).bucket(minute, instance)
}

/// Every instance's recorded calls of `endpoint`, summed per minute, from the fleet's etcd
/// (what `prescale simulate --fleet` replays). Blocks; runs its own small runtime.
pub fn fleet_series(s: &ClusterSettings, endpoint: &str) -> Result<crate::trace::Series, String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    rt.block_on(etcd::fleet_series(s, endpoint))
}

/// Who leads a pool.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Leader {
    pub id: String,
    /// Its admin listener, to be named to operators.
    pub admin: String,
    /// The leader key's create revision: grows with every new leader.
    #[serde(default)]
    pub term: i64,
    #[serde(skip)]
    pub lease: i64,
}

/// What the fleet thread knows, published for the allocator and the admin side.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct FleetState {
    pub fleet: String,
    pub id: String,
    /// Set while etcd cannot be reached (or refuses): why.
    pub error: Option<String>,
    /// Since when (epoch s) it has been failing.
    pub error_since: Option<u64>,
    /// This instance's lease (0: none yet).
    pub lease: i64,
    /// When the lease was last renewed (monotonic; not serialized).
    #[serde(skip)]
    pub lease_ok: Option<Instant>,
    pub leaders: BTreeMap<String, Leader>,
    /// Instances alive (their member keys), this one included.
    pub members: Vec<String>,
    /// Other instances' requests/s over the last minute, by endpoint.
    pub peer_rps: BTreeMap<String, f64>,
    /// Leader: other instances' requests in flight by member address (draining ones), and
    /// how many instances have reported on each.
    pub peer_in_flight: BTreeMap<String, u32>,
    pub peer_reports: BTreeMap<String, usize>,
    /// Follower: the members the leader drains, by pool.
    pub draining: BTreeMap<String, Vec<String>>,
    /// Follower: the leader's recent decisions, newest first, by pool.
    #[serde(skip)]
    pub leader_decisions: BTreeMap<String, Vec<LoggedDecision>>,
    pub counters: Counters,
}

/// Traffic to and from etcd since start.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counters {
    /// Closed minutes published, and waiting to be (etcd was away).
    pub minutes_published: u64,
    pub minutes_pending: u64,
    /// Peers' minutes added to the fleet series.
    pub peer_minutes: u64,
    /// Write requests (puts and transactions) and the bytes of their values.
    pub writes: u64,
    pub write_bytes: u64,
    /// How long the first read of the fleet's history took (ms), and how many minutes it held.
    pub history_load_ms: Option<u64>,
    pub history_load_minutes: u64,
    /// Actions refused by the fence.
    pub fenced: u64,
}

/// What the allocator hands over for etcd, taken by the fleet thread.
#[derive(Default)]
struct Outbox {
    shared: BTreeMap<String, Shared>,
}

struct Inner {
    id: String,
    fleet: String,
    admin: String,
    ttl: Duration,
    pools: Vec<String>,
    state: ArcSwap<FleetState>,
    /// The connected client and its lease, for fenced writes from the allocator's thread.
    client: Mutex<Option<(etcd_client::Client, i64)>>,
    handle: tokio::runtime::Handle,
    outbox: Mutex<Outbox>,
    /// Actions refused by the fence (counted on the allocator's thread).
    fenced: std::sync::atomic::AtomicU64,
}

/// The running fleet thread.
pub struct Fleet {
    view: FleetView,
    stop: tokio::sync::watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// The read side (and the allocator's [`Coordinator`]).
#[derive(Clone)]
pub struct FleetView(Arc<Inner>);

/// What the fleet thread is started with.
pub struct Start {
    pub settings: ClusterSettings,
    pub id: String,
    /// This instance's admin address, as peers name it to operators.
    pub admin: String,
    /// Scaled pools (one election each).
    pub pools: Vec<String>,
    pub closed: Option<crossbeam_channel::Receiver<crate::historian::ClosedMinute>>,
    pub peers: Option<crate::historian::PeerSink>,
    pub historian: Option<crate::historian::HistorianView>,
}

impl Fleet {
    pub fn start(s: Start) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let inner = Arc::new(Inner {
            id: s.id.clone(),
            fleet: s.settings.name.clone(),
            admin: s.admin.clone(),
            ttl: s.settings.lease_ttl,
            pools: s.pools.clone(),
            state: ArcSwap::from_pointee(FleetState {
                fleet: s.settings.name.clone(),
                id: s.id.clone(),
                error: Some("connecting to etcd".into()),
                error_since: Some(crate::clock::now_us() / 1_000_000),
                ..Default::default()
            }),
            client: Mutex::new(None),
            handle: rt.handle().clone(),
            outbox: Mutex::new(Outbox::default()),
            fenced: Default::default(),
        });
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let run = etcd::Runner::new(inner.clone(), s);
        let thread = std::thread::Builder::new().name("prescale-fleet".into()).spawn(move || {
            rt.block_on(run.run(stopped));
            rt.shutdown_timeout(Duration::from_secs(1));
        })?;
        Ok(Self { view: FleetView(inner), stop, thread: Some(thread) })
    }

    pub fn view(&self) -> FleetView {
        self.view.clone()
    }

    /// Gives up leadership (revokes the lease: successors take over at once) and stops.
    pub fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Time allowed for a fenced write.
const FENCE_TIMEOUT: Duration = Duration::from_secs(2);
/// A leader stops acting this long before its lease could have expired in etcd.
const LEASE_MARGIN: Duration = Duration::from_millis(800);

impl FleetView {
    pub fn state(&self) -> Arc<FleetState> {
        let s = self.0.state.load_full();
        // Refusals counted since the fleet thread last published show at once.
        let fenced = self.0.fenced.load(std::sync::atomic::Ordering::Relaxed);
        if s.counters.fenced == fenced {
            return s;
        }
        let mut s = (*s).clone();
        s.counters.fenced = fenced;
        Arc::new(s)
    }

    pub fn id(&self) -> &str {
        &self.0.id
    }

    /// True while this instance holds a lease renewed recently enough to act on.
    fn lease_fresh(&self, s: &FleetState) -> bool {
        s.lease != 0 && s.lease_ok.is_some_and(|t| t.elapsed() + LEASE_MARGIN < self.0.ttl)
    }
}

impl Coordinator for FleetView {
    fn role(&self, pool: &str) -> Role {
        let s = self.0.state.load();
        if let Some(e) = &s.error {
            return Role::Paused(format!("etcd: {e}"));
        }
        match s.leaders.get(pool) {
            Some(l) if l.id == self.0.id && l.lease == s.lease => {
                if self.lease_fresh(&s) {
                    Role::Leader { term: l.term }
                } else {
                    Role::Paused("the leadership lease was not renewed in time".into())
                }
            }
            Some(l) => Role::Follower { leader: Some((l.id.clone(), l.admin.clone())) },
            None => Role::Follower { leader: None },
        }
    }

    fn fence(&self, pool: &str, what: &str) -> Result<(), String> {
        let refused = |e: String| {
            self.0.fenced.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Err(e)
        };
        let Some((mut client, lease)) = self.0.client.lock().map(|c| c.clone()).unwrap_or(None) else {
            return refused("not connected to etcd".into());
        };
        let keys = etcd::Keys::new(&self.0.fleet);
        let value = serde_json::json!({ "id": self.0.id, "action": what }).to_string();
        let txn = etcd_client::Txn::new()
            .when([etcd_client::Compare::lease(keys.leader(pool), etcd_client::CompareOp::Equal, lease)])
            .and_then([etcd_client::TxnOp::put(keys.intent(pool), value, None)]);
        let r = self.0.handle.block_on(async { tokio::time::timeout(FENCE_TIMEOUT, client.txn(txn)).await });
        match r {
            Ok(Ok(t)) if t.succeeded() => Ok(()),
            Ok(Ok(_)) => refused(format!(
                "refused by the fence: this instance ({}) no longer holds the leadership of pool {pool}",
                self.0.id
            )),
            Ok(Err(e)) => refused(format!("etcd: {e}")),
            Err(_) => refused(format!("etcd did not answer within {} s", FENCE_TIMEOUT.as_secs())),
        }
    }

    fn peer_rps(&self, endpoints: &[String]) -> f64 {
        let s = self.0.state.load();
        endpoints.iter().filter_map(|e| s.peer_rps.get(e)).sum()
    }

    fn peer_in_flight(&self, addr: &str) -> Option<u32> {
        let s = self.0.state.load();
        let others = s.members.iter().filter(|m| **m != self.0.id).count();
        let reported = s.peer_reports.get(addr).copied().unwrap_or(0);
        (reported >= others).then(|| s.peer_in_flight.get(addr).copied().unwrap_or(0))
    }

    fn draining(&self, pool: &str) -> Vec<String> {
        self.0.state.load().draining.get(pool).cloned().unwrap_or_default()
    }

    fn share(&self, pool: &str, shared: Shared) {
        if let Ok(mut o) = self.0.outbox.lock() {
            let e = o.shared.entry(pool.to_string()).or_default();
            e.decisions.extend(shared.decisions);
            e.draining = shared.draining;
            e.in_flight = shared.in_flight;
            e.leading = shared.leading;
        }
    }

    fn owner(&self, pool: &str) -> String {
        let term = self.0.state.load().leaders.get(pool).map_or(0, |l| l.term);
        format!("{}/{}/{term}", self.0.fleet, self.0.id)
    }

    fn leader_decisions(&self, pool: &str) -> Vec<LoggedDecision> {
        self.0.state.load().leader_decisions.get(pool).cloned().unwrap_or_default()
    }
}
