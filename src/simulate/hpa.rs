//! The reactive baseline: the Kubernetes Horizontal Pod Autoscaler's algorithm, as documented
//! (kubernetes.io, "Horizontal Pod Autoscaling"), with its defaults — evaluated every 15 s on
//! the metric averaged over the last minute:
//!
//! - `ratio = current utilisation ÷ target`; within the tolerance (10 %) of 1, nothing changes;
//!   otherwise `desired = ceil(ratio × ready replicas)`.
//! - Scaling up while replicas are not ready yet, those count as using nothing: the ratio is
//!   computed again over all replicas, and if that no longer calls for more, nothing changes.
//! - Scale-down is stabilised: the replica count is the highest recommendation of the last
//!   300 s. Scale-up takes the newest recommendation, limited per period to the larger of +100 %
//!   and +4 replicas.
//! - The result is kept within `[min, max]`.

use std::collections::VecDeque;

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Hpa {
    pub target_utilization: f64,
    pub tolerance: f64,
    pub stabilization_s: u64,
    pub min: u32,
    pub max: u32,
    /// `(t, recommendation)` of the stabilisation window.
    recent: VecDeque<(u64, u32)>,
}

impl Hpa {
    pub(crate) fn new(target_utilization: f64, tolerance: f64, stabilization_s: u64, min: u32, max: u32) -> Self {
        Self { target_utilization, tolerance, stabilization_s, min, max, recent: VecDeque::new() }
    }

    /// The replica count to run at `now`. `demand`: load averaged over the last minute, in
    /// the unit of `per_replica` (what one replica serves at 100 %); `ready`/`current`: replicas
    /// ready / existing (ready + starting).
    pub(crate) fn desired(&mut self, now: u64, demand: f64, per_replica: f64, ready: u32, current: u32) -> u32 {
        let recommend = self.recommend(demand, per_replica, ready, current);
        self.recent.push_back((now, recommend));
        while self.recent.front().is_some_and(|(t, _)| *t + self.stabilization_s <= now) {
            self.recent.pop_front();
        }
        let out = if recommend >= current {
            let limit = (current * 2).max(current + 4);
            recommend.min(limit)
        } else {
            // The highest recommendation in the window, never above the current count.
            self.recent.iter().map(|r| r.1).max().unwrap_or(recommend).min(current)
        };
        out.clamp(self.min, self.max)
    }

    fn recommend(&self, demand: f64, per_replica: f64, ready: u32, current: u32) -> u32 {
        if ready == 0 {
            // No metric yet: keep what exists (at least the minimum).
            return current.max(self.min);
        }
        let per = per_replica.max(1e-12);
        let ratio = demand / (ready as f64 * per) / self.target_utilization;
        if (ratio - 1.0).abs() <= self.tolerance {
            return current;
        }
        if ratio > 1.0 && current > ready {
            // Not-ready replicas count as idle: does the load still call for more?
            let all = demand / (current as f64 * per) / self.target_utilization;
            if all <= 1.0 + self.tolerance {
                return current;
            }
            return (all * current as f64).ceil() as u32;
        }
        (ratio * ready as f64).ceil() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa() -> Hpa {
        Hpa::new(0.5, 0.1, 300, 1, 10)
    }

    #[test]
    fn documented_cases() {
        // The documentation's example: 200m used against a 100m target on 1 replica → 2.
        let mut h = Hpa::new(1.0, 0.1, 300, 1, 10);
        assert_eq!(h.desired(0, 200.0, 100.0, 1, 1), 2);
        // 50m against 100m on 2 replicas → 1.
        assert_eq!(Hpa::new(1.0, 0.1, 300, 1, 10).desired(0, 100.0, 100.0, 2, 2), 1);
        // Within the 10 % tolerance nothing changes: utilisation 0.54 vs 0.5.
        assert_eq!(hpa().desired(0, 216.0, 100.0, 4, 4), 4);
        // 0.6 vs 0.5 is outside: ceil(1.2 × 4) = 5.
        assert_eq!(hpa().desired(0, 240.0, 100.0, 4, 4), 5);
        // Bounds.
        assert_eq!(hpa().desired(0, 0.0, 100.0, 3, 3), 1, "min 1");
        assert_eq!(Hpa::new(0.5, 0.1, 0, 2, 10).desired(0, 0.0, 100.0, 3, 3), 2, "min");
        assert_eq!(hpa().desired(0, 10_000.0, 100.0, 5, 5), 10, "max");
    }

    #[test]
    fn unready_replicas_count_as_idle_when_scaling_up() {
        // 2 ready at 0.8 (ratio 1.6) but 2 more starting: over 4 the ratio is 0.8 → no change.
        assert_eq!(hpa().desired(0, 160.0, 100.0, 2, 4), 4);
        // Ratio 3 over ready, 1.5 over all four → ceil(1.5 × 4) = 6.
        assert_eq!(hpa().desired(0, 300.0, 100.0, 2, 4), 6);
    }

    #[test]
    fn scale_up_is_rate_limited_and_scale_down_stabilised() {
        let mut h = Hpa::new(0.5, 0.1, 300, 1, 100);
        // Needs 40 from 2: at most max(2 × 2, 2 + 4) = 6 in one period.
        assert_eq!(h.desired(0, 2000.0, 100.0, 2, 2), 6);
        // Load falls: the high recommendation stays for 300 s, then the low one wins.
        let mut h = Hpa::new(0.5, 0.1, 300, 1, 100);
        assert_eq!(h.desired(0, 400.0, 100.0, 8, 8), 8);
        assert_eq!(h.desired(15, 100.0, 100.0, 8, 8), 8);
        assert_eq!(h.desired(290, 100.0, 100.0, 8, 8), 8);
        assert_eq!(h.desired(300, 100.0, 100.0, 8, 8), 2);
    }
}
