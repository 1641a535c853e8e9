//! What a TAP with offloads hands over, made ready for the wire. Pure.
//!
//! With `TUN_F_CSUM` the kernel may leave a frame's transport checksum to us, and with
//! `TUN_F_TSO*`/`TUN_F_USO*` it hands over one TCP or UDP packet of up to 64 KiB that a NIC
//! would have cut into MSS-sized segments. We do that cut here, as the kernel's own software
//! GSO does: every segment gets the headers with its IP length, IPv4 id and checksum, TCP
//! sequence number and flags (FIN/PSH on the last only, CWR on the first only) or UDP length,
//! and a full transport checksum, so each one is an ordinary frame a peer can deliver as is.
//!
//! The header values come from the kernel but are checked as if they did not: a frame whose
//! offsets do not match its own headers is refused with an [`OffloadError`], never trusted.

use super::checksum;
use super::eth::{be16, l3_offset, ETHERTYPE_IPV4, ETHERTYPE_IPV6, PROTO_TCP, PROTO_UDP};
use super::virtio::{GsoType, VirtioHdr, F_NEEDS_CSUM};
use super::wire::MAX_FRAME_LEN;
const TCP_FIN: u8 = 0x01;
const TCP_PSH: u8 = 0x08;
const TCP_CWR: u8 = 0x80;

/// Why a frame read from a TAP was dropped. Used as a counter index, so keep it fieldless.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffloadError {
    /// The read was shorter than the virtio header.
    ShortRead,
    /// A GSO type we did not ask for (legacy UFO, or unknown bits).
    UnsupportedGso,
    /// `csum_start`/`csum_offset` point outside the frame or at the wrong field.
    BadChecksumOffsets,
    /// A GSO super-frame that is not IPv4/IPv6 (possibly VLAN-tagged) in Ethernet.
    NotIp,
    /// The IP header disagrees with the GSO type, is truncated, or is a fragment.
    BadIpHeader,
    /// The TCP/UDP header is truncated or malformed, or there is no payload to cut.
    BadL4Header,
    /// A segment would be larger than the largest frame we carry.
    SegmentTooLarge,
}

impl OffloadError {
    pub const ALL: [OffloadError; 7] = [
        OffloadError::ShortRead,
        OffloadError::UnsupportedGso,
        OffloadError::BadChecksumOffsets,
        OffloadError::NotIp,
        OffloadError::BadIpHeader,
        OffloadError::BadL4Header,
        OffloadError::SegmentTooLarge,
    ];
}

/// What to do with a frame after [`prepare`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepared {
    /// An ordinary frame, complete (its checksum filled in if it was left to us).
    Frame,
    /// A super-frame to send as [`Segmenter::count`] frames.
    Segments(Segmenter),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp,
    Udp,
}

/// How to cut one super-frame. Holds offsets only; the frame stays with the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segmenter {
    l3: usize,
    v6: bool,
    l4: usize,
    /// Ethernet + IP + transport headers: the prefix every segment repeats.
    headers: usize,
    gso_size: usize,
    payload: usize,
    transport: Transport,
}

/// Reads the virtio header in front of a frame read from an offloading TAP, completes or plans
/// the frame, and returns it with what to do.
pub fn prepare_read(read: &mut [u8]) -> Result<(&mut [u8], Prepared), OffloadError> {
    let (hdr, frame) = VirtioHdr::split(read).ok_or(OffloadError::ShortRead)?;
    let prepared = prepare(&hdr, frame)?;
    Ok((frame, prepared))
}

/// Completes `frame` in place or plans its segmentation, as `hdr` asks.
pub fn prepare(hdr: &VirtioHdr, frame: &mut [u8]) -> Result<Prepared, OffloadError> {
    match hdr.gso().ok_or(OffloadError::UnsupportedGso)? {
        GsoType::None if hdr.flags & F_NEEDS_CSUM != 0 => {
            complete_checksum(frame, hdr.csum_start.into(), hdr.csum_offset.into())?;
            Ok(Prepared::Frame)
        }
        GsoType::None => Ok(Prepared::Frame),
        gso => Segmenter::new(hdr, gso, frame).map(Prepared::Segments),
    }
}

