//! Atomic counters written by the packet threads and read by `stats()`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::core::mac::DropReason;
use crate::core::segment::OffloadError;
use crate::core::wire::DecodeError;

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters; every field only ever grows.
        #[derive(Default)]
        pub struct Stats { $($(#[$doc])* pub $name: AtomicU64,)* }

        /// A copy of [`Stats`] at one moment (fields read one by one, relaxed).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct StatsSnapshot { $($(#[$doc])* pub $name: u64,)* }

        impl Stats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Relaxed),)* }
            }
        }
    };
}

counters! {
    /// Frames read from TAPs (a super-frame counts once).
    tap_frames_in,
    /// Frames written to TAPs (a super-frame counts the segments it joined).
    tap_frames_out,
    /// TCP/UDP super-frames read from TAPs with offloads, cut into segments here.
    tap_super_frames_in,
    /// Super-frames written to TAPs, each joining several segments.
    tap_super_frames_out,
    /// TAPs opened without a virtio header (the kernel refused it): one syscall per frame.
    taps_without_offload,
    /// Frame copies encoded towards peers (a flood to n peers counts n).
    frames_to_peers,
    /// Frames flooded (counted once per frame).
    floods,
    datagrams_out,
    bytes_out,
    datagrams_in,
    bytes_in,
    /// Frames decoded from accepted datagrams.
    frames_from_peers,
    tap_read_errors,
    tap_write_errors,
    udp_send_errors,
    udp_recv_errors,
    /// UDP GSO sends the kernel refused, resent as one datagram per message.
    udp_gso_fallbacks,
    /// Packet threads whose priority could not be raised (no CAP_SYS_NICE): they still run,
    /// only wait longer for a CPU on a busy host.
    thread_nice_refused,
    /// Datagrams from an address that is not a configured peer.
    drop_unknown_peer,
    /// Datagrams whose header names another sender than the peer at that address.
    drop_sender_mismatch,
    /// Datagrams for a network not configured here.
    drop_unknown_network,
    /// Floods with no peer to send to.
    drop_no_peers,
    /// Frames for a peer that this network reaches over the fast path (a stale bridge entry).
    drop_peer_elsewhere,
    /// Frames from a TAP too large to encode.
    drop_frame_too_large,
    /// Frames whose IP packet (or a super-frame's segments) exceeds the path MTU of the peer
    /// it goes to (the smallest of a flood's), with DF set or IPv6: not sent, an ICMP error
    /// answers them (unless rate-limited). A super-frame counts once.
    drop_path_mtu,
    /// ICMP "fragmentation needed" written back into a TAP for an IPv4 packet with DF set.
    icmp_frag_needed_sent,
    /// ICMPv6 "packet too big" written back into a TAP.
    icmp6_packet_too_big_sent,
    /// Frames of `drop_path_mtu` left unanswered: more than the rate limit allows (a burst of
    /// 50 per network, then 100 a second).
    icmp_rate_limited,
    /// Packets larger than their path MTU that no ICMP error may answer (IPv4 without DF, a
    /// fragment, broadcast or multicast, an ICMP error): sent as before, so the underlay
    /// fragments their datagram. A super-frame counts once.
    oversize_forwarded,
    drop_runt_frame,
    drop_invalid_source,
    drop_local_destination,
    /// Frames whose source is a network's local-only MAC (the anycast gateway), either way.
    drop_local_only_source,
    /// Frames from a TAP to multicast beyond the link (`core::multicast`) on a network without
    /// the multicast option: not sent to peers.
    drop_multicast_off,
    /// Such frames from a peer (one that carries the network's multicast when this host does
    /// not): not written to the TAP.
    drop_multicast_off_from_peer,
    /// TAP reads shorter than their virtio header.
    drop_offload_short_read,
    /// TAP reads with a GSO type we did not ask for.
    drop_offload_unsupported_gso,
    /// TAP reads whose checksum offsets point outside the frame or at the wrong field.
    drop_offload_bad_checksum_offsets,
    /// Super-frames that are not IPv4/IPv6.
    drop_offload_not_ip,
    /// Super-frames whose IP header disagrees with their GSO type or is a fragment.
    drop_offload_bad_ip_header,
    /// Super-frames whose TCP/UDP header is malformed, or without payload.
    drop_offload_bad_l4_header,
    /// Super-frames whose segments would exceed the largest frame we carry.
    drop_offload_segment_too_large,
    /// Handshake initiations sent (retries and rekeys included).
    handshakes_sent,
    /// Initiations from peers answered.
    handshakes_answered,
    /// Handshakes that put a new session in use for sending (counted once on each side).
    handshakes_completed,
    /// Handshake messages that failed to decrypt: the peer has another password.
    handshakes_failed,
    /// Initiations not newer than the last one from that peer (replayed).
    handshake_replays,
    /// Responses to no initiation in flight, initiations that lost a simultaneous initiation,
    /// and handshake messages while encryption is off.
    handshakes_ignored,
    /// Completed handshakes that replaced a session in use.
    rekeys,
    /// Frames not sent because the peer has no session yet (or its keys ran out).
    drop_no_session,
    /// Plaintext datagrams dropped because encryption is on here.
    drop_plaintext,
    /// Encrypted datagrams (handshakes included) dropped because encryption is off here.
    drop_encrypted,
    /// Transport datagrams that failed authentication.
    decrypt_failures,
    /// Transport datagrams whose counter was seen already or is too old.
    replays_dropped,
    /// Transport datagrams for a session we do not have (a handshake is started).
    drop_unknown_session,
    /// Transport datagrams for a session past its limits.
    drop_session_expired,
    malformed_short_header,
    malformed_bad_magic,
    malformed_bad_version,
    malformed_unknown_flags,
    malformed_truncated,
    malformed_trailing_bytes,
    malformed_runt_frame,
    malformed_frame_too_large,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }

    pub fn malformed(&self, e: DecodeError) -> &AtomicU64 {
        match e {
            DecodeError::ShortHeader => &self.malformed_short_header,
            DecodeError::BadMagic => &self.malformed_bad_magic,
            DecodeError::BadVersion => &self.malformed_bad_version,
            DecodeError::UnknownFlags => &self.malformed_unknown_flags,
            DecodeError::Truncated => &self.malformed_truncated,
            DecodeError::TrailingBytes => &self.malformed_trailing_bytes,
            DecodeError::RuntFrame => &self.malformed_runt_frame,
            DecodeError::FrameTooLarge => &self.malformed_frame_too_large,
        }
    }

    pub fn offload_drop(&self, e: OffloadError) -> &AtomicU64 {
        match e {
            OffloadError::ShortRead => &self.drop_offload_short_read,
            OffloadError::UnsupportedGso => &self.drop_offload_unsupported_gso,
            OffloadError::BadChecksumOffsets => &self.drop_offload_bad_checksum_offsets,
            OffloadError::NotIp => &self.drop_offload_not_ip,
            OffloadError::BadIpHeader => &self.drop_offload_bad_ip_header,
            OffloadError::BadL4Header => &self.drop_offload_bad_l4_header,
            OffloadError::SegmentTooLarge => &self.drop_offload_segment_too_large,
        }
    }

    pub fn switch_drop(&self, r: DropReason) -> &AtomicU64 {
        match r {
            DropReason::RuntFrame => &self.drop_runt_frame,
            DropReason::InvalidSource => &self.drop_invalid_source,
            DropReason::LocalDestination => &self.drop_local_destination,
        }
    }
}

