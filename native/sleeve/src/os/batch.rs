//! Buffers the engine hands to a [`Udp`](super::Udp) for batched receives. Plain data: the
//! receiver fills slots, the engine walks the datagrams.

use std::net::{Ipv4Addr, SocketAddr};

/// What one receive slot holds: `len` bytes from `from`. When `segment` is non-zero the slot is
/// a UDP GRO train: datagrams of `segment` bytes back to back, the last one possibly shorter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    pub len: usize,
    pub from: SocketAddr,
    pub segment: usize,
}

impl Default for Slot {
    fn default() -> Self {
        Slot {
            len: 0,
            from: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            segment: 0,
        }
    }
}

/// `slots` receive buffers of `slot_len` bytes each, allocated once.
pub struct RecvBatch {
    buf: Vec<u8>,
    slot_len: usize,
    slots: Vec<Slot>,
    filled: usize,
}

impl RecvBatch {
    pub fn new(slots: usize, slot_len: usize) -> Self {
        let slots = slots.max(1);
        RecvBatch {
            buf: vec![0; slots * slot_len],
            slot_len,
            slots: vec![Slot::default(); slots],
            filled: 0,
        }
    }

    pub fn slot_len(&self) -> usize {
        self.slot_len
    }

    /// For receivers: every slot's buffer (slot `i` at `i * slot_len`) and its description.
    /// Whatever was filled before is forgotten.
    pub fn parts_mut(&mut self) -> (&mut [u8], &mut [Slot]) {
        self.filled = 0;
        (&mut self.buf, &mut self.slots)
    }

    /// For receivers: the first `n` slots now hold data.
    pub fn set_filled(&mut self, n: usize) {
        self.filled = n.min(self.slots.len());
    }

    /// Every datagram received, GRO trains split back into their datagrams.
    pub fn datagrams(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> + '_ {
        self.slots[..self.filled]
            .iter()
            .enumerate()
            .flat_map(move |(i, s)| {
                let start = i * self.slot_len;
                let bytes = &self.buf[start..start + s.len.min(self.slot_len)];
                segments(bytes, s.segment).map(move |d| (d, s.from))
            })
    }
}

impl RecvBatch {
    /// [`RecvBatch::datagrams`], writable: transport datagrams are decrypted in place.
    pub fn datagrams_mut(&mut self) -> impl Iterator<Item = (&mut [u8], SocketAddr)> + '_ {
        let slot_len = self.slot_len;
        let slots = &self.slots[..self.filled];
        self.buf
            .chunks_mut(slot_len)
            .zip(slots)
            .flat_map(move |(chunk, s)| {
                let bytes = &mut chunk[..s.len.min(slot_len)];
                segments_mut(bytes, s.segment).map(move |d| (d, s.from))
            })
    }
}

/// As [`segments`], writable.
fn segments_mut(bytes: &mut [u8], segment: usize) -> impl Iterator<Item = &mut [u8]> {
    let step = if segment == 0 {
        bytes.len().max(1)
    } else {
        segment
    };
    let (empty, whole) = if bytes.is_empty() {
        (Some(<&mut [u8]>::default()), None)
    } else {
        (None, Some(bytes.chunks_mut(step)))
    };
    empty.into_iter().chain(whole.into_iter().flatten())
}

/// `bytes` cut every `segment` bytes (`0`: whole). An empty slot is still one (empty) datagram,
/// so it is counted and rejected like any other.
fn segments(bytes: &[u8], segment: usize) -> impl Iterator<Item = &[u8]> {
    let step = if segment == 0 { usize::MAX } else { segment };
    let count = if bytes.is_empty() {
        1
    } else {
        bytes.len().div_ceil(step)
    };
    let len = bytes.len();
    (0..count).map(move |k| &bytes[(k * step).min(len)..(k + 1).saturating_mul(step).min(len)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fill(batch: &mut RecvBatch, items: &[(&[u8], usize)]) {
        let slot_len = batch.slot_len();
        let (buf, slots) = batch.parts_mut();
        for (i, (bytes, segment)) in items.iter().enumerate() {
            buf[i * slot_len..][..bytes.len()].copy_from_slice(bytes);
            slots[i] = Slot {
                len: bytes.len(),
                from: SocketAddr::from(([10, 0, 0, i as u8], 1)),
                segment: *segment,
            };
        }
        batch.set_filled(items.len());
    }

    #[test]
    fn plain_slots_are_one_datagram_each() {
        let mut b = RecvBatch::new(4, 16);
        fill(&mut b, &[(b"abc", 0), (b"defgh", 0)]);
        let got: Vec<&[u8]> = b.datagrams().map(|(d, _)| d).collect();
        assert_eq!(got, [&b"abc"[..], &b"defgh"[..]]);
    }

    #[test]
    fn gro_slots_split_at_the_segment_size() {
        let mut b = RecvBatch::new(2, 16);
        fill(&mut b, &[(b"aaaabbbbcc", 4), (b"x", 0)]);
        let got: Vec<(&[u8], u8)> = b
            .datagrams()
            .map(|(d, from)| match from {
                SocketAddr::V4(a) => (d, a.ip().octets()[3]),
                SocketAddr::V6(_) => unreachable!(),
            })
            .collect();
        assert_eq!(
            got,
            [
                (&b"aaaa"[..], 0),
                (&b"bbbb"[..], 0),
                (&b"cc"[..], 0),
                (&b"x"[..], 1)
            ]
        );
    }

    #[test]
    fn writable_datagrams_are_the_same_slices() {
        let mut b = RecvBatch::new(3, 16);
        fill(&mut b, &[(b"aaaabbbbcc", 4), (b"", 0), (b"x", 0)]);
        let want: Vec<(Vec<u8>, SocketAddr)> =
            b.datagrams().map(|(d, from)| (d.to_vec(), from)).collect();
        let got: Vec<(Vec<u8>, SocketAddr)> = b
            .datagrams_mut()
            .map(|(d, from)| {
                d.iter_mut().for_each(|c| *c = c.to_ascii_uppercase());
                (d.to_ascii_lowercase(), from)
            })
            .collect();
        assert_eq!(got, want);
        assert_eq!(b.datagrams().next().unwrap().0, b"AAAA");
    }

    #[test]
    fn empty_datagrams_still_count_and_unfilled_slots_do_not() {
        let mut b = RecvBatch::new(2, 16);
        assert_eq!(b.datagrams().count(), 0);
        fill(&mut b, &[(b"", 0)]);
        assert_eq!(b.datagrams().map(|(d, _)| d.len()).collect::<Vec<_>>(), [0]);
        b.parts_mut();
        assert_eq!(b.datagrams().count(), 0);
    }
}