/// `CHECKSUM_PARTIAL`: the field holds the pseudo-header sum; add everything from `start` on.
fn complete_checksum(frame: &mut [u8], start: usize, offset: usize) -> Result<(), OffloadError> {
    let at = start + offset;
    if at + 2 > frame.len() {
        return Err(OffloadError::BadChecksumOffsets);
    }
    let partial = checksum::field([frame[at], frame[at + 1]]);
    frame[at..at + 2].fill(0);
    let c = checksum::finish(checksum::sum(&frame[start..], partial));
    frame[at..at + 2].copy_from_slice(&c);
    Ok(())
}

impl Segmenter {
    fn new(hdr: &VirtioHdr, gso: GsoType, frame: &[u8]) -> Result<Self, OffloadError> {
        if hdr.flags & F_NEEDS_CSUM == 0 || hdr.gso_size == 0 {
            return Err(OffloadError::BadChecksumOffsets);
        }
        let (l3, ethertype) = l3_offset(frame).ok_or(OffloadError::NotIp)?;
        let (v6, proto) = match (ethertype, gso) {
            (ETHERTYPE_IPV4, GsoType::TcpV4 | GsoType::UdpL4) => (false, ip4_protocol(frame, l3)?),
            (ETHERTYPE_IPV6, GsoType::TcpV6 | GsoType::UdpL4) => (true, ip6_protocol(frame, l3)?),
            (ETHERTYPE_IPV4 | ETHERTYPE_IPV6, _) => return Err(OffloadError::BadIpHeader),
            _ => return Err(OffloadError::NotIp),
        };
        let l4 = usize::from(hdr.csum_start);
        let min_l4 = if v6 {
            l3 + 40
        } else {
            l3 + ip4_header_len(frame, l3)?
        };
        // IPv4: the transport header follows the IP header. IPv6: it may follow extension
        // headers, which every segment repeats unchanged.
        if (!v6 && l4 != min_l4) || l4 < min_l4 {
            return Err(OffloadError::BadChecksumOffsets);
        }
        let (transport, l4_len) = match gso {
            GsoType::UdpL4 => (Transport::Udp, 8),
            _ => (Transport::Tcp, tcp_header_len(frame, l4)?),
        };
        let (want_proto, want_offset) = match transport {
            Transport::Tcp => (PROTO_TCP, 16),
            Transport::Udp => (PROTO_UDP, 6),
        };
        if usize::from(hdr.csum_offset) != want_offset {
            return Err(OffloadError::BadChecksumOffsets);
        }
        // Behind IPv6 extension headers the protocol byte names the first extension header.
        let direct = !v6 || l4 == l3 + 40;
        if direct && proto != want_proto {
            return Err(OffloadError::BadIpHeader);
        }
        Segmenter::sized(
            frame,
            l3,
            v6,
            l4,
            l4 + l4_len,
            hdr.gso_size.into(),
            transport,
        )
    }

    fn sized(
        frame: &[u8],
        l3: usize,
        v6: bool,
        l4: usize,
        headers: usize,
        gso_size: usize,
        transport: Transport,
    ) -> Result<Self, OffloadError> {
        if headers >= frame.len() {
            return Err(OffloadError::BadL4Header);
        }
        let payload = frame.len() - headers;
        if headers + gso_size.min(payload) > MAX_FRAME_LEN {
            return Err(OffloadError::SegmentTooLarge);
        }
        // IP lengths are 16 bits: a frame claiming more than that is not one the kernel made.
        if frame.len() - l3 > usize::from(u16::MAX) + if v6 { 40 } else { 0 } {
            return Err(OffloadError::BadIpHeader);
        }
        Ok(Segmenter {
            l3,
            v6,
            l4,
            headers,
            gso_size,
            payload,
            transport,
        })
    }

    pub fn count(&self) -> usize {
        self.payload.div_ceil(self.gso_size)
    }