impl StatsSnapshot {
    pub fn malformed_total(&self) -> u64 {
        self.malformed_short_header
            + self.malformed_bad_magic
            + self.malformed_bad_version
            + self.malformed_unknown_flags
            + self.malformed_truncated
            + self.malformed_trailing_bytes
            + self.malformed_runt_frame
            + self.malformed_frame_too_large
    }
}

/// One peer's traffic through the sleeve, both ways: a frame counts once per copy sent to the
/// peer (a flood to n peers counts on each), a datagram and its bytes as they crossed the
/// socket (handshakes and keepalives included). Every field only ever grows.
#[derive(Default)]
pub struct PeerTraffic {
    pub frames_out: AtomicU64,
    pub datagrams_out: AtomicU64,
    pub bytes_out: AtomicU64,
    pub frames_in: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub bytes_in: AtomicU64,
}

/// A copy of [`PeerTraffic`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerTrafficSnapshot {
    pub frames_out: u64,
    pub datagrams_out: u64,
    pub bytes_out: u64,
    pub frames_in: u64,
    pub datagrams_in: u64,
    pub bytes_in: u64,
}

impl PeerTraffic {
    pub fn snapshot(&self) -> PeerTrafficSnapshot {
        PeerTrafficSnapshot {
            frames_out: self.frames_out.load(Relaxed),
            datagrams_out: self.datagrams_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            frames_in: self.frames_in.load(Relaxed),
            datagrams_in: self.datagrams_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
        }
    }
}
