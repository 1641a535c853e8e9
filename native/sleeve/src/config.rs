//! The engine's configuration, validated once before it is swapped in. Pure.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::core::crypto::{Limits, Psk};
use crate::core::pmtu::MIN_MTU;
use crate::core::{NetworkId, PeerId};

pub const DEFAULT_LISTEN_PORT: u16 = 6784;
pub const DEFAULT_MAC_MAX_AGE: Duration = Duration::from_secs(300);
pub const DEFAULT_MAC_CAPACITY: usize = 65_536;
/// 1500-byte underlay MTU minus IPv4 and UDP headers.
pub const DEFAULT_BATCH_BYTES: usize = 1472;
/// Nice value the real data path asks for its packet threads (see `os::sched`): ahead of
/// ordinary workloads, short of the -20 an administrator may want for something else.
pub const DEFAULT_PACKET_THREAD_NICE: i32 = -10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub id: PeerId,
    pub addr: SocketAddr,
    /// The largest IP packet a frame to this peer may carry: the underlay route's MTU less the
    /// sleeve's overhead. A larger one is answered with an ICMP error (`core::pmtu`); `None`:
    /// no limit but the wire format's.
    pub mtu: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    pub id: NetworkId,
    pub tap: String,
    /// Source MACs that must never cross the wire on this network: the anycast gateway's, which
    /// every host's bridge has, so each host answers for it itself.
    pub local_macs: Vec<[u8; 6]>,
    /// The peers this network's frames are sent to; `None`: every peer. A peer reached by the
    /// kernel's VXLAN for this network is left out, so no frame takes both paths. Frames from
    /// any configured peer are still taken in, whichever path that peer chose.
    pub send_to: Option<Vec<PeerId>>,
    /// Multicast beyond the link crosses hosts (`core::multicast`); off, such frames from the
    /// TAP are not sent and those from peers are dropped, each counted.
    pub multicast: bool,
}

/// Encryption between routers: every peer must have the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptoConfig {
    /// Derived from the mesh password ([`Psk::derive`]); a new one ends every session.
    pub psk: Arc<Psk>,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Our own peer id, written into every datagram.
    pub local_peer: PeerId,
    pub peers: Vec<PeerConfig>,
    pub networks: Vec<NetworkConfig>,
    pub mac_max_age: Duration,
    pub mac_capacity: usize,
    /// Soft datagram size for batching frames.
    pub batch_bytes: usize,
    /// Nice value for the packet threads; `None` leaves them as spawned (tests, fakes).
    pub packet_thread_nice: Option<i32>,
    /// `None`: plaintext datagrams, as before; encrypted ones are dropped.
    pub crypto: Option<CryptoConfig>,
}

