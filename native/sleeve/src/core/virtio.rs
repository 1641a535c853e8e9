//! `struct virtio_net_hdr`, which a TAP opened with `IFF_VNET_HDR` puts before every frame in
//! both directions. Pure. Fields are in the host's byte order (legacy virtio on Linux).

/// `sizeof(struct virtio_net_hdr)`, also set with `TUNSETVNETHDRSZ`.
pub const LEN: usize = 10;

/// The checksum from `csum_start` on is not computed; the field holds the pseudo-header sum.
pub const F_NEEDS_CSUM: u8 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum GsoType {
    None = 0,
    TcpV4 = 1,
    TcpV6 = 4,
    UdpL4 = 5,
}

/// Set on top of a TCP GSO type when the super-frame carries ECN's CWR.
pub const GSO_ECN: u8 = 0x80;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VirtioHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VirtioHdr {
    /// No offload: a complete frame with its checksums done.
    pub const NONE: VirtioHdr = VirtioHdr {
        flags: 0,
        gso_type: 0,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
    };

    /// Splits what one read from the TAP returned into the header and the frame.
    pub fn split(read: &mut [u8]) -> Option<(VirtioHdr, &mut [u8])> {
        if read.len() < LEN {
            return None;
        }
        let (h, frame) = read.split_at_mut(LEN);
        let u16_at = |i: usize| u16::from_ne_bytes([h[i], h[i + 1]]);
        let hdr = VirtioHdr {
            flags: h[0],
            gso_type: h[1],
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
        };
        Some((hdr, frame))
    }

    pub fn encode(&self) -> [u8; LEN] {
        let mut b = [0u8; LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_ne_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_ne_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_ne_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_ne_bytes());
        b
    }

    /// The GSO type without the ECN bit; `None` for a type we do not handle.
    pub fn gso(&self) -> Option<GsoType> {
        match self.gso_type & !GSO_ECN {
            0 => Some(GsoType::None),
            1 => Some(GsoType::TcpV4),
            4 => Some(GsoType::TcpV6),
            5 => Some(GsoType::UdpL4),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_short_reads_are_refused() {
        let h = VirtioHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GsoType::TcpV4 as u8 | GSO_ECN,
            hdr_len: 66,
            gso_size: 1448,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut read = h.encode().to_vec();
        read.extend_from_slice(b"frame");
        let (got, frame) = VirtioHdr::split(&mut read).unwrap();
        assert_eq!((got, &frame[..]), (h, &b"frame"[..]));
        assert_eq!(got.gso(), Some(GsoType::TcpV4));
        assert!(VirtioHdr::split(&mut [0u8; 9]).is_none());
        assert_eq!(VirtioHdr::NONE.encode(), [0; LEN]);
        let odd = VirtioHdr { gso_type: 3, ..h }; // legacy UFO
        assert_eq!(odd.gso(), None);
    }
}
