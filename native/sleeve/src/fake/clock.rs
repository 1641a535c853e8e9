use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::core::clock::Clock;

/// A clock that only moves when a test steps it. Clones share the time.
#[derive(Clone, Default)]
pub struct FakeClock {
    nanos: Arc<AtomicU64>,
}

impl FakeClock {
    pub fn advance(&self, by: Duration) {
        self.nanos.fetch_add(by.as_nanos() as u64, Ordering::SeqCst);
    }
}

/// Wall time of a fake clock at zero: 2023-11-14, any fixed point would do.
const FAKE_EPOCH_NANOS: u64 = 1_700_000_000_000_000_000;

impl Clock for FakeClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    fn wall_nanos(&self) -> u64 {
        FAKE_EPOCH_NANOS + self.nanos.load(Ordering::SeqCst)
    }
}
