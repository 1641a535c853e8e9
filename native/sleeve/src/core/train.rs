//! Datagrams for one peer laid end to end in one buffer, so that flushing them costs one
//! syscall: a `sendmmsg`, or a single UDP GSO send when they are the same size. Pure.
//!
//! Frames are packed into datagrams of at most `target` bytes exactly as [`BatchEncoder`] does
//! (an oversize frame travels alone); the train only adds the next datagram when the current
//! one is full.
//!
//! [`BatchEncoder`]: super::wire::BatchEncoder

use super::wire::{
    self, PushError, HEADER_LEN, LEN_PREFIX, MAX_DATAGRAM, MAX_FRAME_LEN, MIN_FRAME_LEN,
};
use super::{NetworkId, PeerId};

/// Datagrams per train: the kernel's UDP GSO limit on older kernels (`UDP_MAX_SEGMENTS`).
pub const MAX_TRAIN_DATAGRAMS: usize = 64;
/// Bytes per train: one GSO send carries at most a 64 KiB IP payload.
pub const MAX_TRAIN_BYTES: usize = 65_000;

pub struct Train {
    /// Initialised once as it grows; `len` says how much is in use, so reuse writes over old
    /// bytes instead of zeroing them again for every frame.
    buf: Vec<u8>,
    len: usize,
    lens: Vec<u16>,
    /// Where the datagram being filled starts, and its frame count; `None` when all are closed.
    open: Option<(usize, u16)>,
    target: usize,
    network: NetworkId,
    sender: PeerId,
    /// Bytes left free before and after each datagram, for sealing it in place.
    room: Room,
    frames: usize,
}

/// Space around each datagram of a train: an encryption header before, a tag after.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Room {
    pub head: usize,
    pub tail: usize,
}

/// Finished datagrams: `lens[i]` bytes each, back to back in `bytes`.
#[derive(Debug, Clone, Copy)]
pub struct Datagrams<'a> {
    pub bytes: &'a [u8],
    pub lens: &'a [u16],
}

impl<'a> Datagrams<'a> {
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let bytes = self.bytes;
        self.lens.iter().scan(0usize, move |at, &len| {
            let d = &bytes[*at..*at + len as usize];
            *at += len as usize;
            Some(d)
        })
    }

    pub fn is_empty(&self) -> bool {
        self.lens.is_empty()
    }
}

impl Train {
    /// `target` is the soft datagram size, as for [`wire::BatchEncoder::new`].
    pub fn new(target: usize, network: NetworkId, sender: PeerId) -> Self {
        Train::with_room(target, network, sender, Room::default())
    }

    /// A train whose datagrams each keep `room` free around them, within `target`: what is
    /// sent is the datagram with its room filled (sealed), so `target` stays the wire size.
    pub fn with_room(target: usize, network: NetworkId, sender: PeerId, room: Room) -> Self {
        let around = room.head + room.tail;
        let target = target.clamp(
            around + HEADER_LEN + LEN_PREFIX + MIN_FRAME_LEN,
            MAX_DATAGRAM,
        );
        Train {
            // One datagram's worth up front: most (network, peer) pairs never carry a burst.
            // A busy one grows to at most the train limit (or one lone datagram) once, and
            // `clear` keeps the capacity, so the steady state does not allocate.
            buf: Vec::with_capacity(target.max(around + HEADER_LEN + LEN_PREFIX + MAX_FRAME_LEN)),
            len: 0,
            lens: Vec::with_capacity(MAX_TRAIN_DATAGRAMS),
            open: None,
            target,
            network,
            sender,
            room,
            frames: 0,
        }
    }

    /// Appends one frame. [`PushError::Full`] means the train must be flushed first.
    pub fn push(&mut self, frame: &[u8]) -> Result<(), PushError> {
        self.push_with(frame.len(), |dst| dst.copy_from_slice(frame))
    }

