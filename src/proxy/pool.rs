//! Upstream pools: membership, member state and balancing.
//!
//! The request path only *loads* the member list (`ArcSwap`, no lock) and touches per-member
//! atomics. Membership changes (config reload, health of the allocator's VMs, the admin API)
//! go through a small writer API; writers serialise on a mutex the request path never takes.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http::uri::Authority;

use super::stats::Sharded;
use crate::proxy::settings::{Balance, HealthCheckSettings, MemberSettings, PassiveSettings, PoolSettings, Protocol};

/// Milliseconds since the first call in this process: a cheap monotonic stamp for atomics.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// A member's latency EWMA halves every this many milliseconds without a new sample.
const EWMA_HALF_LIFE_MS: u64 = 1000;

/// Who put a member in its pool: the pool's one owner of membership is this tag. A reload
/// reconciles only [`Source::Config`] members; the allocator adds, drains and removes only its
/// own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Listed in `proxy.toml`'s `members`.
    Config,
    /// A VM the allocator launched or adopted.
    Allocator,
}

/// One upstream address and everything the balancer and health checks know about it.
#[derive(Debug)]
pub struct Member {
    pub addr: Authority,
    pub source: Source,
    weight: AtomicU32,
    /// What each worker's requests do to it: written per request, so one cache line per
    /// worker. Each worker balances on its own view (as nginx's workers do); readers add up.
    hot: Sharded<Hot>,
    /// Verdict of active health checks; true when the pool has none.
    healthy: AtomicBool,
    /// Set by `drain`: no new requests, in-flight ones finish.
    draining: AtomicBool,
    /// Consecutive connect failures/timeouts seen on real traffic (passive checks).
    failures: AtomicU32,
    /// The last request sent to it failed to connect or timed out (cleared by a response or a
    /// passing health check): not routable for `/ready`, whatever the ejection window says.
    failing: AtomicBool,
    /// `now_ms()` until which passive ejection keeps the member out; 0 when not ejected.
    ejected_until: AtomicU64,
    pub(crate) failures_total: AtomicU64,
}

/// One worker's per-request view of a member.
#[derive(Debug, Default)]
struct Hot {
    /// Requests sent and not yet finished (response body ended or dropped).
    outstanding: AtomicU64,
    requests: AtomicU64,
    /// Exponentially weighted time to response headers, microseconds (balancer tie-break).
    ewma_us: AtomicU64,
    /// `now_ms()` of the last EWMA sample: an old EWMA decays, so a member that was slow
    /// once is tried again instead of starving.
    ewma_at: AtomicU64,
}

