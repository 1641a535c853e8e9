//! The sleeve wire format. Pure functions over buffers; no I/O.
//!
//! A datagram is a fixed 20-byte header followed by `count` frames, each prefixed by its length:
//!
//! ```text
//!  0       2       3       4               8                              16      18      20
//!  | magic | ver   | flags | network (u32) | sender peer id (u64)          | count | rsvd  |
//!  then count x ( len: u16 | len bytes of Ethernet frame )
//! ```
//! All integers are big-endian. The frame count makes every proper prefix of a datagram
//! invalid, so truncation is always detected, even at a frame boundary. `flags` and the
//! reserved field are for later versions (virtio header present); version 1 requires both to be
//! zero.
//!
//! Byte 2 says what the datagram is ([`Kind`]): 1 is this plaintext datagram; an encrypted mesh
//! sends handshake messages and transport datagrams instead (`core::crypto::message`), each an
//! encrypted plaintext datagram. An older sleeve counts those as a bad version.

use super::{NetworkId, PeerId};

pub const MAGIC: [u8; 2] = *b"WV";
pub const VERSION: u8 = 1;
pub const HEADER_LEN: usize = 20;
pub const LEN_PREFIX: usize = 2;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM: usize = 65_507;
/// Largest frame we carry: a 9000-byte jumbo MTU plus Ethernet and VLAN headers, with room.
pub const MAX_FRAME_LEN: usize = 9_216;
/// Smallest valid frame: destination MAC, source MAC, EtherType.
pub const MIN_FRAME_LEN: usize = 14;

/// Why a datagram was rejected. Used as a counter index, so keep it fieldless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DecodeError {
    /// Shorter than the fixed header.
    ShortHeader,
    BadMagic,
    BadVersion,
    /// Flags or reserved bits this version does not understand.
    UnknownFlags,
    /// A length prefix or frame body runs past the end of the datagram.
    Truncated,
    /// Bytes left over after `count` frames.
    TrailingBytes,
    /// A frame shorter than an Ethernet header.
    RuntFrame,
    /// A frame longer than [`MAX_FRAME_LEN`].
    FrameTooLarge,
}

impl DecodeError {
    pub const ALL: [DecodeError; 8] = [
        DecodeError::ShortHeader,
        DecodeError::BadMagic,
        DecodeError::BadVersion,
        DecodeError::UnknownFlags,
        DecodeError::Truncated,
        DecodeError::TrailingBytes,
        DecodeError::RuntFrame,
        DecodeError::FrameTooLarge,
    ];
}

/// What a datagram is, from its third byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A plaintext datagram of frames (version 1).
    Plain,
    HandshakeInit,
    HandshakeResponse,
    /// An encrypted plaintext datagram (or an empty keepalive).
    Transport,
}

impl Kind {
    pub fn byte(self) -> u8 {
        match self {
            Kind::Plain => VERSION,
            Kind::HandshakeInit => 2,
            Kind::HandshakeResponse => 3,
            Kind::Transport => 4,
        }
    }

    /// The kind of any sleeve datagram; the rest is checked by its own parser.
    pub fn of(buf: &[u8]) -> Result<Kind, DecodeError> {
        if buf.len() < 3 {
            return Err(DecodeError::ShortHeader);
        }
        if buf[0..2] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        match buf[2] {
            VERSION => Ok(Kind::Plain),
            2 => Ok(Kind::HandshakeInit),
            3 => Ok(Kind::HandshakeResponse),
            4 => Ok(Kind::Transport),
            _ => Err(DecodeError::BadVersion),
        }
    }

    pub fn encrypted(self) -> bool {
        self != Kind::Plain
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub network: NetworkId,
    pub sender: PeerId,
    pub count: u16,
}

/// A validated datagram borrowing its buffer. Iterating its frames cannot fail.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub header: Header,
    body: &'a [u8],
}

impl<'a> Datagram<'a> {
    /// Validates the whole datagram once; [`Datagram::frames`] then walks it unchecked.
    pub fn parse(buf: &'a [u8]) -> Result<Self, DecodeError> {
        let header = parse_header(buf)?;
        let body = &buf[HEADER_LEN..];
        let mut rest = body;
        for _ in 0..header.count {
            let (_, tail) = split_frame(rest)?;
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Datagram { header, body })
    }

    pub fn frames(&self) -> Frames<'a> {
        Frames {
            rest: self.body,
            left: self.header.count,
        }
    }
}

fn parse_header(buf: &[u8]) -> Result<Header, DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::ShortHeader);
    }
    if buf[0..2] != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if buf[2] != VERSION {
        return Err(DecodeError::BadVersion);
    }
    if buf[3] != 0 || buf[18..20] != [0, 0] {
        return Err(DecodeError::UnknownFlags);
    }
    Ok(Header {
        network: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        sender: u64::from_be_bytes(buf[8..16].try_into().expect("8 bytes")),
        count: u16::from_be_bytes([buf[16], buf[17]]),
    })
}

