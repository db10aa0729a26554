//! Automatic model choice per series, by a rolling backtest on the series' own recent history.
//!
//! 1. The season is detected ([`season::detect`]), with the daily and weekly periods as priors.
//! 2. The candidates that the history allows are fitted on everything but the last stretch
//!    (the holdout: up to four seasons, at most a quarter of the data), then walked through the
//!    holdout one observation at a time — the same state updates the forecast thread does —
//!    forecasting 1…H steps from regularly spaced origins.
//! 3. Each candidate's holdout MAE, scaled by the in-sample seasonal-naive MAE (so a MASE), is
//!    its score; an inverse-score weighted mean of the best three is scored too, and the best
//!    of all wins.
//! 4. The winner's members are re-estimated on the whole series; its intervals come from its
//!    holdout errors per horizon — out-of-sample errors, which is what makes them calibrated.
//!
//! Too little history shortens the list along a chain — double-seasonal (two weeks) → daily
//! season (two days) → Holt's trend → naive — and the fit says which level it reached and why.

use serde::Serialize;

use super::arima::{ArimaFit, ArimaSpec};
use super::dshw::{DshwFit, DshwSpec};
use super::hw::{HwFit, HwSpec};
use super::naive::SeasonalNaive;
use super::prophet::{ProphetFit, ProphetSpec};
use super::season::{self, Seasons};
use super::{ErrorQuantiles, Forecast, ForecastError, empirical_bands};

/// Seasons held out for the selection backtest (fewer made the choice noisier on the traces).
const HOLDOUT_SEASONS: usize = 4;

/// The model families.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Double-seasonal Holt–Winters (daily + weekly).
    Dshw,
    /// Holt–Winters, additive season.
    Hw,
    /// Holt–Winters, multiplicative season.
    HwMul,
    Arima,
    Prophet,
    Snaive,
    /// Holt's damped trend, no season.
    Holt,
    /// The last value.
    Naive,
}

impl Kind {
    pub const ALL: [Kind; 8] =
        [Kind::Dshw, Kind::Hw, Kind::HwMul, Kind::Arima, Kind::Prophet, Kind::Snaive, Kind::Holt, Kind::Naive];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Dshw => "dshw",
            Kind::Hw => "hw",
            Kind::HwMul => "hw_mul",
            Kind::Arima => "arima",
            Kind::Prophet => "prophet",
            Kind::Snaive => "snaive",
            Kind::Holt => "holt",
            Kind::Naive => "naive",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    fn needs_season(self) -> bool {
        matches!(self, Kind::Dshw | Kind::Hw | Kind::HwMul | Kind::Snaive)
    }

    /// Fits this family on `y` with daily period `period` (`None`: no season).
    pub fn fit(self, y: &[f64], period: Option<usize>, horizon: usize) -> Result<Fitted, ForecastError> {
        let need_season = || period.ok_or(ForecastError::BadSpec("no season detected"));
        Ok(match self {
            Kind::Dshw => {
                let m = need_season()?;
                Fitted::Dshw(DshwSpec { daily: m, weekly: 7 * m, horizon }.fit(y)?)
            }
            Kind::Hw => Fitted::Hw(HwSpec::additive(need_season()?, horizon).fit(y)?),
            Kind::HwMul => Fitted::Hw(HwSpec::multiplicative(need_season()?, horizon).fit(y)?),
            Kind::Holt => Fitted::Hw(HwSpec::holt(horizon).fit(y)?),
            Kind::Arima => Fitted::Arima(ArimaSpec { period: period.unwrap_or(1), horizon }.fit(y)?),
            Kind::Prophet => Fitted::Prophet(ProphetSpec { daily: period.unwrap_or(0), horizon }.fit(y)?),
            Kind::Snaive => Fitted::Naive(SeasonalNaive::fit(y, need_season()?, horizon)?),
            Kind::Naive => Fitted::Naive(SeasonalNaive::fit(y, 1, horizon)?),
        })
    }
}

/// A fitted model of any family.
#[derive(Debug, Clone)]
pub enum Fitted {
    Hw(HwFit),
    Dshw(DshwFit),
    Arima(ArimaFit),
    Prophet(ProphetFit),
    Naive(SeasonalNaive),
}

impl Fitted {
    /// Takes one new observation (NaN = missing).
    pub fn update(&mut self, v: f64) {
        match self {
            Fitted::Hw(f) => f.update(v),
            Fitted::Dshw(f) => f.update(v),
            Fitted::Arima(f) => f.update(v),
            Fitted::Prophet(f) => f.update(v),
            Fitted::Naive(f) => f.update(v),
        }
    }