impl Member {
    fn new(addr: Authority, source: Source, weight: u32, healthy: bool) -> Self {
        Self {
            addr,
            source,
            weight: AtomicU32::new(weight.max(1)),
            hot: Sharded::new(),
            healthy: AtomicBool::new(healthy),
            draining: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            failing: AtomicBool::new(false),
            ejected_until: AtomicU64::new(0),
            failures_total: AtomicU64::new(0),
        }
    }

    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }
    /// Requests sent and not finished, all workers.
    pub fn outstanding(&self) -> u32 {
        self.hot.sum(|h| &h.outstanding) as u32
    }
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Relaxed)
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Relaxed)
    }
    pub fn is_ejected(&self) -> bool {
        self.ejected_until.load(Relaxed) > now_ms()
    }
    /// This worker's EWMA as of `now`, halved for every `EWMA_HALF_LIFE_MS` since its last
    /// sample.
    fn ewma_at(&self, now: u64) -> u64 {
        let h = self.hot.local();
        let age = now.saturating_sub(h.ewma_at.load(Relaxed));
        h.ewma_us.load(Relaxed) >> (age / EWMA_HALF_LIFE_MS).min(63)
    }

    /// This worker's requests in flight on the member (what its balancer weighs).
    fn local_outstanding(&self) -> u64 {
        self.hot.local().outstanding.load(Relaxed)
    }

    pub fn requests_total(&self) -> u64 {
        self.hot.sum(|h| &h.requests)
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        self.healthy.store(healthy, Relaxed);
        if healthy {
            // A member that passes active checks is given traffic again at once.
            self.failures.store(0, Relaxed);
            self.failing.store(false, Relaxed);
            self.ejected_until.store(0, Relaxed);
        }
    }

    /// Can take a new request right now.
    fn eligible(&self, now: u64) -> bool {
        self.is_healthy() && !self.is_draining() && self.ejected_until.load(Relaxed) <= now
    }

    /// Balancer cost: this worker's outstanding per unit of weight, scaled to stay integral.
    fn load_score(&self) -> u64 {
        (self.local_outstanding() + 1) * 1_000_000 / self.weight() as u64
    }

    /// A response arrived (whatever its status): the member is reachable.
    pub(crate) fn report_success(&self, latency: Duration) {
        // Shared lines are only read on the way: written when they change.
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
        if self.failing.load(Relaxed) {
            self.failing.store(false, Relaxed);
        }
        let h = self.hot.local();
        let sample = latency.as_micros().min(u64::MAX as u128) as u64;
        let old = h.ewma_us.load(Relaxed);
        let new = if old == 0 { sample } else { (old * 4 + sample) / 5 };
        h.ewma_us.store(new, Relaxed);
        h.ewma_at.store(now_ms(), Relaxed);
    }

    /// A connect failure or timeout; ejects after `max_failures` in a row. Returns true when
    /// this failure ejected the member.
    pub(crate) fn report_failure(&self, passive: &PassiveSettings) -> bool {
        self.failures_total.fetch_add(1, Relaxed);
        self.failing.store(true, Relaxed);
        let n = self.failures.fetch_add(1, Relaxed) + 1;
        if passive.max_failures > 0 && n >= passive.max_failures {
            self.failures.store(0, Relaxed);
            self.ejected_until.store(now_ms() + passive.eject_for.as_millis() as u64, Relaxed);
            return true;
        }
        false
    }
}

/// Holds one outstanding request on a member; released when the response ends or is dropped.
#[derive(Debug)]
pub struct InFlight(Arc<Member>, usize);

impl InFlight {
    pub fn new(member: Arc<Member>) -> Self {
        let (i, h) = member.hot.local_indexed();
        h.outstanding.fetch_add(1, Relaxed);
        h.requests.fetch_add(1, Relaxed);
        Self(member, i)
    }
    pub fn member(&self) -> &Arc<Member> {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // From the shard it was taken on, whichever thread drops it.
        self.0.hot.at(self.1).outstanding.fetch_sub(1, Relaxed);
    }
}

/// Per-pool behaviour that a reload may change without replacing the members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPolicy {
    pub balance: Balance,
    pub protocol: Protocol,
    pub retry: bool,
    pub health_check: Option<HealthCheckSettings>,
    pub passive: PassiveSettings,
}

/// A named set of members.
#[derive(Debug)]
pub struct Pool {
    pub name: String,
    members: ArcSwap<Vec<Arc<Member>>>,
    policy: ArcSwap<PoolPolicy>,
    /// Serialises membership writers; never taken on the request path.
    write: Mutex<()>,
    rr: AtomicUsize,
}

impl Pool {
    pub fn new(
        name: &str,
        members: &[MemberSettings],
        balance: Balance,
        protocol: Protocol,
        retry: bool,
        health_check: Option<HealthCheckSettings>,
        passive: PassiveSettings,
    ) -> Arc<Self> {
        let healthy = health_check.is_none();
        let list =
            members.iter().map(|m| Arc::new(Member::new(m.addr.clone(), Source::Config, m.weight, healthy))).collect();
        Arc::new(Self {
            name: name.to_string(),
            members: ArcSwap::from_pointee(list),
            policy: ArcSwap::from_pointee(PoolPolicy { balance, protocol, retry, health_check, passive }),
            write: Mutex::new(()),
            rr: AtomicUsize::new(0),
        })
    }

    pub fn from_settings(s: &PoolSettings) -> Arc<Self> {
        Self::new(&s.name, &s.members, s.balance, s.protocol, s.retry, s.health_check.clone(), s.passive.clone())
    }

