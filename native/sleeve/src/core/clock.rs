//! The one injected clock. Time is a monotonic `Duration` since an arbitrary origin.

use std::time::{Duration, Instant, SystemTime};

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Duration;

    /// Nanoseconds since the Unix epoch, for what must keep growing across restarts (handshake
    /// timestamps). Never goes back while the clock lives.
    fn wall_nanos(&self) -> u64;
}

/// The real monotonic clock.
pub struct MonotonicClock {
    origin: Instant,
    /// The wall clock when `origin` was taken; wall time is then read off the monotonic clock,
    /// so a step of the system clock does not reach us until a restart.
    origin_wall: Duration,
}

impl MonotonicClock {
    pub fn new() -> Self {
        MonotonicClock {
            origin: Instant::now(),
            origin_wall: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.origin.elapsed()
    }

    fn wall_nanos(&self) -> u64 {
        (self.origin_wall + self.origin.elapsed()).as_nanos() as u64
    }
}
