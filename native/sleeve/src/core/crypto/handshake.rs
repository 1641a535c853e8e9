//! The Noise handshake, one round trip (snow does the protocol; we frame its two messages).
//!
//! `Noise_NNpsk0_25519_AESGCM_SHA256`: the PSK is mixed in before anything else, so message 1
//! already fails to decrypt under another password (no Diffie-Hellman is spent on it); the
//! ephemeral-ephemeral X25519 gives each session fresh keys, forgotten when it ends. The prologue
//! binds the initiator's and the responder's peer ids, so a message cannot be replayed to or
//! from another pair. Message 1 carries a timestamp that only grows, so the responder refuses a
//! replayed one (WireGuard's TAI64N, here nanoseconds).

use snow::{Builder, HandshakeState};
use zeroize::Zeroize;

use super::keys::{RecvKey, SendKey, KEY_LEN};
use super::message::{Init, Response, INIT_LEN, RESPONSE_LEN};
use super::{Limits, Psk};
use crate::core::PeerId;
use std::time::Duration;

const PATTERN: &str = "Noise_NNpsk0_25519_AESGCM_SHA256";
const PROLOGUE: &[u8] = b"weave sleeve v1";

/// Why a handshake message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// It failed to decrypt: the peer has another password (or it was forged or damaged).
    Decrypt,
    /// An initiation whose timestamp is not newer than the last one taken from that peer.
    Replay,
}

fn state(psk: &Psk, initiator: PeerId, responder: PeerId, we_initiate: bool) -> HandshakeState {
    let mut prologue = [0u8; PROLOGUE.len() + 16];
    prologue[..PROLOGUE.len()].copy_from_slice(PROLOGUE);
    prologue[PROLOGUE.len()..][..8].copy_from_slice(&initiator.to_be_bytes());
    prologue[PROLOGUE.len() + 8..].copy_from_slice(&responder.to_be_bytes());
    let builder = Builder::new(PATTERN.parse().expect("a known pattern"))
        .psk(0, psk.bytes())
        .expect("psk 0 fits NNpsk0")
        .prologue(&prologue)
        .expect("prologue set once");
    let built = if we_initiate {
        builder.build_initiator()
    } else {
        builder.build_responder()
    };
    built.expect("the default resolver has every primitive")
}

/// The two directions' keys, wiped once turned into [`SendKey`]/[`RecvKey`].
pub struct Keys {
    pub send: SendKey,
    pub recv: RecvKey,
}

fn split(
    hs: &mut HandshakeState,
    initiator: bool,
    remote_index: u32,
    now: Duration,
    limits: Limits,
) -> Keys {
    let (mut i2r, mut r2i) = hs.dangerously_get_raw_split();
    let (send, recv) = if initiator {
        (&mut i2r, &mut r2i)
    } else {
        (&mut r2i, &mut i2r)
    };
    let keys = Keys {
        send: SendKey::new(send, remote_index, now, limits),
        recv: RecvKey::new(recv),
    };
    debug_assert!(i2r == [0; KEY_LEN] && r2i == [0; KEY_LEN]);
    i2r.zeroize();
    r2i.zeroize();
    keys
}

/// Our handshake in flight: waiting for the response to `message`.
pub struct Initiation {
    state: HandshakeState,
    pub local_index: u32,
}

impl Initiation {
    /// Message 1 from `local` to `peer`, stamped `stamp` (nanoseconds of wall time, growing).
    pub fn start(
        psk: &Psk,
        local: PeerId,
        peer: PeerId,
        local_index: u32,
        stamp: u64,
    ) -> (Initiation, [u8; INIT_LEN]) {
        let mut state = state(psk, local, peer, true);
        let mut msg = [0u8; INIT_LEN];
        let header = Init {
            sender_index: local_index,
            sender: local,
        }
        .header();
        msg[..header.len()].copy_from_slice(&header);
        let n = state
            .write_message(&stamp.to_be_bytes(), &mut msg[header.len()..])
            .expect("room for message 1");
        debug_assert_eq!(header.len() + n, INIT_LEN);
        (Initiation { state, local_index }, msg)
    }

