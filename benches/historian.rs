//! Historian micro-benchmarks on fixed, generated data:
//! - `record`: the proxy-side cost of one call record (build + `try_send`), and of a drop
//!   when the channel is full;
//! - `ingest`: records per second through the historian's store (the ingest thread's work);
//! - `query_7d`: one endpoint, 7 days at 1-min step, as points and as the JSON the API sends.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::Method;
use http::uri::{Authority, PathAndQuery};
use prescale::historian::series::{Bucket, FullBucket, Tier};
use prescale::historian::store::{Store, StoreConfig};
use prescale::historian::{CallOutcome, CallRecord, Recorder};

const T0_US: u64 = 1_800_000_000_000_000;

fn parts() -> (Arc<str>, PathAndQuery, Authority) {
    (
        Arc::from("orders"),
        PathAndQuery::from_static("/api/orders/42?limit=10&token=abc"),
        Authority::from_static("10.0.0.7:8080"),
    )
}

fn record_at(name: &Arc<str>, target: &PathAndQuery, up: &Authority, start_us: u64, status: u16) -> CallRecord {
    CallRecord {
        start_us,
        endpoint: name.clone(),
        method: Method::GET,
        target: target.clone(),
        status,
        outcome: CallOutcome::Ok,
        latency_us: 800 + start_us % 5000,
        bytes_in: 0,
        bytes_out: 512,
        client: std::net::IpAddr::from([10, 1, 2, 3]),
        upstream: Some(up.clone()),
        trace_id: [7; 16],
    }
}

fn record(c: &mut Criterion) {
    let (name, target, up) = parts();
    let mut g = c.benchmark_group("record");
    g.bench_function("build_and_try_send", |b| {
        b.iter_custom(|iters| {
            let (rec, rx) = Recorder::detached(iters as usize + 1);
            let start = Instant::now();
            for i in 0..iters {
                rec.record(record_at(&name, &target, &up, T0_US + i, 200));
            }
            let t = start.elapsed();
            drop(rx);
            t
        })
    });
    g.bench_function("dropped_when_full", |b| {
        let (rec, _rx) = Recorder::detached(1);
        rec.record(record_at(&name, &target, &up, T0_US, 200));
        b.iter(|| rec.record(record_at(&name, &target, &up, T0_US, 200)));
    });
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let (_, secret_target, up) = parts();
    let plain_target = PathAndQuery::from_static("/api/orders/42?limit=10&sort=asc");
    let names: Vec<Arc<str>> = (0..10).map(|i| Arc::from(format!("endpoint-{i}").as_str())).collect();
    // 100,000 records over 100 s of virtual time across 10 endpoints, 1 % errors, 10 % with
    // a secret query parameter to redact.
    let records: Vec<CallRecord> = (0..100_000u64)
        .map(|i| {
            let status = if i % 100 == 0 { 503 } else { 200 };
            let target = if i % 10 == 0 { &secret_target } else { &plain_target };
            record_at(&names[(i % 10) as usize], target, &up, T0_US + i * 1000, status)
        })
        .collect();
    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(records.len() as u64));
    g.sample_size(20);
    g.bench_function("store_100k_records", |b| {
        b.iter_batched(
            || (Store::new(StoreConfig::default(), None, T0_US), records.clone()),
            |(mut store, recs)| {
                for (i, r) in recs.into_iter().enumerate() {
                    store.ingest(r);
                    if i % 1000 == 999 {
                        store.advance(T0_US + i as u64 * 1000);
                    }
                }
                store
            },
            criterion::BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn query(c: &mut Criterion) {
    let mut tier = Tier::new(60, 35 * 1440);
    let first = T0_US / 60_000_000;
    for i in 0..35 * 1440 {
        let calls = 500 + (i % 1440);
        let f = FullBucket {
            calls,
            e4: calls / 50,
            e5: calls / 200,
            lat_us: [900, 2500, 9000, 40_000],
            ..Default::default()
        };
        tier.put(first + i, &f, Bucket::ZERO);
    }
    let to = (first + 35 * 1440) * 60;
    let from = to - 7 * 86_400;
    let mut g = c.benchmark_group("query_7d_1min");
    g.bench_function("points", |b| b.iter(|| black_box(tier.points(from, to, 60))));
    g.bench_function("points_json", |b| {
        b.iter(|| {
            let pts = tier.points(from, to, 60);
            #[derive(serde::Serialize)]
            struct Series<'a> {
                endpoint: &'a str,
                step: u64,
                points: &'a [prescale::historian::series::Point],
            }
            black_box(serde_json::to_string(&Series { endpoint: "orders", step: 60, points: &pts }))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = record, ingest, query
}
criterion_main!(benches);