    /// Snapshot of the members (cheap; never blocks writers).
    pub fn members(&self) -> Arc<Vec<Arc<Member>>> {
        self.members.load_full()
    }

    pub fn policy(&self) -> Arc<PoolPolicy> {
        self.policy.load_full()
    }

    /// The policy for one request: a guard, no reference count written (the request path).
    pub fn policy_now(&self) -> arc_swap::Guard<Arc<PoolPolicy>> {
        self.policy.load()
    }

    fn update(&self, f: impl FnOnce(&mut Vec<Arc<Member>>)) {
        let _w = self.write.lock().unwrap_or_else(|e| e.into_inner());
        let mut list = Vec::clone(&self.members.load());
        f(&mut list);
        self.members.store(Arc::new(list));
    }

    /// Adds an allocator member (or re-activates a draining one with that address). It takes
    /// traffic at once when the pool has no active health check, else after its first passing
    /// check.
    pub fn add_member(&self, addr: Authority, weight: u32) {
        let healthy = self.policy.load().health_check.is_none();
        self.update(|list| match list.iter().find(|m| m.addr == addr) {
            Some(m) => {
                m.draining.store(false, Relaxed);
                m.weight.store(weight.max(1), Relaxed);
            }
            None => list.push(Arc::new(Member::new(addr, Source::Allocator, weight, healthy))),
        });
    }

    /// The member with address `addr`, if any.
    pub fn member(&self, addr: &Authority) -> Option<Arc<Member>> {
        self.members().iter().find(|m| &m.addr == addr).cloned()
    }

    /// Stops sending new requests to `addr`; in-flight ones finish. Returns false if unknown.
    pub fn drain(&self, addr: &Authority) -> bool {
        self.members().iter().find(|m| &m.addr == addr).map(|m| m.draining.store(true, Relaxed)).is_some()
    }

    /// Removes `addr`; requests already sent to it keep their own reference and finish.
    pub fn remove(&self, addr: &Authority) -> bool {
        let mut found = false;
        self.update(|list| {
            let before = list.len();
            list.retain(|m| &m.addr != addr);
            found = list.len() != before;
        });
        found
    }

    pub fn set_weight(&self, addr: &Authority, weight: u32) -> bool {
        self.members().iter().find(|m| &m.addr == addr).map(|m| m.weight.store(weight.max(1), Relaxed)).is_some()
    }

    /// Applies a reloaded configuration to the config members: keeps the state of those that
    /// stay, adds new ones, removes those no longer listed. The allocator's members (and their
    /// drains) are not the configuration's to change and stay as they are.
    pub fn reconcile(&self, s: &PoolSettings) {
        let policy = PoolPolicy {
            balance: s.balance,
            protocol: s.protocol,
            retry: s.retry,
            health_check: s.health_check.clone(),
            passive: s.passive.clone(),
        };
        let healthy = policy.health_check.is_none();
        if **self.policy.load() != policy {
            self.policy.store(Arc::new(policy));
        }
        self.update(|list| {
            let mut next = Vec::with_capacity(s.members.len() + list.len());
            for m in &s.members {
                match list.iter().find(|old| old.addr == m.addr && old.source == Source::Config) {
                    Some(old) => {
                        old.weight.store(m.weight.max(1), Relaxed);
                        if healthy {
                            old.healthy.store(true, Relaxed);
                        }
                        next.push(old.clone());
                    }
                    None => next.push(Arc::new(Member::new(m.addr.clone(), Source::Config, m.weight, healthy))),
                }
            }
            next.extend(list.iter().filter(|m| m.source == Source::Allocator).cloned());
            *list = next;
        });
    }

    /// Picks a member for a new request, skipping `exclude` (the one that just failed).
    /// When no member is eligible but some are only passively ejected, one of those is tried
    /// anyway ("panic mode"): better a likely failure than a certain 503.
    pub fn pick(&self, exclude: Option<&Member>) -> Option<Arc<Member>> {
        let list = self.members.load();
        let now = now_ms();
        let ok = |m: &Member| m.eligible(now) && !exclude.is_some_and(|x| std::ptr::eq(x, m));
        let policy = self.policy.load();
        let picked = match policy.balance {
            Balance::P2c => pick_p2c(&list, &ok),
            Balance::RoundRobin => {
                let start = self.rr.fetch_add(1, Relaxed);
                probe(&list, start, &ok)
            }
            Balance::Weighted => pick_weighted(&list, &ok),
        };
        picked.or_else(|| {
            let panic_ok =
                |m: &Member| m.is_healthy() && !m.is_draining() && !exclude.is_some_and(|x| std::ptr::eq(x, m));
            pick_p2c(&list, &panic_ok)
        })
    }

