//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz, nightly) and for the corpus
//! replay test (`tests/fuzz_corpus.rs`, stable, in CI): each takes arbitrary bytes and asserts
//! what must hold for any input. A panic here is a bug.

use std::path::Path;
use std::sync::{Arc, LazyLock};

use crate::admin::api;
use crate::historian::HistorianView;
use crate::historian::disk::{decode_segment, frame};
use crate::historian::import::{Format, ImportOptions, to_rows};
use crate::historian::record::{CallOutcome, CallRecord};
use crate::historian::store::{Store, StoreConfig, default_tiers};

/// `proxy.toml` parsing and validation: settings or at least one named error.
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data)
        && let Err(errors) = crate::config::parse(text, Path::new("/nonexistent"))
    {
        assert!(!errors.is_empty(), "a refused config names its problem");
    }
}

/// The CSV and access-log importers. The first byte picks the format (or detection), the rest
/// is the file: buckets and a report of bad lines, never a panic, a hang or an allocation
/// proportional to a timestamp.
pub fn import(data: &[u8]) {
    let Some((&pick, text)) = data.split_first() else { return };
    let format = match pick % 3 {
        0 => None,
        1 => Some(Format::Csv),
        _ => Some(Format::AccessLog),
    };
    let tiers = default_tiers();
    let opts = ImportOptions { format, path_prefix: Some("/"), latest_s: Some(T0 + 86_400), ..Default::default() };
    if let Ok((rows, report)) = to_rows(text, "e", &tiers, &opts) {
        assert!(report.bad_lines.len() <= crate::historian::import::BAD_LINES_KEPT);
        assert!(report.bad_count <= report.lines);
        assert!(report.bad_lines.iter().all(|(_, p)| p.len() <= crate::historian::import::BAD_LINE_ECHO + 3));
        assert_eq!(rows.len() as u64, report.buckets_written);
        for (ti, _, index, _) in &rows {
            let spec = &tiers[*ti];
            let last = report.last_s.expect("rows mean observations") / spec.step_s;
            assert!(*index <= last && last - index <= spec.capacity() as u64, "within the tier's retention");
        }
    }
}

/// The historian's on-disk record decoder. Odd first byte: the rest is the file as is
/// (framing, lengths, CRCs). Even: the rest is cut into payloads (a length byte, then that
/// many bytes) framed with correct CRCs, so the fuzzer reaches the decoder behind the checksum.
/// Whole records up to a valid length, the same again from that prefix alone.
pub fn segment(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else { return };
    let file = if mode & 1 == 1 {
        rest.to_vec()
    } else {
        let mut f = b"PSH1".to_vec();
        let mut r = rest;
        while let Some((&len, tail)) = r.split_first() {
            let (payload, next) = tail.split_at((len as usize).min(tail.len()));
            frame(payload, &mut f);
            r = next;
        }
        f
    };
    let mut n = 0usize;
    let valid = decode_segment(&file, |_, _, _| n += 1);
    assert!(valid <= file.len());
    let mut again = 0usize;
    assert_eq!(decode_segment(&file[..valid], |_, _, _| again += 1), valid);
    assert_eq!(again, n);
}

/// The request-target checks that run before routing. The first byte picks the dot-segment
/// mode; the rest is used as a request path (when the `http` crate accepts it, as hyper's
/// parser would) and as a Host value.
/// - a normalised path starts with `/`, holds no dot-segment in any spelling, is a valid
///   request target, and normalising it again changes nothing;
/// - `reject` mode never rewrites: a path is refused or passed as it is;
/// - a Host that passes parses as a URI authority without userinfo, and its name is not empty.
pub fn request_target(data: &[u8]) {
    use crate::proxy::target::{DotSegments, normalize_path, valid_host};
    let Some((&mode, rest)) = data.split_first() else { return };
    let mode = if mode & 1 == 1 { DotSegments::Reject } else { DotSegments::Normalize };
    if let Ok(host) = std::str::from_utf8(rest)
        && valid_host(rest)
    {
        let a: http::uri::Authority = host.parse().expect("a valid Host is an authority");
        assert!(!host.contains('@') && !crate::proxy::router::host_without_port(host).is_empty(), "{host:?}");
        assert_eq!(a.as_str(), host);
    }
    let Ok(pq) = http::uri::PathAndQuery::try_from(rest) else { return };
    let path = pq.path();
    match normalize_path(path, mode) {
        Err(_) => {}
        Ok(std::borrow::Cow::Borrowed(p)) => assert_eq!(p, path),
        Ok(std::borrow::Cow::Owned(p)) => {
            assert_eq!(mode, DotSegments::Normalize, "reject mode rewrote {path:?}");
            assert!(p.starts_with('/'), "{p:?}");
            http::uri::PathAndQuery::try_from(p.as_str()).expect("still a valid target");
            let again = normalize_path(&p, DotSegments::Normalize).expect("a normalised path is accepted");
            assert!(matches!(again, std::borrow::Cow::Borrowed(_)), "not idempotent: {path:?} → {p:?} → {again:?}");
        }
    }
}

