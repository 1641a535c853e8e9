//! MAC learning and forwarding decisions, per network. Sans-IO: the caller passes the frame and
//! the current time, and gets back an [`Action`].

use std::collections::HashMap;
use std::time::Duration;

use super::wire::MIN_FRAME_LEN;
use super::{NetworkId, PeerId};

pub type Mac = [u8; 6];

/// Where a MAC address was last seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Port {
    /// Behind this host's TAP (a local container).
    Local,
    Peer(PeerId),
}

/// What to do with one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Encode the frame to one peer.
    SendToPeer {
        network: NetworkId,
        peer: PeerId,
    },
    /// Encode the frame to every peer (broadcast, multicast or unknown destination).
    Flood {
        network: NetworkId,
    },
    /// Write the frame to this network's TAP.
    WriteToTap {
        network: NetworkId,
    },
    Drop(DropReason),
}

/// Why the switch dropped a frame. Fieldless: used as a counter index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    RuntFrame,
    /// Source MAC is multicast or all zeros.
    InvalidSource,
    /// The destination lives behind our own TAP: the bridge should not have sent it to us.
    LocalDestination,
}

impl DropReason {
    pub const ALL: [DropReason; 3] = [
        DropReason::RuntFrame,
        DropReason::InvalidSource,
        DropReason::LocalDestination,
    ];
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    port: Port,
    seen: Duration,
}

/// Learned MAC -> port, keyed by network so the same MAC on two networks stays apart.
pub struct MacTable {
    entries: HashMap<(NetworkId, Mac), Entry>,
    max_age: Duration,
    capacity: usize,
}

pub fn dst_mac(frame: &[u8]) -> Mac {
    frame[0..6].try_into().expect("6 bytes")
}

pub fn src_mac(frame: &[u8]) -> Mac {
    frame[6..12].try_into().expect("6 bytes")
}

fn is_group(mac: &Mac) -> bool {
    mac[0] & 1 == 1
}

impl MacTable {
    /// `capacity` bounds memory against a peer or container spraying source MACs.
    pub fn new(max_age: Duration, capacity: usize) -> Self {
        MacTable {
            entries: HashMap::with_capacity(capacity.min(4096)),
            max_age,
            capacity,
        }
    }

