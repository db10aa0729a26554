//! The per-endpoint forecasting schedule, free of threads and clocks: what the forecast thread
//! runs on the live historian and what `prescale simulate` runs on a virtual clock — one code
//! path, so a replay scores exactly what production would have published.
//!
//! For each endpoint the engine keeps the fitted model, feeds it every newly closed bucket of the
//! endpoint's historian [`Tier`] (an O(1) state update), scores the forecasts it issued against
//! those buckets, and says when a fit is due and why: `first`, `schedule` (re-estimate the
//! chosen family every `refit_every`), `selection` (choose again every `select_every`),
//! `manual` (an operator asked for it),
//! `level_shift` (ten buckets in a row outside the 95 % band on one side) or `broken` (last-hour
//! error more than twice what the selection backtest promised). The caller decides how much
//! fitting it can afford per tick.

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::auto::{AutoFit, AutoSpec, snaive_mae};
use super::published::{EndpointForecast, RatePoint};
use super::settings::ForecastConfig;
use crate::feedback::conformal::Calibrator;
use crate::feedback::score::{HorizonAccuracy, Scorer};
use crate::historian::series::Tier;

/// A model whose last-hour MASE (60-min group, at least this many scored points) exceeds its
/// holdout MASE this many times over is broken: it is chosen again (at most once an hour).
const BROKEN_RATIO: f64 = 2.0;
const BROKEN_MIN_POINTS: u64 = 600;
/// Consecutive buckets outside the 95 % band, on one side, that count as a level shift.
const SHIFT_BUCKETS: usize = 10;

/// How far ahead (buckets) the remembered past forecasts were made.
pub(crate) const PAST_AHEAD: usize = 15;

/// A forecast as made [`PAST_AHEAD`] buckets before its time: `t` (epoch s), mean, 80 % band,
/// calls per second.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PastPoint {
    pub t: u64,
    pub mean: f64,
    pub lo80: f64,
    pub hi80: f64,
}

struct Model {
    fit: AutoFit,
    /// Index (epoch seconds ÷ step) of the next bucket the state has not seen.
    next: u64,
    fitted_at: u64,
    selected_at: u64,
    next_refit: u64,
    reason: &'static str,
    /// Consecutive buckets above (+) or below (−) the 95 % band.
    outside: i64,
    /// MASE scale of the fitted series (seasonal-naive MAE).
    scale: f64,
}

/// Forecasting state of every endpoint at one bucket width.
pub(crate) struct Engine {
    cfg: ForecastConfig,
    step_s: u64,
    /// Horizon in buckets.
    horizon: usize,
    spec: AutoSpec,
    models: HashMap<String, Model>,
    notes: HashMap<String, String>,
    scorers: HashMap<String, Scorer>,
    /// Per endpoint, the bands' calibration on the scored out-of-sample errors.
    calibrators: HashMap<String, Calibrator>,
    /// Per endpoint, the forecasts made [`PAST_AHEAD`] buckets ahead, last 24 hours, to draw
    /// what was predicted against what happened.
    past: HashMap<String, Arc<VecDeque<PastPoint>>>,
    /// Endpoints an operator asked to re-choose (`manual`).
    forced: std::collections::HashSet<String>,
    /// Excluded spans per endpoint, `[from, to)` epoch seconds: their buckets are missing to
    /// the models and the scorer.
    excluded: HashMap<String, Vec<(u64, u64)>>,
}

/// A stable phase in `[0, 1)` per endpoint, for staggering.
fn phase(name: &str) -> f64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.hash(&mut h);
    (h.finish() % 1000) as f64 / 1000.0
}

impl Engine {
    /// An engine for buckets of `step_s` seconds (60 live; the trace's step in a replay).
    pub(crate) fn new(cfg: ForecastConfig, step_s: u64) -> Self {
        let horizon = (cfg.horizon_min as u64 * 60).div_ceil(step_s).max(1) as usize;
        let spec = AutoSpec::new(step_s, horizon);
        Self {
            cfg,
            step_s,
            horizon,
            spec,
            models: HashMap::new(),
            notes: HashMap::new(),
            scorers: HashMap::new(),
            calibrators: HashMap::new(),
            forced: Default::default(),
            past: HashMap::new(),
            excluded: HashMap::new(),
        }
    }

