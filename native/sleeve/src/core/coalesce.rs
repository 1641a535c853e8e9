//! Consecutive TCP segments of one flow joined back into one super-frame, written to a TAP with
//! offloads in one go instead of one write per segment. Pure; the receive-side counterpart of
//! [`segment`](super::segment), following the kernel's GRO rules (and wireguard-go's `tcpGRO`).
//!
//! Only frames arriving back to back are joined: the peer cut them from one super-frame and sent
//! them in order, so a flow table buys little. A segment joins the pending super-frame when it
//! has the same Ethernet, IP and TCP headers except the sequence number (which must follow on),
//! carries data, and the pending one has not ended (a short segment or PSH ends it). Each
//! segment's checksum is verified before joining, so a corrupt segment is never made to look
//! valid; such a segment is written on its own and the stack drops it as it would have.

use super::checksum;
use super::eth::{ETH_LEN, PROTO_TCP};
use super::virtio::{GsoType, VirtioHdr, F_NEEDS_CSUM};

const TCP_ACK: u8 = 0x10;
const TCP_PSH: u8 = 0x08;
/// An IP packet (IPv4 total length, IPv6 payload length) is at most this long.
const MAX_IP_LEN: usize = 65_535;

/// What became of a frame offered with [`Coalescer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// The frame is held in the pending super-frame.
    Held,
    /// The frame does not continue the pending super-frame: [`take`](Coalescer::take) that one
    /// and push again.
    Busy,
    /// The frame can never be joined: take the pending one, then write this one as it is.
    Plain,
}

#[derive(Debug, Clone, Copy)]
struct Segment {
    v6: bool,
    l4: usize,
    headers: usize,
    seq: u32,
    psh: bool,
    payload: usize,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    first: Segment,
    segments: usize,
    next_seq: u32,
    /// A short segment or PSH came: nothing may follow.
    ended: bool,
}

pub struct Coalescer {
    buf: Vec<u8>,
    pending: Option<Pending>,
}

impl Default for Coalescer {
    fn default() -> Self {
        Self::new()
    }
}

impl Coalescer {
    pub fn new() -> Self {
        Coalescer {
            buf: Vec::with_capacity(ETH_LEN + MAX_IP_LEN + 40),
            pending: None,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_none()
    }

    pub fn push(&mut self, frame: &[u8]) -> Push {
        let Some(seg) = parse(frame) else {
            return Push::Plain;
        };
        if let Some(p) = &self.pending {
            if !continues(p, &self.buf, frame, &seg) {
                return Push::Busy;
            }
        }
        if !checksum_ok(frame, &seg) {
            return Push::Plain;
        }
        match &mut self.pending {
            Some(p) => {
                self.buf.extend_from_slice(&frame[seg.headers..]);
                p.segments += 1;
                p.next_seq = seg.seq.wrapping_add(seg.payload as u32);
                p.ended = seg.psh || seg.payload < p.first.payload;
                if seg.psh {
                    self.buf[p.first.l4 + 13] |= TCP_PSH;
                }
            }
            None => {
                self.buf.clear();
                self.buf.extend_from_slice(frame);
                self.pending = Some(Pending {
                    first: seg,
                    segments: 1,
                    next_seq: seg.seq.wrapping_add(seg.payload as u32),
                    ended: seg.psh,
                });
            }
        }
        Push::Held
    }

    /// The pending frame, ready to write with its header: a lone segment as it came, several as
    /// one GSO super-frame whose checksum the kernel completes. `None` when nothing is pending.
    pub fn take(&mut self) -> Option<(VirtioHdr, usize, &[u8])> {
        let p = self.pending.take()?;
        if p.segments == 1 {
            return Some((VirtioHdr::NONE, 1, &self.buf));
        }
        let s = p.first;
        let buf = &mut self.buf[..];
        let l3 = ETH_LEN;
        if s.v6 {
            let payload_len = (buf.len() - l3 - 40) as u16;
            buf[l3 + 4..l3 + 6].copy_from_slice(&payload_len.to_be_bytes());
        } else {
            let total = (buf.len() - l3) as u16;
            buf[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
            buf[l3 + 10..l3 + 12].fill(0);
            let c = checksum::finish(checksum::sum(&buf[l3..s.l4], 0));
            buf[l3 + 10..l3 + 12].copy_from_slice(&c);
        }
        let (src, dst) = addresses(s.v6);
        let pseudo = checksum::pseudo_header(&buf[src], &buf[dst], PROTO_TCP, buf.len() - s.l4);
        // CHECKSUM_PARTIAL: the field holds the pseudo-header sum, not complemented.
        buf[s.l4 + 16..s.l4 + 18].copy_from_slice(&checksum::fold(pseudo).to_ne_bytes());
        let hdr = VirtioHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if s.v6 { GsoType::TcpV6 } else { GsoType::TcpV4 } as u8,
            hdr_len: s.headers as u16,
            gso_size: s.payload as u16,
            csum_start: s.l4 as u16,
            csum_offset: 16,
        };
        Some((hdr, p.segments, &self.buf))
    }
}

fn addresses(v6: bool) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    if v6 {
        (ETH_LEN + 8..ETH_LEN + 24, ETH_LEN + 24..ETH_LEN + 40)
    } else {
        (ETH_LEN + 12..ETH_LEN + 16, ETH_LEN + 16..ETH_LEN + 20)
    }
}

