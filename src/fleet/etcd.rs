//! The fleet thread's work against etcd: a loop every half second (lease, elections, closed
//! minutes, shared state), and a task that reads the fleet's history once and then watches
//! for peers' new minutes. Every request has a deadline; any failure marks the fleet degraded
//! (scaling pauses) until a whole round succeeds again.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, LeaseKeepAliveStream, LeaseKeeper, PutOptions,
    SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, WatchOptions,
};

use super::{ClusterSettings, FleetState, Inner, Leader, Start};
use crate::allocator::controller::LoggedDecision;
use crate::historian::{ClosedMinute, HistorianView, PeerMinute, PeerSink};

const ROUND: Duration = Duration::from_millis(500);
/// A failed round is tried again this many times at once.
const RETRIES: usize = 2;
/// How long etcd may fail before the fleet shows it and pauses scaling: longer than an etcd
/// leader election (about a second). Meanwhile the lease, renewed every third of its TTL, is
/// what keeps a leader from acting on stale leadership.
const GRACE: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const RATES_EVERY: Duration = Duration::from_secs(5);
const READ_EVERY: Duration = Duration::from_secs(1);
/// Closed minutes published per round (a backlog after an outage goes out over a few rounds).
const PUBLISH_PER_ROUND: usize = 500;
/// Closed minutes kept while etcd is away (two weeks; the oldest go first beyond that).
const BACKLOG_MAX: usize = 20_160;
/// Keys per page when the history is read (a key holds every endpoint of one minute: about
/// 60 bytes per endpoint that had calls).
const PAGE: i64 = 200;
/// The largest answer taken from etcd (a page of many endpoints' minutes).
const MAX_ANSWER: usize = 256 << 20;
/// The leader's decisions a follower shows.
const DECISIONS_SHOWN: i64 = 200;

/// The key layout, all under `/prescale/<fleet>/`.
pub(super) struct Keys(String);

impl Keys {
    pub(super) fn new(fleet: &str) -> Self {
        Self(format!("/prescale/{fleet}/"))
    }
    pub(super) fn leader(&self, pool: &str) -> String {
        format!("{}leader/{pool}", self.0)
    }
    pub(super) fn intent(&self, pool: &str) -> String {
        format!("{}pools/{pool}/intent", self.0)
    }
    fn pool_state(&self, pool: &str) -> String {
        format!("{}pools/{pool}/state", self.0)
    }
    fn decisions(&self, pool: &str) -> String {
        format!("{}pools/{pool}/decisions/", self.0)
    }
    fn in_flight(&self, pool: &str) -> String {
        format!("{}pools/{pool}/inflight/", self.0)
    }
    fn members(&self) -> String {
        format!("{}members/", self.0)
    }
    fn rates(&self) -> String {
        format!("{}rates/", self.0)
    }
    pub(super) fn buckets(&self) -> String {
        format!("{}buckets/", self.0)
    }
    pub(super) fn bucket(&self, minute: u64, id: &str) -> String {
        format!("{}buckets/{minute:010}/{id}", self.0)
    }
    /// (minute, instance) of a bucket key.
    fn parse_bucket(&self, key: &[u8]) -> Option<(u64, String)> {
        let rest = std::str::from_utf8(key).ok()?.strip_prefix(&self.buckets())?;
        let (m, id) = rest.split_once('/')?;
        Some((m.parse().ok()?, id.to_string()))
    }
}

/// The end of the range of keys starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut e = prefix.as_bytes().to_vec();
    if let Some(last) = e.last_mut() {
        *last += 1;
    }
    e
}

async fn timed<T>(f: impl std::future::Future<Output = Result<T, etcd_client::Error>>) -> Result<T, String> {
    match tokio::time::timeout(REQUEST_TIMEOUT, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", REQUEST_TIMEOUT.as_secs())),
    }
}