    /// Sets `name`'s excluded spans; when they changed and a model exists, it is fitted again
    /// (as a `manual` refit) so what it learned from the span is forgotten.
    pub(crate) fn set_exclusions(&mut self, name: &str, spans: Vec<(u64, u64)>) {
        let old = self.excluded.get(name).map_or(&[][..], Vec::as_slice);
        if old == spans.as_slice() {
            return;
        }
        if self.models.contains_key(name) {
            self.forced.insert(name.to_string());
        }
        if spans.is_empty() {
            self.excluded.remove(name);
        } else {
            self.excluded.insert(name.to_string(), spans);
        }
    }

    /// A bucket's value as the models see it: `NaN` when missing or excluded.
    fn value(&self, name: &str, p: &crate::historian::series::Point) -> f64 {
        let excluded = self.excluded.get(name).is_some_and(|s| s.iter().any(|(a, b)| *a <= p.t && p.t < *b));
        if p.missing || excluded { f64::NAN } else { p.count as f64 }
    }

    /// Asks for `name` to be chosen again at the next feed (`fit_reason: manual`).
    pub(crate) fn force(&mut self, name: &str) {
        self.forced.insert(name.to_string());
    }

    fn buckets_per_day(&self) -> u64 {
        86_400 / self.step_s
    }

    /// Feeds `name`'s closed buckets up to the tier's end to its model and its scorer; returns
    /// `(since, reason)` when a fit is due at `now_s` (`since`: how long it has been due, for
    /// the most-overdue-first order).
    pub(crate) fn feed(&mut self, name: &str, tier: &Tier, now_s: u64) -> Option<(u64, &'static str)> {
        let step = self.step_s;
        let end = tier.next();
        let values: Vec<(u64, f64)> = match self.models.get(name) {
            Some(m) if m.next < end => {
                tier.points(m.next * step, end * step, step).iter().map(|p| (p.t, self.value(name, p))).collect()
            }
            _ => Vec::new(),
        };
        let (when, reason) = match self.models.get_mut(name) {
            None => (0, "first"),
            Some(m) if m.next > end => (0, "first"),
            Some(m) => {
                if m.next < end {
                    let scorer = self.scorers.entry(name.to_string()).or_insert_with(|| Scorer::with_step(step));
                    let cal = self.calibrators.entry(name.to_string()).or_default();
                    for (t, v) in values {
                        scorer.observe_into(t / step, v, Some(cal));
                        if v.is_finite() {
                            let f = m.fit.predict(1);
                            let side = if v > f.hi95[0] {
                                1
                            } else if v < f.lo95[0] {
                                -1
                            } else {
                                0
                            };
                            m.outside = if side != 0 && m.outside.signum() == side { m.outside + side } else { side };
                        }
                        m.fit.update(v);
                    }
                    m.next = end;
                }
                // Broken: over the last hour, live error far above what the backtest promised.
                let live = self.scorers.get(name).map(|s| s.summary(end.saturating_sub(1))[1].hour.clone());
                let broken = match (live, m.fit.holdout_mase()) {
                    (Some(a), Some(promised)) => {
                        a.points >= BROKEN_MIN_POINTS
                            && now_s >= m.fitted_at + 3600
                            && a.mase.is_some_and(|l| l > BROKEN_RATIO * promised.max(0.1))
                    }
                    _ => false,
                };
                if self.forced.contains(name) {
                    (0, "manual")
                } else if m.outside.unsigned_abs() as usize >= SHIFT_BUCKETS {
                    (0, "level_shift")
                } else if broken {
                    (0, "broken")
                } else if now_s >= m.selected_at + self.cfg.select_every.as_secs() {
                    (m.selected_at + self.cfg.select_every.as_secs(), "selection")
                } else {
                    (m.next_refit, "schedule")
                }
            }
        };
        (now_s >= when).then_some((when, reason))
    }