    /// Point forecasts, not clipped.
    pub fn mean(&self, h: usize) -> Vec<f64> {
        match self {
            Fitted::Hw(f) => f.mean(h),
            Fitted::Dshw(f) => f.mean(h),
            Fitted::Arima(f) => f.mean(h),
            Fitted::Prophet(f) => f.mean(h),
            Fitted::Naive(f) => f.mean(h),
        }
    }

    /// Forecast with the model's own (in-sample calibrated) bands.
    pub fn predict(&self, h: usize) -> Forecast {
        match self {
            Fitted::Hw(f) => f.predict(h),
            Fitted::Dshw(f) => f.predict(h),
            Fitted::Arima(f) => f.predict(h),
            Fitted::Prophet(f) => f.predict(h),
            Fitted::Naive(f) => f.predict(h),
        }
    }
}

/// What to choose among.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoSpec {
    /// Seconds between points (sets the daily and weekly priors).
    pub step_s: u64,
    pub horizon: usize,
    pub candidates: Vec<Kind>,
    /// Also score a weighted mean of the best three.
    pub combine: bool,
}

impl AutoSpec {
    pub fn new(step_s: u64, horizon: usize) -> Self {
        Self { step_s, horizon, candidates: Kind::ALL.to_vec(), combine: true }
    }
}

/// One candidate's holdout result.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CandidateScore {
    pub model: String,
    /// Holdout MASE (mean over origins and horizons 1…H); `None` when it could not be fitted.
    pub mase: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// How far down the fallback chain the history allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    DoubleSeasonal,
    Daily,
    Holt,
    Naive,
}

/// The chosen model (one family or a weighted mean), with its scores and calibrated bands.
#[derive(Debug, Clone)]
pub struct AutoFit {
    members: Vec<(Kind, Fitted, f64)>,
    horizon: usize,
    bands: ErrorQuantiles,
    pub seasons: Seasons,
    pub level: Level,
    /// Why the chain stopped above `level`, when it did.
    pub fallback: Option<String>,
    pub scores: Vec<CandidateScore>,
}

/// Seasonal-naive in-sample MAE (period `m`; 1 = naive), the MASE scale.
pub fn snaive_mae(y: &[f64], m: usize) -> f64 {
    let (mut sum, mut n) = (0.0, 0);
    for t in m..y.len() {
        let (a, b) = (y[t], y[t - m]);
        if a.is_finite() && b.is_finite() {
            sum += (a - b).abs();
            n += 1;
        }
    }
    if n == 0 || sum == 0.0 { 1.0 } else { sum / n as f64 }
}

impl AutoSpec {
    /// Points needed at the least (the naive end of the chain).
    pub const MIN_POINTS: usize = 10;

