//! Path MTU. A frame whose IP packet is larger than the path to its peer is answered, as the
//! kernel's VXLAN answers one for a bridge (`skb_tunnel_check_pmtu`,
//! `iptunnel_pmtud_build_icmp{,v6}`), with an ICMP error written back to its sender: IPv4
//! "fragmentation needed" (type 3 code 4, RFC 1191) for a packet with DF set, ICMPv6 "packet too
//! big" (type 2, RFC 8201) for any IPv6 packet. The error comes from the packet's destination
//! address and MAC, so the sender's stack takes it as the path's answer and lowers its route's
//! MTU. A packet no error may answer (IPv4 without DF, a fragment, a broadcast or multicast, an
//! ICMP error itself) is left to the caller. Pure: buffers in, lengths out; time for the
//! [`RateLimit`] comes from the caller.

use std::time::Duration;

use super::checksum;
use super::eth::{be16, l3_offset, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// The smallest path MTU a peer may have: IPv4's minimum reassembly size (RFC 791).
pub const MIN_MTU: u16 = 576;
/// IPv6 links carry at least this much (RFC 8200): no packet-too-big below it.
pub const MIN_MTU_V6: u16 = 1280;
/// The largest answer: Ethernet with one VLAN tag, then an IPv6 packet of `MIN_MTU_V6` bytes.
pub const MAX_ANSWER_LEN: usize = 18 + MIN_MTU_V6 as usize;
/// The answers a TAP gets at once, and then one per [`ANSWER_EVERY`] (100 a second). The kernel
/// limits its own ICMP errors alike (`icmp_msgs_burst` 50): a flood of large packets must not
/// become a flood of errors.
pub const ANSWER_BURST: u32 = 50;
pub const ANSWER_EVERY: Duration = Duration::from_millis(10);

const IP_DF: u16 = 0x4000;
const PROTO_ICMP: u8 = 1;
const PROTO_ICMPV6: u8 = 58;
/// An IPv4 answer stays within 576 bytes (RFC 1812 4.3.2.3), quoting as much as fits.
const V4_ANSWER_IP_LEN: usize = 576;
const ICMP_LEN: usize = 8;

/// An IP packet inside an Ethernet frame: where it starts and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpPacket {
    l3: usize,
    v6: bool,
    len: usize,
}

/// What to do with a packet larger than its path's MTU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TooBig {
    /// Drop it and answer its sender with [`answer`].
    Answer,
    /// No ICMP error may answer it (IPv4 without DF or a fragment, a broadcast or multicast
    /// address, an ICMP error itself, an IPv6 path below 1280): the caller's old rules apply.
    Unanswerable,
}

impl IpPacket {
    /// The IPv4 or IPv6 packet in `frame` (behind at most one VLAN tag), its length as its
    /// header says. `None`: not IP, or a header too short or inconsistent to read.
    pub fn parse(frame: &[u8]) -> Option<IpPacket> {
        let (l3, ethertype) = l3_offset(frame)?;
        let ip = &frame[l3..];
        let (v6, len) = match ethertype {
            ETHERTYPE_IPV4 if ip.len() >= 20 && ip[0] >> 4 == 4 => {
                let (ihl, len) = (usize::from(ip[0] & 0xf) * 4, usize::from(be16(ip, 2)));
                (false, (ihl >= 20 && ihl <= len).then_some(len)?)
            }
            ETHERTYPE_IPV6 if ip.len() >= 40 && ip[0] >> 4 == 6 => {
                (true, 40 + usize::from(be16(ip, 4)))
            }
            _ => return None,
        };
        (len <= ip.len()).then_some(IpPacket { l3, v6, len })
    }

    /// The packet of a super-frame's first (largest) segment, `segment_len` bytes long with
    /// its Ethernet header: the headers are the super-frame's, the length is the segment's.
    pub fn of_segment(super_frame: &[u8], segment_len: usize) -> Option<IpPacket> {
        let (l3, ethertype) = l3_offset(super_frame)?;
        let v6 = match ethertype {
            ETHERTYPE_IPV4 => false,
            ETHERTYPE_IPV6 => true,
            _ => return None,
        };
        let min = l3 + if v6 { 40 } else { 20 };
        (segment_len >= min && super_frame.len() >= min).then_some(IpPacket {
            l3,
            v6,
            len: segment_len - l3,
        })
    }

