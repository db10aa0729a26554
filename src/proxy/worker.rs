//! One data-plane worker's own state: its index (for the per-worker counters), its copy of the
//! route table, its upstream connections and its request-id sequence.
//!
//! A worker is an OS thread running a current-thread runtime and a `LocalSet`: connections,
//! their requests and the upstream connections they use are all tasks on that one thread, so
//! what a worker owns is kept in `Rc`/`RefCell` — nothing on the request path is locked or
//! written by another core.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use arc_swap::cache::Cache;
use http::HeaderValue;

use super::upstream::Upstreams;
use super::{Proxy, RouteTable};
use crate::proxy::settings::UpstreamSettings;

thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// Shards of per-worker counters: one per core plus shard 0 for every other thread.
pub fn shards() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| 1 + std::thread::available_parallelism().map_or(1, |n| n.get()).min(64))
}

/// The calling thread's shard (0 unless it is a worker).
#[inline]
pub fn index() -> usize {
    INDEX.with(Cell::get)
}

/// Makes the calling thread write shard `i` (workers beyond the core count share shards).
pub fn set_index(i: usize) {
    INDEX.with(|c| c.set(i));
}

/// The route table as the worker sees it: the proxy's current one, re-read only when a reload
/// stored a new one (`arc_swap::Cache`: one relaxed load per request otherwise).
struct Tables(Arc<Proxy>);

impl Deref for Tables {
    type Target = ArcSwap<RouteTable>;
    fn deref(&self) -> &ArcSwap<RouteTable> {
        &self.0.table
    }
}

/// The proxy's table (re-read only when a reload stored a new one) and the worker's own handle
/// on it, which its requests share without touching the `Arc`'s count (written by every worker).
struct WorkerTable {
    cache: Cache<Tables, Arc<RouteTable>>,
    current: Rc<TableRef>,
}

/// A route table as one worker's requests hold it.
#[derive(Debug)]
pub struct TableRef(Arc<RouteTable>);

impl Deref for TableRef {
    type Target = RouteTable;
    fn deref(&self) -> &RouteTable {
        &self.0
    }
}

/// What one worker owns.
pub struct Worker {
    pub proxy: Arc<Proxy>,
    table: RefCell<WorkerTable>,
    pub upstreams: Rc<Upstreams>,
    /// Request ids: a random per-worker prefix and a counter, no shared atomic.
    rid_prefix: u64,
    rid_next: Cell<u64>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").field("upstreams", &self.upstreams).finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(proxy: Arc<Proxy>, upstream: &UpstreamSettings) -> Rc<Self> {
        Rc::new(Self {
            table: RefCell::new(WorkerTable {
                cache: Cache::new(Tables(proxy.clone())),
                current: Rc::new(TableRef(proxy.table.load_full())),
            }),
            proxy,
            upstreams: Upstreams::new(upstream),
            rid_prefix: fastrand::u64(..),
            rid_next: Cell::new(0),
        })
    }

    /// The current route table.
    #[inline]
    pub fn table(&self) -> Rc<TableRef> {
        let mut t = self.table.borrow_mut();
        let WorkerTable { cache, current } = &mut *t;
        let latest = cache.load();
        if !Arc::ptr_eq(latest, &current.0) {
            *current = Rc::new(TableRef(latest.clone()));
        }
        current.clone()
    }

    /// A new request id: 32 hex digits, unique per process (random per-worker prefix and a
    /// counter), formatted without allocating a `String`.
    pub fn next_request_id(&self) -> HeaderValue {
        let n = self.rid_next.get();
        self.rid_next.set(n + 1);
        let mut buf = [0u8; 32];
        hex16(self.rid_prefix, &mut buf[..16]);
        hex16(n, &mut buf[16..]);
        HeaderValue::from_bytes(&buf).unwrap_or_else(|_| HeaderValue::from_static("0"))
    }
}

fn hex16(mut v: u64, out: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for b in out.iter_mut().rev() {
        *b = HEX[(v & 0xf) as usize];
        v >>= 4;
    }
}

/// hyper's executor on a worker: spawns onto the worker's `LocalSet`, so connection and
/// stream tasks stay on the worker's thread and need not be `Send`.
#[derive(Debug, Clone, Copy)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, fut: F) {
        tokio::task::spawn_local(fut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex16_writes_sixteen_lowercase_digits() {
        let mut buf = [0u8; 16];
        hex16(0x0123_4567_89ab_cdef, &mut buf);
        assert_eq!(&buf, b"0123456789abcdef");
        hex16(10, &mut buf);
        assert_eq!(&buf, b"000000000000000a");
    }
}