    /// Reads the response (its header already matched to us): the session's keys.
    pub fn complete(
        mut self,
        response: &Response,
        noise: &[u8],
        now: Duration,
        limits: Limits,
    ) -> Result<Keys, HandshakeError> {
        self.state
            .read_message(noise, &mut [])
            .map_err(|_| HandshakeError::Decrypt)?;
        Ok(split(
            &mut self.state,
            true,
            response.sender_index,
            now,
            limits,
        ))
    }
}

/// Message 1 read by the responder, before it decides whether to answer.
pub struct Received {
    state: HandshakeState,
    pub init: Init,
    pub stamp: u64,
}

impl Received {
    /// Reads message 1 from `peer` (header already parsed). Fails under another password.
    pub fn read(
        psk: &Psk,
        local: PeerId,
        init: Init,
        noise: &[u8],
    ) -> Result<Received, HandshakeError> {
        let mut state = state(psk, init.sender, local, false);
        let mut stamp = [0u8; 8];
        let n = state
            .read_message(noise, &mut stamp)
            .map_err(|_| HandshakeError::Decrypt)?;
        if n != stamp.len() {
            return Err(HandshakeError::Decrypt);
        }
        Ok(Received {
            state,
            init,
            stamp: u64::from_be_bytes(stamp),
        })
    }

    /// Message 2 and the session's keys.
    pub fn respond(
        mut self,
        local_index: u32,
        now: Duration,
        limits: Limits,
    ) -> (Keys, [u8; RESPONSE_LEN]) {
        let mut msg = [0u8; RESPONSE_LEN];
        let header = Response {
            sender_index: local_index,
            receiver_index: self.init.sender_index,
        }
        .header();
        msg[..header.len()].copy_from_slice(&header);
        let n = self
            .state
            .write_message(&[], &mut msg[header.len()..])
            .expect("room for message 2");
        debug_assert_eq!(header.len() + n, RESPONSE_LEN);
        let keys = split(&mut self.state, false, self.init.sender_index, now, limits);
        (keys, msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::crypto::message::{HEADER_LEN, OVERHEAD};

    fn psk(b: u8) -> Psk {
        Psk::from_bytes([b; 32])
    }

    fn handshake(a: &Psk, b: &Psk) -> Result<(Keys, Keys), HandshakeError> {
        let (init, m1) = Initiation::start(a, 1, 2, 11, 1000);
        let (hdr, noise) = Init::parse(&m1).unwrap();
        let received = Received::read(b, 2, hdr, noise)?;
        assert_eq!(received.stamp, 1000);
        let (responder, m2) = received.respond(22, Duration::ZERO, Limits::default());
        let (rhdr, rnoise) = Response::parse(&m2).unwrap();
        assert_eq!(rhdr.receiver_index, 11);
        let initiator = init.complete(&rhdr, rnoise, Duration::ZERO, Limits::default())?;
        Ok((initiator, responder))
    }

    #[test]
    fn both_sides_derive_matching_keys() {
        let (mut i, mut r) = handshake(&psk(1), &psk(1)).unwrap();
        for (from, to) in [(&i.send, &mut r.recv), (&r.send, &mut i.recv)] {
            let mut d = vec![0u8; 10 + OVERHEAD];
            d[HEADER_LEN..HEADER_LEN + 10].copy_from_slice(b"0123456789");
            from.seal(0, &mut d);
            assert_eq!(to.open(0, u64::MAX, &mut d).unwrap(), b"0123456789");
        }
    }

    #[test]
    fn another_password_fails_at_the_first_message() {
        assert_eq!(
            handshake(&psk(1), &psk(2)).err(),
            Some(HandshakeError::Decrypt)
        );
    }

    #[test]
    fn the_prologue_binds_the_peer_ids() {
        let (_, m1) = Initiation::start(&psk(1), 1, 2, 11, 1000);
        let (mut hdr, noise) = Init::parse(&m1).unwrap();
        // Claimed to come from peer 3, or read by peer 4: neither verifies.
        hdr.sender = 3;
        assert!(Received::read(&psk(1), 2, hdr, noise).is_err());
        hdr.sender = 1;
        assert!(Received::read(&psk(1), 4, hdr, noise).is_err());
        assert!(Received::read(&psk(1), 2, hdr, noise).is_ok());
    }
}
