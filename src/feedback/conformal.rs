//! Conformal calibration of the forecast bands: the 80 % and 95 % bands a model states are
//! replaced, once there is enough evidence, by quantiles of its own recent out-of-sample errors,
//! per endpoint and horizon group, so that they mean what they say.
//!
//! Every published point, once its bucket has closed, yields a score: the error relative to the
//! forecast, `(actual − mean) ÷ max(mean, floor)` (the models' own scale, so quiet nights and
//! busy afternoons share one distribution). Scores go into one histogram per horizon group, with
//! exponential forgetting (the calibration window, [`WINDOW_MIN`] minutes of weight); the band
//! edges are the histogram's 2.5/10/90/97.5 % quantiles (split conformal on a sliding window).
//! On top, each edge's level is nudged after every scored point by whether that point fell
//! outside it (adaptive conformal inference, Gibbs & Candès 2021: `level += γ·(miss − α)`), which
//! keeps long-run coverage on target when the errors drift faster than the window follows.
//!
//! The planner reads the quantile it plans for off the two calibrated bands
//! ([`crate::allocator::plan::ForecastPoint::quantile`]).

/// Minutes-ahead upper bounds of the horizon groups calibrated separately.
const GROUPS: [u64; 10] = [1, 2, 3, 4, 5, 10, 20, 30, 45, 60];
/// Histogram of `1 + score` on log-spaced bins over [1/64, 64), 2 % wide; the first bin also
/// holds everything below (an actual of zero), the last everything above.
const BINS: usize = 420;
const R_MIN: f64 = 1.0 / 64.0;
const R_STEP: f64 = 1.02;
/// Weight halves in this many minutes of scored buckets: the calibration window.
pub const WINDOW_MIN: f64 = 3.0 * 1440.0;
/// Scored points a group needs before its quantiles replace the model's own bands.
pub const MIN_POINTS: u64 = 300;
/// ACI step per bucket scored (shared among the horizons of a group).
const GAMMA: f64 = 0.005;
/// Tail probabilities of the four edges: lo95, lo80, hi80, hi95.
const TAILS: [f64; 4] = [0.025, 0.10, 0.10, 0.025];

fn bin_of(r: f64) -> usize {
    if r.is_nan() || r <= R_MIN {
        return 0;
    }
    ((r / R_MIN).ln() / R_STEP.ln()).floor().min((BINS - 1) as f64) as usize
}

fn group_of(minutes_ahead: u64) -> Option<usize> {
    GROUPS.iter().position(|&g| minutes_ahead <= g)
}

#[derive(Debug, Clone)]
struct Group {
    hist: Vec<f64>,
    total: f64,
    points: u64,
    /// ACI adjustment of each edge's tail probability (added to it).
    adjust: [f64; 4],
    /// Points the bands as issued covered, 80 % and 95 % (all since the start: the honest,
    /// out-of-sample coverage).
    covered: [u64; 2],
}

impl Default for Group {
    fn default() -> Self {
        Group { hist: vec![0.0; BINS], total: 0.0, points: 0, adjust: [0.0; 4], covered: [0; 2] }
    }
}

impl Group {
    /// The `p` quantile of `1 + score`, interpolated geometrically within its bin.
    fn ratio_quantile(&self, p: f64) -> f64 {
        let want = p.clamp(0.0, 1.0) * self.total;
        let mut seen = 0.0;
        for (b, w) in self.hist.iter().enumerate() {
            if seen + w >= want && *w > 0.0 {
                let frac = ((want - seen) / w).clamp(0.0, 1.0);
                if b == 0 {
                    return R_MIN * frac;
                }
                return R_MIN * R_STEP.powf(b as f64 + frac);
            }
            seen += w;
        }
        R_MIN * R_STEP.powi(BINS as i32)
    }
}

/// How often the bands as issued held the actual, over one horizon group.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct GroupCoverage {
    /// Minutes ahead, inclusive.
    pub from_min: u64,
    pub to_min: u64,
    pub points: u64,
    pub coverage80: f64,
    pub coverage95: f64,
}