    /// The packet's length: its IP header and everything after it.
    pub fn ip_len(&self) -> usize {
        self.len
    }

    pub fn is_v6(&self) -> bool {
        self.v6
    }

    /// `None` when the packet fits a path of `mtu` bytes; else whether it may be answered.
    /// `frame` is the one the packet was parsed from.
    pub fn too_big(&self, frame: &[u8], mtu: u16) -> Option<TooBig> {
        if self.len <= usize::from(mtu) {
            return None;
        }
        let answerable = !is_group(&frame[..6])
            && if self.v6 {
                mtu >= MIN_MTU_V6 && answerable_v6(&frame[self.l3..])
            } else {
                mtu >= MIN_MTU && answerable_v4(&frame[self.l3..])
            };
        Some(match answerable {
            true => TooBig::Answer,
            false => TooBig::Unanswerable,
        })
    }
}

/// A multicast or broadcast MAC: it cannot be the source of the answer.
fn is_group(mac: &[u8]) -> bool {
    mac[0] & 1 == 1
}

/// `iptunnel_pmtud_check_icmp`: DF and not a fragment, unicast both ways, not an ICMP error.
fn answerable_v4(ip: &[u8]) -> bool {
    let (src, dst) = (&ip[12..16], &ip[16..20]);
    let unicast = |a: &[u8]| a != [255; 4] && !(224..240).contains(&a[0]);
    if be16(ip, 6) != IP_DF
        || !unicast(dst)
        || !unicast(src)
        || src[0] == 0 // "this network"
        || src[0] == 127
    {
        return false;
    }
    let l4 = usize::from(ip[0] & 0xf) * 4;
    // Destination unreachable, source quench, redirect, time exceeded, parameter problem.
    let icmp_error = |t: u8| matches!(t, 3 | 4 | 5 | 11 | 12);
    !(ip[9] == PROTO_ICMP && ip.get(l4).is_some_and(|&t| icmp_error(t)))
}

/// `iptunnel_pmtud_check_icmpv6`: a source that can be answered, not a later fragment, not an
/// ICMPv6 error.
fn answerable_v6(ip: &[u8]) -> bool {
    let src = &ip[8..24];
    let unspecified = src.iter().all(|&b| b == 0);
    let loopback = src[..15].iter().all(|&b| b == 0) && src[15] == 1;
    if unspecified || loopback || src[0] == 0xff {
        return false;
    }
    match upper_layer_v6(ip) {
        Some((PROTO_ICMPV6, at)) => ip.get(at).is_some_and(|&t| t >= 128),
        Some(_) => true,
        None => false,
    }
}

/// The protocol after IPv6 extension headers and where it starts (`ipv6_skip_exthdr`); `None`
/// for a header chain running past the packet or a fragment other than the first.
fn upper_layer_v6(ip: &[u8]) -> Option<(u8, usize)> {
    let (mut next, mut at) = (ip[6], 40);
    loop {
        let hdr = ip.get(at..at + 8);
        let len = match next {
            0 | 43 | 60 => (usize::from(hdr?[1]) + 1) * 8, // hop-by-hop, routing, destination
            51 => (usize::from(hdr?[1]) + 2) * 4,          // authentication
            44 if be16(hdr?, 2) & !7 != 0 => return None,  // a later fragment
            44 => 8,
            59 => return None, // no next header
            _ => return Some((next, at)),
        };
        next = ip[at];
        at += len;
    }
}

