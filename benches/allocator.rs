//! Planner decision time: one planning round for 100 pools (each 4 VMs, a 60-minute forecast
//! with a ramp, the default policy), the work the allocator thread does per tick besides hypervisor calls.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prescale::allocator::plan::{ForecastInput, ForecastPoint, Phase, PoolState, VmView, plan};

fn bench(c: &mut Criterion) {
    let now = 1_800_000_000u64;
    let policy = prescale::allocator::ScalingSettings::default().policy;
    let pools: Vec<(ForecastInput, PoolState)> = (0..100)
        .map(|i| {
            let base = 50.0 + i as f64 * 10.0;
            let f = ForecastInput {
                points: (0..60)
                    .map(|k| {
                        let mean = base + k as f64 * 5.0;
                        ForecastPoint { t: now + k * 60, mean, hi80: mean * 1.2, hi95: mean * 1.4 }
                    })
                    .collect(),
            };
            let vms = (0..4)
                .map(|j| VmView {
                    name: format!("p{i}-{j}"),
                    phase: Phase::Serving,
                    vcpus: 1 + (j % 2),
                    active_vcpus: 1 + (j % 2),
                    max_vcpus: 4,
                    memory_mib: 256,
                    max_memory_mib: 1024,
                    busy: false,
                    drained: false,
                    weight: 1,
                    created_at: j as u64,
                    host: "h1".into(),
                })
                .collect();
            (f, PoolState { vms, measured_rps: base, ..Default::default() })
        })
        .collect();
    c.bench_function("plan_100_pools", |b| {
        b.iter(|| {
            for (f, s) in &pools {
                black_box(plan(f, s, &policy, now));
            }
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