    /// Fits `name` on the tier's last `history_days` for `reason` (a `schedule` fit re-estimates
    /// the chosen family; any other reason chooses again).
    pub(crate) fn fit(&mut self, name: &str, tier: &Tier, now_s: u64, reason: &'static str) {
        let step = self.step_s;
        self.forced.remove(name);
        let end = tier.next();
        let from = end.saturating_sub(self.cfg.history_days * self.buckets_per_day());
        let y: Vec<f64> = tier.points(from * step, end * step, step).iter().map(|p| self.value(name, p)).collect();
        // Leading missing buckets (before any history) are not part of the series.
        let first = y.iter().position(|v| v.is_finite()).unwrap_or(y.len());
        let y = &y[first..];
        // A scheduled refit that fails (the chosen family no longer applies: zeros for a
        // multiplicative season, too little data) chooses again instead of dropping the model.
        let refit = if reason == "schedule" { self.models.get(name).and_then(|m| m.fit.refit(y).ok()) } else { None };
        let selected = refit.is_none();
        let reason = if selected && reason == "schedule" { "selection" } else { reason };
        match refit.map_or_else(|| self.spec.fit(y), Ok) {
            Ok(fit) => {
                let period = self.cfg.refit_every.as_secs().max(step);
                let next_refit = if reason == "first" {
                    now_s + ((phase(name) * period as f64) as u64).max(step)
                } else {
                    now_s + period
                };
                let selected_at = match self.models.get(name) {
                    Some(m) if !selected => m.selected_at,
                    _ => now_s,
                };
                self.notes.remove(name);
                let scale = snaive_mae(y, fit.seasons.period.unwrap_or(self.buckets_per_day() as usize));
                self.models.insert(
                    name.to_string(),
                    Model { fit, next: end, fitted_at: now_s, selected_at, next_refit, reason, outside: 0, scale },
                );
            }
            Err(e) => {
                self.models.remove(name);
                self.notes.insert(name.to_string(), format!("{e} ({}-second buckets)", step));
            }
        }
    }

    /// The forecast from the tier's end on (issued to the scorer), or the note saying why there
    /// is none; `None` for an endpoint never fitted.
    pub(crate) fn forecast(&mut self, name: &str, tier: &Tier) -> Option<EndpointForecast> {
        let step = self.step_s;
        let end = tier.next();
        let Some(m) = self.models.get(name) else {
            return self.notes.get(name).map(|n| EndpointForecast::none(name.to_string(), n.clone(), step));
        };
        let h = self.horizon;
        let mut f = m.fit.predict(h);
        // Calibrated bands where the recent errors are known well enough.
        let cal = self.calibrators.entry(name.to_string()).or_default();
        cal.floor = m.fit.band_floor();
        for j in 0..h {
            if let Some([lo95, lo80, hi80, hi95]) = cal.bands(((j + 1) as u64 * step).div_ceil(60), f.mean[j]) {
                (f.lo95[j], f.lo80[j], f.hi80[j], f.hi95[j]) = (lo95, lo80, hi80, hi95);
            }
        }
        self.scorers.entry(name.to_string()).or_insert_with(|| Scorer::with_step(step)).issue(
            end,
            (0..h).map(|j| [f.mean[j], f.lo80[j], f.hi80[j], f.lo95[j], f.hi95[j]]).collect(),
            m.scale,
        );
        let per_s = |v: f64| v / step as f64;
        let k = PAST_AHEAD.min(h) - 1;
        let t_k = (end + k as u64) * step;
        let cap = (86_400 / step) as usize;
        let past = self.past.entry(name.to_string()).or_default();
        if past.back().is_none_or(|p| p.t < t_k) {
            let ring = Arc::make_mut(past);
            ring.push_back(PastPoint {
                t: t_k,
                mean: per_s(f.mean[k]),
                lo80: per_s(f.lo80[k]),
                hi80: per_s(f.hi80[k]),
            });
            while ring.len() > cap {
                ring.pop_front();
            }
        }
        let past = past.clone();
        let points = (0..h)
            .map(|j| RatePoint {
                t: (end + j as u64) * step,
                rate: per_s(f.mean[j]),
                lo80: per_s(f.lo80[j]),
                hi80: per_s(f.hi80[j]),
                lo95: per_s(f.lo95[j]),
                hi95: per_s(f.hi95[j]),
            })
            .collect();
        Some(EndpointForecast {
            endpoint: name.to_string(),
            model: m.fit.model(),
            fitted_at: m.fitted_at,
            selected_at: m.selected_at,
            fit_reason: m.reason,
            step,
            points,
            demand: None,
            selection: m.fit.scores.clone(),
            season_minutes: m.fit.seasons.period.map(|p| p * step as usize / 60),
            weekly: m.fit.seasons.weekly,
            level: Some(m.fit.level),
            fallback: m.fit.fallback.clone(),
            note: None,
            classes: None,
            class_forecast: Vec::new(),
            past,
        })
    }