/// A client of one of the endpoints (`which`, modulo their number). One at a time, so that a
/// member that is down is left for the next one at once (a balanced channel kept picking it).
async fn connect(s: &ClusterSettings, which: usize) -> Result<Client, String> {
    let mut o = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(REQUEST_TIMEOUT)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(2));
    if let (Some(u), Some(p)) = (&s.username, &s.password_file) {
        let pw = std::fs::read_to_string(p).map_err(|e| format!("cluster.password_file {}: {e}", p.display()))?;
        o = o.with_user(u.clone(), pw.trim_end_matches(['\n', '\r']).to_string());
    }
    if s.ca.is_some() || s.cert.is_some() {
        let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &s.ca {
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
        }
        if let (Some(c), Some(k)) = (&s.cert, &s.key) {
            tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
        }
        o = o.with_tls(tls);
    }
    let endpoint = s.etcd.get(which % s.etcd.len().max(1)).cloned().unwrap_or_default();
    timed(Client::connect([endpoint], Some(o))).await
}

/// Counters the history task keeps (merged into the published state).
#[derive(Default)]
struct HistoryStats {
    peer_minutes: u64,
    load_ms: Option<u64>,
    load_minutes: u64,
}

pub(super) struct Runner {
    inner: Arc<Inner>,
    settings: ClusterSettings,
    keys: Keys,
    closed: Option<crossbeam_channel::Receiver<ClosedMinute>>,
    peers: Option<PeerSink>,
    historian: Option<HistorianView>,
    backlog: VecDeque<ClosedMinute>,
    client: Option<Client>,
    lease: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
    lease_ok: Option<Instant>,
    last_keepalive: Instant,
    /// One lease per day of published minutes, ending them `history` after that day.
    history_lease: Option<(u64, i64)>,
    state: FleetState,
    last_rates: Option<Instant>,
    last_read: Option<Instant>,
    /// What was last written per pool (written again only when it changes).
    written: BTreeMap<String, String>,
    decision_seq: u64,
    history_task: Option<tokio::task::JoinHandle<()>>,
    history_stats: Arc<Mutex<HistoryStats>>,
    /// Since when rounds have been failing.
    failing_since: Option<Instant>,
    /// Which of the endpoints the client talks to.
    endpoint: usize,
}

impl Runner {
    pub(super) fn new(inner: Arc<Inner>, s: Start) -> Self {
        let keys = Keys::new(&s.settings.name);
        let state = (*inner.state.load_full()).clone();
        Self {
            inner,
            settings: s.settings,
            keys,
            closed: s.closed,
            peers: s.peers,
            historian: s.historian,
            backlog: VecDeque::new(),
            client: None,
            lease: 0,
            keeper: None,
            lease_ok: None,
            last_keepalive: Instant::now(),
            history_lease: None,
            state,
            last_rates: None,
            last_read: None,
            written: BTreeMap::new(),
            decision_seq: 0,
            history_task: None,
            history_stats: Arc::default(),
            failing_since: None,
            endpoint: 0,
        }
    }

