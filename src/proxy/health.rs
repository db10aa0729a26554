//! Active health checks: one task per pool, probing every member each interval with
//! `GET <path>`; `fall` failures in a row take a member out, `rise` passes bring it back. A
//! member that has never been checked becomes healthy on its first pass, so a fresh pool
//! serves as soon as possible. The task re-reads the pool's policy every round, so a reload
//! that changes the check takes effect without restarting it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Request;
use http::uri::Authority;
use http_body_util::{Either, Empty};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::UpstreamClient;
use super::pool::Pool;

/// Streaks per member, owned by the task.
#[derive(Default)]
struct Streak {
    checked: bool,
    passes: u32,
    fails: u32,
}

pub(crate) async fn run(pool: Arc<Pool>, client: UpstreamClient, stop: CancellationToken) {
    let mut streaks: HashMap<Authority, Streak> = HashMap::new();
    loop {
        let policy = pool.policy();
        let Some(check) = policy.health_check.clone() else {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
            }
        };
        let members = pool.members();
        let mut probes = JoinSet::new();
        for m in members.iter() {
            let (m, client, path, timeout) = (m.clone(), client.clone(), check.path.clone(), check.timeout);
            probes.spawn(async move {
                let ok = probe(&client, &m.addr, &path, timeout).await;
                (m, ok)
            });
        }
        let results = tokio::select! {
            _ = stop.cancelled() => return,
            r = probes.join_all() => r,
        };
        streaks.retain(|a, _| members.iter().any(|m| &m.addr == a));
        for (m, ok) in results {
            let s = streaks.entry(m.addr.clone()).or_default();
            if ok {
                s.passes += 1;
                s.fails = 0;
            } else {
                s.fails += 1;
                s.passes = 0;
            }
            let first = !s.checked;
            s.checked = true;
            if m.is_healthy() && !ok && (s.fails >= check.fall || first) {
                tracing::warn!(pool = %pool.name, member = %m.addr, fails = s.fails, "member failed health checks, taken out");
                m.set_healthy(false);
            } else if !m.is_healthy() && ok && (s.passes >= check.rise || first) {
                tracing::info!(pool = %pool.name, member = %m.addr, "member passed health checks, back in");
                m.set_healthy(true);
            }
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(check.interval) => {}
        }
    }
}

/// One health check: `GET path` on `addr` answers 2xx or 3xx within `timeout`. Also the
/// allocator's check of a booting VM (one prober for both).
pub(crate) async fn probe(client: &UpstreamClient, addr: &Authority, path: &str, timeout: Duration) -> bool {
    let uri = format!("http://{addr}{path}");
    let Ok(req) = Request::get(uri).header("user-agent", "prescale-health").body(Either::Right(Empty::new())) else {
        return false;
    };
    match tokio::time::timeout(timeout, client.request(req)).await {
        Ok(Ok(resp)) => {
            let s = resp.status();
            s.is_success() || s.is_redirection()
        }
        _ => false,
    }
}
