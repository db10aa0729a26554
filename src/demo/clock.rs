//! The demo's accelerated clock and where its virtual day starts.

use crate::clock::Clock;

/// A clock running `speed` times faster than the real one from `origin_us` on. It stands at
/// `origin_us` until [`ScaledClock::start`] (the demo starts it when its first VMs answer, so
/// the seeded history runs straight into live traffic with no minutes of zeros between).
#[derive(Debug)]
pub struct ScaledClock {
    origin_us: u64,
    real_origin: std::sync::OnceLock<std::time::Instant>,
    speed: f64,
}

impl ScaledClock {
    /// A clock already running.
    pub fn new(origin_us: u64, speed: f64) -> Self {
        let c = Self::paused(origin_us, speed);
        c.start();
        c
    }

    /// A clock standing at `origin_us` until started.
    pub fn paused(origin_us: u64, speed: f64) -> Self {
        Self { origin_us, real_origin: std::sync::OnceLock::new(), speed }
    }

    pub fn start(&self) {
        let _ = self.real_origin.set(std::time::Instant::now());
    }
}

impl Clock for ScaledClock {
    fn now_us(&self) -> u64 {
        let elapsed = self.real_origin.get().map_or(0.0, |o| o.elapsed().as_secs_f64());
        self.origin_us + (elapsed * 1e6 * self.speed) as u64
    }
}

/// Where the demo's virtual day starts: 06:00 UTC of the latest weekday at or before `now_s`,
/// an hour before the morning ramp, so a run of a few minutes shows the scale-out before the
/// afternoon peak and the scale-in after it.
pub fn virtual_start(now_s: u64) -> u64 {
    let mut day = now_s / 86_400;
    if now_s % 86_400 < 6 * 3600 {
        day -= 1;
    }
    // 1970-01-01 was a Thursday: (day + 4) % 7 is 5 on Saturdays and 6 on Sundays.
    while (day + 4) % 7 >= 5 {
        day -= 1;
    }
    day * 86_400 + 6 * 3600
}