    /// Appends a frame of `len` bytes that `fill` writes in place (segmentation writes straight
    /// into the train, without an intermediate copy).
    ///
    /// The train stays within [`MAX_TRAIN_BYTES`] and [`MAX_TRAIN_DATAGRAMS`] unless it holds a
    /// single datagram, which may be as large as one datagram can be.
    pub fn push_with(&mut self, len: usize, fill: impl FnOnce(&mut [u8])) -> Result<(), PushError> {
        if !(MIN_FRAME_LEN..=MAX_FRAME_LEN).contains(&len) {
            return Err(PushError::BadFrame);
        }
        let Room { head, tail } = self.room;
        if let Some((start, count)) = self.open {
            if self.len - start + LEN_PREFIX + len + tail > self.target || count == u16::MAX {
                self.close();
            }
        }
        let opening = self.open.is_none();
        let extra = LEN_PREFIX + len + if opening { head + HEADER_LEN } else { 0 };
        let alone = self.lens.is_empty();
        if !alone
            && (self.len + extra + tail > MAX_TRAIN_BYTES
                || (opening && self.lens.len() == MAX_TRAIN_DATAGRAMS))
        {
            return Err(PushError::Full);
        }
        if self.buf.len() < self.len + extra {
            self.buf.resize(self.len + extra, 0);
        }
        if opening {
            self.open = Some((self.len, 0));
            self.len += head;
            let header = wire::header(self.network, self.sender, 0);
            self.buf[self.len..self.len + HEADER_LEN].copy_from_slice(&header);
            self.len += HEADER_LEN;
        }
        let at = self.len;
        self.len += LEN_PREFIX + len;
        self.buf[at..at + LEN_PREFIX].copy_from_slice(&(len as u16).to_be_bytes());
        fill(&mut self.buf[at + LEN_PREFIX..self.len]);
        if let Some((_, count)) = &mut self.open {
            *count += 1;
        }
        self.frames += 1;
        Ok(())
    }

    fn close(&mut self) {
        if let Some((start, count)) = self.open.take() {
            wire::set_count(&mut self.buf[start + self.room.head..], count);
            let end = self.len + self.room.tail;
            if self.buf.len() < end {
                self.buf.resize(end, 0);
            }
            self.len = end;
            self.lens.push((self.len - start) as u16);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_none() && self.lens.is_empty()
    }

    /// Frames pushed since the last [`Train::clear`].
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Closes the datagram being filled and hands each datagram, with its room, to `seal`
    /// (with its position in the train) to be filled in place.
    pub fn seal_each(&mut self, mut seal: impl FnMut(usize, &mut [u8])) {
        self.close();
        let mut at = 0;
        for (i, &len) in self.lens.iter().enumerate() {
            let end = at + len as usize;
            seal(i, &mut self.buf[at..end]);
            at = end;
        }
    }

    /// Closes the datagram being filled and returns them all. They stay until [`Train::clear`].
    pub fn datagrams(&mut self) -> Datagrams<'_> {
        self.close();
        Datagrams {
            bytes: &self.buf[..self.len],
            lens: &self.lens,
        }
    }

    pub fn clear(&mut self) {
        self.len = 0;
        self.frames = 0;
        self.lens.clear();
        self.open = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::wire::Datagram;

    fn frame(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n]
    }

    fn decoded(train: &mut Train) -> Vec<Vec<Vec<u8>>> {
        train
            .datagrams()
            .iter()
            .map(|d| {
                let d = Datagram::parse(d).expect("valid datagram");
                assert_eq!((d.header.network, d.header.sender), (7, 9));
                d.frames().map(<[u8]>::to_vec).collect()
            })
            .collect()
    }

    #[test]
    fn packs_frames_like_the_batch_encoder() {
        let mut t = Train::new(1472, 7, 9);
        for i in 0..50 {
            t.push(&frame(64, i)).unwrap();
        }
        let per = (1472 - HEADER_LEN) / (LEN_PREFIX + 64);
        let got = decoded(&mut t);
        assert_eq!(got.len(), 50usize.div_ceil(per));
        assert!(got[..got.len() - 1].iter().all(|d| d.len() == per));
        let flat: Vec<Vec<u8>> = got.into_iter().flatten().collect();
        assert_eq!(flat, (0..50).map(|i| frame(64, i)).collect::<Vec<_>>());
    }

