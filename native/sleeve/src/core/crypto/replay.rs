//! The receive side's sliding window of counters seen, as WireGuard keeps it (RFC 6479's ring of
//! bitmap blocks): a datagram is accepted once, and only if it is at most [`WINDOW`] behind the
//! newest. Reordering inside a GSO train or between the TAP threads' trains stays well inside.

const BLOCK_BITS: u64 = 64;
const BLOCKS: usize = 128;
/// Counters this far behind the newest are still accepted (one block is the one being reused).
pub const WINDOW: u64 = (BLOCKS as u64 - 1) * BLOCK_BITS;

#[derive(Clone)]
pub struct ReplayWindow {
    /// The highest counter accepted so far.
    newest: u64,
    ring: [u64; BLOCKS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        ReplayWindow {
            newest: 0,
            ring: [0; BLOCKS],
        }
    }
}

impl ReplayWindow {
    /// Whether `counter` would be accepted; checked before the (costly) decryption.
    pub fn fresh(&self, counter: u64) -> bool {
        if counter > self.newest {
            return true;
        }
        if self.newest - counter > WINDOW {
            return false;
        }
        self.ring[block(counter)] & bit(counter) == 0
    }

    /// Marks `counter` seen, after its datagram was authenticated. False if it was not fresh.
    pub fn accept(&mut self, counter: u64) -> bool {
        if counter > self.newest {
            let (from, to) = (self.newest / BLOCK_BITS, counter / BLOCK_BITS);
            let cleared = (to - from).min(BLOCKS as u64);
            for i in 1..=cleared {
                self.ring[((from + i) % BLOCKS as u64) as usize] = 0;
            }
            self.newest = counter;
        } else if self.newest - counter > WINDOW {
            return false;
        }
        let slot = &mut self.ring[block(counter)];
        let seen = *slot & bit(counter) != 0;
        *slot |= bit(counter);
        !seen
    }
}

fn block(counter: u64) -> usize {
    ((counter / BLOCK_BITS) % BLOCKS as u64) as usize
}

fn bit(counter: u64) -> u64 {
    1 << (counter % BLOCK_BITS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_counter_is_accepted_once() {
        let mut w = ReplayWindow::default();
        for c in [0, 1, 2, 5, 4, 3] {
            assert!(w.fresh(c) && w.accept(c), "{c}");
        }
        for c in [0, 3, 5] {
            assert!(!w.fresh(c) && !w.accept(c), "{c} again");
        }
    }

    #[test]
    fn reordering_inside_the_window_is_accepted_and_older_is_not() {
        let mut w = ReplayWindow::default();
        assert!(w.accept(WINDOW + 100));
        assert!(w.accept(100), "exactly WINDOW behind");
        assert!(!w.fresh(99) && !w.accept(99), "one further");
        assert!(w.accept(WINDOW + 50));
        assert!(!w.accept(WINDOW + 50));
    }

    #[test]
    fn a_jump_clears_the_reused_blocks() {
        let mut w = ReplayWindow::default();
        for c in 0..300 {
            assert!(w.accept(c));
        }
        let far = 300 + 10 * WINDOW;
        assert!(w.accept(far));
        // Blocks reused for counters near `far` must not remember 0..300.
        for c in far - WINDOW..far {
            assert!(w.fresh(c), "{c}");
        }
        assert!(!w.fresh(far));
    }

    #[test]
    fn matches_a_naive_model() {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut w = ReplayWindow::default();
        let mut seen = std::collections::HashSet::new();
        let mut newest = 0u64;
        for i in 0..50_000u64 {
            let c = (i * 3 + next() % 9000).saturating_sub(4000);
            let want = !seen.contains(&c) && (c > newest || newest - c <= WINDOW);
            assert_eq!(w.fresh(c), want, "fresh({c})");
            assert_eq!(w.accept(c), want, "accept({c})");
            if want {
                seen.insert(c);
                newest = newest.max(c);
            }
        }
    }
}
