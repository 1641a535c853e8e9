//! Sans-IO core: the wire codec and the switching decisions. Takes buffers and time, returns
//! what the caller must do. Nothing here touches a file descriptor or reads a clock.

pub mod checksum;
pub mod clock;
pub mod coalesce;
pub mod crypto;
pub mod eth;
pub mod gso;
pub mod mac;
pub mod multicast;
pub mod pmtu;
pub mod segment;
pub mod train;
pub mod virtio;
pub mod wire;

/// A weave network on the wire (the VNI).
pub type NetworkId = u32;
/// A peer router's id (Weave peer names are 48-bit; we carry 64).
pub type PeerId = u64;