    #[test]
    fn full_size_frames_make_equal_datagrams() {
        let mut t = Train::new(1472, 7, 9);
        for _ in 0..10 {
            t.push(&frame(1450, 1)).unwrap();
        }
        t.push(&frame(100, 2)).unwrap();
        let d = t.datagrams();
        assert_eq!(d.lens.len(), 11);
        assert!(d.lens[..10].iter().all(|&l| l == 1472));
        assert_eq!(d.lens[10] as usize, HEADER_LEN + LEN_PREFIX + 100);
        assert_eq!(d.bytes.len(), 10 * 1472 + 122);
    }

    #[test]
    fn refuses_when_full_and_takes_more_after_clear() {
        let mut t = Train::new(1472, 7, 9);
        let mut n = 0;
        while t.push(&frame(1450, 0)).is_ok() {
            n += 1;
        }
        assert_eq!(n, MAX_TRAIN_BYTES / 1472);
        assert!(t.datagrams().bytes.len() <= MAX_TRAIN_BYTES);
        t.clear();
        assert!(t.is_empty());
        let mut t = Train::new(1472, 7, 9);
        while t.push(&frame(14, 0)).is_ok() {}
        let d = t.datagrams();
        assert!(d.bytes.len() <= MAX_TRAIN_BYTES && d.bytes.len() > MAX_TRAIN_BYTES - 16);
        let mut t = Train::new(576, 7, 9);
        let mut n = 0;
        while t.push(&frame(500, 0)).is_ok() {
            n += 1;
        }
        assert_eq!(n, MAX_TRAIN_DATAGRAMS);
    }

    #[test]
    fn oversize_frames_travel_alone_and_bad_frames_are_refused() {
        let mut t = Train::new(1472, 7, 9);
        t.push(&frame(60, 1)).unwrap();
        t.push(&frame(MAX_FRAME_LEN, 2)).unwrap();
        t.push(&frame(60, 3)).unwrap();
        assert_eq!(
            t.push(&frame(MAX_FRAME_LEN + 1, 0)),
            Err(PushError::BadFrame)
        );
        assert_eq!(t.push(&frame(13, 0)), Err(PushError::BadFrame));
        let got = decoded(&mut t);
        assert_eq!(got.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1]);
    }

    #[test]
    fn a_lone_datagram_may_exceed_the_train_limit() {
        let mut t = Train::new(MAX_DATAGRAM, 7, 9);
        for _ in 0..7 {
            t.push(&frame(MAX_FRAME_LEN, 1)).unwrap();
        }
        assert_eq!(t.push(&frame(MAX_FRAME_LEN, 1)), Err(PushError::Full));
        let d = t.datagrams();
        assert_eq!(
            d.lens,
            [(HEADER_LEN + 7 * (LEN_PREFIX + MAX_FRAME_LEN)) as u16]
        );
    }

    #[test]
    fn room_around_each_datagram_stays_within_the_target() {
        let room = Room { head: 16, tail: 16 };
        let mut t = Train::with_room(1472, 7, 9, room);
        for i in 0..5 {
            t.push(&frame(1418, i)).unwrap(); // 1472 - 32 - 20 - 2: exactly one per datagram
        }
        t.push(&frame(60, 9)).unwrap();
        assert_eq!(t.frames(), 6);
        let mut seen = Vec::new();
        t.seal_each(|i, d| {
            let inner = &d[16..d.len() - 16];
            let parsed = Datagram::parse(inner).expect("a datagram inside the room");
            seen.push((i, d.len(), parsed.header.count));
            d[..16].fill(0xaa);
        });
        let full = (0..5).map(|i| (i, 1472, 1));
        assert_eq!(
            seen,
            full.chain([(5, 32 + 20 + 2 + 60, 1)]).collect::<Vec<_>>()
        );
        assert!(t.datagrams().iter().all(|d| d[..16] == [0xaa; 16]));
        t.clear();
        assert_eq!(t.frames(), 0);
    }

    #[test]
    fn push_with_writes_in_place() {
        let mut t = Train::new(1472, 7, 9);
        t.push_with(20, |d| {
            d.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8)
        })
        .unwrap();
        let got = decoded(&mut t);
        assert_eq!(got[0][0], (0..20).collect::<Vec<u8>>());
    }
}
