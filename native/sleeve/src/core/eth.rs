//! Ethernet and IP header constants and readers the packet modules share. Pure.

pub const ETH_LEN: usize = 14;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

pub fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Offset of the IP header, past one optional VLAN tag, and the EtherType there. `None`: shorter
/// than an Ethernet header.
pub fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    match be16(frame.get(..ETH_LEN)?, 12) {
        ETHERTYPE_VLAN if frame.len() >= ETH_LEN + 4 => Some((ETH_LEN + 4, be16(frame, 16))),
        t => Some((ETH_LEN, t)),
    }
}
