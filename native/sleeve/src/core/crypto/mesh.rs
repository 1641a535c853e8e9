//! Every peer's [`Tunnel`], owned by the receive thread: it reads handshakes and transport
//! datagrams, runs the timers, and says when the keys the sending threads use have changed.
//! Without a password it only notes which peers send encrypted datagrams, for their status.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use super::message::{Init, Response, Transport};
use super::tunnel::{Completed, Ctx, HandshakeDrop, Opened, RecvDrop, Tunnel};
use super::{Limits, Psk, SendKey, SIGHTING_FRESH};
use crate::core::wire::{DecodeError, Kind};
use crate::core::PeerId;

pub use super::tunnel::Out;

/// What a peer's sessions look like from here, for status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Encryption is on and a session is in use.
    Established,
    /// Encryption is on; no session yet (the peer may be down, or have no password at all).
    Handshaking,
    /// The peer's handshakes fail here, or ours fail there: another password.
    WrongPassword,
    /// Encryption is on here; the peer sends plaintext (it has no password).
    PlaintextPeer,
    /// Encryption is off here; the peer sends encrypted datagrams (it has a password).
    EncryptedPeer,
    /// Encryption is off here and the peer sends plaintext, or nothing.
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerStatus {
    pub peer: PeerId,
    pub encrypting: bool,
    pub established: bool,
    /// Clock time of the last handshake completed with the peer.
    pub last_handshake: Option<Duration>,
    pub wrong_password: bool,
    pub plaintext_seen: Option<Duration>,
    pub encrypted_seen: Option<Duration>,
}

impl PeerStatus {
    pub fn state(&self, now: Duration) -> SessionState {
        let fresh = |t: Option<Duration>| t.is_some_and(|t| now.saturating_sub(t) < SIGHTING_FRESH);
        match self.encrypting {
            false if fresh(self.encrypted_seen) => SessionState::EncryptedPeer,
            false => SessionState::Off,
            true if self.wrong_password => SessionState::WrongPassword,
            true if self.established => SessionState::Established,
            true if fresh(self.plaintext_seen) => SessionState::PlaintextPeer,
            true => SessionState::Handshaking,
        }
    }
}

/// A handshake message handled: a session now sends (`completed`), or only an answer went out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    Answered,
    Completed(Completed),
}

/// Why a handshake message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeRefused {
    Malformed(DecodeError),
    /// The initiation names another sender than the peer at its address.
    SenderMismatch,
    Dropped(HandshakeDrop),
}

pub struct Mesh {
    local: PeerId,
    psk: Option<Arc<Psk>>,
    limits: Limits,
    tunnels: Vec<Tunnel>,
    slots: HashMap<PeerId, usize>,
    /// The last initiation timestamp sent: each is newer, whatever the wall clock does.
    stamp: u64,
    deadline: Duration,
    keys_changed: bool,
    status_changed: bool,
}

impl Mesh {
    pub fn new(local: PeerId) -> Self {
        Mesh {
            local,
            psk: None,
            limits: Limits::default(),
            tunnels: Vec::new(),
            slots: HashMap::new(),
            stamp: 0,
            deadline: Duration::MAX,
            keys_changed: false,
            status_changed: false,
        }
    }

    /// Takes a configuration. A new password (or none, or a new local id) ends every session;
    /// otherwise peers keep theirs, new peers start with none, departed ones are forgotten.
    pub fn configure(
        &mut self,
        local: PeerId,
        psk: Option<Arc<Psk>>,
        limits: Limits,
        peers: &[PeerId],
    ) {
        if local != self.local || psk != self.psk || limits != self.limits {
            self.local = local;
            self.psk = psk;
            self.limits = limits;
            self.tunnels.clear();
        }
        let mut old: HashMap<PeerId, Tunnel> =
            self.tunnels.drain(..).map(|t| (t.peer, t)).collect();
        self.tunnels = peers
            .iter()
            .map(|p| old.remove(p).unwrap_or_else(|| Tunnel::new(*p)))
            .collect();
        self.slots = self
            .tunnels
            .iter()
            .enumerate()
            .map(|(i, t)| (t.peer, i))
            .collect();
        self.keys_changed = true;
        self.status_changed = true;
        self.update_deadline();
    }

    pub fn encrypting(&self) -> bool {
        self.psk.is_some()
    }

    /// The tunnel slot of a peer, stable until the next `configure`.
    pub fn slot(&self, peer: PeerId) -> Option<usize> {
        self.slots.get(&peer).copied()
    }

    /// When `poll` next has work (`Duration::MAX`: none).
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    fn update_deadline(&mut self) {
        self.deadline = match self.psk {
            None => Duration::MAX,
            Some(_) => self
                .tunnels
                .iter()
                .map(|t| t.deadline(&self.limits))
                .min()
                .unwrap_or(Duration::MAX),
        };
    }

