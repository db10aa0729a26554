//! The cost model, learned online: CPU cores used = base + per_request × requests/s, fitted by
//! recursive least squares with exponential forgetting (old behaviour fades; a deploy that makes
//! requests dearer is followed). Starts from a prior — the configured `capacity_rps_per_vcpu`
//! says one request costs `1 / capacity` cores — held with modest confidence, so a few minutes
//! of samples override it. The same estimator fits memory against in-flight requests.

use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinearCost {
    /// Intercept (cores with no traffic).
    pub base: f64,
    /// Slope (cores per request/s).
    pub per_request: f64,
    /// Samples taken.
    pub samples: u64,
    /// Covariance of the estimate (2 × 2, row-major).
    #[serde(skip)]
    p: [f64; 4],
    /// Forgetting factor (1 = remember everything).
    #[serde(skip)]
    lambda: f64,
}

impl LinearCost {
    /// `prior_per_request` with variance `prior_var` (in slope units squared).
    pub fn new(prior_per_request: f64, prior_var: f64, lambda: f64) -> Self {
        Self {
            base: 0.0,
            per_request: prior_per_request,
            samples: 0,
            p: [prior_var.max(1e-12) * 100.0, 0.0, 0.0, prior_var.max(1e-12)],
            lambda: lambda.clamp(0.9, 1.0),
        }
    }

    /// One observation: `x` requests/s, `y` cores used.
    pub fn observe(&mut self, x: f64, y: f64) {
        if !(x.is_finite() && y.is_finite()) {
            return;
        }
        let phi = [1.0, x];
        let p = self.p;
        let pphi = [p[0] * phi[0] + p[1] * phi[1], p[2] * phi[0] + p[3] * phi[1]];
        let denom = self.lambda + phi[0] * pphi[0] + phi[1] * pphi[1];
        let k = [pphi[0] / denom, pphi[1] / denom];
        let err = y - (self.base + self.per_request * x);
        self.base += k[0] * err;
        self.per_request += k[1] * err;
        // P ← (P − k φᵀ P) / λ
        let phip = [phi[0] * p[0] + phi[1] * p[2], phi[0] * p[1] + phi[1] * p[3]];
        self.p = [
            (p[0] - k[0] * phip[0]) / self.lambda,
            (p[1] - k[0] * phip[1]) / self.lambda,
            (p[2] - k[1] * phip[0]) / self.lambda,
            (p[3] - k[1] * phip[1]) / self.lambda,
        ];
        self.samples += 1;
    }

    /// The allocator's start: `per_request` held weakly (standard deviation about three times
    /// itself) so that data overrides it as fast as the data allows, forgetting over about a
    /// thousand samples (λ = 0.999).
    pub fn prior(per_request: f64) -> Self {
        Self::new(per_request, 10.0 * per_request * per_request, 0.999)
    }

    /// Cores for `x` requests/s.
    pub fn predict(&self, x: f64) -> f64 {
        self.base + self.per_request * x
    }

    /// Requests/s one vCPU serves at full use (what the allocator's capacity prior stands for).
    pub fn rps_per_core(&self) -> f64 {
        if self.per_request > 0.0 { 1.0 / self.per_request } else { f64::INFINITY }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gauss(rng: &mut fastrand::Rng) -> f64 {
        (-2.0 * (1.0 - rng.f64()).ln()).sqrt() * (std::f64::consts::TAU * rng.f64()).cos()
    }

    /// Samples (one per 10 s of 0–200 requests/s) until the slope is within 10 % of the truth.
    fn samples_to_converge(truth_b: f64, prior: f64, seed: u64) -> u64 {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut m = LinearCost::new(prior, prior * prior, 0.999);
        for i in 0..10_000u64 {
            let x = 200.0 * rng.f64();
            let y = 0.05 + truth_b * x + 0.02 * gauss(&mut rng) * (1.0 + truth_b * x).sqrt();
            m.observe(x, y);
            if i >= 10 && (m.per_request - truth_b).abs() < 0.1 * truth_b {
                return i + 1;
            }
        }
        u64::MAX
    }

    #[test]
    fn recovers_known_coefficients_from_noisy_usage() {
        let mut rng = fastrand::Rng::with_seed(1);
        let mut m = LinearCost::new(0.01, 1e-4, 0.999);
        for _ in 0..2000 {
            let x = 200.0 * rng.f64();
            m.observe(x, 0.1 + 0.004 * x + 0.01 * gauss(&mut rng));
        }
        assert!((m.per_request - 0.004).abs() < 0.0002, "{m:?}");
        assert!((m.base - 0.1).abs() < 0.01, "{m:?}");
        assert!((m.rps_per_core() - 250.0).abs() < 15.0);
        // Convergence from a prior 2.5× off: well under a few hundred samples.
        let n = samples_to_converge(0.004, 0.01, 2);
        eprintln!("samples to within 10 %: {n}");
        assert!(n < 300, "{n} samples");
    }

    #[test]
    fn forgetting_follows_a_change_in_cost() {
        let mut rng = fastrand::Rng::with_seed(3);
        let mut m = LinearCost::new(0.004, 1e-6, 0.99);
        for _ in 0..1000 {
            let x = 100.0 * rng.f64();
            m.observe(x, 0.004 * x);
        }
        // A deploy doubles the cost per request.
        for _ in 0..500 {
            let x = 100.0 * rng.f64();
            m.observe(x, 0.008 * x);
        }
        assert!((m.per_request - 0.008).abs() < 0.0008, "{m:?}");
    }
}