    /// At least one member can take a request now (for `/ready`): it passes its health checks
    /// (or the pool has none), is neither draining nor ejected, and the last request sent to
    /// it did not fail to connect or time out.
    pub fn has_routable_member(&self) -> bool {
        let now = now_ms();
        self.members().iter().any(|m| m.eligible(now) && !m.failing.load(Relaxed))
    }
}

/// First acceptable member at or after `start`, wrapping.
fn probe(list: &[Arc<Member>], start: usize, ok: &impl Fn(&Member) -> bool) -> Option<Arc<Member>> {
    let n = list.len();
    (0..n).map(|i| &list[(start + i) % n]).find(|m| ok(m)).cloned()
}

fn pick_p2c(list: &[Arc<Member>], ok: &impl Fn(&Member) -> bool) -> Option<Arc<Member>> {
    let n = list.len();
    if n == 0 {
        return None;
    }
    let a = probe(list, fastrand::usize(..n), ok)?;
    let b = probe(list, fastrand::usize(..n), &|m: &Member| ok(m) && !std::ptr::eq(m, &*a));
    Some(match b {
        None => a,
        Some(b) => {
            let (sa, sb) = (a.load_score(), b.load_score());
            if sa != sb {
                if sa < sb { a } else { b }
            } else if a.local_outstanding() == 0 {
                // Both idle: the random first choice, so idle members share the load.
                a
            } else {
                // Equally busy: prefer a clearly faster member (EWMA under 80 % of the other's).
                let now = now_ms();
                let (ea, eb) = (a.ewma_at(now), b.ewma_at(now));
                if eb * 5 < ea * 4 { b } else { a }
            }
        }
    })
}