    /// Coverage of `name`'s bands as issued, per calibration horizon group.
    pub(crate) fn band_coverage(&self, name: &str) -> Vec<crate::feedback::conformal::GroupCoverage> {
        self.calibrators.get(name).map(|c| c.coverage()).unwrap_or_default()
    }

    /// Rolling accuracy of `name`'s forecasts as of the tier's last closed bucket.
    pub(crate) fn accuracy(&self, name: &str, tier: &Tier) -> Option<Vec<HorizonAccuracy>> {
        self.scorers.get(name).map(|s| s.summary(tier.next().saturating_sub(1)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::historian::series::{Bucket, FullBucket};

    fn put(t: &mut Tier, idx: u64, v: f64) {
        t.put(idx, &FullBucket { calls: v.max(0.0).round() as u64, ..FullBucket::default() }, Bucket::MISSING);
    }

    /// Three days of a smooth daily cycle, then the rest of the schedule minute by minute:
    /// `after(k)` gives minute k's value after the fit. Returns the reasons of the fits made and
    /// the last forecast's next-minute mean (calls per minute).
    fn run(after: impl Fn(u64) -> f64, minutes: u64) -> (Vec<&'static str>, f64) {
        let mut e = Engine::new(ForecastConfig::default(), 60);
        let mut tier = Tier::new(60, 20 * 1440);
        let start = 1_800_000_000 / 60;
        let day = |m: u64| 200.0 + 150.0 * ((m % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin();
        for m in 0..3 * 1440 {
            put(&mut tier, start + m, day(m) + ((m * 7919) % 11) as f64);
        }
        let mut reasons = Vec::new();
        let mut now = (start + 3 * 1440) * 60;
        if let Some((_, r)) = e.feed("a", &tier, now) {
            e.fit("a", &tier, now, r);
            reasons.push(r);
        }
        let mut next = e.forecast("a", &tier).expect("a forecast").points[0].rate * 60.0;
        for k in 0..minutes {
            let m = 3 * 1440 + k;
            put(&mut tier, start + m, after(k));
            now += 60;
            if let Some((_, r)) = e.feed("a", &tier, now)
                && r != "schedule"
            {
                e.fit("a", &tier, now, r);
                reasons.push(r);
            }
            next = e.forecast("a", &tier).map_or(f64::NAN, |f| f.points[0].rate * 60.0);
        }
        (reasons, next)
    }

    #[test]
    fn an_excluded_period_is_not_learned_from_and_a_new_exclusion_refits() {
        // Three days of the daily cycle whose last three hours are a load test at ten times the
        // level. Fitted on all of it, the next hour is forecast high; with the load test
        // excluded, the forecast follows the cycle.
        let day = |m: u64| 200.0 + 150.0 * ((m % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin();
        let start = 30_000_000u64;
        let test_from = start + 3 * 1440 - 180;
        let mut tier = Tier::new(60, 10 * 1440);
        for m in 0..3 * 1440 {
            let v = if start + m >= test_from { day(m) * 10.0 } else { day(m) };
            put(&mut tier, start + m, v);
        }
        let now = (start + 3 * 1440) * 60;
        let next_hour = |e: &mut Engine| {
            let f = e.forecast("a", &tier).unwrap();
            f.points.iter().map(|p| p.rate * 60.0).sum::<f64>() / f.points.len() as f64
        };
        let truth = (0..60).map(|k| day(3 * 1440 + k)).sum::<f64>() / 60.0;
        let mut plain = Engine::new(ForecastConfig::default(), 60);
        let (_, r) = plain.feed("a", &tier, now).unwrap();
        plain.fit("a", &tier, now, r);
        let learned = next_hour(&mut plain);
        let mut e = Engine::new(ForecastConfig::default(), 60);
        e.set_exclusions("a", vec![(test_from * 60, now)]);
        let (_, r) = e.feed("a", &tier, now).unwrap();
        e.fit("a", &tier, now, r);
        let skipped = next_hour(&mut e);
        assert!(learned > 2.0 * truth, "fitted on the load test: {learned:.0} vs {truth:.0}");
        assert!((skipped - truth).abs() < 0.25 * truth, "excluded: {skipped:.0} vs {truth:.0}");
        // An exclusion added to a fitted endpoint makes it fit again (as a manual refit); the
        // same spans again change nothing.
        assert_eq!(plain.feed("a", &tier, now + 1), None);
        plain.set_exclusions("a", vec![(test_from * 60, now)]);
        assert_eq!(plain.feed("a", &tier, now + 1).map(|d| d.1), Some("manual"));
        plain.fit("a", &tier, now + 1, "manual");
        plain.set_exclusions("a", vec![(test_from * 60, now)]);
        assert_eq!(plain.feed("a", &tier, now + 2), None);
        assert!((next_hour(&mut plain) - truth).abs() < 0.25 * truth);
    }

    #[test]
    fn wild_errors_for_an_hour_make_a_broken_model_and_a_level_shift_is_followed() {
        let start_min = 3 * 1440u64;
        let day = |m: u64| 200.0 + 150.0 * ((m % 1440) as f64 / 1440.0 * std::f64::consts::TAU).sin();
        // Swings of ±80 % alternating every few minutes: never ten minutes on one side of the
        // band, but far above the backtest's error — after an hour, `broken`.
        let (wild, _) = run(|k| day(start_min + k) * if (k / 3) % 2 == 0 { 1.8 } else { 0.2 }, 130);
        assert_eq!(wild.first(), Some(&"first"));
        assert!(wild.contains(&"broken"), "{wild:?}");
        assert!(!wild.contains(&"level_shift"), "{wild:?}");
        // A jump to three times the level: within half an hour the forecast is at the new level
        // (the robust model's own level-shift rule, or the engine's re-choice after ten minutes
        // outside the band, whichever comes first).
        let (shift, next) = run(|k| day(start_min + k) * 3.0, 30);
        let actual = day(start_min + 30) * 3.0;
        assert!((next - actual).abs() < 0.25 * actual, "forecast {next:.0} vs {actual:.0} after {shift:?}");
        // An operator's refit.
        let mut e = Engine::new(ForecastConfig::default(), 60);
        let mut tier = Tier::new(60, 10 * 1440);
        for m in 0..3 * 1440 {
            put(&mut tier, 30_000_000 + m, day(m));
        }
        let now = (30_000_000 + 3 * 1440) * 60;
        let (_, r) = e.feed("a", &tier, now).unwrap();
        e.fit("a", &tier, now, r);
        assert_eq!(e.feed("a", &tier, now + 1), None, "nothing due right after the fit");
        e.force("a");
        assert_eq!(e.feed("a", &tier, now + 1).map(|d| d.1), Some("manual"));
    }
}