    pub(super) async fn run(mut self, mut stopped: tokio::sync::watch::Receiver<bool>) {
        loop {
            if *stopped.borrow() {
                break;
            }
            self.take_closed();
            let mut result = self.round().await;
            // A member down (quorum kept) fails the requests that went to it: the round is
            // tried again at once, and the client's balanced channel takes another member.
            for _ in 0..RETRIES {
                if result.is_ok() {
                    break;
                }
                // The next member, a new client; the lease renewal stream goes with it.
                self.client = None;
                self.keeper = None;
                self.endpoint += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
                result = self.round().await;
            }
            let now_s = crate::clock::now_us() / 1_000_000;
            if result.is_ok() {
                self.failing_since = None;
            }
            let failing_for = self.failing_since.get_or_insert_with(Instant::now).elapsed();
            match result {
                // A blip is not an outage: shown (and scaling paused) once it lasts, or at once
                // when the lease is gone.
                Err(e) if failing_for < GRACE && self.lease != 0 => {
                    tracing::debug!(error = %e, "fleet: etcd request failed; trying again");
                }
                Ok(()) => {
                    if let Some(e) = self.state.error.take() {
                        tracing::info!(was = %e, "etcd reachable again: fleet coordination resumed");
                    }
                    self.state.error_since = None;
                }
                Err(e) => {
                    if self.state.error.is_none() {
                        tracing::warn!(error = %e, "fleet: scaling paused (etcd unreachable or lease lost); proxying and recording go on");
                        self.state.error_since = Some(now_s);
                    }
                    self.state.error = Some(e);
                    // A lease not renewed for its whole TTL is gone in etcd: start over.
                    if self.lease_ok.is_none_or(|t| t.elapsed() >= self.settings.lease_ttl) {
                        self.drop_lease();
                    }
                }
            }
            self.publish_state();
            tokio::select! {
                _ = tokio::time::sleep(ROUND) => {}
                _ = stopped.changed() => {}
            }
        }
        // Leaving: hand leadership over at once (revoking the lease deletes its keys).
        if let (Some(mut c), true) = (self.client.clone(), self.lease != 0) {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.lease_revoke(self.lease)).await;
        }
        if let Some(t) = self.history_task.take() {
            t.abort();
        }
    }

    fn drop_lease(&mut self) {
        self.lease = 0;
        self.keeper = None;
        self.lease_ok = None;
        self.state.leaders.retain(|_, l| l.id != self.inner.id);
        if let Ok(mut c) = self.inner.client.lock() {
            *c = None;
        }
    }

    fn take_closed(&mut self) {
        if let Some(rx) = &self.closed {
            self.backlog.extend(rx.try_iter());
        }
        let over = self.backlog.len().saturating_sub(BACKLOG_MAX);
        self.backlog.drain(..over);
    }

    fn publish_state(&mut self) {
        self.state.lease = self.lease;
        self.state.lease_ok = self.lease_ok;
        self.state.counters.minutes_pending = self.backlog.len() as u64;
        if let Ok(h) = self.history_stats.lock() {
            self.state.counters.peer_minutes = h.peer_minutes;
            self.state.counters.history_load_ms = h.load_ms;
            self.state.counters.history_load_minutes = h.load_minutes;
        }
        self.state.counters.fenced = self.inner.fenced.load(std::sync::atomic::Ordering::Relaxed);
        self.inner.state.store(Arc::new(self.state.clone()));
    }

    fn wrote(&mut self, bytes: usize) {
        self.state.counters.writes += 1;
        self.state.counters.write_bytes += bytes as u64;
    }

    async fn round(&mut self) -> Result<(), String> {
        let mut client = match &self.client {
            Some(c) => c.clone(),
            None => {
                let c = connect(&self.settings, self.endpoint).await?;
                self.client = Some(c.clone());
                if self.lease != 0
                    && let Ok(mut shared) = self.inner.client.lock()
                {
                    *shared = Some((c.clone(), self.lease));
                }
                c
            }
        };
        self.lease(&mut client).await?;
        if self.history_task.as_ref().is_none_or(|t| t.is_finished()) {
            self.history_task = Some(tokio::spawn(follow_history(
                self.inner.clone(),
                Keys::new(&self.settings.name),
                self.inner.id.clone(),
                self.peers.clone(),
                self.settings.history,
                self.history_stats.clone(),
            )));
        }
        self.elect(&mut client).await?;
        self.publish_minutes(&mut client).await?;
        if self.last_rates.is_none_or(|t| t.elapsed() >= RATES_EVERY) {
            self.rates(&mut client).await?;
            self.last_rates = Some(Instant::now());
        }
        self.share(&mut client).await?;
        if self.last_read.is_none_or(|t| t.elapsed() >= READ_EVERY) {
            self.read_shared(&mut client).await?;
            self.last_read = Some(Instant::now());
        }
        Ok(())
    }

    /// Takes a lease (and writes the member key) or renews it every third of its TTL.
    async fn lease(&mut self, client: &mut Client) -> Result<(), String> {
        let ttl = self.settings.lease_ttl;
        if self.lease == 0 {
            let g = timed(client.lease_grant(ttl.as_secs().max(2) as i64, None)).await?;
            self.lease = g.id();
            self.lease_ok = Some(Instant::now());
            self.last_keepalive = Instant::now();
            let v = serde_json::json!({ "id": self.inner.id, "admin": self.inner.admin }).to_string();
            let n = v.len();
            timed(client.put(
                format!("{}{}", self.keys.members(), self.inner.id),
                v,
                Some(PutOptions::new().with_lease(self.lease)),
            ))
            .await?;
            self.wrote(n);
            if let Ok(mut c) = self.inner.client.lock() {
                *c = Some((client.clone(), self.lease));
            }
            tracing::info!(id = %self.inner.id, lease = format!("{:x}", self.lease), "fleet: joined");
            return Ok(());
        }
        if self.last_keepalive.elapsed() < ttl / 3 {
            return Ok(());
        }
        if self.keeper.is_none() {
            self.keeper = Some(timed(client.lease_keep_alive(self.lease)).await?);
        }
        let (keeper, stream) = self.keeper.as_mut().expect("set above");
        let renewed = tokio::time::timeout(REQUEST_TIMEOUT, async {
            keeper.keep_alive().await?;
            stream.message().await
        })
        .await;
        match renewed {
            Ok(Ok(Some(r))) if r.ttl() > 0 => {
                self.lease_ok = Some(Instant::now());
                self.last_keepalive = Instant::now();
                Ok(())
            }
            Ok(Ok(_)) => {
                self.drop_lease();
                Err("this instance's lease expired (it was away longer than lease_ttl); taking a new one".into())
            }
            Ok(Err(e)) => {
                self.keeper = None;
                Err(e.to_string())
            }
            Err(_) => {
                self.keeper = None;
                Err("lease renewal not answered".into())
            }
        }
    }

    /// One election per pool: the leader key created under this lease if nobody holds it.
    async fn elect(&mut self, client: &mut Client) -> Result<(), String> {
        for pool in self.inner.pools.clone() {
            let key = self.keys.leader(&pool);
            let me = serde_json::json!({ "id": self.inner.id, "admin": self.inner.admin }).to_string();
            let n = me.len();
            let txn = Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), me, Some(PutOptions::new().with_lease(self.lease)))])
                .or_else([TxnOp::get(key.clone(), None)]);
            let r = timed(client.txn(txn)).await?;
            let leader = if r.succeeded() {
                self.wrote(n);
                let term = r.header().map_or(0, |h| h.revision());
                tracing::info!(pool = %pool, term, "fleet: leading the pool");
                Some(Leader { id: self.inner.id.clone(), admin: self.inner.admin.clone(), term, lease: self.lease })
            } else {
                r.op_responses().into_iter().find_map(|o| match o {
                    TxnOpResponse::Get(g) => g.kvs().first().and_then(|kv| {
                        let mut l: Leader = serde_json::from_slice(kv.value()).ok()?;
                        l.term = kv.create_revision();
                        l.lease = kv.lease();
                        Some(l)
                    }),
                    _ => None,
                })
            };
            match leader {
                Some(l) => {
                    if self.state.leaders.get(&pool).is_none_or(|old| old.term != l.term) && l.id != self.inner.id {
                        tracing::info!(pool = %pool, leader = %l.id, term = l.term, "fleet: following");
                    }
                    self.state.leaders.insert(pool, l);
                }
                None => {
                    self.state.leaders.remove(&pool);
                }
            }
        }
        Ok(())
    }

    async fn history_lease(&mut self, client: &mut Client, day: u64) -> Result<i64, String> {
        if let Some((d, id)) = self.history_lease
            && d == day
        {
            return Ok(id);
        }
        let ttl = self.settings.history.as_secs() + 86_400;
        let g = timed(client.lease_grant(ttl as i64, None)).await?;
        self.history_lease = Some((day, g.id()));
        Ok(g.id())
    }

    /// Closed minutes out, oldest first; what etcd does not take waits for the next round.
    async fn publish_minutes(&mut self, client: &mut Client) -> Result<(), String> {
        for _ in 0..PUBLISH_PER_ROUND {
            let Some(m) = self.backlog.front() else { break };
            let (minute, value) = (m.minute, super::encode_minute(&m.buckets));
            let lease = self.history_lease(client, minute / 1440).await?;
            let n = value.len();
            timed(client.put(
                self.keys.bucket(minute, &self.inner.id),
                value,
                Some(PutOptions::new().with_lease(lease)),
            ))
            .await?;
            self.wrote(n);
            self.backlog.pop_front();
            self.state.counters.minutes_published += 1;
        }
        Ok(())
    }

    /// This instance's request rates out, the peers' in; the members alive.
    async fn rates(&mut self, client: &mut Client) -> Result<(), String> {
        if let Some(h) = &self.historian {
            let snap = h.snapshot();
            let rates: BTreeMap<&str, f64> =
                snap.endpoints.iter().map(|e| (&*e.name, (e.recent_rate(60) * 1000.0).round() / 1000.0)).collect();
            let v = serde_json::to_string(&rates).unwrap_or_default();
            let n = v.len();
            timed(client.put(
                format!("{}{}", self.keys.rates(), self.inner.id),
                v,
                Some(PutOptions::new().with_lease(self.lease)),
            ))
            .await?;
            self.wrote(n);
        }
        let r = timed(client.get(self.keys.rates(), Some(GetOptions::new().with_prefix()))).await?;
        let mut peer: BTreeMap<String, f64> = BTreeMap::new();
        let mine = format!("{}{}", self.keys.rates(), self.inner.id);
        for kv in r.kvs() {
            if kv.key() == mine.as_bytes() {
                continue;
            }
            if let Ok(m) = serde_json::from_slice::<BTreeMap<String, f64>>(kv.value()) {
                for (e, v) in m {
                    *peer.entry(e).or_default() += v;
                }
            }
        }
        self.state.peer_rps = peer;
        let r = timed(client.get(self.keys.members(), Some(GetOptions::new().with_prefix().with_keys_only()))).await?;
        let p = self.keys.members();
        self.state.members =
            r.kvs().iter().filter_map(|kv| kv.key_str().ok()?.strip_prefix(&p).map(str::to_string)).collect();
        Ok(())
    }

    /// What the allocator handed over: the leader's decisions and drains (fenced), a
    /// follower's requests in flight to draining members.
    async fn share(&mut self, client: &mut Client) -> Result<(), String> {
        let outbox = std::mem::take(&mut self.inner.outbox.lock().map_err(|_| "poisoned")?.shared);
        for (pool, s) in outbox {
            let leads = self.state.leaders.get(&pool).is_some_and(|l| l.id == self.inner.id && l.lease == self.lease);
            if s.leading && leads {
                let fence = Compare::lease(self.keys.leader(&pool), CompareOp::Equal, self.lease);
                let mut ops = Vec::new();
                let mut bytes = 0;
                let day = crate::clock::now_us() / 1_000_000 / 86_400;
                let history = if s.decisions.is_empty() { 0 } else { self.history_lease(client, day).await? };
                for d in &s.decisions {
                    let v = serde_json::to_string(d).unwrap_or_default();
                    bytes += v.len();
                    self.decision_seq += 1;
                    let key =
                        format!("{}{:010}-{}-{:08}", self.keys.decisions(&pool), d.t, self.inner.id, self.decision_seq);
                    ops.push(TxnOp::put(key, v, Some(PutOptions::new().with_lease(history))));
                }
                let state = serde_json::json!({ "draining": s.draining }).to_string();
                if self.written.get(&pool) != Some(&state) {
                    bytes += state.len();
                    ops.push(TxnOp::put(self.keys.pool_state(&pool), state.clone(), None));
                }
                if ops.is_empty() {
                    continue;
                }
                let r = timed(client.txn(Txn::new().when([fence]).and_then(ops))).await?;
                if r.succeeded() {
                    self.wrote(bytes);
                    self.written.insert(pool, state);
                }
            } else if !s.leading {
                let v = serde_json::to_string(&s.in_flight.iter().cloned().collect::<BTreeMap<String, u32>>())
                    .unwrap_or_default();
                if self.written.get(&pool) != Some(&v) {
                    let n = v.len();
                    timed(client.put(
                        format!("{}{}", self.keys.in_flight(&pool), self.inner.id),
                        v.clone(),
                        Some(PutOptions::new().with_lease(self.lease)),
                    ))
                    .await?;
                    self.wrote(n);
                    self.written.insert(pool, v);
                }
            }
        }
        Ok(())
    }

    /// Leader: followers' requests in flight. Follower: the leader's drains and decisions.
    async fn read_shared(&mut self, client: &mut Client) -> Result<(), String> {
        let mut in_flight: BTreeMap<String, u32> = BTreeMap::new();
        let mut reports: BTreeMap<String, usize> = BTreeMap::new();
        for pool in self.inner.pools.clone() {
            let leads = self.state.leaders.get(&pool).is_some_and(|l| l.id == self.inner.id);
            if leads {
                let mine = format!("{}{}", self.keys.in_flight(&pool), self.inner.id);
                let r = timed(client.get(self.keys.in_flight(&pool), Some(GetOptions::new().with_prefix()))).await?;
                for kv in r.kvs().iter().filter(|kv| kv.key() != mine.as_bytes()) {
                    if let Ok(m) = serde_json::from_slice::<BTreeMap<String, u32>>(kv.value()) {
                        for (a, n) in m {
                            *reports.entry(a.clone()).or_default() += 1;
                            *in_flight.entry(a).or_default() += n;
                        }
                    }
                }
                self.state.draining.remove(&pool);
                self.state.leader_decisions.remove(&pool);
                continue;
            }
            let r = timed(client.get(self.keys.pool_state(&pool), None)).await?;
            let draining = r
                .kvs()
                .first()
                .and_then(|kv| serde_json::from_slice::<serde_json::Value>(kv.value()).ok())
                .and_then(|v| serde_json::from_value::<Vec<String>>(v["draining"].clone()).ok())
                .unwrap_or_default();
            self.state.draining.insert(pool.clone(), draining);
            let r = timed(
                client.get(
                    self.keys.decisions(&pool),
                    Some(
                        GetOptions::new()
                            .with_prefix()
                            .with_sort(SortTarget::Key, SortOrder::Descend)
                            .with_limit(DECISIONS_SHOWN),
                    ),
                ),
            )
            .await?;
            let ds: Vec<LoggedDecision> =
                r.kvs().iter().filter_map(|kv| serde_json::from_slice(kv.value()).ok()).collect();
            self.state.leader_decisions.insert(pool, ds);
        }
        self.state.peer_in_flight = in_flight;
        self.state.peer_reports = reports;
        Ok(())
    }
}