    pub fn fit(&self, y: &[f64]) -> Result<AutoFit, ForecastError> {
        let have = y.iter().filter(|v| v.is_finite()).count();
        if y.len() < Self::MIN_POINTS || have < Self::MIN_POINTS / 2 {
            return Err(ForecastError::NotEnoughData { need: Self::MIN_POINTS, have });
        }
        let h = self.horizon.max(1);
        let seasons = season::detect(y, self.step_s);
        let daily = (86_400 / self.step_s.max(1)) as usize;
        let period = seasons.period;
        // Holdout: up to four seasons (four days without one), a quarter of the data at most.
        let v = (HOLDOUT_SEASONS * period.unwrap_or(daily)).min(y.len() / 4).max(1);
        let train = &y[..y.len() - v];

        // The chain, judged on the training part.
        let (level, fallback) = chain(train.len(), &seasons, daily);
        let allowed = |k: Kind| match k {
            Kind::Dshw => level == Level::DoubleSeasonal,
            k if k.needs_season() => matches!(level, Level::DoubleSeasonal | Level::Daily),
            Kind::Naive => true,
            _ => level != Level::Naive,
        };
        let kinds: Vec<Kind> = self.candidates.iter().copied().filter(|k| allowed(*k)).collect();
        let scale = snaive_mae(train, period.unwrap_or(1));
        let stride = (v / 300).max(1);
        let origins: Vec<usize> = (train.len()..y.len()).step_by(stride).collect();

        let mut scores = Vec::new();
        // (kind, holdout forecasts per origin, score)
        let mut runs: Vec<(Kind, Vec<Vec<f64>>, f64)> = Vec::new();
        for &k in &self.candidates {
            if !kinds.contains(&k) {
                continue;
            }
            match k.fit(train, period, h) {
                Ok(mut f) => {
                    let mut preds = Vec::with_capacity(origins.len());
                    for t in train.len()..y.len() {
                        if (t - train.len()).is_multiple_of(stride) {
                            preds.push(f.mean(h.min(y.len() - t)));
                        }
                        f.update(y[t]);
                    }
                    let s = holdout_mae(y, &origins, &preds) / scale;
                    scores.push(CandidateScore { model: k.name().into(), mase: Some(s), note: None });
                    runs.push((k, preds, s));
                }
                Err(e) => scores.push(CandidateScore { model: k.name().into(), mase: None, note: Some(e.to_string()) }),
            }
        }
        if runs.is_empty() {
            // Nothing fitted on the training part (a very short series): the naive model on
            // everything, with its own bands.
            let f = Kind::Naive.fit(y, None, h)?;
            let bands = match &f {
                Fitted::Naive(n) => n.bands().clone(),
                _ => ErrorQuantiles::default(),
            };
            return Ok(AutoFit {
                members: vec![(Kind::Naive, f, 1.0)],
                horizon: h,
                bands,
                seasons,
                level: Level::Naive,
                fallback: Some(fallback.unwrap_or_else(|| "history too short to compare models".into())),
                scores,
            });
        }
        runs.sort_by(|a, b| a.2.total_cmp(&b.2));
        let mut chosen: Vec<(Kind, f64)> = vec![(runs[0].0, 1.0)];
        let mut chosen_preds = runs[0].1.clone();
        if self.combine && runs.len() >= 2 {
            let top = &runs[..runs.len().min(3)];
            let w: Vec<f64> = top.iter().map(|r| 1.0 / r.2.max(1e-9)).collect();
            let wsum: f64 = w.iter().sum();
            let combo: Vec<Vec<f64>> = (0..origins.len())
                .map(|i| {
                    (0..top[0].1[i].len())
                        .map(|j| top.iter().zip(&w).map(|(r, w)| w * r.1[i][j]).sum::<f64>() / wsum)
                        .collect()
                })
                .collect();
            let s = holdout_mae(y, &origins, &combo) / scale;
            let name = top.iter().map(|r| r.0.name()).collect::<Vec<_>>().join("+");
            scores.push(CandidateScore { model: name, mase: Some(s), note: None });
            if s < runs[0].2 {
                chosen = top.iter().zip(&w).map(|(r, w)| (r.0, w / wsum)).collect();
                chosen_preds = combo;
            }
        }
        let preds: Vec<(usize, Vec<f64>)> = origins.iter().copied().zip(chosen_preds).collect();
        let bands = empirical_bands(y, &preds, h);
        // Re-estimated on all the data; a member that does not apply to it any more (zeros
        // after the holdout window for a multiplicative season) is left out, the others'
        // weights renormalised; with none left, the best single family that fits is used.
        let mut members: Vec<(Kind, Fitted, f64)> =
            chosen.iter().filter_map(|(k, w)| k.fit(y, period, h).ok().map(|f| (*k, f, *w))).collect();
        if members.is_empty() {
            let f = runs
                .iter()
                .find_map(|r| r.0.fit(y, period, h).ok().map(|f| (r.0, f, 1.0)))
                .map_or_else(|| Kind::Naive.fit(y, None, h).map(|f| (Kind::Naive, f, 1.0)), Ok)?;
            members.push(f);
        }
        let wsum: f64 = members.iter().map(|m| m.2).sum();
        members.iter_mut().for_each(|m| m.2 /= wsum);
        Ok(AutoFit { members, horizon: h, bands, seasons, level, fallback, scores })
    }
}

fn chain(n: usize, seasons: &Seasons, daily: usize) -> (Level, Option<String>) {
    let Some(m) = seasons.period else {
        return if n >= HwSpec::holt(1).min_points() {
            (Level::Holt, Some("no season found in the data: Holt's trend".into()))
        } else {
            (Level::Naive, Some(format!("{n} points are too few for a trend: naive")))
        };
    };
    let dneed = DshwSpec { daily: m, weekly: 7 * m, horizon: 1 }.min_points();
    let hneed = HwSpec::additive(m, 1).min_points();
    if seasons.weekly && m == daily && n >= dneed {
        return (Level::DoubleSeasonal, None);
    }
    let why = if seasons.weekly && m == daily {
        Some(format!("double-seasonal needs {dneed} points to train, have {n}: daily season"))
    } else {
        None
    };
    if n >= hneed {
        (Level::Daily, why)
    } else if n >= HwSpec::holt(1).min_points() {
        (Level::Holt, Some(format!("a season of {m} needs {hneed} points to train, have {n}: Holt's trend")))
    } else {
        (Level::Naive, Some(format!("{n} points are too few for a trend: naive")))
    }
}

