//! Request classes: requests are not all equal. When one query parameter explains much of an
//! endpoint's latency (`report=full` vs `report=summary`, `limit=1000` vs `limit=10`), its
//! values are classes, each with its share of requests and its cost relative to the endpoint's
//! average — latency standing in for work done. The forecast is split by class, and the cost
//! model counts cost-weighted requests, so a shift in the mix towards expensive requests shows
//! up as more work per request instead of as a forecast miss.
//!
//! Detection: for every parameter present in at least a fifth of the calls, the calls are grouped
//! by its value (values under 5 % of calls pooled as `other`; numbers with many distinct values
//! split at their terciles) and the share of log-latency variance the grouping explains (η²,
//! between-group over total sum of squares) is computed. The best parameter is chosen if η² ≥
//! [`MIN_ETA2`] on at least [`MIN_CALLS`] calls and its dearest class costs at least 1.5× its
//! cheapest; a parameter named in the configuration
//! (`class_param`) is used whatever its η².

use std::collections::HashMap;

use serde::Serialize;

pub(crate) const MIN_ETA2: f64 = 0.25;
pub(crate) const MIN_CALLS: usize = 200;
/// At most this many classes (the commonest values; the rest pooled).
const MAX_CLASSES: usize = 8;

/// One class of an endpoint's requests.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Class {
    /// The parameter's value (`"full"`), a numeric range (`"100..1000"`), `"other"` or `"(none)"`.
    pub value: String,
    /// Share of the calls examined.
    pub share: f64,
    /// Share among the calls of the last minute (the current mix).
    pub recent_share: f64,
    pub mean_latency_ms: f64,
    /// Mean latency ÷ the endpoint's mean latency.
    pub relative_cost: f64,
}

/// The split of an endpoint's requests by one parameter.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassSplit {
    pub param: String,
    /// Share of log-latency variance explained by the classes.
    pub eta2: f64,
    /// `"detected"` or `"configured"`.
    pub source: &'static str,
    pub calls: usize,
    pub classes: Vec<Class>,
}

impl ClassSplit {
    /// Cost-weighted requests per request in the current mix (1 when the mix is the usual one).
    pub fn weight_now(&self) -> f64 {
        let w: f64 = self.classes.iter().map(|c| c.recent_share * c.relative_cost).sum();
        if w > 0.0 { w } else { 1.0 }
    }
}

/// One call as the detector sees it.
pub(crate) struct Call<'a> {
    pub query: &'a str,
    pub latency_us: u64,
    /// Within the last minute.
    pub recent: bool,
}

fn pairs(query: &str) -> impl Iterator<Item = (&str, &str)> {
    query.split('&').filter(|kv| !kv.is_empty()).map(|kv| kv.split_once('=').unwrap_or((kv, "")))
}

/// Groups values: the commonest as themselves, numbers with many distinct values by terciles.
fn grouper(values: &[&str]) -> impl Fn(Option<&str>) -> String {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for v in values {
        *counts.entry(v).or_default() += 1;
    }
    let n = values.len().max(1);
    let nums: Vec<f64> = values.iter().filter_map(|v| v.parse::<f64>().ok()).collect();
    let numeric = nums.len() == values.len() && counts.len() > MAX_CLASSES;
    let (mut keep, mut cuts) = (Vec::new(), Vec::new());
    if numeric {
        let mut s = nums;
        s.sort_by(|a, b| a.total_cmp(b));
        cuts = vec![s[s.len() / 3], s[2 * s.len() / 3]];
        cuts.dedup();
    } else {
        let mut c: Vec<(&str, usize)> = counts.into_iter().collect();
        c.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        keep = c.into_iter().filter(|(_, k)| *k * 20 >= n).take(MAX_CLASSES).map(|(v, _)| v.to_string()).collect();
    }
    move |v: Option<&str>| match v {
        None => "(none)".into(),
        Some(v) if numeric => {
            let x: f64 = v.parse().unwrap_or(f64::NAN);
            match cuts.iter().position(|c| x < *c) {
                Some(0) => format!("<{}", cuts[0]),
                Some(i) => format!("{}..{}", cuts[i - 1], cuts[i]),
                None => format!(">={}", cuts.last().copied().unwrap_or(0.0)),
            }
        }
        Some(v) if keep.iter().any(|k| k == v) => v.to_string(),
        Some(_) => "other".into(),
    }
}

/// The split by `param`, with its η².
fn split<'a>(calls: &[Call<'a>], param: &str, source: &'static str) -> Option<ClassSplit> {
    fn value<'a>(c: &Call<'a>, param: &str) -> Option<&'a str> {
        pairs(c.query).find(|(k, _)| *k == param).map(|(_, v)| v)
    }
    let value = |c: &Call<'a>| value(c, param);
    let present: Vec<&str> = calls.iter().filter_map(value).collect();
    if present.is_empty() {
        return None;
    }
    let group = grouper(&present);
    let mut groups: HashMap<String, (usize, usize, f64, f64)> = HashMap::new(); // n, recent, Σlog, Σlat
    let logs: Vec<f64> = calls.iter().map(|c| (1.0 + c.latency_us as f64).ln()).collect();
    for (c, l) in calls.iter().zip(&logs) {
        let g = groups.entry(group(value(c))).or_default();
        g.0 += 1;
        g.1 += c.recent as usize;
        g.2 += l;
        g.3 += c.latency_us as f64;
    }
    let n = calls.len() as f64;
    let mean_log = logs.iter().sum::<f64>() / n;
    let ss_total: f64 = logs.iter().map(|l| (l - mean_log).powi(2)).sum();
    let ss_between: f64 = groups.values().map(|g| g.0 as f64 * (g.2 / g.0 as f64 - mean_log).powi(2)).sum();
    // Latencies all (nearly) equal: nothing to explain.
    let eta2 = if ss_total / n > 1e-6 { (ss_between / ss_total).min(1.0) } else { 0.0 };
    let mean_lat = calls.iter().map(|c| c.latency_us as f64).sum::<f64>() / n;
    let recent_n = calls.iter().filter(|c| c.recent).count().max(1) as f64;
    let mut classes: Vec<Class> = groups
        .into_iter()
        .map(|(v, (k, r, _, lat))| Class {
            value: v,
            share: k as f64 / n,
            recent_share: r as f64 / recent_n,
            mean_latency_ms: lat / k as f64 / 1000.0,
            relative_cost: if mean_lat > 0.0 { lat / k as f64 / mean_lat } else { 1.0 },
        })
        .collect();
    classes.sort_by(|a, b| b.share.total_cmp(&a.share).then(a.value.cmp(&b.value)));
    Some(ClassSplit { param: param.to_string(), eta2, source, calls: calls.len(), classes })
}

