//! Two or three meshes talking through an in-memory wire, time stepped by hand.

use std::sync::Arc;
use std::time::Duration;

use super::keys::SendKey;
use super::mesh::{Handshake, HandshakeRefused, Mesh, Out, SessionState};
use super::message::{HEADER_LEN, OVERHEAD};
use super::tunnel::{Completed, HandshakeDrop, RecvDrop};
use super::{Limits, Psk, REJECT_AFTER_TIME, REKEY_AFTER_TIME, RESPONDER_REKEY_GRACE};
use crate::core::wire::Kind;
use crate::core::PeerId;

const EPOCH_NS: u64 = 1_700_000_000_000_000_000;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[derive(Debug, PartialEq)]
enum Got {
    Handshake(Result<Handshake, HandshakeRefused>),
    Data(Result<Vec<u8>, RecvDrop>),
}

struct Host {
    id: PeerId,
    mesh: Mesh,
    /// Sent and not delivered yet: (to, what, bytes).
    wire: Vec<(PeerId, Out, Vec<u8>)>,
}

impl Host {
    fn new(id: PeerId, psk: Option<&Psk>, peers: &[PeerId], limits: Limits) -> Host {
        let mut mesh = Mesh::new(id);
        mesh.configure(id, psk.cloned().map(Arc::new), limits, peers);
        Host {
            id,
            mesh,
            wire: Vec::new(),
        }
    }

    fn poll(&mut self, now: Duration) {
        let wire = &mut self.wire;
        let wall = EPOCH_NS + now.as_nanos() as u64;
        self.mesh.poll(now, wall, &mut |to, out, b| {
            wire.push((to, out, b.to_vec()))
        });
    }

    fn key(&self, to: PeerId) -> Option<Arc<SendKey>> {
        self.mesh.send_keys().remove(&to)
    }

    fn seal(&self, to: PeerId, plain: &[u8], now: Duration) -> Option<Vec<u8>> {
        seal_with(&*self.key(to)?, plain, now)
    }

    fn deliver(&mut self, from: PeerId, mut bytes: Vec<u8>, now: Duration) -> Got {
        let slot = self.mesh.slot(from).expect("a configured peer");
        let wire = &mut self.wire;
        let kind = Kind::of(&bytes).expect("a sleeve message");
        match kind {
            Kind::HandshakeInit | Kind::HandshakeResponse => Got::Handshake(
                self.mesh
                    .on_handshake(slot, kind, &bytes, now, &mut |to, out, b| {
                        wire.push((to, out, b.to_vec()))
                    }),
            ),
            Kind::Transport => Got::Data(match self.mesh.open(slot, &mut bytes, now) {
                Ok(o) => Ok(o.plain.to_vec()),
                Err(e) => Err(e.expect("well-formed")),
            }),
            Kind::Plain => unreachable!("meshes send no plaintext"),
        }
    }

    fn status(&self, peer: PeerId, now: Duration) -> SessionState {
        let s = self.mesh.status();
        s.iter()
            .find(|s| s.peer == peer)
            .expect("a peer")
            .state(now)
    }
}

fn seal_with(key: &SendKey, plain: &[u8], now: Duration) -> Option<Vec<u8>> {
    let r = key.reserve(1, now)?;
    let mut d = vec![0u8; plain.len() + OVERHEAD];
    d[HEADER_LEN..HEADER_LEN + plain.len()].copy_from_slice(plain);
    key.seal(r.first, &mut d);
    Some(d)
}

/// Delivers everything in flight, both ways, until nothing is left; returns what arrived.
fn exchange(hosts: &mut [&mut Host], now: Duration) -> Vec<(PeerId, PeerId, Out, Got)> {
    let mut log = Vec::new();
    loop {
        let mut moved = false;
        for i in 0..hosts.len() {
            let sent = std::mem::take(&mut hosts[i].wire);
            let from = hosts[i].id;
            for (to, out, bytes) in sent {
                moved = true;
                if let Some(h) = hosts.iter_mut().find(|h| h.id == to) {
                    log.push((from, to, out, h.deliver(from, bytes, now)));
                }
            }
        }
        if !moved {
            return log;
        }
    }
}

fn psk(b: u8) -> Psk {
    Psk::from_bytes([b; 32])
}