    pub fn set_max_age(&mut self, max_age: Duration) {
        self.max_age = max_age;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A frame read from `network`'s TAP.
    pub fn from_tap(&mut self, network: NetworkId, frame: &[u8], now: Duration) -> Action {
        if let Err(reason) = self.learn(network, frame, Port::Local, now) {
            return Action::Drop(reason);
        }
        let dst = dst_mac(frame);
        if is_group(&dst) {
            return Action::Flood { network };
        }
        match self.lookup(network, &dst, now) {
            Some(Port::Peer(peer)) => Action::SendToPeer { network, peer },
            Some(Port::Local) => Action::Drop(DropReason::LocalDestination),
            None => Action::Flood { network },
        }
    }

    /// A frame received from `peer` for `network`. It always goes to the local bridge, which
    /// does its own forwarding; we only learn where its source lives.
    pub fn from_peer(
        &mut self,
        network: NetworkId,
        peer: PeerId,
        frame: &[u8],
        now: Duration,
    ) -> Action {
        match self.learn(network, frame, Port::Peer(peer), now) {
            Ok(()) => Action::WriteToTap { network },
            Err(reason) => Action::Drop(reason),
        }
    }

    pub fn lookup(&self, network: NetworkId, mac: &Mac, now: Duration) -> Option<Port> {
        let e = self.entries.get(&(network, *mac))?;
        (now.saturating_sub(e.seen) < self.max_age).then_some(e.port)
    }

    /// Removes aged entries; returns how many. Call it periodically, not per packet.
    pub fn expire(&mut self, now: Duration) -> usize {
        let before = self.entries.len();
        let max_age = self.max_age;
        self.entries
            .retain(|_, e| now.saturating_sub(e.seen) < max_age);
        before - self.entries.len()
    }

    /// Forgets everything learned for networks or peers that left the configuration.
    pub fn retain(&mut self, keep: impl Fn(NetworkId, Port) -> bool) {
        self.entries.retain(|(net, _), e| keep(*net, e.port));
    }

    fn learn(
        &mut self,
        network: NetworkId,
        frame: &[u8],
        port: Port,
        now: Duration,
    ) -> Result<(), DropReason> {
        if frame.len() < MIN_FRAME_LEN {
            return Err(DropReason::RuntFrame);
        }
        let src = src_mac(frame);
        if is_group(&src) || src == [0; 6] {
            return Err(DropReason::InvalidSource);
        }
        let full = self.entries.len() >= self.capacity;
        match self.entries.get_mut(&(network, src)) {
            Some(e) => *e = Entry { port, seen: now },
            None if !full => {
                self.entries
                    .insert((network, src), Entry { port, seen: now });
            }
            None => {} // Full: forward without learning; the destination floods.
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [0x02, 0, 0, 0, 0, 0xa];
    const B: Mac = [0x02, 0, 0, 0, 0, 0xb];
    const BCAST: Mac = [0xff; 6];
    const MCAST: Mac = [0x01, 0x00, 0x5e, 0, 0, 1];
    const AGE: Duration = Duration::from_secs(300);

    fn eth(dst: Mac, src: Mac) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(&dst);
        f.extend_from_slice(&src);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[0u8; 46]);
        f
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn unknown_broadcast_and_multicast_flood() {
        let mut t = MacTable::new(AGE, 100);
        assert_eq!(
            t.from_tap(1, &eth(B, A), secs(0)),
            Action::Flood { network: 1 }
        );
        assert_eq!(
            t.from_tap(1, &eth(BCAST, A), secs(0)),
            Action::Flood { network: 1 }
        );
        assert_eq!(
            t.from_tap(1, &eth(MCAST, A), secs(0)),
            Action::Flood { network: 1 }
        );
    }

    #[test]
    fn learns_from_peer_then_unicasts() {
        let mut t = MacTable::new(AGE, 100);
        assert_eq!(
            t.from_peer(1, 42, &eth(BCAST, B), secs(0)),
            Action::WriteToTap { network: 1 }
        );
        assert_eq!(
            t.from_tap(1, &eth(B, A), secs(1)),
            Action::SendToPeer {
                network: 1,
                peer: 42
            }
        );
        assert_eq!(t.lookup(1, &A, secs(1)), Some(Port::Local));
    }

    #[test]
    fn mac_moves_between_peers() {
        let mut t = MacTable::new(AGE, 100);
        t.from_peer(1, 42, &eth(BCAST, B), secs(0));
        t.from_peer(1, 43, &eth(BCAST, B), secs(1));
        assert_eq!(
            t.from_tap(1, &eth(B, A), secs(2)),
            Action::SendToPeer {
                network: 1,
                peer: 43
            }
        );
    }

    #[test]
    fn local_destination_is_dropped() {
        let mut t = MacTable::new(AGE, 100);
        t.from_tap(1, &eth(BCAST, B), secs(0));
        assert_eq!(
            t.from_tap(1, &eth(B, A), secs(0)),
            Action::Drop(DropReason::LocalDestination)
        );
    }

    #[test]
    fn aging_with_stepped_clock() {
        let mut t = MacTable::new(secs(10), 100);
        t.from_peer(1, 42, &eth(BCAST, B), secs(100));
        assert_eq!(t.lookup(1, &B, secs(109)), Some(Port::Peer(42)));
        assert_eq!(
            t.from_tap(1, &eth(B, A), secs(109)),
            Action::SendToPeer {
                network: 1,
                peer: 42
            }
        );
        // Aged out: lookups miss before the sweep, and the sweep removes it.
        assert_eq!(t.lookup(1, &B, secs(110)), None);
        assert_eq!(
            t.from_tap(1, &eth(B, A), secs(110)),
            Action::Flood { network: 1 }
        );
        assert_eq!(t.expire(secs(110)), 1); // B; A was refreshed at 110
        assert_eq!(t.len(), 1);
        // Refresh keeps an entry alive.
        t.from_peer(1, 42, &eth(BCAST, B), secs(111));
        t.from_peer(1, 42, &eth(BCAST, B), secs(119));
        assert_eq!(t.lookup(1, &B, secs(128)), Some(Port::Peer(42)));
    }

    #[test]
    fn networks_are_isolated() {
        let mut t = MacTable::new(AGE, 100);
        t.from_peer(7, 42, &eth(BCAST, B), secs(0));
        t.from_peer(8, 43, &eth(BCAST, B), secs(0));
        assert_eq!(
            t.from_tap(7, &eth(B, A), secs(1)),
            Action::SendToPeer {
                network: 7,
                peer: 42
            }
        );
        assert_eq!(
            t.from_tap(8, &eth(B, A), secs(1)),
            Action::SendToPeer {
                network: 8,
                peer: 43
            }
        );
        assert_eq!(
            t.from_tap(9, &eth(B, A), secs(1)),
            Action::Flood { network: 9 }
        );
        t.retain(|net, _| net != 7);
        assert_eq!(t.lookup(7, &B, secs(1)), None);
        assert_eq!(t.lookup(8, &B, secs(1)), Some(Port::Peer(43)));
    }

    #[test]
    fn invalid_frames_are_dropped() {
        let mut t = MacTable::new(AGE, 100);
        assert_eq!(
            t.from_tap(1, &[0u8; 13], secs(0)),
            Action::Drop(DropReason::RuntFrame)
        );
        assert_eq!(
            t.from_peer(1, 1, &eth(A, MCAST), secs(0)),
            Action::Drop(DropReason::InvalidSource)
        );
        assert_eq!(
            t.from_peer(1, 1, &eth(A, [0; 6]), secs(0)),
            Action::Drop(DropReason::InvalidSource)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn capacity_bounds_learning_but_still_forwards() {
        let mut t = MacTable::new(AGE, 2);
        for i in 0..5u8 {
            let src = [0x02, 0, 0, 0, 1, i];
            assert_eq!(
                t.from_peer(1, 9, &eth(BCAST, src), secs(0)),
                Action::WriteToTap { network: 1 }
            );
        }
        assert_eq!(t.len(), 2);
    }
}