fn split_frame(buf: &[u8]) -> Result<(&[u8], &[u8]), DecodeError> {
    if buf.len() < LEN_PREFIX {
        return Err(DecodeError::Truncated);
    }
    let len = u16::from_be_bytes([buf[0], buf[1]]) as usize;
    if len < MIN_FRAME_LEN {
        return Err(DecodeError::RuntFrame);
    }
    if len > MAX_FRAME_LEN {
        return Err(DecodeError::FrameTooLarge);
    }
    let end = LEN_PREFIX + len;
    if buf.len() < end {
        return Err(DecodeError::Truncated);
    }
    Ok((&buf[LEN_PREFIX..end], &buf[end..]))
}

pub struct Frames<'a> {
    rest: &'a [u8],
    left: u16,
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        // Already validated by `Datagram::parse`.
        let (frame, rest) = split_frame(self.rest).ok()?;
        self.rest = rest;
        Some(frame)
    }
}

/// Why a frame could not be added to a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// The batch would exceed its target size; finish it and start another.
    Full,
    /// The frame can never be sent (runt or larger than [`MAX_FRAME_LEN`]).
    BadFrame,
}

/// Builds one datagram at a time into a buffer allocated once.
///
/// `target` is the soft datagram size (the path MTU budget): a frame that does not fit is
/// refused with [`PushError::Full`], except into an empty batch, which always takes one valid
/// frame (the kernel then fragments it).
pub struct BatchEncoder {
    buf: Vec<u8>,
    target: usize,
    count: u16,
}

impl BatchEncoder {
    pub fn new(target: usize) -> Self {
        let target = target.clamp(HEADER_LEN + LEN_PREFIX + MIN_FRAME_LEN, MAX_DATAGRAM);
        // An empty batch takes one frame of any valid size, so that bounds the buffer too.
        let mut buf = Vec::with_capacity(target.max(HEADER_LEN + LEN_PREFIX + MAX_FRAME_LEN));
        buf.resize(HEADER_LEN, 0);
        BatchEncoder {
            buf,
            target,
            count: 0,
        }
    }

    /// Starts a new datagram, discarding anything unfinished.
    pub fn begin(&mut self, network: NetworkId, sender: PeerId) {
        self.buf.clear();
        self.buf.extend_from_slice(&header(network, sender, 0));
        self.count = 0;
    }