    /// Frame length of segment `i`.
    pub fn len(&self, i: usize) -> usize {
        self.headers + self.chunk(i).len()
    }

    fn chunk(&self, i: usize) -> std::ops::Range<usize> {
        let start = self.headers + i * self.gso_size;
        start..(start + self.gso_size).min(self.headers + self.payload)
    }

    /// Writes segment `i` of `frame` into `out`, which is exactly [`Segmenter::len`]`(i)` long.
    pub fn write(&self, frame: &[u8], i: usize, out: &mut [u8]) {
        let chunk = self.chunk(i);
        let h = self.headers;
        out[..h].copy_from_slice(&frame[..h]);
        out[h..].copy_from_slice(&frame[chunk]);
        self.fix_ip(out, i);
        match self.transport {
            Transport::Tcp => self.fix_tcp(frame, out, i),
            Transport::Udp => {
                let udp_len = (out.len() - self.l4) as u16;
                out[self.l4 + 4..self.l4 + 6].copy_from_slice(&udp_len.to_be_bytes());
            }
        }
        self.fill_checksum(out);
    }

    fn fix_ip(&self, out: &mut [u8], i: usize) {
        let ip = &mut out[self.l3..];
        if self.v6 {
            let payload_len = (ip.len() - 40) as u16;
            ip[4..6].copy_from_slice(&payload_len.to_be_bytes());
            return;
        }
        let ihl = self.l4 - self.l3;
        let total = ip.len() as u16;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        let id = be16(ip, 4).wrapping_add(i as u16);
        ip[4..6].copy_from_slice(&id.to_be_bytes());
        ip[10..12].fill(0);
        let c = checksum::finish(checksum::sum(&ip[..ihl], 0));
        ip[10..12].copy_from_slice(&c);
    }

    fn fix_tcp(&self, frame: &[u8], out: &mut [u8], i: usize) {
        let tcp = &mut out[self.l4..];
        let first = u32::from_be_bytes([
            frame[self.l4 + 4],
            frame[self.l4 + 5],
            frame[self.l4 + 6],
            frame[self.l4 + 7],
        ]);
        let seq = first.wrapping_add((i * self.gso_size) as u32);
        tcp[4..8].copy_from_slice(&seq.to_be_bytes());
        if i + 1 < self.count() {
            tcp[13] &= !(TCP_FIN | TCP_PSH);
        }
        if i > 0 {
            tcp[13] &= !TCP_CWR;
        }
    }

    fn fill_checksum(&self, out: &mut [u8]) {
        let at = self.l4
            + if self.transport == Transport::Tcp {
                16
            } else {
                6
            };
        out[at..at + 2].fill(0);
        let (src, dst) = if self.v6 {
            (self.l3 + 8..self.l3 + 24, self.l3 + 24..self.l3 + 40)
        } else {
            (self.l3 + 12..self.l3 + 16, self.l3 + 16..self.l3 + 20)
        };
        let proto = if self.transport == Transport::Tcp {
            PROTO_TCP
        } else {
            PROTO_UDP
        };
        let pseudo = checksum::pseudo_header(&out[src], &out[dst], proto, out.len() - self.l4);
        let mut c = checksum::finish(checksum::sum(&out[self.l4..], pseudo));
        if c == [0, 0] && self.transport == Transport::Udp {
            c = [0xff, 0xff]; // zero means "no checksum" in UDP
        }
        out[at..at + 2].copy_from_slice(&c);
    }
}

fn ip4_header_len(frame: &[u8], l3: usize) -> Result<usize, OffloadError> {
    let ihl = usize::from(frame[l3] & 0xf) * 4;
    if ihl < 20 || frame.len() < l3 + ihl {
        return Err(OffloadError::BadIpHeader);
    }
    Ok(ihl)
}

