//! Encryption between routers. Sans-IO: buffers and time in, messages to send and verdicts out.
//!
//! - **Key**: the mesh password, stretched once by Argon2id into a 32-byte PSK ([`psk`]).
//! - **Handshake**: `Noise_NNpsk0_25519_AESGCM_SHA256` (snow) per pair of peers, one round trip:
//!   fresh X25519 keys on both sides, the PSK mixed in before the first message, both peer ids
//!   in the prologue. A peer with another password fails at the first message, before any
//!   Diffie-Hellman, and is marked so ([`handshake`]).
//! - **Transport**: the handshake's two keys, AES-256-GCM per datagram with an explicit 64-bit
//!   counter as nonce (as WireGuard does), the header as associated data, a replay window of
//!   8128 counters ([`replay`], [`keys`]). 32 bytes per datagram ([`message::OVERHEAD`]).
//! - **Sessions** ([`tunnel`], [`mesh`]): one state machine per peer, WireGuard's timers: the
//!   initiator rekeys after [`Limits::rekey_after_time`], either side after
//!   [`Limits::rekey_after_messages`]; keys are refused past the reject limits; the previous
//!   session still receives during the switch; a simultaneous initiation is settled by peer id
//!   (the higher id's wins). Handshakes start as soon as a peer is configured and are retried
//!   with backoff; until a session exists nothing is sent to that peer.

pub mod handshake;
pub mod keys;
pub mod mesh;
pub mod message;
pub mod psk;
pub mod replay;
pub mod tunnel;

#[cfg(test)]
mod tests;

use std::time::Duration;

pub use keys::SendKey;
pub use mesh::{Mesh, Out, PeerStatus, SessionState};
pub use psk::Psk;

/// The initiator of a session starts the next handshake this long after the last.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// The responder starts one itself if the initiator has not this long after the handshake.
pub const RESPONDER_REKEY_GRACE: Duration = Duration::from_secs(15);
/// Keys older than this are neither used nor accepted.
pub const REJECT_AFTER_TIME: Duration = Duration::from_secs(180);
/// Datagrams sent with one key before a new handshake starts (time usually comes first).
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 32;
/// Datagrams sent or accepted with one key, at most: far inside AES-GCM's bounds.
pub const REJECT_AFTER_MESSAGES: u64 = 1 << 36;
/// First wait for a handshake response; doubled per attempt up to [`RETRY_MAX`].
pub const RETRY_BASE: Duration = Duration::from_secs(1);
pub const RETRY_MAX: Duration = Duration::from_secs(30);
/// How long a session we answered may wait for the initiator's confirmation before a
/// handshake of ours is no longer held back by it (its response was lost, say).
pub const CONFIRM_WAIT: Duration = Duration::from_secs(5);
/// An initiation of ours at least this old when the peer's loses to it is sent again at once:
/// the peer evidently did not get it (it had not started yet, say).
pub const COLLISION_RESEND: Duration = Duration::from_millis(250);
/// How long a plaintext (or encrypted) datagram from a peer still shows in its status.
pub const SIGHTING_FRESH: Duration = Duration::from_secs(60);

/// Rekey and reject limits; the defaults are the constants above. Tests shorten them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub rekey_after_time: Duration,
    pub reject_after_time: Duration,
    pub rekey_after_messages: u64,
    pub reject_after_messages: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            rekey_after_time: REKEY_AFTER_TIME,
            reject_after_time: REJECT_AFTER_TIME,
            rekey_after_messages: REKEY_AFTER_MESSAGES,
            reject_after_messages: REJECT_AFTER_MESSAGES,
        }
    }
}

impl Limits {
    /// Rekeying must come before the keys are refused.
    pub fn valid(&self) -> bool {
        self.rekey_after_time > Duration::ZERO
            && self.rekey_after_time < self.reject_after_time
            && self.rekey_after_messages > 0
            && self.rekey_after_messages < self.reject_after_messages
    }
}
