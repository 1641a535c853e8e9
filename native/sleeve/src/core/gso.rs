//! Plans UDP GSO sends. Pure.
//!
//! The kernel cuts a GSO send into segments of exactly `segment` bytes, except the last, which
//! may be shorter. A train of datagrams is therefore sent as runs: equal-sized datagrams, closed
//! by at most one shorter one.

use std::ops::Range;

/// Consecutive datagrams sent with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    /// Byte range within the train.
    pub bytes: Range<usize>,
    /// How many datagrams the run holds.
    pub datagrams: usize,
    /// The GSO segment size; `None` for a run of one datagram, sent plainly.
    pub segment: Option<u16>,
}

/// Splits datagrams of `lens` (laid end to end) into runs of at most `max_segments`.
pub fn runs(lens: &[u16], max_segments: usize) -> Runs<'_> {
    Runs {
        lens,
        at: 0,
        offset: 0,
        max: max_segments.max(1),
    }
}

pub struct Runs<'a> {
    lens: &'a [u16],
    at: usize,
    offset: usize,
    max: usize,
}

impl Iterator for Runs<'_> {
    type Item = Run;
    fn next(&mut self) -> Option<Run> {
        let rest = &self.lens[self.at..];
        let &size = rest.first()?;
        let mut n = 1 + rest[1..]
            .iter()
            .take(self.max - 1)
            .take_while(|&&l| l == size)
            .count();
        if n < self.max && rest.get(n).is_some_and(|&l| l < size) {
            n += 1; // a shorter datagram may close the run
        }
        let len: usize = rest[..n].iter().map(|&l| l as usize).sum();
        let run = Run {
            bytes: self.offset..self.offset + len,
            datagrams: n,
            segment: (n > 1).then_some(size),
        };
        self.at += n;
        self.offset += len;
        Some(run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(lens: &[u16], max: usize) -> Vec<(usize, Option<u16>)> {
        let got: Vec<Run> = runs(lens, max).collect();
        let total: usize = lens.iter().map(|&l| l as usize).sum();
        assert_eq!(got.last().map_or(0, |r| r.bytes.end), total);
        got.iter().map(|r| (r.datagrams, r.segment)).collect()
    }

    #[test]
    fn equal_sizes_make_one_run() {
        assert_eq!(plan(&[1472; 10], 64), [(10, Some(1472))]);
    }

    #[test]
    fn a_shorter_last_datagram_joins_the_run() {
        assert_eq!(plan(&[1472, 1472, 300], 64), [(3, Some(1472))]);
    }

    #[test]
    fn a_longer_datagram_starts_a_new_run() {
        assert_eq!(
            plan(&[300, 1472, 1472, 200, 200], 64),
            [(1, None), (3, Some(1472)), (1, None)]
        );
    }

    #[test]
    fn runs_respect_the_segment_limit() {
        assert_eq!(
            plan(&[100; 5], 2),
            [(2, Some(100)), (2, Some(100)), (1, None)]
        );
        assert_eq!(plan(&[100, 100, 50], 2), [(2, Some(100)), (1, None)]);
        assert_eq!(plan(&[100, 50], 1), [(1, None), (1, None)]);
    }

    #[test]
    fn empty_train_has_no_runs() {
        assert_eq!(plan(&[], 64), []);
    }
}
