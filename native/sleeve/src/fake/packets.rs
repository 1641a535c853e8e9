//! Ethernet frames carrying IPv4/IPv6 and TCP/UDP, built and checked for tests. Checksums use
//! their own plain RFC 1071 code, so they check `core::checksum` rather than repeat it.

use crate::core::segment::Prepared;
use crate::core::virtio::{GsoType, VirtioHdr, F_NEEDS_CSUM};

pub const TCP_ACK: u8 = 0x10;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_FIN: u8 = 0x01;
pub const TCP_CWR: u8 = 0x80;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ip {
    V4 {
        src: [u8; 4],
        dst: [u8; 4],
        id: u16,
        /// Flags and fragment offset: DF (0x4000) unless a test says otherwise.
        frag: u16,
        options: Vec<u8>,
    },
    V6 {
        src: [u8; 16],
        dst: [u8; 16],
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4 {
    Tcp {
        sport: u16,
        dport: u16,
        seq: u32,
        ack: u32,
        flags: u8,
        options: Vec<u8>,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub ip: Ip,
    pub l4: L4,
    pub payload: Vec<u8>,
}

/// Payload bytes that differ by position, so misplaced segments show.
pub fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn rfc1071(parts: &[&[u8]]) -> u16 {
    let mut s: u32 = 0;
    let bytes: Vec<u8> = parts.concat();
    for pair in bytes.chunks(2) {
        s += u32::from(pair[0]) << 8 | u32::from(*pair.get(1).unwrap_or(&0));
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16 // folded, not complemented
}

impl Packet {
    pub fn tcp4(payload: Vec<u8>) -> Packet {
        Packet {
            dst_mac: [0x02, 0, 0, 0, 0, 0xb],
            src_mac: [0x02, 0, 0, 0, 0, 0xa],
            ip: Ip::V4 {
                src: [10, 254, 252, 17],
                dst: [10, 254, 252, 18],
                id: 0x1234,
                frag: 0x4000,
                options: Vec::new(),
            },
            l4: L4::Tcp {
                sport: 40000,
                dport: 5201,
                seq: 0xffff_f000, // wraps within a super-frame
                ack: 77,
                flags: TCP_ACK | TCP_PSH,
                options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], // NOP NOP timestamps
            },
            payload,
        }
    }

    pub fn tcp6(payload: Vec<u8>) -> Packet {
        let mut p = Packet::tcp4(payload);
        let mut src = [0u8; 16];
        src[..2].copy_from_slice(&[0xfd, 0]);
        src[15] = 17;
        let mut dst = src;
        dst[15] = 18;
        p.ip = Ip::V6 { src, dst };
        p
    }

    pub fn udp4(payload: Vec<u8>) -> Packet {
        let mut p = Packet::tcp4(payload);
        p.l4 = L4::Udp {
            sport: 40000,
            dport: 5201,
        };
        p
    }

    pub fn with_ip_options(mut self, opts: &[u8]) -> Packet {
        if let Ip::V4 { options, .. } = &mut self.ip {
            *options = opts.to_vec();
        }
        self
    }

    /// IPv4 flags and fragment offset (0: no DF).
    pub fn with_ip4_frag(mut self, value: u16) -> Packet {
        if let Ip::V4 { frag, .. } = &mut self.ip {
            *frag = value;
        }
        self
    }

    pub fn with_tcp(mut self, seq_: u32, flags_: u8) -> Packet {
        if let L4::Tcp { seq, flags, .. } = &mut self.l4 {
            *seq = seq_;
            *flags = flags_;
        }
        self
    }

    fn l3_len(&self) -> usize {
        match &self.ip {
            Ip::V4 { options, .. } => 20 + options.len(),
            Ip::V6 { .. } => 40,
        }
    }

    fn l4_header(&self) -> Vec<u8> {
        match &self.l4 {
            L4::Tcp {
                sport,
                dport,
                seq,
                ack,
                flags,
                options,
            } => {
                let mut h = Vec::new();
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&seq.to_be_bytes());
                h.extend_from_slice(&ack.to_be_bytes());
                h.push((((20 + options.len()) / 4) as u8) << 4);
                h.push(*flags);
                h.extend_from_slice(&64_000u16.to_be_bytes());
                h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                h.extend_from_slice(options);
                h
            }
            L4::Udp { sport, dport } => {
                let mut h = Vec::new();
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&((8 + self.payload.len()) as u16).to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h
            }
        }
    }

    fn protocol(&self) -> u8 {
        match self.l4 {
            L4::Tcp { .. } => 6,
            L4::Udp { .. } => 17,
        }
    }

    fn csum_offset(&self) -> usize {
        match self.l4 {
            L4::Tcp { .. } => 16,
            L4::Udp { .. } => 6,
        }
    }

    /// The folded pseudo-header sum for this packet's transport length.
    fn pseudo(&self, l4_len: usize) -> u16 {
        let len = (l4_len as u32).to_be_bytes();
        let proto = [0, self.protocol()];
        match &self.ip {
            Ip::V4 { src, dst, .. } => rfc1071(&[src, dst, &proto, &len]),
            Ip::V6 { src, dst } => rfc1071(&[src, dst, &proto, &len]),
        }
    }

    /// The frame with its transport checksum left as the kernel leaves it for offload: the
    /// pseudo-header sum, not complemented.
    fn build(&self) -> (Vec<u8>, usize) {
        let mut f = Vec::new();
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        let l4 = self.l4_header();
        let l4_len = l4.len() + self.payload.len();
        match &self.ip {
            Ip::V4 {
                src,
                dst,
                id,
                frag,
                options,
            } => {
                f.extend_from_slice(&[0x08, 0x00]);
                let mut h = vec![0x40 | ((20 + options.len()) / 4) as u8, 0];
                h.extend_from_slice(&((20 + options.len() + l4_len) as u16).to_be_bytes());
                h.extend_from_slice(&id.to_be_bytes());
                h.extend_from_slice(&frag.to_be_bytes());
                h.extend_from_slice(&[64, self.protocol(), 0, 0]); // TTL 64
                h.extend_from_slice(src);
                h.extend_from_slice(dst);
                h.extend_from_slice(options);
                let c = !rfc1071(&[&h]);
                h[10..12].copy_from_slice(&c.to_be_bytes());
                f.extend_from_slice(&h);
            }
            Ip::V6 { src, dst } => {
                f.extend_from_slice(&[0x86, 0xdd]);
                f.extend_from_slice(&[0x60, 0, 0, 0]);
                f.extend_from_slice(&(l4_len as u16).to_be_bytes());
                f.extend_from_slice(&[self.protocol(), 64]);
                f.extend_from_slice(src);
                f.extend_from_slice(dst);
            }
        }
        let l4_at = f.len();
        f.extend_from_slice(&l4);
        f.extend_from_slice(&self.payload);
        let at = l4_at + self.csum_offset();
        f[at..at + 2].copy_from_slice(&self.pseudo(l4_len).to_be_bytes());
        (f, l4_at)
    }

    /// A complete frame with correct checksums.
    pub fn frame(&self) -> Vec<u8> {
        let (mut f, l4_at) = self.build();
        let at = l4_at + self.csum_offset();
        let mut c = !rfc1071(&[&f[l4_at..]]);
        if c == 0 && self.protocol() == 17 {
            c = 0xffff;
        }
        f[at..at + 2].copy_from_slice(&c.to_be_bytes());
        f
    }

    /// What a TAP with offloads hands over for this packet sent by a local socket with TSO/USO:
    /// the virtio header, then the whole packet with its checksum left partial.
    pub fn super_read(&self, gso_size: u16) -> Vec<u8> {
        let (f, l4_at) = self.build();
        let gso_type = match (&self.l4, &self.ip) {
            (L4::Udp { .. }, _) => GsoType::UdpL4,
            (L4::Tcp { .. }, Ip::V4 { .. }) => GsoType::TcpV4,
            (L4::Tcp { .. }, Ip::V6 { .. }) => GsoType::TcpV6,
        };
        let hdr = VirtioHdr {
            flags: F_NEEDS_CSUM,
            gso_type: gso_type as u8,
            hdr_len: (l4_at + self.l4_header().len()) as u16,
            gso_size,
            csum_start: l4_at as u16,
            csum_offset: self.csum_offset() as u16,
        };
        let mut read = hdr.encode().to_vec();
        read.extend_from_slice(&f);
        read
    }

    /// Like [`Packet::super_read`] for a packet small enough to need no segmentation: the
    /// checksum is still left to the reader.
    pub fn partial_read(&self) -> Vec<u8> {
        let mut read = self.super_read(0);
        read[1] = GsoType::None as u8;
        read
    }

    pub fn l3_offset() -> usize {
        14
    }

    pub fn headers_len(&self) -> usize {
        14 + self.l3_len() + self.l4_header().len()
    }
}

/// What a test wants to know about a frame, read back with independent code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    pub ip_len: usize,
    pub ip_id: Option<u16>,
    pub seq: Option<u32>,
    pub flags: Option<u8>,
    pub payload: Vec<u8>,
    pub ip_checksum_ok: bool,
    pub l4_checksum_ok: bool,
}

/// Reads an Ethernet + IPv4/IPv6 + TCP/UDP frame; `None` if it is not one.
pub fn inspect(f: &[u8]) -> Option<Seen> {
    let ethertype = u16::from_be_bytes([*f.get(12)?, *f.get(13)?]);
    let (l3, l4_at, proto, ip_len, ip_id, ip_ok, src, dst) = match ethertype {
        0x0800 => {
            let ihl = (f.get(14)? & 0xf) as usize * 4;
            let total = u16::from_be_bytes([f[16], f[17]]) as usize;
            let ok = rfc1071(&[f.get(14..14 + ihl)?]) == 0xffff;
            let id = u16::from_be_bytes([f[18], f[19]]);
            (
                14,
                14 + ihl,
                f[23],
                total,
                Some(id),
                ok,
                &f[26..30],
                &f[30..34],
            )
        }
        0x86dd => {
            let plen = u16::from_be_bytes([*f.get(18)?, f[19]]) as usize;
            (14, 54, f[20], 40 + plen, None, true, &f[22..38], &f[38..54])
        }
        _ => return None,
    };
    if f.len() != l3 + ip_len {
        return None;
    }
    let l4 = &f[l4_at..];
    let len = (l4.len() as u32).to_be_bytes();
    let ok = rfc1071(&[src, dst, &[0, proto], &len, l4]) == 0xffff;
    let (seq, flags, payload) = match proto {
        6 => {
            let hlen = (l4.get(12)? >> 4) as usize * 4;
            let seq = u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]);
            (Some(seq), Some(l4[13]), l4.get(hlen..)?.to_vec())
        }
        17 => (None, None, l4.get(8..)?.to_vec()),
        _ => return None,
    };
    Some(Seen {
        ip_len,
        ip_id,
        seq,
        flags,
        payload,
        ip_checksum_ok: ip_ok,
        l4_checksum_ok: ok,
    })
}

