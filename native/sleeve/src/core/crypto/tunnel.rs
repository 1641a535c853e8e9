//! One peer's sessions and handshake, as WireGuard's peer state: the `current` session sends
//! and receives, the `previous` one still receives until it expires (datagrams sealed before
//! the switch), and `next` is a session we answered that waits for the initiator's first
//! datagram (its confirmation) before we send on it.

use std::sync::Arc;
use std::time::Duration;

use super::handshake::{HandshakeError, Initiation, Keys, Received};
use super::keys::{OpenError, RecvKey, SendKey};
use super::message::{Init, Response, Transport, OVERHEAD};
use super::{
    Limits, Psk, COLLISION_RESEND, CONFIRM_WAIT, RESPONDER_REKEY_GRACE, RETRY_BASE, RETRY_MAX,
};
use crate::core::PeerId;

/// What the mesh lends a tunnel for one call.
pub struct Ctx<'a> {
    pub psk: &'a Psk,
    pub local: PeerId,
    pub limits: Limits,
}

/// A message a tunnel wants sent to its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Init,
    Response,
    /// An empty transport datagram: confirms a session we initiated.
    Keepalive,
}

/// Why a handshake message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeDrop {
    /// Another password (or forged): the peer is marked.
    Decrypt,
    /// An initiation not newer than the last one: replayed.
    Replay,
    /// A response to no initiation of ours in flight, or an initiation that lost a
    /// simultaneous initiation to ours.
    Ignored,
}

/// A handshake that completed: `rekey` when it replaced a session in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completed {
    pub rekey: bool,
}

/// Why a transport datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvDrop {
    Replay,
    Decrypt,
    Expired,
    /// No session of ours has that index (we restarted or it was replaced long ago).
    UnknownSession,
}

impl From<OpenError> for RecvDrop {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Replay => RecvDrop::Replay,
            OpenError::Decrypt => RecvDrop::Decrypt,
            OpenError::Expired => RecvDrop::Expired,
        }
    }
}

/// An accepted transport datagram: its plaintext (empty for a keepalive), and whether it
/// confirmed a session we answered (then in use for sending).
pub struct Opened<'b> {
    pub plain: &'b mut [u8],
    pub confirmed: Option<Completed>,
}

struct Session {
    local_index: u32,
    send: Arc<SendKey>,
    recv: RecvKey,
    created: Duration,
    initiator: bool,
}

impl Session {
    fn new(keys: Keys, local_index: u32, created: Duration, initiator: bool) -> Self {
        Session {
            local_index,
            send: Arc::new(keys.send),
            recv: keys.recv,
            created,
            initiator,
        }
    }

    fn expires(&self, limits: &Limits) -> Duration {
        self.created + limits.reject_after_time
    }

    /// When this session's side should start the next handshake by time.
    fn rekey_at(&self, limits: &Limits) -> Duration {
        let grace = if self.initiator {
            Duration::ZERO
        } else {
            RESPONDER_REKEY_GRACE
        };
        self.created + limits.rekey_after_time + grace
    }
}

struct Pending {
    initiation: Initiation,
    sent_at: Duration,
}

pub struct Tunnel {
    pub peer: PeerId,
    current: Option<Session>,
    previous: Option<Session>,
    next: Option<Session>,
    pending: Option<Pending>,
    /// Initiations sent since the last completed handshake (the retry backoff).
    attempts: u32,
    /// The newest initiation timestamp taken from the peer.
    peer_stamp: Option<u64>,
    /// Start a handshake at the next poll (a datagram for a session we do not have).
    wanted: bool,
    /// Send our initiation again at the next poll: the peer's lost to ours, and ours is old
    /// enough to have been lost itself.
    resend: bool,
    pub(super) wrong_password: bool,
    pub(super) last_handshake: Option<Duration>,
    pub(super) plaintext_seen: Option<Duration>,
    pub(super) encrypted_seen: Option<Duration>,
}

fn retry_delay(attempts: u32) -> Duration {
    RETRY_BASE
        .saturating_mul(1 << attempts.saturating_sub(1).min(16))
        .min(RETRY_MAX)
}