/// Mean absolute error of forecasts from `origins` against `y` (finite points only).
fn holdout_mae(y: &[f64], origins: &[usize], preds: &[Vec<f64>]) -> f64 {
    let (mut sum, mut n) = (0.0, 0usize);
    for (o, p) in origins.iter().zip(preds) {
        for (j, f) in p.iter().enumerate() {
            if let Some(a) = y.get(o + j).filter(|a| a.is_finite()) {
                sum += (a - f.max(0.0)).abs();
                n += 1;
            }
        }
    }
    if n == 0 { f64::INFINITY } else { sum / n as f64 }
}

impl AutoFit {
    /// `"hw"`, or `"hw+arima+dshw"` for a weighted mean.
    pub fn model(&self) -> String {
        self.members.iter().map(|m| m.0.name()).collect::<Vec<_>>().join("+")
    }

    /// The chosen model's holdout MASE at selection (what its live error is compared with).
    pub fn holdout_mase(&self) -> Option<f64> {
        let name = self.model();
        self.scores.iter().find(|s| s.model == name).and_then(|s| s.mase)
    }

    /// Members and weights.
    pub fn members(&self) -> impl Iterator<Item = (Kind, f64)> + '_ {
        self.members.iter().map(|m| (m.0, m.2))
    }

    /// Re-estimates the chosen members on `y` without choosing again (the cheap refit between
    /// selections); bands and scores stay from the selection.
    pub fn refit(&self, y: &[f64]) -> Result<AutoFit, ForecastError> {
        let mut members = Vec::with_capacity(self.members.len());
        for (k, fitted, w) in &self.members {
            let period = if *k == Kind::Naive { None } else { self.seasons.period };
            let refit = match fitted {
                // ARIMA keeps its order (chosen by AIC at the selection) and re-estimates.
                Fitted::Arima(a) => Fitted::Arima(
                    super::arima::ArimaSpec { period: period.unwrap_or(1), horizon: self.horizon }
                        .fit_order_of(y, &a.params)?,
                ),
                _ => k.fit(y, period, self.horizon)?,
            };
            members.push((*k, refit, *w));
        }
        Ok(AutoFit { members, ..self.clone() })
    }

    pub fn update(&mut self, v: f64) {
        for m in &mut self.members {
            m.1.update(v);
        }
    }

    pub fn mean(&self, h: usize) -> Vec<f64> {
        let mut out = vec![0.0; h];
        for (_, f, w) in &self.members {
            for (o, v) in out.iter_mut().zip(f.mean(h)) {
                *o += w * v;
            }
        }
        out
    }

    pub fn predict(&self, h: usize) -> Forecast {
        Forecast::with_bands(self.mean(h), &self.bands)
    }

    /// The least scale the bands' relative errors are taken against (calls per bucket).
    pub fn band_floor(&self) -> f64 {
        self.bands.floor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily_series(days: usize, step_s: u64, seed: u64) -> Vec<f64> {
        let m = (86_400 / step_s) as usize;
        let mut rng = fastrand::Rng::with_seed(seed);
        (0..days * m)
            .map(|t| 100.0 + 60.0 * (t as f64 / m as f64 * std::f64::consts::TAU).sin() + 8.0 * rng.f64())
            .collect()
    }

    #[test]
    fn a_member_that_no_longer_applies_is_left_out_not_fatal() {
        // Multiplicative-friendly history, then a few recent zeros (an outage at the end):
        // whatever was chosen on the training part, the fit on all data must succeed.
        let mut y = daily_series(8, 300, 2);
        let n = y.len();
        for v in &mut y[n - 3..] {
            *v = 0.0;
        }
        let fit = AutoSpec::new(300, 12).fit(&y).expect("a model despite the zeros");
        assert!(!fit.members().any(|(k, _)| k == Kind::HwMul), "{}", fit.model());
        let w: f64 = fit.members().map(|(_, w)| w).sum();
        assert!((w - 1.0).abs() < 1e-9);
        assert!(fit.predict(12).mean.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn chooses_a_seasonal_model_and_shows_every_score() {
        let y = daily_series(8, 300, 1);
        let fit = AutoSpec::new(300, 12).fit(&y).unwrap();
        assert_eq!(fit.level, Level::Daily);
        assert_eq!(fit.seasons.period, Some(288));
        assert!(!fit.model().contains("naive") && !fit.model().starts_with("holt"), "{} {:?}", fit.model(), fit.scores);
        // Every family that applies was scored; dshw had too little history.
        for k in ["hw", "hw_mul", "arima", "prophet", "snaive", "holt", "naive"] {
            assert!(fit.scores.iter().any(|s| s.model == k && s.mase.is_some()), "{k}: {:?}", fit.scores);
        }
        assert!(!fit.scores.iter().any(|s| s.model == "dshw"));
        let best = fit.scores.iter().filter_map(|s| s.mase).fold(f64::MAX, f64::min);
        let snaive = fit.scores.iter().find(|s| s.model == "snaive").and_then(|s| s.mase).unwrap();
        assert!(best < snaive, "{:?}", fit.scores);
    }

    #[test]
    fn falls_back_along_the_chain() {
        // Two weeks with a weekend: double-seasonal.
        let m = 48;
        let weekly: Vec<f64> = (0..m * 7 * 3)
            .map(|t| {
                let w = if (t / m) % 7 >= 5 { 0.3 } else { 1.0 };
                (100.0 + 60.0 * (t as f64 / m as f64 * std::f64::consts::TAU).sin()) * w + (t % 7) as f64
            })
            .collect();
        let step = 86_400 / m as u64;
        let fit = AutoSpec::new(step, 6).fit(&weekly).unwrap();
        assert_eq!(fit.level, Level::DoubleSeasonal, "{:?}", fit.seasons);
        assert!(fit.fallback.is_none());
        // The same cycle with too little data for two weeks: daily, and it says why.
        let fit = AutoSpec::new(step, 6).fit(&weekly[..m * 10]).unwrap();
        assert!(matches!(fit.level, Level::Daily | Level::Holt), "{:?}", fit.level);
        // No cycle at all: Holt.
        let mut rng = fastrand::Rng::with_seed(3);
        let flat: Vec<f64> = (0..400).map(|t| 50.0 + 0.1 * t as f64 + rng.f64()).collect();
        let fit = AutoSpec::new(300, 6).fit(&flat).unwrap();
        assert_eq!(fit.level, Level::Holt);
        assert!(fit.fallback.as_deref().unwrap().contains("no season"), "{:?}", fit.fallback);
        // Twelve points: naive.
        let fit = AutoSpec::new(300, 6).fit(&flat[..12]).unwrap();
        assert_eq!(fit.level, Level::Naive);
        assert_eq!(fit.model(), "naive");
        assert!(fit.fallback.is_some());
        // Fewer than the minimum: a typed error.
        assert_eq!(
            AutoSpec::new(300, 6).fit(&flat[..4]).unwrap_err(),
            ForecastError::NotEnoughData { need: 10, have: 4 }
        );
    }

    #[test]
    fn holdout_bands_cover_known_noise() {
        let y = daily_series(12, 600, 5);
        let (n, h) = (y.len() - 144, 6);
        let mut hits = [0usize; 2];
        let mut total = 0;
        for start in (0..144 - h).step_by(6) {
            let fit = AutoSpec::new(600, h).fit(&y[..n + start]).unwrap();
            let f = fit.predict(h);
            for j in 0..h {
                let v = y[n + start + j];
                hits[0] += (f.lo80[j] <= v && v <= f.hi80[j]) as usize;
                hits[1] += (f.lo95[j] <= v && v <= f.hi95[j]) as usize;
                total += 1;
            }
        }
        let (c80, c95) = (hits[0] as f64 / total as f64, hits[1] as f64 / total as f64);
        assert!((0.6..=0.95).contains(&c80), "80 %: {c80}");
        assert!(c95 >= 0.85, "95 %: {c95}");
    }

    #[test]
    fn missing_spans_are_skipped_by_every_family() {
        let mut y = daily_series(8, 300, 7);
        let n = y.len();
        // Half a day missing in the training part and an hour in the holdout.
        for v in &mut y[288 * 3..288 * 3 + 144] {
            *v = f64::NAN;
        }
        for v in &mut y[n - 100..n - 88] {
            *v = f64::NAN;
        }
        let fit = AutoSpec::new(300, 12).fit(&y).unwrap();
        let scored = fit.scores.iter().filter(|s| s.mase.is_some_and(f64::is_finite)).count();
        assert!(scored >= 6, "{:?}", fit.scores);
        let f = fit.predict(12);
        for (j, v) in f.mean.iter().enumerate() {
            let t = (n + j) as f64;
            let want = 104.0 + 60.0 * (t / 288.0 * std::f64::consts::TAU).sin();
            assert!((v - want).abs() < 12.0, "h={j}: {v} vs {want} ({})", fit.model());
        }
    }
}