/// Writes into `out` (at least [`MAX_ANSWER_LEN`] bytes) the Ethernet frame answering the
/// packet `p` of `frame`, which [`IpPacket::too_big`] found answerable for `mtu`; returns its
/// length. From the packet's destination to its source, MACs and addresses swapped (a VLAN tag
/// kept), quoting as much of the packet as the answer may carry: 548 bytes for IPv4, 1232 for
/// IPv6.
pub fn answer(frame: &[u8], p: IpPacket, mtu: u16, out: &mut [u8]) -> usize {
    out[..6].copy_from_slice(&frame[6..12]);
    out[6..12].copy_from_slice(&frame[..6]);
    out[12..p.l3].copy_from_slice(&frame[12..p.l3]);
    let packet = &frame[p.l3..p.l3 + p.len];
    let ip_len = match p.v6 {
        false => answer_v4(packet, mtu, &mut out[p.l3..]),
        true => answer_v6(packet, mtu, &mut out[p.l3..]),
    };
    p.l3 + ip_len
}

fn answer_v4(packet: &[u8], mtu: u16, out: &mut [u8]) -> usize {
    let quote = packet.len().min(V4_ANSWER_IP_LEN - 20 - ICMP_LEN);
    let len = 20 + ICMP_LEN + quote;
    let (ip, icmp) = out[..len].split_at_mut(20);
    icmp[..4].copy_from_slice(&[3, 4, 0, 0]); // destination unreachable, fragmentation needed
    icmp[4..6].fill(0);
    icmp[6..8].copy_from_slice(&mtu.to_be_bytes());
    icmp[ICMP_LEN..].copy_from_slice(&packet[..quote]);
    let c = checksum::finish(checksum::sum(icmp, 0));
    icmp[2..4].copy_from_slice(&c);
    ip[..2].copy_from_slice(&[0x45, 0]);
    ip[2..4].copy_from_slice(&(len as u16).to_be_bytes());
    ip[4..8].copy_from_slice(&[0, 0, 0x40, 0]); // id 0, DF
    ip[8] = packet[8]; // the packet's TTL, as the kernel does
    ip[9..12].copy_from_slice(&[PROTO_ICMP, 0, 0]);
    ip[12..16].copy_from_slice(&packet[16..20]);
    ip[16..20].copy_from_slice(&packet[12..16]);
    let c = checksum::finish(checksum::sum(ip, 0));
    ip[10..12].copy_from_slice(&c);
    len
}

fn answer_v6(packet: &[u8], mtu: u16, out: &mut [u8]) -> usize {
    let quote = packet.len().min(usize::from(MIN_MTU_V6) - 40 - ICMP_LEN);
    let len = 40 + ICMP_LEN + quote;
    let (ip, icmp) = out[..len].split_at_mut(40);
    ip[..4].copy_from_slice(&[0x60, 0, 0, 0]);
    ip[4..6].copy_from_slice(&((ICMP_LEN + quote) as u16).to_be_bytes());
    ip[6] = PROTO_ICMPV6;
    ip[7] = packet[7]; // the packet's hop limit, as the kernel does
    ip[8..24].copy_from_slice(&packet[24..40]);
    ip[24..40].copy_from_slice(&packet[8..24]);
    icmp[..4].copy_from_slice(&[2, 0, 0, 0]); // packet too big
    icmp[4..8].copy_from_slice(&u32::from(mtu).to_be_bytes());
    icmp[ICMP_LEN..].copy_from_slice(&packet[..quote]);
    let pseudo = checksum::pseudo_header(&ip[8..24], &ip[24..40], PROTO_ICMPV6, icmp.len());
    let c = checksum::finish(checksum::sum(icmp, pseudo));
    icmp[2..4].copy_from_slice(&c);
    len
}

/// A token bucket: [`RateLimit::allow`] says yes `burst` times at once, then once per `every`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    every: Duration,
    cap: Duration,
    /// Time earned and not spent yet, at most `cap`.
    credit: Duration,
    last: Duration,
}

impl RateLimit {
    /// Starts full.
    pub fn new(every: Duration, burst: u32) -> Self {
        let cap = every * burst;
        RateLimit {
            every,
            cap,
            credit: cap,
            last: Duration::ZERO,
        }
    }