impl Tunnel {
    pub fn new(peer: PeerId) -> Self {
        Tunnel {
            peer,
            current: None,
            previous: None,
            next: None,
            pending: None,
            attempts: 0,
            peer_stamp: None,
            wanted: false,
            resend: false,
            wrong_password: false,
            last_handshake: None,
            plaintext_seen: None,
            encrypted_seen: None,
        }
    }

    pub fn send_key(&self) -> Option<&Arc<SendKey>> {
        self.current.as_ref().map(|s| &s.send)
    }

    pub fn established(&self) -> bool {
        self.current.is_some()
    }

    fn indices(&self) -> impl Iterator<Item = u32> + '_ {
        let sessions = [&self.current, &self.previous, &self.next];
        let pending = self.pending.as_ref().map(|p| p.initiation.local_index);
        sessions
            .into_iter()
            .flatten()
            .map(|s| s.local_index)
            .chain(pending)
    }

    /// A fresh index, distinct from this tunnel's others (lookups are per peer).
    fn new_index(&self, random: &mut impl FnMut() -> u32) -> u32 {
        loop {
            let i = random();
            if !self.indices().any(|used| used == i) {
                return i;
            }
        }
    }

    /// When a handshake of ours is due if none is in flight: at once without a session (or
    /// with one used up, or a datagram for one we lack), else at its rekey time. A session we
    /// answered defers it while its confirmation may still come.
    fn handshake_due(&self, limits: &Limits) -> Duration {
        let due = match &self.current {
            None => Duration::ZERO,
            Some(s) if self.wanted || s.send.used() >= limits.rekey_after_messages => {
                Duration::ZERO
            }
            Some(s) => s.rekey_at(limits),
        };
        match &self.next {
            Some(n) => due.max(n.created + CONFIRM_WAIT),
            None => due,
        }
    }

    /// The earliest time `poll` has something to do.
    pub fn deadline(&self, limits: &Limits) -> Duration {
        let expiries = [&self.current, &self.previous, &self.next]
            .into_iter()
            .flatten()
            .map(|s| s.expires(limits));
        let handshake = match &self.pending {
            Some(_) if self.resend => Duration::ZERO,
            Some(p) => p.sent_at + retry_delay(self.attempts),
            None => self.handshake_due(limits),
        };
        expiries.chain([handshake]).min().unwrap_or(Duration::MAX)
    }

    /// Timers: drops expired sessions, starts or retries a handshake. Returns whether the
    /// session used for sending changed.
    pub fn poll(
        &mut self,
        ctx: &Ctx,
        now: Duration,
        stamp: u64,
        random: &mut impl FnMut() -> u32,
        send: &mut impl FnMut(PeerId, Out, &[u8]),
    ) -> bool {
        let limits = &ctx.limits;
        let alive = |s: &Option<Session>| s.as_ref().is_some_and(|s| now < s.expires(limits));
        let had_current = self.current.is_some();
        for s in [&mut self.current, &mut self.previous, &mut self.next] {
            if !alive(s) {
                *s = None;
            }
        }
        let retry = self
            .pending
            .as_ref()
            .is_some_and(|p| self.resend || now >= p.sent_at + retry_delay(self.attempts));
        if retry || (self.pending.is_none() && now >= self.handshake_due(limits)) {
            self.wanted = false;
            self.resend = false;
            self.pending = None; // its index must not be reused while a response may arrive
            let index = self.new_index(random);
            let (initiation, msg) = Initiation::start(ctx.psk, ctx.local, self.peer, index, stamp);
            self.pending = Some(Pending {
                initiation,
                sent_at: now,
            });
            self.attempts = self.attempts.saturating_add(1);
            send(self.peer, Out::Init, &msg);
        }
        had_current != self.current.is_some()
    }

    /// An initiation from the peer: answered unless it lost a simultaneous initiation to ours
    /// (the higher peer id's initiation wins).
    pub fn on_init(
        &mut self,
        ctx: &Ctx,
        init: Init,
        noise: &[u8],
        now: Duration,
        random: &mut impl FnMut() -> u32,
        send: &mut impl FnMut(PeerId, Out, &[u8]),
    ) -> Result<Option<Completed>, HandshakeDrop> {
        let received = match Received::read(ctx.psk, ctx.local, init, noise) {
            Ok(r) => r,
            Err(HandshakeError::Decrypt | HandshakeError::Replay) => {
                // Start one of ours too: it fails there as well, so the peer shows the
                // mismatch even while we still hold a session from before its change.
                self.wrong_password = true;
                self.wanted = true;
                return Err(HandshakeDrop::Decrypt);
            }
        };
        if self.peer_stamp.is_some_and(|s| received.stamp <= s) {
            return Err(HandshakeDrop::Replay);
        }
        self.peer_stamp = Some(received.stamp);
        if let Some(p) = self.pending.as_ref().filter(|_| ctx.local > self.peer) {
            // The peer is up; if ours went out a while ago it may have been lost (sent before
            // the peer started): send it again now rather than after the backoff.
            self.resend = now.saturating_sub(p.sent_at) >= COLLISION_RESEND;
            return Err(HandshakeDrop::Ignored);
        }
        self.pending = None;
        let index = self.new_index(random);
        let (keys, msg) = received.respond(index, now, ctx.limits);
        send(self.peer, Out::Response, &msg);
        self.handshake_done(now);
        self.next = Some(Session::new(keys, index, now, false));
        // Nothing to keep sending on meanwhile: use it at once (the worst case, a lost
        // response, loses what would have been dropped anyway).
        if self.current.is_none() {
            return Ok(self.promote_next());
        }
        Ok(None)
    }

    /// The response to our initiation: the new session sends at once, and a keepalive
    /// confirms it to the responder.
    pub fn on_response(
        &mut self,
        ctx: &Ctx,
        response: Response,
        noise: &[u8],
        now: Duration,
        send: &mut impl FnMut(PeerId, Out, &[u8]),
    ) -> Result<Completed, HandshakeDrop> {
        let ours = self
            .pending
            .as_ref()
            .is_some_and(|p| p.initiation.local_index == response.receiver_index);
        if !ours {
            return Err(HandshakeDrop::Ignored);
        }
        let pending = self.pending.take().expect("checked above");
        let index = pending.initiation.local_index;
        let keys = match pending
            .initiation
            .complete(&response, noise, now, ctx.limits)
        {
            Ok(keys) => keys,
            Err(_) => {
                self.wrong_password = true;
                return Err(HandshakeDrop::Decrypt);
            }
        };
        self.handshake_done(now);
        self.next = None; // a colliding session we answered is superseded
        let session = Session::new(keys, index, now, true);
        let mut keepalive = [0u8; OVERHEAD];
        if let Some(r) = session.send.reserve(1, now) {
            session.send.seal(r.first, &mut keepalive);
            send(self.peer, Out::Keepalive, &keepalive);
        }
        let rekey = self.current.is_some();
        self.previous = self.current.replace(session);
        Ok(Completed { rekey })
    }

    fn handshake_done(&mut self, now: Duration) {
        self.attempts = 0;
        self.wrong_password = false;
        self.last_handshake = Some(now);
    }

    fn promote_next(&mut self) -> Option<Completed> {
        let next = self.next.take()?;
        let rekey = self.current.is_some();
        self.previous = self.current.replace(next);
        Some(Completed { rekey })
    }

    /// Authenticates and decrypts a transport datagram in place.
    pub fn open<'b>(
        &mut self,
        limits: &Limits,
        header: Transport,
        datagram: &'b mut [u8],
        now: Duration,
    ) -> Result<Opened<'b>, RecvDrop> {
        let index = header.receiver_index;
        let is = |s: &Option<Session>| s.as_ref().is_some_and(|s| s.local_index == index);
        let slot = if is(&self.current) {
            &mut self.current
        } else if is(&self.previous) {
            &mut self.previous
        } else if is(&self.next) {
            &mut self.next
        } else {
            self.wanted = true;
            return Err(RecvDrop::UnknownSession);
        };
        let session = slot.as_mut().expect("matched above");
        if now >= session.expires(limits) {
            return Err(RecvDrop::Expired);
        }
        let limit = limits.reject_after_messages;
        let plain = session.recv.open(header.counter, limit, datagram)?;
        let confirmed = if is(&self.next) {
            self.promote_next()
        } else {
            None
        };
        Ok(Opened { plain, confirmed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_cap() {
        let delays: Vec<u64> = (1..=8).map(|a| retry_delay(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(retry_delay(u32::MAX), RETRY_MAX);
    }
}