fn pick_weighted(list: &[Arc<Member>], ok: &impl Fn(&Member) -> bool) -> Option<Arc<Member>> {
    let total: u64 = list.iter().filter(|m| ok(m)).map(|m| m.weight() as u64).sum();
    if total == 0 {
        return None;
    }
    let mut r = fastrand::u64(..total);
    for m in list.iter().filter(|m| ok(m)) {
        let w = m.weight() as u64;
        if r < w {
            return Some(m.clone());
        }
        r -= w;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(balance: Balance, members: &[(&str, u32)]) -> Arc<Pool> {
        let ms: Vec<_> = members.iter().map(|(a, w)| MemberSettings { addr: a.parse().unwrap(), weight: *w }).collect();
        Pool::new(
            "p",
            &ms,
            balance,
            Protocol::Http1,
            true,
            None,
            PassiveSettings { max_failures: 2, eject_for: Duration::from_secs(60) },
        )
    }

    fn counts(p: &Pool, n: usize) -> Vec<usize> {
        let list = p.members();
        let mut c = vec![0; list.len()];
        for _ in 0..n {
            let m = p.pick(None).unwrap();
            c[list.iter().position(|x| Arc::ptr_eq(x, &m)).unwrap()] += 1;
        }
        c
    }

    #[test]
    fn round_robin_is_even() {
        let p = pool(Balance::RoundRobin, &[("a:1", 1), ("b:1", 1), ("c:1", 1)]);
        assert_eq!(counts(&p, 300), vec![100, 100, 100]);
    }

    #[test]
    fn weighted_follows_weights() {
        let p = pool(Balance::Weighted, &[("a:1", 1), ("b:1", 3)]);
        let c = counts(&p, 8000);
        assert!((1700..2300).contains(&c[0]), "{c:?}");
    }

    #[test]
    fn p2c_prefers_the_less_loaded_member() {
        let p = pool(Balance::P2c, &[("a:1", 1), ("b:1", 1)]);
        let busy = p.members()[0].clone();
        let _held: Vec<_> = (0..5).map(|_| InFlight::new(busy.clone())).collect();
        // With two members P2C always compares both: every pick goes to the idle one.
        let c = counts(&p, 200);
        assert_eq!(c, vec![0, 200]);
    }

    #[test]
    fn p2c_honours_weight() {
        let p = pool(Balance::P2c, &[("a:1", 1), ("b:1", 4)]);
        let list = p.members();
        let mut held = Vec::new();
        for _ in 0..500 {
            held.push(InFlight::new(p.pick(None).unwrap()));
        }
        let (a, b) = (list[0].outstanding(), list[1].outstanding());
        assert!(b >= 3 * a, "a={a} b={b}");
    }

    #[test]
    fn draining_and_ejected_members_get_nothing() {
        let p = pool(Balance::RoundRobin, &[("a:1", 1), ("b:1", 1)]);
        let a: Authority = "a:1".parse().unwrap();
        assert!(p.drain(&a));
        assert_eq!(counts(&p, 10), vec![0, 10]);
        let b = p.members()[1].clone();
        let passive = p.policy().passive.clone();
        assert!(!b.report_failure(&passive));
        assert!(b.report_failure(&passive));
        assert!(b.is_ejected());
        // Only a draining member and an ejected one: panic mode still tries the ejected one,
        // never the draining one.
        assert_eq!(counts(&p, 10), vec![0, 10]);
        b.set_healthy(true);
        assert!(!b.is_ejected());
    }

    #[test]
    fn a_reload_leaves_the_allocators_members_and_their_drains_alone() {
        // Regression (issue 16): reconcile rebuilt the list from the configuration alone.
        let p = pool(Balance::P2c, &[("a:1", 1)]);
        p.add_member("vm1:80".parse().unwrap(), 2);
        p.add_member("vm2:80".parse().unwrap(), 2);
        assert!(p.drain(&"vm2:80".parse().unwrap()));
        let draining = p.member(&"vm2:80".parse().unwrap()).unwrap();
        let _f = InFlight::new(draining.clone());
        let s = PoolSettings {
            name: "p".into(),
            members: vec![MemberSettings { addr: "b:1".parse().unwrap(), weight: 1 }],
            balance: Balance::P2c,
            protocol: Protocol::Http1,
            retry: true,
            health_check: None,
            passive: PassiveSettings::default(),
        };
        p.reconcile(&s);
        let list = p.members();
        let addrs: Vec<(&str, Source)> = list.iter().map(|m| (m.addr.as_str(), m.source)).collect();
        assert_eq!(addrs, [("b:1", Source::Config), ("vm1:80", Source::Allocator), ("vm2:80", Source::Allocator)]);
        let kept = p.member(&"vm2:80".parse().unwrap()).unwrap();
        assert!(Arc::ptr_eq(&kept, &draining) && kept.is_draining() && kept.outstanding() == 1);
    }

    #[test]
    fn reconcile_keeps_state_of_members_that_stay() {
        let p = pool(Balance::P2c, &[("a:1", 1), ("b:1", 1)]);
        let a = p.members()[0].clone();
        let _f = InFlight::new(a.clone());
        let s = PoolSettings {
            name: "p".into(),
            members: vec![
                MemberSettings { addr: "a:1".parse().unwrap(), weight: 5 },
                MemberSettings { addr: "c:1".parse().unwrap(), weight: 1 },
            ],
            balance: Balance::RoundRobin,
            protocol: Protocol::Http1,
            retry: false,
            health_check: None,
            passive: PassiveSettings::default(),
        };
        p.reconcile(&s);
        let list = p.members();
        assert_eq!(list.len(), 2);
        assert!(Arc::ptr_eq(&list[0], &a));
        assert_eq!(a.weight(), 5);
        assert_eq!(a.outstanding(), 1);
        assert_eq!(list[1].addr.as_str(), "c:1");
        assert_eq!(p.policy().balance, Balance::RoundRobin);
        assert!(p.remove(&"c:1".parse().unwrap()));
        assert_eq!(p.members().len(), 1);
    }
}