/// One endpoint's calibration.
#[derive(Debug, Clone)]
pub struct Calibrator {
    groups: Vec<Group>,
    /// Weight of the next observation (grows instead of decaying everything).
    weight: f64,
    last_minute: u64,
    /// The scale's floor (calls per bucket): relative errors of tiny forecasts stay finite.
    pub floor: f64,
}

impl Default for Calibrator {
    fn default() -> Self {
        Calibrator { groups: vec![Group::default(); GROUPS.len()], weight: 1.0, last_minute: 0, floor: 1.0 }
    }
}

impl Calibrator {
    fn scale(&self, mean: f64) -> f64 {
        mean.max(self.floor).max(1e-9)
    }

    /// Scores one closed bucket against one issued point: `minute` when the bucket closed,
    /// `ahead` minutes between issue and bucket, `point` = mean, lo80, hi80, lo95, hi95 as issued.
    pub fn observe(&mut self, minute: u64, ahead: u64, point: [f64; 5], actual: f64) {
        if !actual.is_finite() || !point[0].is_finite() {
            return;
        }
        let Some(g) = group_of(ahead) else { return };
        if minute > self.last_minute {
            let gap = if self.last_minute == 0 { 0 } else { minute - self.last_minute };
            self.weight *= (std::f64::consts::LN_2 * gap as f64 / WINDOW_MIN).exp();
            self.last_minute = minute;
            if self.weight > 1e12 {
                for gr in &mut self.groups {
                    gr.hist.iter_mut().for_each(|w| *w /= self.weight);
                    gr.total /= self.weight;
                }
                self.weight = 1.0;
            }
        }
        let [mean, lo80, hi80, lo95, hi95] = point;
        let r = 1.0 + (actual - mean) / self.scale(mean);
        let w = self.weight;
        let gr = &mut self.groups[g];
        gr.hist[bin_of(r)] += w;
        gr.total += w;
        gr.points += 1;
        // Misses of the edges as issued: lower edges are missed below, upper ones above.
        let missed = [actual < lo95, actual < lo80, actual > hi80, actual > hi95];
        gr.covered[0] += (!missed[1] && !missed[2]) as u64;
        gr.covered[1] += (!missed[0] && !missed[3]) as u64;
        // Each closed bucket is scored once per horizon of the group: the step is shared among
        // them, so a wide group moves no faster than a narrow one (at one step per point, the
        // 46–60 minute group of a 1-minute series swung between its clamps within hours).
        let width = GROUPS[g] - if g == 0 { 0 } else { GROUPS[g - 1] };
        let gamma = GAMMA / width as f64;
        for k in 0..4 {
            let step = gamma * (missed[k] as u8 as f64 - TAILS[k]);
            // A missed edge moves outwards: its tail probability shrinks.
            gr.adjust[k] = (gr.adjust[k] - step).clamp(-TAILS[k] + 0.001, 0.4);
        }
    }

    /// The group of points `ahead` minutes out, once it has enough scored points to be used.
    fn ready_group(&self, ahead: u64) -> Option<&Group> {
        self.groups.get(group_of(ahead)?).filter(|g| g.points >= MIN_POINTS)
    }

    /// The actual at the histogram's `p` quantile for a forecast `mean`.
    fn value_at(&self, g: &Group, mean: f64, p: f64) -> f64 {
        (mean + (g.ratio_quantile(p) - 1.0) * self.scale(mean)).max(0.0)
    }

    #[cfg(test)]
    fn ready(&self, ahead: u64) -> bool {
        self.ready_group(ahead).is_some()
    }

    /// The `p` quantile of the actual for a forecast `mean`, `ahead` minutes out (the tests read
    /// the histogram through it); `None` before the group is ready.
    #[cfg(test)]
    fn quantile(&self, ahead: u64, mean: f64, p: f64) -> Option<f64> {
        self.ready_group(ahead).map(|g| self.value_at(g, mean, p))
    }