    pub fn allow(&mut self, now: Duration) -> bool {
        self.credit = (self.credit + now.saturating_sub(self.last)).min(self.cap);
        self.last = self.last.max(now);
        if self.credit < self.every {
            return false;
        }
        self.credit -= self.every;
        true
    }
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit::new(ANSWER_EVERY, ANSWER_BURST)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::segment::{prepare_read, Prepared};
    use crate::fake::packets::{frames_of, inspect_icmp, pattern, IcmpSeen, Packet};

    fn big4() -> Vec<u8> {
        Packet::udp4(pattern(1400, 1)).frame() // IP length 1428, DF
    }

    fn big6() -> Vec<u8> {
        Packet::tcp6(pattern(1400, 2)).frame() // IP length 1472
    }

    fn verdict(frame: &[u8], mtu: u16) -> Option<TooBig> {
        IpPacket::parse(frame)
            .expect("an IP frame")
            .too_big(frame, mtu)
    }

    fn answered(frame: &[u8], mtu: u16) -> (Vec<u8>, IcmpSeen) {
        let p = IpPacket::parse(frame).unwrap();
        assert_eq!(p.too_big(frame, mtu), Some(TooBig::Answer));
        let mut out = [0u8; MAX_ANSWER_LEN];
        let n = answer(frame, p, mtu, &mut out);
        let seen = inspect_icmp(&out[..n]).expect("an ICMP frame");
        assert!(seen.ip_checksum_ok && seen.icmp_checksum_ok, "{seen:?}");
        (out[..n].to_vec(), seen)
    }

    /// Sets an IPv4 frame's protocol and first transport byte (the ICMP type).
    fn as_icmp4(mut f: Vec<u8>, icmp_type: u8) -> Vec<u8> {
        f[23] = PROTO_ICMP;
        f[34] = icmp_type;
        f
    }

    #[test]
    fn a_packet_that_fits_is_left_alone() {
        let f = big4();
        assert_eq!(IpPacket::parse(&f).unwrap().ip_len(), 1428);
        assert_eq!(verdict(&f, 1428), None);
        assert_eq!(verdict(&f, 1427), Some(TooBig::Answer));
        let f = big6();
        assert_eq!(IpPacket::parse(&f).unwrap().ip_len(), 1472);
        assert_eq!(verdict(&f, 1472), None);
        assert_eq!(verdict(&f, 1471), Some(TooBig::Answer));
        // Ethernet padding is not the packet's.
        let mut small = Packet::udp4(vec![1]).frame();
        small.resize(60, 0);
        assert_eq!(IpPacket::parse(&small).unwrap().ip_len(), 29);
    }

    #[test]
    fn fragmentation_needed_comes_from_the_destination_and_quotes_the_packet() {
        let f = big4();
        let (out, s) = answered(&f, 1300);
        assert_eq!((s.icmp_type, s.code, s.mtu), (3, 4, 1300));
        assert_eq!(
            (s.dst_mac, s.src_mac),
            ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
        );
        assert_eq!((s.src, s.dst), (f[30..34].to_vec(), f[26..30].to_vec()));
        assert_eq!((s.ttl, s.df, s.v6), (64, true, false));
        // As much as fits in 576 bytes: the header, the UDP header and 520 payload bytes.
        assert_eq!(out.len(), 14 + 576);
        assert_eq!(s.quote, f[14..14 + 548]);
        assert_eq!(out[18..20], [0, 0], "IP id 0, as the kernel's");
    }