fn pair(limits: Limits) -> (Host, Host) {
    let a = Host::new(1, Some(&psk(1)), &[2], limits);
    let b = Host::new(2, Some(&psk(1)), &[1], limits);
    (a, b)
}

fn established(a: &mut Host, b: &mut Host, now: Duration) {
    a.poll(now);
    exchange(&mut [a, b], now);
    assert_eq!(a.status(2, now), SessionState::Established);
    assert_eq!(b.status(1, now), SessionState::Established);
}

/// `from` seals `plain` and `to` opens it.
fn carry(from: &mut Host, to: &mut Host, plain: &[u8], now: Duration) -> Got {
    let d = from.seal(to.id, plain, now).expect("a send key");
    to.deliver(from.id, d, now)
}

fn ok(plain: &[u8]) -> Got {
    Got::Data(Ok(plain.to_vec()))
}

/// A datagram crosses each way.
fn talks(a: &mut Host, b: &mut Host, now: Duration) {
    assert_eq!(carry(a, b, b"ping", now), ok(b"ping"));
    assert_eq!(carry(b, a, b"pong", now), ok(b"pong"));
}

#[test]
fn a_handshake_gives_both_sides_a_session_and_data_crosses_both_ways() {
    let (mut a, mut b) = pair(Limits::default());
    let t = Duration::ZERO;
    assert_eq!(a.status(2, t), SessionState::Handshaking);
    assert!(
        a.key(2).is_none(),
        "nothing can be sent before a session exists"
    );
    a.poll(t);
    let log = exchange(&mut [&mut a, &mut b], t);
    let what: Vec<(PeerId, Out)> = log.iter().map(|(from, _, out, _)| (*from, *out)).collect();
    assert_eq!(
        what,
        [(1, Out::Init), (2, Out::Response), (1, Out::Keepalive)]
    );
    talks(&mut a, &mut b, t);
    assert_eq!(b.status(1, t), SessionState::Established);
}

#[test]
fn a_simultaneous_initiation_ends_with_one_session_each_way() {
    let (mut a, mut b) = pair(Limits::default());
    let t = Duration::ZERO;
    a.poll(t);
    b.poll(t);
    let log = exchange(&mut [&mut a, &mut b], t);
    // B (the higher id) ignores A's initiation; A answers B's.
    assert!(log.contains(&(
        1,
        2,
        Out::Init,
        Got::Handshake(Err(HandshakeRefused::Dropped(HandshakeDrop::Ignored)))
    )));
    let responses = log.iter().filter(|l| l.2 == Out::Response).count();
    assert_eq!(responses, 1);
    talks(&mut a, &mut b, t);
    // Nothing else pending: no retry later either.
    a.poll(secs(5));
    b.poll(secs(5));
    assert!(a.wire.is_empty() && b.wire.is_empty());
}

#[test]
fn a_peer_that_starts_late_is_answered_at_once_by_the_higher_id() {
    let (mut a, mut b) = pair(Limits::default());
    b.poll(Duration::ZERO);
    b.wire.clear(); // lost: A was not up yet
    let t = Duration::from_millis(400);
    a.poll(t);
    exchange(&mut [&mut a, &mut b], t);
    assert_eq!(
        b.mesh.deadline(),
        t - t,
        "B resends rather than waiting for its backoff"
    );
    b.poll(t);
    exchange(&mut [&mut a, &mut b], t);
    talks(&mut a, &mut b, t);
}

#[test]
fn another_password_gets_no_session_and_shows_on_both_sides() {
    let mut a = Host::new(1, Some(&psk(1)), &[2], Limits::default());
    let mut b = Host::new(2, Some(&psk(2)), &[1], Limits::default());
    let t = Duration::ZERO;
    a.poll(t);
    b.poll(t);
    let log = exchange(&mut [&mut a, &mut b], t);
    let failed = Got::Handshake(Err(HandshakeRefused::Dropped(HandshakeDrop::Decrypt)));
    assert_eq!(log.iter().filter(|l| l.3 == failed).count(), 2, "{log:?}");
    assert!(a.key(2).is_none() && b.key(1).is_none());
    assert_eq!(a.status(2, t), SessionState::WrongPassword);
    assert_eq!(b.status(1, t), SessionState::WrongPassword);
    // Retries back off: one more initiation after a second, none in between.
    a.poll(Duration::from_millis(900));
    assert!(a.wire.is_empty());
    a.poll(secs(1));
    assert_eq!(a.wire.len(), 1);
}