    /// Runs every peer's timers; `wall` (nanoseconds since the epoch) stamps initiations.
    pub fn poll(&mut self, now: Duration, wall: u64, send: &mut impl FnMut(PeerId, Out, &[u8])) {
        let Some(psk) = self.psk.clone() else {
            return;
        };
        let ctx = Ctx {
            psk: &psk,
            local: self.local,
            limits: self.limits,
        };
        let stamp = wall.max(self.stamp + 1);
        let mut sent = false;
        let mut count = |peer, out, bytes: &[u8]| {
            sent |= out == Out::Init;
            send(peer, out, bytes)
        };
        for t in &mut self.tunnels {
            self.keys_changed |= t.poll(&ctx, now, stamp, &mut random_u32, &mut count);
        }
        if sent {
            self.stamp = stamp;
        }
        self.status_changed = true;
        self.update_deadline();
    }

    /// A handshake message (initiation or response) from the peer in `slot`.
    pub fn on_handshake(
        &mut self,
        slot: usize,
        kind: Kind,
        bytes: &[u8],
        now: Duration,
        send: &mut impl FnMut(PeerId, Out, &[u8]),
    ) -> Result<Handshake, HandshakeRefused> {
        let Some(psk) = self.psk.clone() else {
            self.saw_encrypted(slot, now);
            return Err(HandshakeRefused::Dropped(HandshakeDrop::Ignored));
        };
        let ctx = Ctx {
            psk: &psk,
            local: self.local,
            limits: self.limits,
        };
        let tunnel = &mut self.tunnels[slot];
        let result = match kind {
            Kind::HandshakeInit => {
                let (init, noise) = Init::parse(bytes).map_err(HandshakeRefused::Malformed)?;
                if init.sender != tunnel.peer {
                    return Err(HandshakeRefused::SenderMismatch);
                }
                tunnel
                    .on_init(&ctx, init, noise, now, &mut random_u32, send)
                    .map(|c| c.map_or(Handshake::Answered, Handshake::Completed))
            }
            _ => {
                let (response, noise) =
                    Response::parse(bytes).map_err(HandshakeRefused::Malformed)?;
                tunnel
                    .on_response(&ctx, response, noise, now, send)
                    .map(Handshake::Completed)
            }
        };
        if matches!(result, Ok(Handshake::Completed(_))) {
            self.keys_changed = true;
        }
        self.status_changed = true;
        self.update_deadline();
        result.map_err(HandshakeRefused::Dropped)
    }

    /// A transport datagram from the peer in `slot`, decrypted in place. Encryption must be on.
    pub fn open<'b>(
        &mut self,
        slot: usize,
        datagram: &'b mut [u8],
        now: Duration,
    ) -> Result<Opened<'b>, Result<RecvDrop, DecodeError>> {
        let header = Transport::parse(datagram).map_err(Err)?;
        if self.psk.is_none() {
            return Err(Ok(RecvDrop::UnknownSession));
        }
        let tunnel = &mut self.tunnels[slot];
        let opened = tunnel.open(&self.limits, header, datagram, now);
        match &opened {
            Ok(Opened {
                confirmed: Some(_), ..
            }) => {
                self.keys_changed = true;
                self.status_changed = true;
                self.deadline = self.deadline.min(tunnel.deadline(&self.limits));
            }
            Err(RecvDrop::UnknownSession) => self.deadline = Duration::ZERO,
            _ => {}
        }
        opened.map_err(Ok)
    }

    /// The peer sent plaintext while we encrypt (the caller drops it).
    pub fn saw_plaintext(&mut self, slot: usize, now: Duration) {
        let seen = &mut self.tunnels[slot].plaintext_seen;
        self.status_changed |= seen.is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
        *seen = Some(now);
    }

    /// The peer sent an encrypted datagram while we do not encrypt (the caller drops it).
    pub fn saw_encrypted(&mut self, slot: usize, now: Duration) {
        let seen = &mut self.tunnels[slot].encrypted_seen;
        self.status_changed |= seen.is_none_or(|t| now.saturating_sub(t) >= Duration::from_secs(1));
        *seen = Some(now);
    }

    /// True once after the keys to send with changed: time to republish [`Mesh::send_keys`].
    pub fn take_keys_changed(&mut self) -> bool {
        std::mem::take(&mut self.keys_changed)
    }

    /// True once after anything in [`Mesh::status`] changed.
    pub fn take_status_changed(&mut self) -> bool {
        std::mem::take(&mut self.status_changed)
    }

    /// The key each established peer is sent with.
    pub fn send_keys(&self) -> HashMap<PeerId, Arc<SendKey>> {
        self.tunnels
            .iter()
            .filter_map(|t| Some((t.peer, t.send_key()?.clone())))
            .collect()
    }

    pub fn status(&self) -> Vec<PeerStatus> {
        self.tunnels
            .iter()
            .map(|t| PeerStatus {
                peer: t.peer,
                encrypting: self.encrypting(),
                established: t.established(),
                last_handshake: t.last_handshake,
                wrong_password: t.wrong_password,
                plaintext_seen: t.plaintext_seen,
                encrypted_seen: t.encrypted_seen,
            })
            .collect()
    }
}

fn random_u32() -> u32 {
    use ring::rand::{SecureRandom, SystemRandom};
    let mut b = [0u8; 4];
    SystemRandom::new()
        .fill(&mut b)
        .expect("the OS random source");
    u32::from_ne_bytes(b)
}
