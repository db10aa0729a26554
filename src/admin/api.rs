//! `/admin/api/*`: JSON over the historian's snapshot. Read-only; every parameter is
//! validated and a bad one gets 400 with a message naming it.

use std::collections::HashMap;

use http::StatusCode;
use serde_json::{Value, json};

use crate::historian::{HistorianView, Snapshot};

/// Points one series answer holds (about 130 bytes each); a longer range is paged.
pub(crate) const MAX_POINTS: u64 = 10_000;
/// Calls one answer holds (each at most a few hundred bytes: paths and queries are cut when
/// recorded); more are paged.
pub(crate) const MAX_CALLS: usize = 1_000;

/// One answer: serialized JSON, and where the rest is when it was paged (a path and query for a
/// `Link: rel="next"` header).
#[derive(Debug)]
pub(crate) struct Page {
    pub json: String,
    pub next: Option<String>,
}

impl From<String> for Page {
    fn from(json: String) -> Self {
        Self { json, next: None }
    }
}

/// An answer, or a status and message.
pub(crate) type ApiResult = Result<Page, (StatusCode, String)>;

/// The same query with `key` set to `value` (for a next-page link).
fn with_param(path: &str, p: &HashMap<String, String>, key: &str, value: u64) -> String {
    let mut keys: Vec<&String> = p.keys().filter(|k| k.as_str() != key).collect();
    keys.sort();
    let mut q = format!("{path}?");
    for k in keys {
        q.push_str(&format!("{}={}&", encode(k), encode(&p[k])));
    }
    q.push_str(&format!("{key}={value}"));
    q
}

fn bad(msg: impl Into<String>) -> (StatusCode, String) {
    (StatusCode::BAD_REQUEST, msg.into())
}

/// Decodes `a=1&b=x%20y` (later keys win).
pub(crate) fn query_params(q: Option<&str>) -> HashMap<String, String> {
    q.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

/// Percent-encodes everything but unreserved characters (for a `Location` query).
pub(crate) fn encode(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            o.push(b as char);
        } else {
            o.push_str(&format!("%{b:02X}"));
        }
    }
    o
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match crate::historian::record::hex_pair(b[i + 1], b[i + 2]) {
                Some(v) => {
                    out.push(v);
                    i += 2;
                }
                None => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn num(p: &HashMap<String, String>, key: &str) -> Result<Option<u64>, (StatusCode, String)> {
    match p.get(key) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| bad(format!("{key}: {v:?} is not a non-negative integer"))),
    }
}

pub(crate) fn endpoints(h: &HistorianView) -> ApiResult {
    let snap = h.snapshot();
    let dropped = h.dropped();
    Ok(Value::Array(
        snap.endpoints
            .iter()
            .map(|e| {
                json!({
                    "name": &*e.name,
                    "calls_total": e.calls_total,
                    "errors_total": e.errors_total,
                    "dropped_records_total": dropped,
                    "rate_per_s": (e.recent_rate(10) * 1000.0).round() / 1000.0,
                })
            })
            .collect(),
    )
    .to_string()
    .into())
}

pub(crate) fn series(h: &HistorianView, p: &HashMap<String, String>) -> ApiResult {
    let snap: std::sync::Arc<Snapshot> = h.snapshot();
    let name = p.get("endpoint").ok_or_else(|| bad("endpoint: required"))?;
    let ep = snap.endpoint(name).ok_or_else(|| no_endpoint(&snap, name))?;
    let now_s = snap.taken_us / 1_000_000;
    let step = num(p, "step")?.unwrap_or(60);
    if step == 0 {
        return Err(bad("step: must be positive"));
    }
    let to = num(p, "to")?.unwrap_or(now_s);
    let from = num(p, "from")?.unwrap_or(to.saturating_sub(86_400));
    if from >= to {
        return Err(bad("from: must be before to"));
    }
    let tier = ep.tier_for(step, from, now_s).ok_or_else(|| {
        let steps: Vec<u64> = ep.tiers.iter().map(|t| t.step_s).collect();
        bad(format!("step: must be a multiple of one of the recorded steps {steps:?}"))
    })?;
    // Buckets still open are not "missing": the series ends at the last closed one.
    let to = to.min(tier.next().saturating_mul(tier.step_s)).max(from);
    let step = step / tier.step_s * tier.step_s;
    // At most MAX_POINTS per answer; the rest is the next page.
    let page_end = from.saturating_add(MAX_POINTS.saturating_mul(step));
    let (to, next) = if to > page_end { (page_end, Some(page_end)) } else { (to, None) };
    let points = tier.points(from, to, step);
    #[derive(serde::Serialize)]
    struct Series<'a> {
        endpoint: &'a str,
        step: u64,
        points: &'a [crate::historian::series::Point],
    }
    let json = serde_json::to_string(&Series { endpoint: &ep.name, step, points: &points })
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Page { json, next: next.map(|n| with_param("/admin/api/series", p, "from", n)) })
}

/// 404 for an endpoint the historian does not know, naming those it does.
fn no_endpoint(snap: &Snapshot, name: &str) -> (StatusCode, String) {
    let known: Vec<&str> = snap.endpoints.iter().map(|e| &*e.name).take(50).collect();
    (StatusCode::NOT_FOUND, format!("endpoint: no endpoint named {name:?} (known: {known:?})"))
}

/// A time bound given in seconds (`key`) or in microseconds like the records' `t_us`
/// (`key_us`), as microseconds; both at once is an error.
fn bound_us(p: &HashMap<String, String>, key: &str) -> Result<Option<u64>, (StatusCode, String)> {
    let key_us = format!("{key}_us");
    match (num(p, key)?, num(p, &key_us)?) {
        (Some(_), Some(_)) => Err(bad(format!("{key}: give {key} (seconds) or {key_us} (microseconds), not both"))),
        (Some(s), None) => Ok(Some(s.saturating_mul(1_000_000))),
        (None, us) => Ok(us),
    }
}