#[test]
fn a_replayed_datagram_is_dropped_and_reordering_is_not() {
    let (mut a, mut b) = pair(Limits::default());
    let t = Duration::ZERO;
    established(&mut a, &mut b, t);
    let sealed: Vec<Vec<u8>> = (0..10u8).map(|i| a.seal(2, &[i; 20], t).unwrap()).collect();
    for (i, d) in sealed.iter().enumerate().rev() {
        assert_eq!(
            b.deliver(1, d.clone(), t),
            ok(&[i as u8; 20]),
            "reordered {i}"
        );
    }
    assert_eq!(
        b.deliver(1, sealed[3].clone(), t),
        Got::Data(Err(RecvDrop::Replay))
    );
    let mut forged = a.seal(2, b"abc", t).unwrap();
    forged[HEADER_LEN] ^= 0x80;
    assert_eq!(b.deliver(1, forged, t), Got::Data(Err(RecvDrop::Decrypt)));
}

#[test]
fn a_replayed_initiation_is_refused() {
    let (mut a, mut b) = pair(Limits::default());
    let t = Duration::ZERO;
    a.poll(t);
    let (_, _, init) = a.wire[0].clone();
    exchange(&mut [&mut a, &mut b], t);
    let replay = b.deliver(1, init, secs(1));
    assert_eq!(
        replay,
        Got::Handshake(Err(HandshakeRefused::Dropped(HandshakeDrop::Replay)))
    );
    assert!(b.wire.is_empty(), "no answer to a replay");
}

#[test]
fn rekey_after_messages_keeps_traffic_flowing() {
    let limits = Limits {
        rekey_after_messages: 10,
        reject_after_messages: 1000,
        ..Limits::default()
    };
    let (mut a, mut b) = pair(limits);
    let t = Duration::ZERO;
    established(&mut a, &mut b, t);
    let old = a.key(2).unwrap();
    // The keepalive used counter 0: nine more reach the threshold, the sender is told.
    for i in 0..8u8 {
        assert_eq!(carry(&mut a, &mut b, &[i; 30], t), ok(&[i; 30]));
    }
    assert!(old.reserve(1, t).unwrap().rekey);
    let late = seal_with(&old, b"sealed before the switch", t).unwrap();
    a.poll(t); // woken by the sender
    let log = exchange(&mut [&mut a, &mut b], t);
    assert!(log
        .iter()
        .any(|l| l.3 == Got::Handshake(Ok(Handshake::Completed(Completed { rekey: true })))));
    let new = a.key(2).unwrap();
    assert!(!Arc::ptr_eq(&old, &new));
    assert_eq!(
        b.deliver(1, late, t),
        ok(b"sealed before the switch"),
        "the previous session still receives"
    );
    talks(&mut a, &mut b, t);
}

#[test]
fn the_initiator_rekeys_on_time_and_old_keys_expire() {
    let (mut a, mut b) = pair(Limits::default());
    established(&mut a, &mut b, Duration::ZERO);
    let old_b = b.key(1).unwrap();
    let before = REKEY_AFTER_TIME - secs(1);
    a.poll(before);
    b.poll(before);
    assert!(a.wire.is_empty() && b.wire.is_empty());
    assert_eq!(a.mesh.deadline(), REKEY_AFTER_TIME);

    let t = REKEY_AFTER_TIME;
    a.poll(t);
    b.poll(t);
    assert_eq!(a.wire.len(), 1, "the initiator starts it");
    assert!(b.wire.is_empty(), "the responder waits for its grace");
    let (_, _, init) = a.wire.remove(0);
    b.deliver(1, init, t);
    // B answered, but sends on the old session until A confirms the new one.
    assert!(Arc::ptr_eq(&b.key(1).unwrap(), &old_b));
    assert_eq!(carry(&mut b, &mut a, b"mid-switch", t), ok(b"mid-switch"));
    exchange(&mut [&mut a, &mut b], t);
    assert!(
        !Arc::ptr_eq(&b.key(1).unwrap(), &old_b),
        "confirmed by A's keepalive"
    );
    assert_eq!(carry(&mut b, &mut a, b"new", t), ok(b"new"));

    // The old session's keys are refused once past their age, sending and receiving.
    let expired = REJECT_AFTER_TIME;
    assert!(old_b.reserve(1, expired).is_none());
    let old_datagram = seal_with(&old_b, b"x", t).unwrap();
    assert_eq!(
        a.deliver(2, old_datagram, expired),
        Got::Data(Err(RecvDrop::Expired))
    );
    assert_eq!(carry(&mut a, &mut b, b"still", expired), ok(b"still"));
}