    /// The calibrated `[lo95, lo80, hi80, hi95]` for `mean`, `ahead` minutes out.
    pub fn bands(&self, ahead: u64, mean: f64) -> Option<[f64; 4]> {
        let g = self.ready_group(ahead)?;
        let level = |k: usize| {
            let tail = (TAILS[k] + g.adjust[k]).clamp(0.0005, 0.5);
            if k < 2 { tail } else { 1.0 - tail }
        };
        let at = |k: usize| self.value_at(g, mean, level(k));
        let (lo95, lo80, hi80, hi95) = (at(0), at(1), at(2), at(3));
        Some([lo95.min(lo80), lo80.min(mean), hi80.max(mean), hi95.max(hi80)])
    }

    /// Coverage of the bands as issued, per horizon group that has scored points.
    pub fn coverage(&self) -> Vec<GroupCoverage> {
        let mut from = 1;
        let mut out = Vec::new();
        for (g, &to) in self.groups.iter().zip(GROUPS.iter()) {
            if g.points > 0 {
                let f = |n: u64| n as f64 / g.points as f64;
                out.push(GroupCoverage {
                    from_min: from,
                    to_min: to,
                    points: g.points,
                    coverage80: f(g.covered[0]),
                    coverage95: f(g.covered[1]),
                });
            }
            from = to + 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `n` minutes of forecasts of `mean` whose actuals are `mean × (1 + noise)`, for
    /// every horizon 1…60, bands issued as given by `issue`.
    fn feed(
        c: &mut Calibrator,
        n: u64,
        mean: f64,
        noise: impl Fn(u64) -> f64,
        issue: impl Fn(&Calibrator, u64) -> [f64; 5],
    ) -> [f64; 2] {
        let (mut in80, mut in95, mut all) = (0u64, 0u64, 0u64);
        for t in 1..=n {
            for ahead in 1..=60 {
                let p = issue(c, ahead);
                let y = mean * (1.0 + noise(t * 61 + ahead));
                if t > n / 2 {
                    in80 += (p[1] <= y && y <= p[2]) as u64;
                    in95 += (p[3] <= y && y <= p[4]) as u64;
                    all += 1;
                }
                c.observe(t, ahead, p, y);
            }
        }
        [in80 as f64 / all as f64, in95 as f64 / all as f64]
    }

    fn uniform(k: u64) -> f64 {
        // A fixed pseudo-random sequence in [-0.5, 0.5).
        let x = k.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    #[test]
    fn a_band_too_narrow_is_widened_until_it_covers_what_it_promises() {
        let mut c = Calibrator { floor: 1.0, ..Calibrator::default() };
        // The model claims ±2 %; the errors are uniform over ±50 %.
        let model = |m: f64| [m, m * 0.98, m * 1.02, m * 0.97, m * 1.03];
        let cov = feed(&mut c, 4000, 100.0, uniform, |c, ahead| {
            let m = 100.0;
            match c.bands(ahead, m) {
                Some([lo95, lo80, hi80, hi95]) => [m, lo80, hi80, lo95, hi95],
                None => model(m),
            }
        });
        assert!((0.78..=0.82).contains(&cov[0]), "80 % band covers {}", cov[0]);
        assert!((0.94..=0.96).contains(&cov[1]), "95 % band covers {}", cov[1]);
        // The 90 % quantile of uniform(−50 %, 50 %) around 100 is 140.
        let q = c.quantile(30, 100.0, 0.9).unwrap();
        assert!((q - 140.0).abs() < 3.0, "{q}");
    }

    #[test]
    fn nothing_is_claimed_before_enough_points_and_the_window_forgets() {
        let mut c = Calibrator::default();
        assert_eq!(c.bands(5, 10.0), None);
        // A week of errors of +100 %, then three weeks of none: the window forgets the first.
        for t in 1..=10_080 {
            c.observe(t, 5, [10.0, 9.0, 11.0, 8.0, 12.0], 20.0);
        }
        let wide = c.quantile(5, 10.0, 0.5).unwrap();
        assert!((wide - 20.0).abs() < 0.5, "{wide}");
        for t in 10_081..=40_320 {
            c.observe(t, 5, [10.0, 9.0, 11.0, 8.0, 12.0], 10.0);
        }
        let now = c.quantile(5, 10.0, 0.9).unwrap();
        assert!((now - 10.0).abs() < 0.5, "{now}");
        // Groups are separate: nothing was scored 60 minutes ahead.
        assert!(!c.ready(60));
        assert!(c.ready(5));
    }
}
