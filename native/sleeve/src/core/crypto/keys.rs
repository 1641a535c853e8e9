//! One session's transport keys: AES-256-GCM (ring) with the Noise nonce of an explicit counter.
//!
//! [`SendKey`] is shared by every thread that sends to the peer: a train reserves its counters
//! with one atomic add and seals each datagram in place. [`RecvKey`] belongs to the receive
//! thread alone, with its replay window.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use zeroize::Zeroize;

use super::message::{Transport, HEADER_LEN, TAG_LEN};
use super::replay::ReplayWindow;
use super::Limits;

pub const KEY_LEN: usize = 32;

/// Noise's AESGCM nonce: four zero bytes, then the counter big-endian.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Takes the raw key and wipes it.
fn aead_key(raw: &mut [u8; KEY_LEN]) -> LessSafeKey {
    let key = UnboundKey::new(&AES_256_GCM, raw).expect("32-byte key");
    raw.zeroize();
    LessSafeKey::new(key)
}

/// Counters for one train, from [`SendKey::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved {
    pub first: u64,
    /// This train crossed the rekey threshold: the handshake thread should start a new one.
    pub rekey: bool,
}

pub struct SendKey {
    key: LessSafeKey,
    remote_index: u32,
    /// The next counter to use.
    next: AtomicU64,
    created: Duration,
    limits: Limits,
}

impl SendKey {
    pub(crate) fn new(
        raw: &mut [u8; KEY_LEN],
        remote_index: u32,
        created: Duration,
        limits: Limits,
    ) -> Self {
        SendKey {
            key: aead_key(raw),
            remote_index,
            next: AtomicU64::new(0),
            created,
            limits,
        }
    }

    /// Counters for `n` datagrams, or `None` once the key is past its limits (expired, or too
    /// many datagrams); those datagrams must not be sent.
    pub fn reserve(&self, n: usize, now: Duration) -> Option<Reserved> {
        if now.saturating_sub(self.created) >= self.limits.reject_after_time {
            return None;
        }
        let first = self.next.fetch_add(n as u64, Ordering::Relaxed);
        let end = first.saturating_add(n as u64);
        if end > self.limits.reject_after_messages {
            return None;
        }
        let rekey_at = self.limits.rekey_after_messages;
        Some(Reserved {
            first,
            rekey: first < rekey_at && end >= rekey_at,
        })
    }

    /// Datagrams sent (or reserved) so far.
    pub fn used(&self) -> u64 {
        self.next.load(Ordering::Relaxed)
    }

    /// Seals `datagram` in place: `HEADER_LEN` bytes of room, the plaintext, `TAG_LEN` of room.
    pub fn seal(&self, counter: u64, datagram: &mut [u8]) {
        let (head, rest) = datagram.split_at_mut(HEADER_LEN);
        head.copy_from_slice(
            &Transport {
                receiver_index: self.remote_index,
                counter,
            }
            .header(),
        );
        let (body, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let t = self
            .key
            .seal_in_place_separate_tag(nonce(counter), Aad::from(&*head), body)
            .expect("a datagram is far below AES-GCM's length limit");
        tag.copy_from_slice(t.as_ref());
    }
}

/// Why a transport datagram was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Seen already, or older than the window.
    Replay,
    /// Failed authentication: not from the holder of the key, or altered.
    Decrypt,
    /// The key is past its limits.
    Expired,
}

pub struct RecvKey {
    key: LessSafeKey,
    window: ReplayWindow,
}

impl RecvKey {
    pub(crate) fn new(raw: &mut [u8; KEY_LEN]) -> Self {
        RecvKey {
            key: aead_key(raw),
            window: ReplayWindow::default(),
        }
    }

    /// Authenticates and decrypts `datagram` (header, ciphertext, tag) in place, returning the
    /// plaintext inside it. The counter is checked before decryption and recorded after.
    pub fn open<'b>(
        &mut self,
        counter: u64,
        limit: u64,
        datagram: &'b mut [u8],
    ) -> Result<&'b mut [u8], OpenError> {
        if counter >= limit {
            return Err(OpenError::Expired);
        }
        if !self.window.fresh(counter) {
            return Err(OpenError::Replay);
        }
        let (head, rest) = datagram.split_at_mut(HEADER_LEN);
        let plain = self
            .key
            .open_in_place(nonce(counter), Aad::from(&*head), rest)
            .map_err(|_| OpenError::Decrypt)?;
        if !self.window.accept(counter) {
            return Err(OpenError::Replay);
        }
        Ok(plain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::crypto::message::OVERHEAD;

    fn pair() -> (SendKey, RecvKey) {
        let limits = Limits {
            rekey_after_messages: 10,
            reject_after_messages: 20,
            ..Limits::default()
        };
        let send = SendKey::new(&mut [3; KEY_LEN], 77, Duration::ZERO, limits);
        (send, RecvKey::new(&mut [3; KEY_LEN]))
    }

    fn sealed(send: &SendKey, counter: u64, plain: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; plain.len() + OVERHEAD];
        d[HEADER_LEN..HEADER_LEN + plain.len()].copy_from_slice(plain);
        send.seal(counter, &mut d);
        d
    }

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let (send, mut recv) = pair();
        let mut d = sealed(&send, 5, b"hello frames");
        assert_eq!(Transport::parse(&d).unwrap().receiver_index, 77);
        assert!(!d.windows(5).any(|w| w == b"hello"), "ciphertext only");
        let mut tampered = d.clone();
        tampered[HEADER_LEN + 1] ^= 1;
        assert_eq!(recv.open(5, 20, &mut tampered), Err(OpenError::Decrypt));
        let mut wrong_counter = d.clone();
        assert_eq!(
            recv.open(6, 20, &mut wrong_counter),
            Err(OpenError::Decrypt)
        );
        let mut again = d.clone();
        assert_eq!(recv.open(5, 20, &mut d).unwrap(), b"hello frames");
        assert_eq!(recv.open(5, 20, &mut again), Err(OpenError::Replay));
    }

    #[test]
    fn reserve_signals_rekey_once_and_refuses_past_the_limits() {
        let (send, _) = pair();
        let at = Duration::from_secs(1);
        assert_eq!(
            send.reserve(4, at),
            Some(Reserved {
                first: 0,
                rekey: false
            })
        );
        assert_eq!(
            send.reserve(8, at),
            Some(Reserved {
                first: 4,
                rekey: true
            })
        );
        assert_eq!(
            send.reserve(8, at),
            Some(Reserved {
                first: 12,
                rekey: false
            })
        );
        assert_eq!(send.reserve(1, at), None, "20 is the reject limit");
        let (fresh, _) = pair();
        assert_eq!(fresh.reserve(1, REJECT), None, "too old");
    }

    const REJECT: Duration = super::super::REJECT_AFTER_TIME;
}