    #[test]
    fn packet_too_big_for_ipv6_quotes_what_fits_in_1280() {
        let f = big6();
        for mtu in [1280, 1400] {
            let (out, s) = answered(&f, mtu);
            assert_eq!((s.icmp_type, s.code, s.mtu), (2, 0, u32::from(mtu)));
            assert_eq!((s.src, s.dst), (f[38..54].to_vec(), f[22..38].to_vec()));
            assert_eq!(
                (s.dst_mac, s.src_mac),
                ([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            );
            assert_eq!((s.ttl, s.v6), (64, true));
            assert_eq!(out.len(), 14 + 1280);
            assert_eq!(s.quote, f[14..14 + 1232]);
        }
        assert_eq!(
            verdict(&f, 1279),
            Some(TooBig::Unanswerable),
            "below IPv6's minimum"
        );
    }

    #[test]
    fn ipv4_without_df_or_fragmented_is_not_answered() {
        for frag in [0, 0x2000, 0x6000, 0x4001, 0x0010] {
            let f = Packet::udp4(pattern(1400, 1)).with_ip4_frag(frag).frame();
            assert_eq!(verdict(&f, 1300), Some(TooBig::Unanswerable), "{frag:#x}");
        }
        let f = Packet::udp4(pattern(1000, 1)).with_ip4_frag(0).frame();
        assert_eq!(verdict(&f, 1300), None, "a DF-less packet that fits");
    }

    #[test]
    fn broadcast_multicast_odd_sources_and_icmp_errors_are_not_answered() {
        let addr = |at: usize, a: [u8; 4]| {
            let mut f = big4();
            f[at..at + 4].copy_from_slice(&a);
            f
        };
        let unanswerable = [
            addr(30, [224, 0, 0, 5]),
            addr(30, [239, 1, 2, 3]),
            addr(30, [255; 4]),
            addr(26, [0, 0, 0, 0]),
            addr(26, [127, 0, 0, 1]),
            addr(26, [255; 4]),
            addr(26, [230, 0, 0, 1]),
            as_icmp4(big4(), 3),
            as_icmp4(big4(), 11),
            as_icmp4(big4(), 12),
            {
                let mut f = big4();
                f[..6].fill(0xff); // flooded to a broadcast MAC
                f
            },
        ];
        for (i, f) in unanswerable.iter().enumerate() {
            assert_eq!(verdict(f, 1300), Some(TooBig::Unanswerable), "case {i}");
        }
        assert_eq!(
            verdict(&as_icmp4(big4(), 8), 1300),
            Some(TooBig::Answer),
            "an echo"
        );
        assert_eq!(
            verdict(&addr(30, [10, 0, 0, 255]), 1300),
            Some(TooBig::Answer)
        );
    }

    /// `f` (IPv6) with an extension header of `kind` in front of its transport header.
    fn with_ext(f: &[u8], kind: u8, body: [u8; 6]) -> Vec<u8> {
        let mut out = f[..54].to_vec();
        out[20] = kind;
        out.push(f[20]);
        out.push(0); // 8 bytes long
        out.extend_from_slice(&body);
        out.extend_from_slice(&f[54..]);
        let plen = u16::from_be_bytes([f[18], f[19]]) + 8;
        out[18..20].copy_from_slice(&plen.to_be_bytes());
        out
    }

    #[test]
    fn ipv6_sources_fragments_and_icmpv6_errors() {
        let src = |first: u8, last: u8| {
            let mut f = big6();
            f[22..38].fill(0);
            (f[22], f[37]) = (first, last);
            f
        };
        for f in [src(0, 0), src(0, 1), src(0xff, 1)] {
            assert_eq!(verdict(&f, 1280), Some(TooBig::Unanswerable));
        }
        assert_eq!(
            verdict(&src(0xfe, 1), 1280),
            Some(TooBig::Answer),
            "link-local"
        );
        let icmp6 = |t: u8| {
            let mut f = big6();
            (f[20], f[54]) = (PROTO_ICMPV6, t);
            f
        };
        assert_eq!(verdict(&icmp6(1), 1280), Some(TooBig::Unanswerable));
        assert_eq!(verdict(&icmp6(2), 1280), Some(TooBig::Unanswerable));
        assert_eq!(verdict(&icmp6(128), 1280), Some(TooBig::Answer));
        // Behind a hop-by-hop header, an error is still an error.
        let hop = with_ext(&icmp6(1), 0, [0; 6]);
        assert_eq!(verdict(&hop, 1280), Some(TooBig::Unanswerable));
        let hop = with_ext(&big6(), 0, [0; 6]);
        assert_eq!(verdict(&hop, 1280), Some(TooBig::Answer));
        // A first fragment is answered, a later one not.
        let first = with_ext(&big6(), 44, [0, 1, 0, 0, 0, 7]);
        assert_eq!(verdict(&first, 1280), Some(TooBig::Answer));
        let later = with_ext(&big6(), 44, [0x05, 0x01, 0, 0, 0, 7]);
        assert_eq!(verdict(&later, 1280), Some(TooBig::Unanswerable));
        let none = with_ext(&big6(), 59, [0; 6]);
        assert_eq!(verdict(&none, 1280), Some(TooBig::Unanswerable));
        // A header chain running off the end.
        let mut cut = with_ext(&big6(), 60, [0; 6]);
        (cut[54], cut[55]) = (60, 250); // another header, 2008 bytes on
        assert_eq!(verdict(&cut, 1280), Some(TooBig::Unanswerable));
    }

    #[test]
    fn a_vlan_tag_is_kept() {
        let f = big4();
        let mut tagged = f[..12].to_vec();
        tagged.extend_from_slice(&[0x81, 0x00, 0x00, 0x2a]);
        tagged.extend_from_slice(&f[12..]);
        let p = IpPacket::parse(&tagged).unwrap();
        assert_eq!(p.ip_len(), 1428);
        let mut out = [0u8; MAX_ANSWER_LEN];
        let n = answer(&tagged, p, 1300, &mut out);
        assert_eq!(n, 18 + 576);
        assert_eq!(out[12..18], [0x81, 0x00, 0x00, 0x2a, 0x08, 0x00]);
        let mut untagged = out[..12].to_vec();
        untagged.extend_from_slice(&out[16..n]);
        let s = inspect_icmp(&untagged).unwrap();
        assert!(s.ip_checksum_ok && s.icmp_checksum_ok);
        assert_eq!(s.quote, f[14..14 + 548]);
    }

    #[test]
    fn not_ip_or_inconsistent_headers_are_not_packets() {
        let mut arp = big4();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        let mut long = big4();
        long[16..18].copy_from_slice(&2000u16.to_be_bytes());
        let mut v6_in_v4 = big4();
        v6_in_v4[14] = 0x65;
        let mut short_ihl = big4();
        short_ihl[14] = 0x44;
        for f in [&arp, &long, &v6_in_v4, &short_ihl, &big4()[..30].to_vec()] {
            assert_eq!(IpPacket::parse(f), None);
        }
        assert_eq!(IpPacket::parse(&big6()[..50]), None);
    }

    #[test]
    fn a_super_frame_is_judged_and_answered_by_its_first_segment() {
        let p = Packet::tcp4(pattern(10_000, 3));
        let mut read = p.super_read(1448);
        let (frame, Prepared::Segments(seg)) = prepare_read(&mut read).unwrap() else {
            panic!("a super-frame")
        };
        let packet = IpPacket::of_segment(frame, seg.len(0)).unwrap();
        assert_eq!(packet.ip_len(), 20 + 32 + 1448);
        assert_eq!(packet.too_big(frame, 1500), None);
        assert_eq!(packet.too_big(frame, 1400), Some(TooBig::Answer));
        let first = frames_of(frame, Prepared::Segments(seg)).remove(0);
        let (_, s) = answered(&first, 1400);
        assert_eq!(
            s.quote,
            first[14..14 + 548],
            "the segment as it would have gone"
        );
        assert_eq!(u16::from_be_bytes([s.quote[2], s.quote[3]]), 1500);
        assert_eq!(IpPacket::of_segment(&frame[..20], 30), None);
    }

    #[test]
    fn the_rate_limit_allows_a_burst_then_one_per_interval() {
        let ms = Duration::from_millis;
        let mut r = RateLimit::new(ms(10), 50);
        assert_eq!((0..60).filter(|_| r.allow(ms(0))).count(), 50);
        assert!(!r.allow(ms(9)));
        assert!(r.allow(ms(10)));
        assert!(!r.allow(ms(10)));
        assert!(!r.allow(ms(5)), "time going back earns nothing");
        assert_eq!(
            (0..100).filter(|_| r.allow(ms(10_000))).count(),
            50,
            "capped"
        );
        assert_eq!((0..100).filter(|i| r.allow(ms(10_000 + i * 5))).count(), 49);
    }
}