fn ip4_protocol(frame: &[u8], l3: usize) -> Result<u8, OffloadError> {
    if frame.len() < l3 + 20 || frame[l3] >> 4 != 4 {
        return Err(OffloadError::BadIpHeader);
    }
    ip4_header_len(frame, l3)?;
    let fragment = be16(frame, l3 + 6) & 0x3fff; // MF and the offset
    if fragment != 0 {
        return Err(OffloadError::BadIpHeader);
    }
    Ok(frame[l3 + 9])
}

fn ip6_protocol(frame: &[u8], l3: usize) -> Result<u8, OffloadError> {
    if frame.len() < l3 + 40 || frame[l3] >> 4 != 6 {
        return Err(OffloadError::BadIpHeader);
    }
    Ok(frame[l3 + 6])
}

fn tcp_header_len(frame: &[u8], l4: usize) -> Result<usize, OffloadError> {
    let len = usize::from(*frame.get(l4 + 12).ok_or(OffloadError::BadL4Header)? >> 4) * 4;
    if len < 20 || frame.len() < l4 + len {
        return Err(OffloadError::BadL4Header);
    }
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::virtio;
    use crate::fake::packets::{
        frames_of, inspect, pattern, Packet, Seen, TCP_ACK, TCP_CWR, TCP_FIN, TCP_PSH,
    };

    /// Prepares a read and returns the frames it becomes.
    fn cut(mut read: Vec<u8>) -> Result<Vec<Vec<u8>>, OffloadError> {
        let (frame, prepared) = prepare_read(&mut read)?;
        Ok(frames_of(frame, prepared))
    }

    fn seen(frames: &[Vec<u8>]) -> Vec<Seen> {
        frames
            .iter()
            .map(|f| inspect(f).expect("an IP frame"))
            .collect()
    }

    fn assert_clean(seen: &[Seen]) {
        for (i, s) in seen.iter().enumerate() {
            assert!(s.ip_checksum_ok && s.l4_checksum_ok, "segment {i}: {s:?}");
        }
    }

    fn rejoined(seen: &[Seen]) -> Vec<u8> {
        seen.iter().flat_map(|s| s.payload.clone()).collect()
    }

    #[test]
    fn tcp4_super_frame_becomes_mss_segments() {
        let p = Packet::tcp4(pattern(10_000, 1))
            .with_tcp(0xffff_f000, TCP_ACK | TCP_PSH | TCP_FIN | TCP_CWR);
        let frames = cut(p.super_read(1448)).unwrap();
        let s = seen(&frames);
        assert_eq!(s.len(), 7); // 6 x 1448 + 1312
        assert_clean(&s);
        assert_eq!(rejoined(&s), p.payload);
        for (i, seg) in s.iter().enumerate() {
            assert_eq!(seg.seq, Some(0xffff_f000u32.wrapping_add(i as u32 * 1448)));
            assert_eq!(seg.ip_id, Some(0x1234 + i as u16));
            let want_len = if i < 6 { 1448 } else { 10_000 - 6 * 1448 };
            assert_eq!(seg.payload.len(), want_len);
            assert_eq!(seg.ip_len, 20 + 32 + want_len);
            let flags = seg.flags.unwrap();
            assert_eq!(
                flags & (TCP_FIN | TCP_PSH) != 0,
                i == 6,
                "FIN/PSH on the last only"
            );
            assert_eq!(flags & TCP_CWR != 0, i == 0, "CWR on the first only");
            assert_ne!(flags & TCP_ACK, 0);
        }
        assert_eq!(frames[0].len(), 14 + 20 + 32 + 1448);
    }

    #[test]
    fn tcp6_super_frame() {
        let p = Packet::tcp6(pattern(4000, 2));
        let s = seen(&cut(p.super_read(1000)).unwrap());
        assert_eq!(s.len(), 4);
        assert_clean(&s);
        assert_eq!(rejoined(&s), p.payload);
        assert!(s
            .iter()
            .all(|x| x.ip_len == 40 + 32 + 1000 && x.ip_id.is_none()));
    }

    #[test]
    fn ipv4_options_are_repeated_in_every_segment() {
        let p = Packet::tcp4(pattern(3000, 3)).with_ip_options(&[0x94, 4, 0, 0]); // router alert
        let frames = cut(p.super_read(1400)).unwrap();
        let s = seen(&frames);
        assert_eq!(s.len(), 3);
        assert_clean(&s);
        assert_eq!(rejoined(&s), p.payload);
        assert!(frames
            .iter()
            .all(|f| f[14] == 0x46 && f[34..38] == [0x94, 4, 0, 0]));
    }

    #[test]
    fn uso_super_frame_becomes_datagrams() {
        let p = Packet::udp4(pattern(3000, 4));
        let s = seen(&cut(p.super_read(1200)).unwrap());
        assert_eq!(
            s.iter().map(|x| x.payload.len()).collect::<Vec<_>>(),
            [1200, 1200, 600]
        );
        assert_clean(&s);
        assert_eq!(rejoined(&s), p.payload);
    }

    #[test]
    fn a_payload_that_fits_one_segment_is_one_frame() {
        let p = Packet::tcp4(pattern(100, 5));
        let s = seen(&cut(p.super_read(1448)).unwrap());
        assert_eq!(s.len(), 1);
        assert_clean(&s);
        assert_eq!(s[0].flags, Some(TCP_ACK | TCP_PSH));
    }

    #[test]
    fn exact_multiple_has_no_short_tail() {
        let p = Packet::tcp4(pattern(3 * 500, 6));
        let s = seen(&cut(p.super_read(500)).unwrap());
        assert_eq!(
            s.iter().map(|x| x.payload.len()).collect::<Vec<_>>(),
            [500; 3]
        );
    }

    #[test]
    fn partial_checksums_are_completed_in_place() {
        for p in [
            Packet::tcp4(pattern(333, 7)),
            Packet::tcp6(pattern(40, 8)),
            Packet::udp4(pattern(1, 9)),
        ] {
            let frames = cut(p.partial_read()).unwrap();
            assert_eq!(frames, [p.frame()], "{p:?}");
        }
    }

    #[test]
    fn plain_reads_pass_untouched() {
        let mut read = virtio::VirtioHdr::NONE.encode().to_vec();
        read.extend_from_slice(&[0xff; 60]);
        assert_eq!(cut(read).unwrap(), [vec![0xff; 60]]);
    }

    #[test]
    fn segments_fit_the_frame_limit() {
        let p = Packet::tcp4(pattern(20_000, 1));
        assert_eq!(cut(p.super_read(9500)), Err(OffloadError::SegmentTooLarge));
        let ok = cut(p.super_read((MAX_FRAME_LEN - p.headers_len()) as u16)).unwrap();
        assert_eq!(ok[0].len(), MAX_FRAME_LEN);
    }

    fn with_hdr(p: &Packet, gso: u16, edit: impl FnOnce(&mut VirtioHdr, &mut Vec<u8>)) -> Vec<u8> {
        let mut read = p.super_read(gso);
        let (mut hdr, _) = VirtioHdr::split(&mut read)
            .map(|(h, f)| (h, f.len()))
            .unwrap();
        let mut frame = read.split_off(virtio::LEN);
        edit(&mut hdr, &mut frame);
        let mut out = hdr.encode().to_vec();
        out.extend_from_slice(&frame);
        out
    }

    #[test]
    fn untrusted_header_values_are_refused_not_followed() {
        let p = Packet::tcp4(pattern(5000, 1));
        let cases: Vec<(&str, Vec<u8>, OffloadError)> = vec![
            ("short read", vec![0; 9], OffloadError::ShortRead),
            (
                "legacy UFO",
                with_hdr(&p, 1448, |h, _| h.gso_type = 3),
                OffloadError::UnsupportedGso,
            ),
            (
                "gso size 0",
                with_hdr(&p, 0, |_, _| {}),
                OffloadError::BadChecksumOffsets,
            ),
            (
                "no NEEDS_CSUM",
                with_hdr(&p, 1448, |h, _| h.flags = 0),
                OffloadError::BadChecksumOffsets,
            ),
            (
                "csum_start inside IP",
                with_hdr(&p, 1448, |h, _| h.csum_start = 20),
                OffloadError::BadChecksumOffsets,
            ),
            (
                "csum_start far out",
                with_hdr(&p, 1448, |h, _| h.csum_start = 60_000),
                OffloadError::BadChecksumOffsets,
            ),
            (
                "csum_offset not TCP's",
                with_hdr(&p, 1448, |h, _| h.csum_offset = 6),
                OffloadError::BadChecksumOffsets,
            ),
            (
                "TCPV6 on IPv4",
                with_hdr(&p, 1448, |h, _| h.gso_type = GsoType::TcpV6 as u8),
                OffloadError::BadIpHeader,
            ),
            (
                "UDP header on TCP",
                with_hdr(&p, 1448, |h, _| h.gso_type = GsoType::UdpL4 as u8),
                OffloadError::BadChecksumOffsets,
            ),
            (
                "not IP",
                with_hdr(&p, 1448, |_, f| f[12..14].copy_from_slice(&[0x08, 0x06])),
                OffloadError::NotIp,
            ),
            (
                "IPv4 fragment",
                with_hdr(&p, 1448, |_, f| f[20] |= 0x20),
                OffloadError::BadIpHeader,
            ),
            (
                "IHL below 5",
                with_hdr(&p, 1448, |_, f| f[14] = 0x44),
                OffloadError::BadIpHeader,
            ),
            (
                "protocol not TCP",
                with_hdr(&p, 1448, |_, f| f[23] = 17),
                OffloadError::BadIpHeader,
            ),
            (
                "TCP data offset 4",
                with_hdr(&p, 1448, |_, f| f[46] = 0x40),
                OffloadError::BadL4Header,
            ),
            (
                "headers only",
                with_hdr(&p, 1448, |_, f| f.truncate(p.headers_len())),
                OffloadError::BadL4Header,
            ),
            (
                "truncated IP header",
                with_hdr(&p, 1448, |_, f| f.truncate(20)),
                OffloadError::BadIpHeader,
            ),
            (
                "runt",
                with_hdr(&p, 1448, |_, f| f.truncate(10)),
                OffloadError::NotIp,
            ),
        ];
        for (what, read, want) in cases {
            assert_eq!(cut(read), Err(want), "{what}");
        }
        let partial = |start: u16, offset: u16| {
            let mut r = p.partial_read();
            r[6..8].copy_from_slice(&start.to_ne_bytes());
            r[8..10].copy_from_slice(&offset.to_ne_bytes());
            r
        };
        assert_eq!(
            cut(partial(u16::MAX, 16)),
            Err(OffloadError::BadChecksumOffsets)
        );
        assert_eq!(
            cut(partial(34, u16::MAX)),
            Err(OffloadError::BadChecksumOffsets)
        );
        assert!(cut(partial(34, 16)).is_ok());
    }

    #[test]
    fn vlan_tagged_super_frames_are_cut_too() {
        let p = Packet::tcp4(pattern(3000, 1));
        let read = with_hdr(&p, 1448, |h, f| {
            f.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
            h.csum_start += 4;
        });
        let frames = cut(read).unwrap();
        assert_eq!(frames.len(), 3);
        for f in &frames {
            let mut untagged = f.clone();
            untagged.drain(12..16);
            let s = inspect(&untagged).unwrap();
            assert!(s.ip_checksum_ok && s.l4_checksum_ok);
        }
    }

    #[test]
    fn random_headers_never_panic() {
        let p = Packet::tcp4(pattern(3000, 1));
        let good = p.super_read(1448);
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for round in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut read = good.clone();
            let flips = 1 + (x % 4) as usize;
            for k in 0..flips {
                let at = ((x >> (8 + 12 * k)) as usize) % 70; // header area
                read[at] = (x >> (16 * k)) as u8;
            }
            read.truncate(((x >> 40) as usize % good.len()).max(if round % 2 == 0 {
                good.len()
            } else {
                0
            }));
            let _ = cut(read);
        }
    }
}