    pub fn push(&mut self, frame: &[u8]) -> Result<(), PushError> {
        if frame.len() < MIN_FRAME_LEN || frame.len() > MAX_FRAME_LEN {
            return Err(PushError::BadFrame);
        }
        let grown = self.buf.len() + LEN_PREFIX + frame.len();
        if self.count > 0 && (grown > self.target || self.count == u16::MAX) {
            return Err(PushError::Full);
        }
        self.buf
            .extend_from_slice(&(frame.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(frame);
        self.count += 1;
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    /// The finished datagram. The batch stays as is until the next `begin`.
    pub fn finish(&mut self) -> &[u8] {
        set_count(&mut self.buf, self.count);
        &self.buf
    }
}

/// A datagram header with `count` frames to follow.
pub fn header(network: NetworkId, sender: PeerId, count: u16) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..2].copy_from_slice(&MAGIC);
    h[2] = VERSION;
    h[4..8].copy_from_slice(&network.to_be_bytes());
    h[8..16].copy_from_slice(&sender.to_be_bytes());
    h[16..18].copy_from_slice(&count.to_be_bytes());
    h
}

/// Patches the frame count of the datagram starting at `datagram[0]`.
pub fn set_count(datagram: &mut [u8], count: u16) {
    datagram[16..18].copy_from_slice(&count.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(n: usize, fill: u8) -> Vec<u8> {
        vec![fill; n]
    }

    fn encode(frames: &[Vec<u8>]) -> Vec<u8> {
        let mut enc = BatchEncoder::new(MAX_DATAGRAM);
        enc.begin(7, 0xdead_beef_0001);
        for f in frames {
            enc.push(f).unwrap();
        }
        enc.finish().to_vec()
    }

    #[test]
    fn round_trip_batch() {
        let frames = vec![
            frame(14, 1),
            frame(60, 2),
            frame(1514, 3),
            frame(MAX_FRAME_LEN, 4),
        ];
        let bytes = encode(&frames);
        let d = Datagram::parse(&bytes).unwrap();
        assert_eq!(
            d.header,
            Header {
                network: 7,
                sender: 0xdead_beef_0001,
                count: 4
            }
        );
        let got: Vec<&[u8]> = d.frames().collect();
        assert_eq!(got.len(), 4);
        for (g, f) in got.iter().zip(&frames) {
            assert_eq!(*g, &f[..]);
        }
    }

    #[test]
    fn empty_batch_is_valid() {
        let bytes = encode(&[]);
        assert_eq!(bytes.len(), HEADER_LEN);
        assert_eq!(Datagram::parse(&bytes).unwrap().frames().count(), 0);
    }

    #[test]
    fn every_truncation_is_rejected() {
        let bytes = encode(&[frame(14, 1), frame(100, 2), frame(60, 3)]);
        for cut in 0..bytes.len() {
            let err = Datagram::parse(&bytes[..cut]).unwrap_err();
            let want = if cut < HEADER_LEN {
                DecodeError::ShortHeader
            } else {
                DecodeError::Truncated
            };
            assert_eq!(err, want, "cut at {cut}");
        }
    }

    #[test]
    fn trailing_bytes_are_rejected() {
        let mut bytes = encode(&[frame(14, 1)]);
        bytes.push(0);
        assert_eq!(
            Datagram::parse(&bytes).unwrap_err(),
            DecodeError::TrailingBytes
        );
    }

    #[test]
    fn bad_header_fields() {
        let good = encode(&[frame(20, 1)]);
        let cases: [(usize, u8, DecodeError); 5] = [
            (0, b'X', DecodeError::BadMagic),
            (1, 0, DecodeError::BadMagic),
            (2, 2, DecodeError::BadVersion),
            (3, 1, DecodeError::UnknownFlags),
            (19, 1, DecodeError::UnknownFlags),
        ];
        for (at, value, want) in cases {
            let mut b = good.clone();
            b[at] = value;
            assert_eq!(
                Datagram::parse(&b).unwrap_err(),
                want,
                "byte {at} = {value}"
            );
        }
    }

    #[test]
    fn oversize_and_runt_frames_in_datagram() {
        let mut b = encode(&[]);
        b[17] = 1;
        b.extend_from_slice(&((MAX_FRAME_LEN + 1) as u16).to_be_bytes());
        b.resize(b.len() + MAX_FRAME_LEN + 1, 0);
        assert_eq!(Datagram::parse(&b).unwrap_err(), DecodeError::FrameTooLarge);

        let mut b = encode(&[]);
        b[17] = 1;
        b.extend_from_slice(&13u16.to_be_bytes());
        b.resize(b.len() + 13, 0);
        assert_eq!(Datagram::parse(&b).unwrap_err(), DecodeError::RuntFrame);
    }

    #[test]
    fn encoder_refuses_bad_frames() {
        let mut enc = BatchEncoder::new(MAX_DATAGRAM);
        enc.begin(1, 1);
        assert_eq!(
            enc.push(&frame(MAX_FRAME_LEN + 1, 0)),
            Err(PushError::BadFrame)
        );
        assert_eq!(enc.push(&frame(13, 0)), Err(PushError::BadFrame));
        assert!(enc.is_empty());
    }

    #[test]
    fn encoder_respects_target_but_always_takes_one_frame() {
        let mut enc = BatchEncoder::new(1472);
        enc.begin(1, 1);
        enc.push(&frame(1400, 0)).unwrap();
        assert_eq!(enc.push(&frame(60, 0)), Err(PushError::Full));
        enc.begin(1, 1);
        enc.push(&frame(1514, 0)).unwrap(); // bigger than target, but alone
        assert_eq!(enc.push(&frame(14, 0)), Err(PushError::Full));
        let bytes = enc.finish().to_vec();
        assert_eq!(Datagram::parse(&bytes).unwrap().header.count, 1);
    }

    #[test]
    fn encoder_batches_many_small_frames() {
        let mut enc = BatchEncoder::new(1472);
        enc.begin(9, 2);
        let mut n = 0;
        while enc.push(&frame(64, n as u8)).is_ok() {
            n += 1;
        }
        assert_eq!(n, (1472 - HEADER_LEN) / 66);
        let bytes = enc.finish().to_vec();
        assert!(bytes.len() <= 1472);
        let d = Datagram::parse(&bytes).unwrap();
        assert_eq!(d.frames().count(), n);
    }

    #[test]
    fn garbage_never_panics() {
        // A cheap deterministic fuzz: xorshift bytes, plus valid headers with random bodies.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let header = encode(&[]);
        for i in 0..20_000 {
            let len = (next() % 200) as usize;
            let mut b: Vec<u8> = (0..len).map(|_| next() as u8).collect();
            if i % 2 == 0 && b.len() >= HEADER_LEN {
                b[..16].copy_from_slice(&header[..16]);
                b[18] = 0;
                b[19] = 0;
            }
            if let Ok(d) = Datagram::parse(&b) {
                assert_eq!(d.frames().count(), d.header.count as usize);
            }
        }
    }
}