fn be16(b: &[u8], at: usize) -> usize {
    usize::from(u16::from_be_bytes([b[at], b[at + 1]]))
}

/// A TCP segment with data that may be joined: untagged Ethernet, IPv4 without options and not
/// a fragment or IPv6 without extension headers, lengths matching the frame exactly, and only
/// ACK (and PSH) set.
fn parse(f: &[u8]) -> Option<Segment> {
    let (v6, l4) = match (f.get(12..14)?, f.get(ETH_LEN)? >> 4) {
        ([0x08, 0x00], 4) => {
            let ip = f.get(ETH_LEN..ETH_LEN + 20)?;
            let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
            let plain = ip[0] == 0x45 && !fragment && ip[9] == PROTO_TCP;
            (plain && be16(ip, 2) == f.len() - ETH_LEN).then_some((false, ETH_LEN + 20))?
        }
        ([0x86, 0xdd], 6) => {
            let ip = f.get(ETH_LEN..ETH_LEN + 40)?;
            let plain = ip[6] == PROTO_TCP && be16(ip, 4) == f.len() - ETH_LEN - 40;
            plain.then_some((true, ETH_LEN + 40))?
        }
        _ => return None,
    };
    let tcp = f.get(l4..l4 + 20)?;
    let headers = l4 + usize::from(tcp[12] >> 4) * 4;
    let flags = tcp[13];
    if headers < l4 + 20 || headers >= f.len() || flags & !TCP_PSH != TCP_ACK {
        return None;
    }
    Some(Segment {
        v6,
        l4,
        headers,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        psh: flags & TCP_PSH != 0,
        payload: f.len() - headers,
    })
}

fn checksum_ok(f: &[u8], s: &Segment) -> bool {
    let (src, dst) = addresses(s.v6);
    let pseudo = checksum::pseudo_header(&f[src], &f[dst], PROTO_TCP, f.len() - s.l4);
    checksum::verifies(checksum::sum(&f[s.l4..], pseudo))
}

/// Whether `f` carries on the pending super-frame in `buf`.
fn continues(p: &Pending, buf: &[u8], f: &[u8], s: &Segment) -> bool {
    let first = &p.first;
    let room = if s.v6 {
        buf.len() - ETH_LEN - 40
    } else {
        buf.len() - ETH_LEN
    };
    !p.ended
        && s.v6 == first.v6
        && s.headers == first.headers
        && s.seq == p.next_seq
        && s.payload <= first.payload
        && room + s.payload <= MAX_IP_LEN
        && same_headers(buf, f, first)
}

