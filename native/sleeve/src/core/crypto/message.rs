//! The encrypted mesh's messages. Every one starts with the sleeve magic and its [`Kind`] byte
//! (then a zero byte), so a host tells them from plaintext datagrams, and counts the ones it
//! does not expect:
//!
//! ```text
//! init      (72) | WV 2 0 | sender index u32   | sender peer id u64 | Noise message 1 (56) |
//! response  (64) | WV 3 0 | sender index u32   | receiver index u32 | 0 u32 | Noise message 2 (48) |
//! transport      | WV 4 0 | receiver index u32 | counter u64        | AES-GCM(plaintext datagram) | tag (16) |
//! ```
//! Integers big-endian. Indices are chosen by each side per session, so the receiver finds its
//! keys without trying them; a transport datagram's header is its associated data.

use super::super::wire::{DecodeError, Kind, MAGIC};
use crate::core::PeerId;

pub const HEADER_LEN: usize = 16;
pub const TAG_LEN: usize = 16;
/// What encryption adds to a plaintext datagram.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Noise NNpsk0 message 1: ephemeral key (32), encrypted timestamp (8) and its tag (16).
pub const INIT_NOISE_LEN: usize = 32 + 8 + TAG_LEN;
/// Noise NNpsk0 message 2: ephemeral key (32), the tag of an empty payload (16).
pub const RESPONSE_NOISE_LEN: usize = 32 + TAG_LEN;
pub const INIT_LEN: usize = HEADER_LEN + INIT_NOISE_LEN;
pub const RESPONSE_LEN: usize = HEADER_LEN + RESPONSE_NOISE_LEN;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Init {
    pub sender_index: u32,
    pub sender: PeerId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Response {
    pub sender_index: u32,
    pub receiver_index: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    pub receiver_index: u32,
    pub counter: u64,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Checks magic, kind, the zero byte and the exact length (`None`: at least a header).
fn check(buf: &[u8], kind: Kind, len: Option<usize>) -> Result<(), DecodeError> {
    if Kind::of(buf)? != kind {
        return Err(DecodeError::BadVersion);
    }
    let min = len.unwrap_or(HEADER_LEN + TAG_LEN);
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::ShortHeader);
    }
    if buf[3] != 0 {
        return Err(DecodeError::UnknownFlags);
    }
    if buf.len() < min {
        return Err(DecodeError::Truncated);
    }
    if len.is_some_and(|l| buf.len() > l) {
        return Err(DecodeError::TrailingBytes);
    }
    Ok(())
}

fn header(kind: Kind, a: u32, b: u64) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h[0..2].copy_from_slice(&MAGIC);
    h[2] = kind.byte();
    h[4..8].copy_from_slice(&a.to_be_bytes());
    h[8..16].copy_from_slice(&b.to_be_bytes());
    h
}

impl Init {
    pub fn parse(buf: &[u8]) -> Result<(Init, &[u8]), DecodeError> {
        check(buf, Kind::HandshakeInit, Some(INIT_LEN))?;
        let init = Init {
            sender_index: u32_at(buf, 4),
            sender: u64_at(buf, 8),
        };
        Ok((init, &buf[HEADER_LEN..]))
    }

    pub fn header(&self) -> [u8; HEADER_LEN] {
        header(Kind::HandshakeInit, self.sender_index, self.sender)
    }
}

impl Response {
    pub fn parse(buf: &[u8]) -> Result<(Response, &[u8]), DecodeError> {
        check(buf, Kind::HandshakeResponse, Some(RESPONSE_LEN))?;
        if u32_at(buf, 12) != 0 {
            return Err(DecodeError::UnknownFlags);
        }
        let response = Response {
            sender_index: u32_at(buf, 4),
            receiver_index: u32_at(buf, 8),
        };
        Ok((response, &buf[HEADER_LEN..]))
    }

    pub fn header(&self) -> [u8; HEADER_LEN] {
        let b = u64::from(self.receiver_index) << 32;
        header(Kind::HandshakeResponse, self.sender_index, b)
    }
}

impl Transport {
    /// The header of a transport datagram at least a header and a tag long.
    pub fn parse(buf: &[u8]) -> Result<Transport, DecodeError> {
        check(buf, Kind::Transport, None)?;
        Ok(Transport {
            receiver_index: u32_at(buf, 4),
            counter: u64_at(buf, 8),
        })
    }

    pub fn header(&self) -> [u8; HEADER_LEN] {
        header(Kind::Transport, self.receiver_index, self.counter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        let init = Init {
            sender_index: 0xdead_beef,
            sender: 0x0242_ac11_0002,
        };
        let mut b = init.header().to_vec();
        b.resize(INIT_LEN, 7);
        assert_eq!(Init::parse(&b).unwrap(), (init, &[7u8; INIT_NOISE_LEN][..]));

        let r = Response {
            sender_index: 1,
            receiver_index: 0xffff_fffe,
        };
        let mut b = r.header().to_vec();
        b.resize(RESPONSE_LEN, 0);
        assert_eq!(Response::parse(&b).unwrap().0, r);

        let t = Transport {
            receiver_index: 9,
            counter: u64::MAX - 1,
        };
        let mut b = t.header().to_vec();
        b.resize(OVERHEAD, 0);
        assert_eq!(Transport::parse(&b).unwrap(), t);
        assert_eq!(Kind::of(&b), Ok(Kind::Transport));
    }

    #[test]
    fn wrong_lengths_kinds_and_flags_are_refused() {
        let mut init = Init {
            sender_index: 1,
            sender: 2,
        }
        .header()
        .to_vec();
        init.resize(INIT_LEN, 0);
        assert_eq!(
            Init::parse(&init[..INIT_LEN - 1]).unwrap_err(),
            DecodeError::Truncated
        );
        let mut long = init.clone();
        long.push(0);
        assert_eq!(Init::parse(&long).unwrap_err(), DecodeError::TrailingBytes);
        assert_eq!(Response::parse(&init).unwrap_err(), DecodeError::BadVersion);
        assert_eq!(
            Init::parse(&init[..10]).unwrap_err(),
            DecodeError::ShortHeader
        );
        init[3] = 1;
        assert_eq!(Init::parse(&init).unwrap_err(), DecodeError::UnknownFlags);
        let t = Transport {
            receiver_index: 1,
            counter: 2,
        }
        .header();
        assert_eq!(Transport::parse(&t).unwrap_err(), DecodeError::Truncated);
    }
}
