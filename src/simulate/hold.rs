//! The proxy's hold, in the replay: requests no capacity can take on arrival wait in a
//! first-come first-served queue for at most `hold_s`, then fail (503). A fluid model stepped
//! per second: within a control tick capacity is constant and arrivals are even.

use std::collections::VecDeque;

/// One policy's queue of held requests and what it has counted.
#[derive(Debug, Default, Clone)]
pub(crate) struct Hold {
    /// `(second it arrived, requests)`, oldest first.
    queue: VecDeque<(u64, f64)>,
    queued: f64,
    /// Requests that waited and were then served, their total wait (request-seconds), and
    /// requests that failed after the hold.
    pub(crate) served_after_wait: f64,
    pub(crate) wait_s: f64,
    pub(crate) failed: f64,
}

impl Hold {
    /// Requests held now.
    pub(crate) fn queued(&self) -> f64 {
        self.queued
    }

    /// `secs` seconds from `t`, `demand` requests/s arriving and `capacity` requests/s served,
    /// held requests first. True if any request was held (waited past the second it came in)
    /// or failed.
    pub(crate) fn step(&mut self, t: u64, secs: u64, demand: f64, capacity: f64, hold_s: f64) -> bool {
        if self.queue.is_empty() && demand <= capacity + 1e-9 {
            return false; // the common case: everything served on arrival
        }
        let mut held = false;
        for s in t..t + secs {
            let mut budget = capacity;
            while budget > 1e-12 {
                let Some(front) = self.queue.front_mut() else { break };
                let n = front.1.min(budget);
                budget -= n;
                front.1 -= n;
                self.queued -= n;
                self.served_after_wait += n;
                self.wait_s += n * (s - front.0) as f64;
                if front.1 <= 1e-12 {
                    self.queue.pop_front();
                }
            }
            let rest = demand - budget.min(demand);
            if rest > 1e-9 {
                self.queue.push_back((s, rest));
                self.queued += rest;
            }
            // Whoever would pass the hold before the next second is answered 503.
            while let Some(&(at, n)) = self.queue.front() {
                if (s + 1 - at) as f64 <= hold_s {
                    break;
                }
                self.queue.pop_front();
                self.queued -= n;
                self.failed += n;
            }
            held |= !self.queue.is_empty() || rest > 1e-9;
        }
        if self.queue.is_empty() {
            self.queued = 0.0;
        }
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_shortage_is_held_and_served_in_order_with_its_wait() {
        let mut h = Hold::default();
        // 2 s at 10 requests/s against capacity 6: second 0 leaves 4 waiting, served first in
        // second 1, which then leaves 8 of its own.
        assert!(h.step(0, 2, 10.0, 6.0, 10.0));
        assert!((h.queued() - 8.0).abs() < 1e-9);
        assert!((h.wait_s - 4.0).abs() < 1e-9, "the 4 of second 0 waited 1 s");
        // Capacity 14 against 10: the 8 first, then 6 of the 10 new.
        assert!(h.step(2, 1, 10.0, 14.0, 10.0), "4 still held at the end of the second");
        assert!((h.queued() - 4.0).abs() < 1e-9);
        assert!(!h.step(3, 1, 10.0, 14.0, 10.0), "the last 4 served, none left");
        assert!((h.served_after_wait - 16.0).abs() < 1e-9);
        assert!((h.wait_s - 16.0).abs() < 1e-9, "each held request waited 1 s");
        assert_eq!(h.failed, 0.0);
        assert!(!h.step(4, 60, 10.0, 14.0, 10.0), "nothing held when capacity suffices");
    }

    #[test]
    fn past_the_hold_a_request_fails_and_without_a_hold_at_once() {
        let mut h = Hold::default();
        // No capacity at all (a pool at zero, its spare resuming): 10 held per second; after
        // 20 s the first 15 seconds' worth have failed, the last 5 still wait.
        h.step(0, 20, 10.0, 0.0, 5.0);
        assert!((h.failed - 150.0).abs() < 1e-9, "{}", h.failed);
        assert!((h.queued() - 50.0).abs() < 1e-9);
        // Capacity comes: the 50 are served (a wait of 1–5 s each), nothing more fails.
        assert!(!h.step(20, 1, 0.0, 100.0, 5.0));
        assert!((h.served_after_wait - 50.0).abs() < 1e-9);
        assert!((h.wait_s - 10.0 * (5.0 + 4.0 + 3.0 + 2.0 + 1.0)).abs() < 1e-9, "{}", h.wait_s);
        assert!((h.failed - 150.0).abs() < 1e-9);
        let mut none = Hold::default();
        assert!(none.step(0, 3, 10.0, 6.0, 0.0));
        assert!((none.failed - 12.0).abs() < 1e-9);
        assert_eq!(none.queued(), 0.0);
    }
}