impl EngineConfig {
    pub fn new(local_peer: PeerId) -> Self {
        EngineConfig {
            local_peer,
            peers: Vec::new(),
            networks: Vec::new(),
            mac_max_age: DEFAULT_MAC_MAX_AGE,
            mac_capacity: DEFAULT_MAC_CAPACITY,
            batch_bytes: DEFAULT_BATCH_BYTES,
            packet_thread_nice: None,
            crypto: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    DuplicatePeerId(PeerId),
    DuplicatePeerAddress(SocketAddr),
    PeerIsSelf(PeerId),
    BadPeerMtu(PeerId, u16),
    DuplicateNetwork(NetworkId),
    DuplicateTap(String),
    BadTapName(String),
    BadBatchBytes(usize),
    UnknownSendPeer(NetworkId, PeerId),
    /// Rekeying must come before the keys are refused, by time and by count.
    BadCryptoLimits,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::DuplicatePeerId(id) => write!(f, "peer id {id} appears twice"),
            ConfigError::DuplicatePeerAddress(a) => write!(f, "peer address {a} appears twice"),
            ConfigError::PeerIsSelf(id) => write!(f, "peer id {id} is our own peer id"),
            ConfigError::BadPeerMtu(id, mtu) => {
                write!(f, "peer {id}'s mtu {mtu} is outside 576..=65535")
            }
            ConfigError::DuplicateNetwork(id) => write!(f, "network {id} appears twice"),
            ConfigError::DuplicateTap(t) => write!(f, "tap {t:?} is used by two networks"),
            ConfigError::BadTapName(t) => write!(
                f,
                "tap name {t:?} must be 1-15 bytes without '/', NUL or spaces"
            ),
            ConfigError::BadBatchBytes(n) => write!(f, "batchBytes {n} is outside 576..=65507"),
            ConfigError::UnknownSendPeer(n, p) => {
                write!(
                    f,
                    "network {n} sends to peer {p}, which is not a configured peer"
                )
            }
            ConfigError::BadCryptoLimits => {
                write!(
                    f,
                    "rekey limits must be positive and below the reject limits"
                )
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl EngineConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut ids = HashSet::new();
        let mut addrs = HashSet::new();
        for p in &self.peers {
            if p.id == self.local_peer {
                return Err(ConfigError::PeerIsSelf(p.id));
            }
            if !ids.insert(p.id) {
                return Err(ConfigError::DuplicatePeerId(p.id));
            }
            if !addrs.insert(p.addr) {
                return Err(ConfigError::DuplicatePeerAddress(p.addr));
            }
            if let Some(mtu) = p.mtu.filter(|&m| m < MIN_MTU) {
                return Err(ConfigError::BadPeerMtu(p.id, mtu));
            }
        }
        let mut nets = HashSet::new();
        let mut taps = HashSet::new();
        for n in &self.networks {
            if !valid_ifname(&n.tap) {
                return Err(ConfigError::BadTapName(n.tap.clone()));
            }
            if !nets.insert(n.id) {
                return Err(ConfigError::DuplicateNetwork(n.id));
            }
            if !taps.insert(n.tap.as_str()) {
                return Err(ConfigError::DuplicateTap(n.tap.clone()));
            }
            if let Some(p) = n.send_to.iter().flatten().find(|p| !ids.contains(*p)) {
                return Err(ConfigError::UnknownSendPeer(n.id, *p));
            }
        }
        if !(576..=crate::core::wire::MAX_DATAGRAM).contains(&self.batch_bytes) {
            return Err(ConfigError::BadBatchBytes(self.batch_bytes));
        }
        if self.crypto.as_ref().is_some_and(|c| !c.limits.valid()) {
            return Err(ConfigError::BadCryptoLimits);
        }
        Ok(())
    }
}

fn valid_ifname(name: &str) -> bool {
    (1..16).contains(&name.len())
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == 0 || b.is_ascii_whitespace() || b == b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> EngineConfig {
        let mut c = EngineConfig::new(1);
        c.peers.push(PeerConfig {
            id: 2,
            addr: "127.0.0.1:1".parse().unwrap(),
            mtu: Some(1436),
        });
        c.networks.push(NetworkConfig {
            id: 7,
            tap: "vethwe-7".into(),
            local_macs: Vec::new(),
            send_to: None,
            multicast: false,
        });
        c
    }

    #[test]
    fn rejects_inconsistent_configs() {
        assert_eq!(cfg().validate(), Ok(()));
        let mut c = cfg();
        c.peers.push(PeerConfig {
            id: 2,
            addr: "127.0.0.1:2".parse().unwrap(),
            mtu: None,
        });
        assert_eq!(c.validate(), Err(ConfigError::DuplicatePeerId(2)));
        let mut c = cfg();
        c.peers.push(PeerConfig {
            id: 3,
            addr: "127.0.0.1:1".parse().unwrap(),
            mtu: None,
        });
        assert!(matches!(
            c.validate(),
            Err(ConfigError::DuplicatePeerAddress(_))
        ));
        let mut c = cfg();
        c.peers.push(PeerConfig {
            id: 1,
            addr: "127.0.0.1:3".parse().unwrap(),
            mtu: None,
        });
        assert_eq!(c.validate(), Err(ConfigError::PeerIsSelf(1)));
        let mut c = cfg();
        c.peers[0].mtu = Some(575);
        assert_eq!(c.validate(), Err(ConfigError::BadPeerMtu(2, 575)));
        c.peers[0].mtu = Some(576);
        assert_eq!(c.validate(), Ok(()));
        let mut c = cfg();
        c.networks.push(NetworkConfig {
            id: 7,
            tap: "other".into(),
            local_macs: Vec::new(),
            send_to: None,
            multicast: false,
        });
        assert_eq!(c.validate(), Err(ConfigError::DuplicateNetwork(7)));
        let mut c = cfg();
        c.networks.push(NetworkConfig {
            id: 8,
            tap: "vethwe-7".into(),
            local_macs: Vec::new(),
            send_to: None,
            multicast: false,
        });
        assert!(matches!(c.validate(), Err(ConfigError::DuplicateTap(_))));
        for bad in ["", "0123456789abcdef", "a/b", "a b", ".."] {
            let mut c = cfg();
            c.networks[0].tap = bad.into();
            assert!(
                matches!(c.validate(), Err(ConfigError::BadTapName(_))),
                "{bad:?}"
            );
        }
        let mut c = cfg();
        c.networks[0].send_to = Some(vec![2, 9]);
        assert_eq!(c.validate(), Err(ConfigError::UnknownSendPeer(7, 9)));
        let mut c = cfg();
        c.batch_bytes = 100;
        assert_eq!(c.validate(), Err(ConfigError::BadBatchBytes(100)));
    }
}
