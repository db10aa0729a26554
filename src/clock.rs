//! Time, real or virtual. Components that read the time take a [`Clock`], so the simulator,
//! the demo and tests can run days of traffic in seconds through the same code.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time in microseconds since the Unix epoch.
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_us(&self) -> u64;
}

/// Shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealClock;

impl Clock for RealClock {
    fn now_us(&self) -> u64 {
        now_us()
    }
}

/// Microseconds since the epoch from the system clock (0 if the clock is before 1970).
pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as u64)
}

/// The UTC calendar date and time of epoch seconds: `(year, month, day, hour, minute, second)`
/// (Howard Hinnant's days-to-civil algorithm).
pub fn utc(t: u64) -> (i64, u32, u32, u32, u32, u32) {
    let (days, rem) = ((t / 86_400) as i64, t % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}

/// A clock that moves only when told to.
#[derive(Debug, Default)]
pub struct VirtualClock(AtomicU64);

impl VirtualClock {
    pub fn new(start_us: u64) -> Arc<Self> {
        Arc::new(Self(AtomicU64::new(start_us)))
    }
    pub fn set_us(&self, t: u64) {
        self.0.store(t, Relaxed);
    }
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_micros() as u64, Relaxed);
    }
}

impl Clock for VirtualClock {
    fn now_us(&self) -> u64 {
        self.0.load(Relaxed)
    }
}