/// Everything but lengths, ids, checksums, sequence number and PSH must match.
fn same_headers(a: &[u8], b: &[u8], s: &Segment) -> bool {
    let (l3, l4) = (ETH_LEN, s.l4);
    let ip_same = if s.v6 {
        a[l3..l3 + 4] == b[l3..l3 + 4] && a[l3 + 6..l4] == b[l3 + 6..l4]
    } else {
        a[l3 + 1] == b[l3 + 1]
            && a[l3 + 6] & 0xe0 == b[l3 + 6] & 0xe0
            && a[l3 + 8..l3 + 10] == b[l3 + 8..l3 + 10]
            && a[l3 + 12..l4] == b[l3 + 12..l4]
    };
    a[..ETH_LEN] == b[..ETH_LEN]
        && ip_same
        && a[l4..l4 + 4] == b[l4..l4 + 4] // ports
        && a[l4 + 8..l4 + 12] == b[l4 + 8..l4 + 12] // acknowledgement
        && a[l4 + 20..s.headers] == b[l4 + 20..s.headers] // options
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::segment::{prepare, Prepared};
    use crate::fake::packets::{frames_of, inspect, pattern, Packet, TCP_ACK, TCP_PSH};

    fn segments(p: &Packet, mss: u16) -> Vec<Vec<u8>> {
        let mut read = p.super_read(mss);
        let (hdr, frame) = VirtioHdr::split(&mut read).unwrap();
        let prepared @ Prepared::Segments(_) = prepare(&hdr, frame).unwrap() else {
            panic!("not a super-frame")
        };
        frames_of(frame, prepared)
    }

    /// Pushes frames, taking whenever asked; returns what would be written.
    fn run(frames: &[Vec<u8>]) -> Vec<(VirtioHdr, usize, Vec<u8>)> {
        let mut c = Coalescer::new();
        let mut out = Vec::new();
        let take = |c: &mut Coalescer, out: &mut Vec<_>| {
            if let Some((h, n, f)) = c.take() {
                out.push((h, n, f.to_vec()));
            }
        };
        for f in frames {
            match c.push(f) {
                Push::Held => {}
                Push::Busy => {
                    take(&mut c, &mut out);
                    assert_eq!(c.push(f), Push::Held);
                }
                Push::Plain => {
                    take(&mut c, &mut out);
                    out.push((VirtioHdr::NONE, 1, f.clone()));
                }
            }
        }
        take(&mut c, &mut out);
        out
    }

    /// Cuts a written super-frame again, as the kernel would: must give back the segments.
    fn recut(hdr: VirtioHdr, frame: &[u8]) -> Vec<Vec<u8>> {
        let mut f = frame.to_vec();
        let prepared = prepare(&hdr, &mut f).unwrap();
        frames_of(&f, prepared)
    }

    #[test]
    fn segments_of_one_super_frame_join_back() {
        for p in [
            Packet::tcp4(pattern(20_000, 1)),
            Packet::tcp6(pattern(9_000, 2)),
        ] {
            let segs = segments(&p, 1400);
            let out = run(&segs);
            assert_eq!(out.len(), 1);
            let (hdr, n, frame) = &out[0];
            assert_eq!(*n, segs.len());
            assert_eq!(hdr.gso_size, 1400);
            assert_eq!(hdr.flags, F_NEEDS_CSUM);
            assert_eq!(
                recut(*hdr, frame),
                segs,
                "the kernel's cut gives the same frames"
            );
        }
    }

    #[test]
    fn a_lone_segment_is_written_as_it_came() {
        let f = Packet::tcp4(pattern(100, 1)).frame();
        assert_eq!(run(std::slice::from_ref(&f)), [(VirtioHdr::NONE, 1, f)]);
    }

    #[test]
    fn psh_and_short_segments_end_a_super_frame() {
        let p = Packet::tcp4(pattern(4000, 1)).with_tcp(1000, TCP_ACK | TCP_PSH);
        let mut frames = segments(&p, 1000); // 4 x 1000, PSH on the last
        let next = Packet::tcp4(pattern(1000, 2))
            .with_tcp(5000, TCP_ACK)
            .frame();
        frames.push(next.clone());
        let out = run(&frames);
        assert_eq!(out.iter().map(|o| o.1).collect::<Vec<_>>(), [4, 1]);
        assert_eq!(
            inspect(&recut(out[0].0, &out[0].2)[3]).unwrap().flags,
            Some(TCP_ACK | TCP_PSH)
        );

        let short = Packet::tcp4(pattern(2500, 1)).with_tcp(1000, TCP_ACK);
        let mut frames = segments(&short, 1000); // 1000, 1000, 500
        frames.push(
            Packet::tcp4(pattern(1000, 3))
                .with_tcp(3500, TCP_ACK)
                .frame(),
        );
        assert_eq!(run(&frames).iter().map(|o| o.1).collect::<Vec<_>>(), [3, 1]);
    }

    #[test]
    fn gaps_other_flows_and_other_acks_start_anew() {
        let a = |seq: u32| Packet::tcp4(pattern(1000, 1)).with_tcp(seq, TCP_ACK);
        let mut other_port = a(2000);
        if let crate::fake::packets::L4::Tcp { sport, .. } = &mut other_port.l4 {
            *sport = 1;
        }
        let mut other_ack = a(2000);
        if let crate::fake::packets::L4::Tcp { ack, .. } = &mut other_ack.l4 {
            *ack = 78;
        }
        let frames = [a(0), a(1000), a(3000), other_port, other_ack, a(3000)].map(|p| p.frame());
        assert_eq!(
            run(&frames).iter().map(|o| o.1).collect::<Vec<_>>(),
            [2, 1, 1, 1, 1]
        );
    }

    #[test]
    fn non_candidates_are_plain_and_flush_first() {
        let data = |seq: u32| {
            Packet::tcp4(pattern(1000, 1))
                .with_tcp(seq, TCP_ACK)
                .frame()
        };
        let pure_ack = Packet::tcp4(Vec::new()).with_tcp(2000, TCP_ACK).frame();
        let udp = Packet::udp4(pattern(50, 1)).frame();
        let options = Packet::tcp4(pattern(1000, 1))
            .with_ip_options(&[1, 1, 1, 0])
            .frame();
        let fin = Packet::tcp4(pattern(1000, 1))
            .with_tcp(2000, TCP_ACK | 0x01)
            .frame();
        let mut padded = Packet::tcp4(pattern(4, 1)).with_tcp(2000, TCP_ACK).frame();
        padded.resize(60, 0);
        let mut corrupt = data(2000);
        corrupt[100] ^= 0x40;
        for odd in [pure_ack, udp, options, fin, padded, corrupt] {
            let out = run(&[data(0), data(1000), odd.clone(), data(2000)]);
            assert_eq!(out.iter().map(|o| o.1).collect::<Vec<_>>(), [2, 1, 1]);
            assert_eq!(out[1], (VirtioHdr::NONE, 1, odd));
        }
    }

    #[test]
    fn super_frames_stay_within_an_ip_packet() {
        let half = 40 * 1448;
        let p = |seq: u32| Packet::tcp4(pattern(half, seq as u8)).with_tcp(seq, TCP_ACK);
        let segs = [segments(&p(0), 1448), segments(&p(half as u32), 1448)].concat();
        let out = run(&segs);
        assert!(out.len() >= 2);
        for (hdr, _, f) in &out {
            assert!(f.len() - ETH_LEN <= MAX_IP_LEN);
            assert!(recut(*hdr, f)
                .iter()
                .all(|s| inspect(s).unwrap().l4_checksum_ok));
        }
        let total: usize = out.iter().map(|o| o.1).sum();
        assert_eq!(total, segs.len());
    }

    #[test]
    fn changed_ttl_or_tos_does_not_join() {
        let a = Packet::tcp4(pattern(1000, 1)).with_tcp(0, TCP_ACK).frame();
        let mut b = Packet::tcp4(pattern(1000, 1))
            .with_tcp(1000, TCP_ACK)
            .frame();
        b[22] = 63; // TTL; IP checksum left stale: not ours to judge
        assert_eq!(run(&[a, b]).len(), 2);
    }

    #[test]
    fn garbage_never_panics() {
        let base = Packet::tcp4(pattern(200, 1)).frame();
        let mut c = Coalescer::new();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..50_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mut f = base.clone();
            f[(x as usize) % 80] = (x >> 32) as u8;
            f.truncate(((x >> 48) as usize) % (base.len() + 1));
            if c.push(&f) != Push::Held {
                c.take();
            }
        }
    }
}