const T0: u64 = 1_800_000_000;

/// Two endpoints, two hours of calls (statuses, query strings) in a store's snapshot.
static VIEW: LazyLock<HistorianView> = LazyLock::new(|| {
    let mut s = Store::new(StoreConfig::default(), None, (T0 - 7200) * 1_000_000);
    for k in 0..2400u64 {
        let t = T0 - 7200 + k * 3;
        s.ingest(CallRecord {
            start_us: t * 1_000_000,
            endpoint: Arc::from(if k % 3 == 0 { "orders" } else { "search" }),
            method: http::Method::GET,
            target: format!("/api/{k}?q={}&page={}", k % 7, k % 4).parse().expect("valid target"),
            status: [200, 200, 404, 503][(k % 4) as usize],
            outcome: if k % 4 == 3 { CallOutcome::UpstreamError } else { CallOutcome::Ok },
            latency_us: 1000 + k * 17 % 50_000,
            bytes_in: 0,
            bytes_out: 100,
            client: "10.0.0.1".parse().expect("valid address"),
            upstream: None,
            trace_id: [0; 16],
        });
        s.advance((t + 1) * 1_000_000);
    }
    s.advance((T0 + 60) * 1_000_000);
    HistorianView::fixed(s.snapshot(T0 * 1_000_000))
});

/// The admin API's query parameters: JSON of bounded size or a 4xx naming the problem.
pub fn admin_query(data: &[u8]) {
    let q = String::from_utf8_lossy(data);
    let p = api::query_params(Some(&q));
    for r in [api::series(&VIEW, &p), api::calls(&VIEW, &p), api::forecast(None, &p), api::accuracy(None, &p)] {
        match r {
            Ok(page) => assert!(page.json.len() < 64 << 20, "answer of {} bytes", page.json.len()),
            Err((status, msg)) => assert!(status.is_client_error(), "{status} {msg}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::T0;

    /// Inputs the fuzz targets found crashing, one test each (the files are also in
    /// `fuzz/regressions/`, replayed by `tests/fuzz_corpus.rs`).
    #[test]
    fn admin_calls_with_a_from_beyond_u64_microseconds() {
        // `from` × 1,000,000 overflowed (a panic with overflow checks, a wrong filter without).
        super::admin_query(b"endpoint=orders&step=59&from=1799992809992800&to=1060");
        let p = crate::admin::api::query_params(Some("from=18446744073709551615"));
        let all = crate::admin::api::calls(&super::VIEW, &p).unwrap().json;
        assert_eq!(all, "[]", "nothing starts after the end of time");
    }

    #[test]
    fn admin_series_with_a_step_of_two_million_years() {
        // One point of 6e13 one-second buckets was summed bucket by bucket (hours of CPU).
        let t = std::time::Instant::now();
        super::admin_query(b"endpoint=orders&step=59999288000000&\x7f=52800&t\x7f=580000");
        let p = crate::admin::api::query_params(Some("endpoint=orders&step=59999288000000&from=0&to=1800000000"));
        let one: serde_json::Value =
            serde_json::from_str(&crate::admin::api::series(&super::VIEW, &p).unwrap().json).unwrap();
        assert_eq!(one["points"].as_array().unwrap().len(), 1);
        // The same calls as the 1-second tier's points over the hour it keeps.
        let p =
            crate::admin::api::query_params(Some(&format!("endpoint=orders&step=1&from={}&to={}", T0 - 7200, T0 + 60)));
        let fine: serde_json::Value =
            serde_json::from_str(&crate::admin::api::series(&super::VIEW, &p).unwrap().json).unwrap();
        let total: u64 = fine["points"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum();
        assert!(total > 300);
        assert_eq!(one["points"][0]["count"], total, "every call in the one point");
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
    }
}