/// Every instance's published minutes of `endpoint` over the retained history, summed per
/// minute (`prescale simulate --fleet`). Minutes no instance published are NaN.
/// Every published minute from `from` on (all instances), in pages at one revision: each page's
/// keys are handed to `page`. Returns that revision (a watch goes on from the next one).
async fn read_minutes(
    kv: &mut etcd_client::KvClient,
    keys: &Keys,
    from: u64,
    mut page: impl FnMut(&[etcd_client::KeyValue]),
) -> Result<i64, String> {
    let mut start = keys.bucket(from, "").into_bytes();
    start.pop();
    let end = prefix_end(&keys.buckets());
    let mut rev = 0;
    loop {
        let mut o = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if rev > 0 {
            o = o.with_revision(rev);
        }
        let r = timed(kv.get(start.clone(), Some(o))).await?;
        if rev == 0 {
            rev = r.header().map_or(0, |h| h.revision());
        }
        page(r.kvs());
        match r.kvs().last() {
            Some(kv) if r.more() => {
                start = kv.key().to_vec();
                start.push(0);
            }
            _ => return Ok(rev),
        }
    }
}

pub(super) async fn fleet_series(s: &ClusterSettings, endpoint: &str) -> Result<crate::trace::Series, String> {
    let mut first = Err(String::new());
    for which in 0..s.etcd.len() {
        first = connect(s, which).await;
        if first.is_ok() {
            break;
        }
    }
    let mut client = first?.kv_client().max_decoding_message_size(MAX_ANSWER);
    let keys = Keys::new(&s.name);
    let now_min = crate::clock::now_us() / 60_000_000;
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    read_minutes(&mut client, &keys, now_min.saturating_sub(s.history.as_secs() / 60), |kvs| {
        for kv in kvs {
            let (Some((minute, _)), Some(buckets)) = (keys.parse_bucket(kv.key()), super::decode_minute(kv.value()))
            else {
                continue;
            };
            let calls = buckets.iter().find(|(n, _)| n == endpoint).map_or(0, |(_, b)| b.calls);
            *counts.entry(minute).or_default() += calls;
        }
    })
    .await?;
    let (Some(&first), Some(&last)) = (counts.keys().next(), counts.keys().next_back()) else {
        return Err(format!("fleet {:?} has no published history in etcd", s.name));
    };
    if counts.values().all(|&c| c == 0) {
        return Err(format!("fleet {:?} recorded no call to endpoint {endpoint:?}", s.name));
    }
    let values = (first..=last).map(|m| counts.get(&m).map_or(f64::NAN, |&c| c as f64)).collect();
    Ok(crate::trace::Series { step_s: 60, start_s: first * 60, values })
}