pub(crate) fn calls(h: &HistorianView, p: &HashMap<String, String>) -> ApiResult {
    let snap = h.snapshot();
    let limit = num(p, "limit")?.unwrap_or(100).min(MAX_CALLS as u64) as usize;
    let from_us = bound_us(p, "from")?;
    // Paging: calls strictly older than this (the last `t_us` of the previous page).
    let before_us = num(p, "before_us")?;
    let to_us = bound_us(p, "to")?;
    let endpoint = p.get("endpoint");
    // An unknown endpoint is a 404, as for the series: an empty list would look like silence.
    if let Some(name) = endpoint
        && snap.endpoint(name).is_none()
    {
        return Err(no_endpoint(&snap, name));
    }
    let client = p.get("client");
    let trace = p.get("trace_id");
    let status = match p.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(s) if s.len() == 3 && s.ends_with("xx") => {
            let class: u16 = s[..1].parse().map_err(|_| bad(format!("status: {s:?} is not 2xx…5xx or a code")))?;
            Some((class * 100, class * 100 + 99))
        }
        Some(s) => {
            let code: u16 = s.parse().map_err(|_| bad(format!("status: {s:?} is not 2xx…5xx or a code")))?;
            Some((code, code))
        }
    };
    let calls: Vec<_> = snap
        .recent
        .iter()
        .filter(|c| endpoint.is_none_or(|e| &*c.endpoint == e.as_str()))
        .filter(|c| client.is_none_or(|cl| c.client.to_string() == *cl))
        .filter(|c| trace.is_none_or(|t| crate::historian::record::trace_id_hex(&c.trace_id).is_some_and(|h| h == *t)))
        .filter(|c| status.is_none_or(|(lo, hi)| (lo..=hi).contains(&c.status)))
        .filter(|c| from_us.is_none_or(|f| c.start_us >= f))
        .filter(|c| to_us.is_none_or(|t| c.start_us < t))
        .filter(|c| before_us.is_none_or(|b| c.start_us < b))
        .take(limit)
        .collect();
    let next = (calls.len() == limit && limit > 0)
        .then(|| calls.last().map(|c| with_param("/admin/api/calls", p, "before_us", c.start_us)))
        .flatten();
    let json = serde_json::to_string(&calls).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Page { json, next })
}

pub(crate) fn forecast(f: Option<&crate::forecast::view::ForecastView>, p: &HashMap<String, String>) -> ApiResult {
    let f = f.ok_or_else(|| (StatusCode::NOT_FOUND, "forecasting is disabled".to_string()))?;
    let json = match (p.get("endpoint"), p.get("pool")) {
        (Some(name), None) => {
            let fc = f
                .get(name)
                .ok_or_else(|| (StatusCode::NOT_FOUND, format!("endpoint: no forecast for {name:?} (yet)")))?;
            serde_json::to_string(&*fc)
        }
        (None, Some(name)) => {
            let fc =
                f.pool(name).ok_or_else(|| (StatusCode::NOT_FOUND, format!("pool: no forecast for {name:?} (yet)")))?;
            serde_json::to_string(&*fc)
        }
        _ => return Err(bad("give exactly one of endpoint=NAME or pool=NAME")),
    };
    json.map(Page::from).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `/admin/api/pools` (each scaled pool: mode, VMs, capacity against forecast, lead time) and
/// `/admin/api/decisions` (most recent first; `pool=NAME`, `limit=N`). Without a scaled pool
/// both are empty lists, like any other query that matches nothing.
pub(crate) fn allocator(
    a: Option<&crate::allocator::live::AllocatorView>,
    path: &str,
    p: &HashMap<String, String>,
) -> ApiResult {
    let Some(a) = a else {
        return Ok(Page::from("[]".to_string()));
    };
    let st = a.state();
    let json = if path.ends_with("pools") {
        serde_json::to_string(&st.pools)
    } else {
        let limit = match p.get("limit") {
            None => 100,
            Some(l) => l.parse::<usize>().map_err(|_| bad("limit: not a number"))?,
        };
        let pool = p.get("pool");
        let d: Vec<_> = st.decisions.iter().filter(|d| pool.is_none_or(|n| &d.pool == n)).take(limit).collect();
        serde_json::to_string(&d)
    };
    json.map(Page::from).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

/// `/admin/api/accuracy?endpoint=NAME` (or every endpoint without it): rolling forecast scores
/// per horizon group (5 and 60 min) over the last hour, day and week.
pub(crate) fn accuracy(f: Option<&crate::forecast::view::ForecastView>, p: &HashMap<String, String>) -> ApiResult {
    let f = f.ok_or_else(|| (StatusCode::NOT_FOUND, "forecasting is disabled".to_string()))?;
    let json = match p.get("endpoint") {
        Some(name) => {
            let a = f
                .accuracy(name)
                .ok_or_else(|| (StatusCode::NOT_FOUND, format!("endpoint: no scores for {name:?} (yet)")))?;
            serde_json::to_string(&serde_json::json!({ "endpoint": name, "horizons": &*a }))
        }
        None => {
            let all = f.all();
            let mut names: Vec<&String> = all.accuracy.keys().collect();
            names.sort();
            let v: Vec<_> = names
                .into_iter()
                .map(|n| serde_json::json!({ "endpoint": n, "horizons": &*all.accuracy[n] }))
                .collect();
            serde_json::to_string(&v)
        }
    };
    json.map(Page::from).map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}