/// The class split of one endpoint's calls: by `configured` if given, else by the parameter
/// that explains the most latency, if it explains enough.
pub(crate) fn detect(calls: &[Call], configured: Option<&str>) -> Option<ClassSplit> {
    if let Some(p) = configured {
        return split(calls, p, "configured");
    }
    if calls.len() < MIN_CALLS {
        return None;
    }
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for c in calls {
        let mut keys: Vec<&str> = pairs(c.query).map(|(k, _)| k).collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            *seen.entry(k).or_default() += 1;
        }
    }
    let mut keys: Vec<&str> = seen.into_iter().filter(|(_, k)| k * 5 >= calls.len()).map(|(k, _)| k).collect();
    keys.sort_unstable();
    keys.into_iter()
        .filter_map(|k| split(calls, k, "detected"))
        .filter(|s| {
            // Classes worth having: they explain the latency and differ in cost by half at least.
            let (lo, hi) = s
                .classes
                .iter()
                .fold((f64::MAX, 0.0f64), |(lo, hi), c| (lo.min(c.relative_cost), hi.max(c.relative_cost)));
            s.eta2 >= MIN_ETA2 && s.classes.len() >= 2 && hi >= 1.5 * lo
        })
        .max_by(|a, b| a.eta2.total_cmp(&b.eta2))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` calls: `report=full` 20 % of the time at ~50 ms, else `summary` at ~10 ms; a noise
    /// parameter `q` unrelated to latency; `limit` with many numeric values.
    fn calls(n: usize, full_recent: bool) -> Vec<(String, u64, bool)> {
        let mut rng = fastrand::Rng::with_seed(7);
        (0..n)
            .map(|i| {
                let full = i % 5 == 0;
                let lat = if full { 50_000 } else { 10_000 } + rng.u64(0..3000);
                let recent = i >= n - 100;
                let full = full || (full_recent && recent && i % 2 == 0);
                let report = if full { "full" } else { "summary" };
                (format!("q={}&report={report}&limit={}", rng.u32(0..1000), rng.u32(1..500)), lat, recent)
            })
            .collect()
    }

    fn view(v: &[(String, u64, bool)]) -> Vec<Call<'_>> {
        v.iter().map(|(q, l, r)| Call { query: q, latency_us: *l, recent: *r }).collect()
    }

    #[test]
    fn finds_the_parameter_that_explains_latency() {
        let v = calls(1000, false);
        let s = detect(&view(&v), None).expect("report explains latency");
        assert_eq!(s.param, "report");
        assert_eq!(s.source, "detected");
        assert!(s.eta2 > 0.8, "{}", s.eta2);
        let full = s.classes.iter().find(|c| c.value == "full").unwrap();
        let summary = s.classes.iter().find(|c| c.value == "summary").unwrap();
        assert!((full.share - 0.2).abs() < 1e-9);
        // Mean latency 51.5 vs 11.5 ms around an overall 19.5: 2.64× and 0.59×.
        assert!((full.relative_cost - 51.5 / 19.5).abs() < 0.05, "{full:?}");
        assert!((summary.relative_cost - 11.5 / 19.5).abs() < 0.05, "{summary:?}");
        // Shares × relative costs average to 1 over the calls examined.
        let w: f64 = s.classes.iter().map(|c| c.share * c.relative_cost).sum();
        assert!((w - 1.0).abs() < 1e-9);
        assert!((s.weight_now() - 1.0).abs() < 0.1, "the recent mix is the usual one");
    }

    #[test]
    fn a_mix_shift_raises_the_weight_and_noise_is_not_a_class() {
        // The last 100 calls: 60 % full instead of 20 %.
        let v = calls(1000, true);
        let s = detect(&view(&v), None).unwrap();
        assert!(s.weight_now() > 1.4, "{}", s.weight_now());
        // Without a latency difference, nothing is a class…
        let flat: Vec<(String, u64, bool)> = calls(1000, false).into_iter().map(|(q, _, r)| (q, 10_000, r)).collect();
        assert_eq!(detect(&view(&flat), None), None);
        // …unless configured; numeric values with many distinct values fall into terciles.
        let s = detect(&view(&flat), Some("limit")).unwrap();
        assert_eq!((s.source, s.classes.len()), ("configured", 3), "{s:?}");
        assert!(s.classes.iter().all(|c| (c.share - 1.0 / 3.0).abs() < 0.05), "{s:?}");
        // Too few calls to detect anything.
        assert_eq!(detect(&view(&v[..100]), None), None);
    }
}
