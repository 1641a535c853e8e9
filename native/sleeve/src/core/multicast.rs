//! Which frames a network's `multicast` option governs. Pure.
//!
//! Off (the default), multicast beyond the link stays on its host: IPv4 multicast
//! (01:00:5e:00:00:00/25) whose destination is outside 224.0.0.0/24, and IPv6 multicast
//! (33:33:…) whose destination is outside ff02::/16. What a link needs still crosses: broadcast
//! (ARP, DHCP), link-local IPv4 control (IGMP reports to 224.0.0.22, mDNS, …) and link-local
//! IPv6 (neighbour discovery's solicited-node and all-nodes groups, router advertisements, MLD),
//! and every other group address (not IP multicast). The exceptions are read from an untagged
//! header only, as the fast path's ebtables rules (`-p IPv4 --ip-dst`, `-p IPv6 --ip6-dst`) do:
//! a VLAN-tagged frame to an IP multicast MAC is governed. Within a host nothing changes: the
//! bridge delivers to local ports itself.

use super::eth::{be16, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETH_LEN};

/// True when `frame` is multicast that crosses hosts only on networks with the option on.
pub fn governed(frame: &[u8]) -> bool {
    match frame {
        [0x01, 0x00, 0x5e, b3, ..] if b3 & 0x80 == 0 => !ipv4_link_local(frame),
        [0x33, 0x33, ..] => !ipv6_link_local(frame),
        _ => false,
    }
}

/// An untagged IPv4 packet to 224.0.0.0/24 (its destination is bytes 16..20 of the header).
fn ipv4_link_local(frame: &[u8]) -> bool {
    ethertype(frame) == Some(ETHERTYPE_IPV4)
        && frame.get(ETH_LEN + 16..ETH_LEN + 19) == Some(&[224, 0, 0])
}

/// An untagged IPv6 packet to ff02::/16 (its destination is bytes 24..40 of the header).
fn ipv6_link_local(frame: &[u8]) -> bool {
    ethertype(frame) == Some(ETHERTYPE_IPV6)
        && frame.get(ETH_LEN + 24..ETH_LEN + 26) == Some(&[0xff, 0x02])
}

fn ethertype(frame: &[u8]) -> Option<u16> {
    (frame.len() >= ETH_LEN).then(|| be16(frame, 12))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ipv4(dst_mac: [u8; 6], dst: [u8; 4]) -> Vec<u8> {
        let mut f = [dst_mac, [0x02, 0, 0, 0, 0, 0xa]].concat();
        f.extend_from_slice(&[
            0x08, 0x00, 0x45, 0, 0, 28, 0, 0, 0, 0, 1, 17, 0, 0, 10, 0, 0, 1,
        ]);
        f.extend_from_slice(&dst);
        f.resize(60, 0);
        f
    }

    fn ipv6(dst_mac: [u8; 6], dst: [u8; 16]) -> Vec<u8> {
        let mut f = [dst_mac, [0x02, 0, 0, 0, 0, 0xa]].concat();
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 8, 17, 255]);
        f.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        f.extend_from_slice(&dst);
        f.resize(62, 0);
        f
    }

    const fn v6(first: [u8; 2], last: [u8; 4]) -> [u8; 16] {
        [
            first[0], first[1], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, last[0], last[1], last[2], last[3],
        ]
    }

    #[test]
    fn ipv4_multicast_beyond_the_link_is_governed() {
        for (what, mac, ip) in [
            (
                "a group of the organisation's scope",
                [1, 0, 0x5e, 1, 2, 3],
                [239, 1, 2, 3],
            ),
            ("SSDP", [1, 0, 0x5e, 0x7f, 0xff, 0xfa], [239, 255, 255, 250]),
            ("a global group", [1, 0, 0x5e, 0, 1, 0x81], [224, 0, 1, 129]),
            // 239.0.0.1 shares its MAC with 224.0.0.1: the address decides, not the MAC.
            (
                "a group whose MAC is a link-local one's",
                [1, 0, 0x5e, 0, 0, 1],
                [239, 0, 0, 1],
            ),
        ] {
            assert!(governed(&ipv4(mac, ip)), "{what}");
        }
    }

    #[test]
    fn what_a_link_needs_is_not_governed() {
        for (what, frame) in [
            ("broadcast", ipv4([0xff; 6], [10, 0, 0, 255])),
            ("unicast", ipv4([0x02, 0, 0, 0, 0, 0xb], [10, 0, 0, 2])),
            (
                "IGMPv3 reports",
                ipv4([1, 0, 0x5e, 0, 0, 0x16], [224, 0, 0, 22]),
            ),
            ("mDNS", ipv4([1, 0, 0x5e, 0, 0, 0xfb], [224, 0, 0, 251])),
            ("all hosts", ipv4([1, 0, 0x5e, 0, 0, 1], [224, 0, 0, 1])),
            (
                "a solicited-node group (ND)",
                ipv6([0x33, 0x33, 0xff, 0, 0, 2], v6([0xff, 2], [0, 1, 0xff, 2])),
            ),
            (
                "all nodes (RA)",
                ipv6([0x33, 0x33, 0, 0, 0, 1], v6([0xff, 2], [0, 0, 0, 1])),
            ),
            (
                "MLDv2 reports",
                ipv6([0x33, 0x33, 0, 0, 0, 0x16], v6([0xff, 2], [0, 0, 0, 0x16])),
            ),
            // Not IP multicast: 01:00:5e:80:… is outside the IPv4 range, 01:80:c2 is the IEEE's.
            (
                "01:00:5e:80:00:01",
                ipv4([1, 0, 0x5e, 0x80, 0, 1], [10, 0, 0, 2]),
            ),
            ("LLDP", ipv4([1, 0x80, 0xc2, 0, 0, 0xe], [10, 0, 0, 2])),
        ] {
            assert!(!governed(&frame), "{what}");
        }
    }

    #[test]
    fn ipv6_multicast_beyond_the_link_is_governed() {
        assert!(governed(&ipv6(
            [0x33, 0x33, 0, 1, 0, 3],
            v6([0xff, 5], [0, 1, 0, 3])
        )));
        assert!(governed(&ipv6(
            [0x33, 0x33, 0, 0, 0, 0x7b],
            v6([0xff, 0x0e], [0, 0, 0, 0x7b])
        )));
        // Interface-local never belongs on a wire.
        assert!(governed(&ipv6(
            [0x33, 0x33, 0, 0, 0, 1],
            v6([0xff, 1], [0, 0, 0, 1])
        )));
    }

    #[test]
    fn the_exceptions_need_an_untagged_readable_header() {
        let mut tagged = ipv4([1, 0, 0x5e, 0, 0, 0xfb], [224, 0, 0, 251]);
        tagged.splice(12..12, [0x81, 0x00, 0, 5]);
        assert!(
            governed(&tagged),
            "a VLAN tag hides the address, as from ebtables"
        );
        let mut not_ip = ipv4([1, 0, 0x5e, 0, 0, 0xfb], [224, 0, 0, 251]);
        not_ip[12..14].copy_from_slice(&[0x88, 0xb5]);
        assert!(governed(&not_ip));
        assert!(governed(
            &ipv4([1, 0, 0x5e, 0, 0, 0xfb], [224, 0, 0, 251])[..32]
        ));
        assert!(governed(&[1, 0, 0x5e, 1, 2, 3]), "a runt to an IPv4 group");
        assert!(!governed(&[0xff; 5]));
    }
}