#[test]
fn an_unconfirmed_answer_holds_back_our_own_handshake_only_briefly() {
    let limits = Limits {
        rekey_after_messages: 5,
        ..Limits::default()
    };
    let (mut a, mut b) = pair(limits);
    let t = Duration::ZERO;
    established(&mut a, &mut b, t);
    a.mesh.configure(1, Some(Arc::new(psk(1))), limits, &[2]); // unchanged: sessions kept
                                                               // A rekeys; B answers, but the response is lost: B holds a session it cannot use yet.
    a.poll(REKEY_AFTER_TIME);
    let (_, _, init) = a.wire.remove(0);
    b.deliver(1, init, REKEY_AFTER_TIME);
    b.wire.clear();
    // B's own count runs out meanwhile: it waits for the confirmation a few seconds, then
    // starts its own handshake.
    let key = b.key(1).unwrap();
    while key.used() < 5 {
        seal_with(&key, b"x", REKEY_AFTER_TIME).unwrap();
    }
    b.poll(REKEY_AFTER_TIME);
    assert!(b.wire.is_empty());
    let later = REKEY_AFTER_TIME + super::CONFIRM_WAIT;
    assert_eq!(b.mesh.deadline(), later);
    b.poll(later);
    assert_eq!(b.wire.len(), 1);
    a.wire.clear();
    exchange(&mut [&mut a, &mut b], later);
    talks(&mut a, &mut b, later);
}

#[test]
fn the_responder_rekeys_if_the_initiator_does_not() {
    let (mut a, mut b) = pair(Limits::default());
    established(&mut a, &mut b, Duration::ZERO);
    let t = REKEY_AFTER_TIME + RESPONDER_REKEY_GRACE;
    b.poll(t);
    assert_eq!(b.wire.len(), 1);
    exchange(&mut [&mut a, &mut b], t);
    assert_eq!(carry(&mut a, &mut b, b"z", t), ok(b"z"));
}

#[test]
fn a_restarted_peer_is_taken_back_and_stale_sessions_ask_for_a_handshake() {
    let (mut a, mut b) = pair(Limits::default());
    let t = Duration::ZERO;
    established(&mut a, &mut b, t);
    // B restarts: it knows none of A's sessions.
    let mut b = Host::new(2, Some(&psk(1)), &[1], Limits::default());
    let stale = a.seal(2, b"to the old B", t).unwrap();
    assert_eq!(
        b.deliver(1, stale, t),
        Got::Data(Err(RecvDrop::UnknownSession))
    );
    assert_eq!(b.mesh.deadline(), Duration::ZERO);
    let t = secs(1);
    b.poll(t);
    exchange(&mut [&mut a, &mut b], t);
    talks(&mut a, &mut b, t);
}

#[test]
fn a_new_password_ends_sessions_and_plaintext_peers_show() {
    let (mut a, mut b) = pair(Limits::default());
    let t = Duration::ZERO;
    established(&mut a, &mut b, t);
    a.mesh
        .configure(1, Some(Arc::new(psk(9))), Limits::default(), &[2]);
    assert!(a.key(2).is_none());
    a.mesh.saw_plaintext(0, t);
    assert_eq!(a.status(2, t), SessionState::PlaintextPeer);

    let mut off = Host::new(3, None, &[1], Limits::default());
    assert_eq!(off.status(1, t), SessionState::Off);
    off.mesh.saw_encrypted(0, t);
    assert_eq!(off.status(1, t), SessionState::EncryptedPeer);
    assert_eq!(off.status(1, t + super::SIGHTING_FRESH), SessionState::Off);
    off.poll(t);
    assert!(off.wire.is_empty(), "no handshakes without a password");
}