/// An ICMP error frame read back with independent code: IPv4 "fragmentation needed" or ICMPv6
/// "packet too big", as `core::pmtu` writes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IcmpSeen {
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub v6: bool,
    pub src: Vec<u8>,
    pub dst: Vec<u8>,
    /// TTL or hop limit.
    pub ttl: u8,
    pub icmp_type: u8,
    pub code: u8,
    pub mtu: u32,
    /// The original packet's bytes the error carries.
    pub quote: Vec<u8>,
    /// IPv4 header checksum (always true for IPv6, which has none).
    pub ip_checksum_ok: bool,
    pub icmp_checksum_ok: bool,
    /// IPv4 DF set on the error itself.
    pub df: bool,
}

/// Reads an Ethernet + IPv4/ICMP or IPv6/ICMPv6 frame; `None` if it is not one, or its IP
/// length disagrees with the frame's.
pub fn inspect_icmp(f: &[u8]) -> Option<IcmpSeen> {
    let macs = |at: usize| -> [u8; 6] { f[at..at + 6].try_into().unwrap() };
    let (v6, l4_at, ip_len) = match u16::from_be_bytes([*f.get(12)?, *f.get(13)?]) {
        0x0800 if f.get(23) == Some(&1) => (false, 14 + (f[14] & 0xf) as usize * 4, 0),
        0x86dd if f.get(20) == Some(&58) => {
            (true, 54, 40 + u16::from_be_bytes([f[18], f[19]]) as usize)
        }
        _ => return None,
    };
    let ip_len = if v6 {
        ip_len
    } else {
        u16::from_be_bytes([f[16], f[17]]) as usize
    };
    if f.len() != 14 + ip_len || f.len() < l4_at + 8 {
        return None;
    }
    let icmp = &f[l4_at..];
    let (src, dst) = if v6 {
        (f[22..38].to_vec(), f[38..54].to_vec())
    } else {
        (f[26..30].to_vec(), f[30..34].to_vec())
    };
    let icmp_sum = if v6 {
        let len = (icmp.len() as u32).to_be_bytes();
        rfc1071(&[&src, &dst, &len, &[0, 0, 0, 58], icmp])
    } else {
        rfc1071(&[icmp])
    };
    let mtu = if v6 {
        u32::from_be_bytes([icmp[4], icmp[5], icmp[6], icmp[7]])
    } else {
        u16::from_be_bytes([icmp[6], icmp[7]]).into()
    };
    Some(IcmpSeen {
        dst_mac: macs(0),
        src_mac: macs(6),
        v6,
        src,
        dst,
        ttl: if v6 { f[21] } else { f[22] },
        icmp_type: icmp[0],
        code: icmp[1],
        mtu,
        quote: icmp[8..].to_vec(),
        ip_checksum_ok: v6 || rfc1071(&[&f[14..l4_at]]) == 0xffff,
        icmp_checksum_ok: icmp_sum == 0xffff,
        df: !v6 && f[20] & 0x40 != 0,
    })
}

/// The frames a prepared read stands for: itself, or the segments a super-frame is cut into.
/// Allocates, so it is for tests; the engine writes segments in place.
pub fn frames_of(frame: &[u8], prepared: Prepared) -> Vec<Vec<u8>> {
    match prepared {
        Prepared::Frame => vec![frame.to_vec()],
        Prepared::Segments(s) => (0..s.count())
            .map(|i| {
                let mut out = vec![0; s.len(i)];
                s.write(frame, i, &mut out);
                out
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_frames_inspect_clean() {
        for p in [
            Packet::tcp4(pattern(100, 1)),
            Packet::tcp6(pattern(101, 2)),
            Packet::udp4(pattern(7, 3)),
            Packet::tcp4(pattern(5, 4)).with_ip_options(&[1, 1, 1, 0]),
        ] {
            let s = inspect(&p.frame()).unwrap();
            assert!(s.ip_checksum_ok && s.l4_checksum_ok, "{p:?}");
            assert_eq!(s.payload, p.payload);
        }
    }
}
