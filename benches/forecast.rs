//! Forecasting speed on fixed, generated data: Holt–Winters fit of 14 days of 1-min data
//! (20,160 points, season 1,440), one state update, a 60-step prediction; ARIMA and
//! Prophet-style fits and the automatic choice on the same data.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use prescale::forecast::arima::ArimaSpec;
use prescale::forecast::auto::AutoSpec;
use prescale::forecast::hw::HwSpec;
use prescale::forecast::prophet::ProphetSpec;

fn series(n: usize) -> Vec<f64> {
    let mut rng = fastrand::Rng::with_seed(42);
    (0..n)
        .map(|t| {
            let day = (t % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
            let week = if (t / 1440) % 7 >= 5 { 0.7 } else { 1.0 };
            (200.0 + 120.0 * day.sin()) * week + 20.0 * (rng.f64() - 0.5)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let y = series(14 * 1440);
    let spec = HwSpec::additive(1440, 60);
    let mut g = c.benchmark_group("holt_winters");
    g.sample_size(10);
    g.bench_function("fit_14d_1min", |b| b.iter(|| black_box(spec.fit(&y).unwrap())));
    let fit = spec.fit(&y).unwrap();
    g.bench_function("refilter_14d_1min", |b| b.iter(|| black_box(spec.refilter(fit.params, &y).unwrap())));
    g.sample_size(100);
    g.bench_function("update_one_point", |b| {
        let mut f = fit.clone();
        let mut v = 150.0;
        b.iter(|| {
            v = if v > 300.0 { 150.0 } else { v + 1.0 };
            f.update(black_box(v));
        })
    });
    g.bench_function("predict_60", |b| b.iter(|| black_box(fit.predict(60))));
    g.finish();
    let mut g = c.benchmark_group("other_models");
    g.sample_size(10);
    g.bench_function("arima_fit_14d_1min", |b| {
        b.iter(|| black_box(ArimaSpec { period: 1440, horizon: 60 }.fit(&y).unwrap()))
    });
    g.bench_function("prophet_fit_14d_1min", |b| {
        b.iter(|| black_box(ProphetSpec { daily: 1440, horizon: 60 }.fit(&y).unwrap()))
    });
    g.bench_function("auto_choice_14d_1min", |b| b.iter(|| black_box(AutoSpec::new(60, 60).fit(&y).unwrap())));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = bench
}
criterion_main!(benches);