/// The fleet's history into the historian: every peer minute retained in etcd (read in
/// pages), then new ones as they are published (a watch). Each (minute, instance) is added
/// once, whatever happens to the watch.
async fn follow_history(
    inner: Arc<Inner>,
    keys: Keys,
    id: String,
    sink: Option<PeerSink>,
    history: Duration,
    stats: Arc<Mutex<HistoryStats>>,
) {
    let Some(sink) = sink else { return };
    let mut seen: HashSet<(u64, String)> = HashSet::new();
    let add = |kvs: &[etcd_client::KeyValue], seen: &mut HashSet<(u64, String)>| {
        let mut out = Vec::new();
        for kv in kvs {
            let Some((minute, who)) = keys.parse_bucket(kv.key()) else { continue };
            if who == id || !seen.insert((minute, who)) {
                continue;
            }
            if let Some(buckets) = super::decode_minute(kv.value()) {
                out.push(PeerMinute { minute, buckets });
            }
        }
        let n = out.len() as u64;
        sink.merge(out);
        n
    };
    loop {
        // The runner's current client (it moves to another member when one fails).
        let Some(client) = inner.client.lock().ok().and_then(|c| c.as_ref().map(|c| c.0.clone())) else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut kv = client.kv_client().max_decoding_message_size(MAX_ANSWER);
        // The retained history, in pages, at one revision.
        let started = Instant::now();
        let now_min = crate::clock::now_us() / 60_000_000;
        let from = now_min.saturating_sub(history.as_secs() / 60);
        let mut loaded = 0;
        let rev = match read_minutes(&mut kv, &keys, from, |kvs| loaded += add(kvs, &mut seen)).await {
            Ok(rev) => rev,
            Err(e) => {
                tracing::warn!(error = %e, "fleet: reading the fleet's history failed; trying again");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if let Ok(mut s) = stats.lock() {
            s.peer_minutes += loaded;
            if s.load_ms.is_none() {
                s.load_ms = Some(started.elapsed().as_millis() as u64);
                s.load_minutes = loaded;
            }
        }
        // Then every new minute, from the next revision on.
        let opts = WatchOptions::new().with_prefix().with_start_revision(rev + 1);
        let mut watch = client.watch_client().max_decoding_message_size(MAX_ANSWER);
        if let Ok(mut w) = watch.watch(keys.buckets(), Some(opts)).await {
            while let Ok(Some(r)) = w.message().await {
                if r.compact_revision() > 0 || r.canceled() {
                    break;
                }
                let kvs: Vec<etcd_client::KeyValue> = r
                    .events()
                    .iter()
                    .filter(|e| e.event_type() == EventType::Put)
                    .filter_map(|e| e.kv().cloned())
                    .collect();
                let n = add(&kvs, &mut seen);
                if let Ok(mut s) = stats.lock() {
                    s.peer_minutes += n;
                }
            }
        }
        // Forget what has left the retained history.
        seen.retain(|(m, _)| *m >= from);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
