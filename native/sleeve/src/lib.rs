//! The napi surface of the sleeve data path: `new / applyConfig / start / stop / stats`, and
//! `sessions` (each peer's encryption state, for status).
//! Everything below it is plain Rust, tested with `cargo test`; no per-packet call crosses
//! into JavaScript. Config arrives already validated by the JS wrapper (zod) and is checked
//! again here, because the addon cannot trust its caller.

pub mod config;
pub mod core;
pub mod engine;
pub mod fake;
pub mod os;
pub mod stats;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use napi::bindgen_prelude::BigInt;
use napi::{Error, Result, Status};
use napi_derive::napi;
use zeroize::Zeroizing;

use crate::config::{
    CryptoConfig, EngineConfig, NetworkConfig, PeerConfig, DEFAULT_LISTEN_PORT,
    DEFAULT_PACKET_THREAD_NICE,
};
use crate::core::clock::MonotonicClock;
use crate::core::crypto::{Limits, PeerStatus, Psk, SessionState};
use crate::core::pmtu::MIN_MTU;
use crate::engine::{Engine, EngineError};
use crate::os::tap::OsTapFactory;
use crate::os::udp::OsUdp;
use crate::os::UdpOffloads;
use crate::stats::{Stats, StatsSnapshot};

/// How long a packet thread blocks before checking for `stop()`; bounds `stop()`'s latency.
const POLL: Duration = Duration::from_millis(50);

#[napi(object)]
pub struct PeerSpec {
    /// Peer id, 0 < id < 2^64.
    pub id: BigInt,
    /// `ip:port` or `[ipv6]:port`; no name resolution.
    pub address: String,
    /// The largest IP packet a frame to this peer may carry (576..=65535): the underlay
    /// route's MTU less the sleeve's overhead (64, or 96 encrypted). A larger packet with DF
    /// set (or IPv6) is not sent; an ICMP error tells its sender the MTU. Default: no limit.
    pub mtu: Option<u32>,
}

#[napi(object)]
pub struct NetworkSpec {
    /// Network id on the wire (VNI).
    pub id: u32,
    /// TAP interface name (1-15 bytes).
    pub tap: String,
    /// Source MACs that never cross the wire on this network (`aa:bb:cc:dd:ee:ff`).
    pub local_macs: Option<Vec<String>>,
    /// Peer ids this network's frames are sent to; default every peer.
    pub send_to: Option<Vec<BigInt>>,
    /// Multicast beyond the link (IPv4 outside 224.0.0.0/24, IPv6 outside ff02::/16) crosses
    /// hosts; default false: it stays on this host, counted in `dropMulticastOff*`.
    pub multicast: Option<bool>,
}

#[napi(object)]
pub struct SleeveConfig {
    /// Our own peer id.
    pub peer_id: BigInt,
    /// Address to bind; default `0.0.0.0`.
    pub listen_host: Option<String>,
    /// UDP port; default 6784. Changing it needs stop/start.
    pub listen_port: Option<u32>,
    pub peers: Vec<PeerSpec>,
    pub networks: Vec<NetworkSpec>,
    /// MAC entry lifetime; default 300000.
    pub mac_max_age_ms: Option<u32>,
    /// Soft datagram size for batching; default 1472.
    pub batch_bytes: Option<u32>,
    /// The mesh password (1-1024 bytes): every datagram between routers is encrypted, and
    /// only peers with the same password are heard. Never logged or echoed.
    pub password: Option<String>,
    /// A handshake starts after this many datagrams with one key; default 2^32 (tests lower it).
    pub rekey_after_messages: Option<f64>,
    /// The initiator of a session starts the next handshake after this long; default 120.
    pub rekey_after_seconds: Option<u32>,
}

/// One peer's encryption state, for status.
#[napi(object)]
pub struct SleeveSession {
    pub peer_id: BigInt,
    /// `established`, `handshaking`, `wrongPassword`, `plaintextPeer` (it has no password),
    /// `encryptedPeer` (it has one and we do not), or `off`.
    pub state: String,
    pub established: bool,
    pub wrong_password: bool,
    /// Milliseconds since the last completed handshake with the peer, if any.
    pub handshake_age_ms: Option<f64>,
}

/// One peer's traffic through the sleeve since the engine started (see `stats::PeerTraffic`).
#[napi(object)]
pub struct SleevePeerTraffic {
    pub peer_id: BigInt,
    pub frames_out: BigInt,
    pub datagrams_out: BigInt,
    pub bytes_out: BigInt,
    pub frames_in: BigInt,
    pub datagrams_in: BigInt,
    pub bytes_in: BigInt,
}

/// Counters since `new()`; they keep counting across stop/start.
#[napi(object)]
pub struct SleeveStats {
    pub running: bool,
    /// UDP segmentation offload in use (false when stopped, or refused by the kernel).
    pub udp_gso: bool,
    /// UDP receive coalescing in use (false when stopped, or refused by the kernel).
    pub udp_gro: bool,
    pub tap_frames_in: BigInt,
    pub tap_frames_out: BigInt,
    pub tap_super_frames_in: BigInt,
    pub tap_super_frames_out: BigInt,
    pub taps_without_offload: BigInt,
    pub frames_to_peers: BigInt,
    pub floods: BigInt,
    pub datagrams_out: BigInt,
    pub bytes_out: BigInt,
    pub datagrams_in: BigInt,
    pub bytes_in: BigInt,
    pub frames_from_peers: BigInt,
    pub tap_read_errors: BigInt,
    pub tap_write_errors: BigInt,
    pub udp_send_errors: BigInt,
    pub udp_recv_errors: BigInt,
    pub udp_gso_fallbacks: BigInt,
    pub thread_nice_refused: BigInt,
    pub drop_unknown_peer: BigInt,
    pub drop_sender_mismatch: BigInt,
    pub drop_unknown_network: BigInt,
    pub drop_no_peers: BigInt,
    pub drop_peer_elsewhere: BigInt,
    pub drop_frame_too_large: BigInt,
    pub drop_path_mtu: BigInt,
    pub icmp_frag_needed_sent: BigInt,
    pub icmp6_packet_too_big_sent: BigInt,
    pub icmp_rate_limited: BigInt,
    pub oversize_forwarded: BigInt,
    pub drop_runt_frame: BigInt,
    pub drop_invalid_source: BigInt,
    pub drop_local_destination: BigInt,
    pub drop_local_only_source: BigInt,
    /// Frames from a TAP to multicast beyond the link on a network without the option: not sent.
    pub drop_multicast_off: BigInt,
    /// Such frames from a peer: not written to the TAP.
    pub drop_multicast_off_from_peer: BigInt,
    pub drop_offload_short_read: BigInt,
    pub drop_offload_unsupported_gso: BigInt,
    pub drop_offload_bad_checksum_offsets: BigInt,
    pub drop_offload_not_ip: BigInt,
    pub drop_offload_bad_ip_header: BigInt,
    pub drop_offload_bad_l4_header: BigInt,
    pub drop_offload_segment_too_large: BigInt,
    pub malformed_short_header: BigInt,
    pub malformed_bad_magic: BigInt,
    pub malformed_bad_version: BigInt,
    pub malformed_unknown_flags: BigInt,
    pub malformed_truncated: BigInt,
    pub malformed_trailing_bytes: BigInt,
    pub malformed_runt_frame: BigInt,
    pub malformed_frame_too_large: BigInt,
    pub handshakes_sent: BigInt,
    pub handshakes_answered: BigInt,
    pub handshakes_completed: BigInt,
    pub handshakes_failed: BigInt,
    pub handshake_replays: BigInt,
    pub handshakes_ignored: BigInt,
    pub rekeys: BigInt,
    pub drop_no_session: BigInt,
    pub drop_plaintext: BigInt,
    pub drop_encrypted: BigInt,
    pub decrypt_failures: BigInt,
    pub replays_dropped: BigInt,
    pub drop_unknown_session: BigInt,
    pub drop_session_expired: BigInt,
}

type OsEngine = Engine<OsTapFactory, OsUdp, MonotonicClock>;

struct Settings {
    listen: SocketAddr,
    engine: EngineConfig,
    /// The password the engine's key was derived from, so an unchanged password is not
    /// stretched again at every apply (Argon2id costs tens of milliseconds on purpose).
    password: Option<Zeroizing<String>>,
}

struct Inner {
    settings: Settings,
    stats: Arc<Stats>,
    engine: Option<OsEngine>,
}

/// The userspace data path: TAPs per network <-> one UDP socket to peer routers.
#[napi]
pub struct Sleeve {
    inner: Mutex<Inner>,
}

#[napi]
impl Sleeve {
    #[napi(constructor)]
    pub fn new(config: SleeveConfig) -> Result<Self> {
        let settings = settings(&config, None)?;
        let inner = Inner {
            settings,
            stats: Arc::new(Stats::default()),
            engine: None,
        };
        Ok(Sleeve {
            inner: Mutex::new(inner),
        })
    }

    /// Validates and swaps in a new configuration; takes effect at once when running.
    /// Fails (and changes nothing) if a new TAP cannot be opened or the listen address changed
    /// while running.
    #[napi]
    pub fn apply_config(&self, config: SleeveConfig) -> Result<()> {
        let mut inner = self.lock()?;
        let next = settings(&config, Some(&inner.settings))?;
        let listen = inner.settings.listen;
        if let Some(engine) = inner.engine.as_mut() {
            if next.listen != listen {
                return Err(Error::new(
                    Status::InvalidArg,
                    format!(
                        "listen address {listen} -> {} needs stop() and start()",
                        next.listen
                    ),
                ));
            }
            engine.apply(&next.engine).map_err(engine_error)?;
        }
        inner.settings = next;
        Ok(())
    }

    /// Binds the UDP socket, opens the TAPs and starts the packet threads.
    #[napi]
    pub fn start(&self) -> Result<()> {
        let mut inner = self.lock()?;
        if inner.engine.is_some() {
            return Err(Error::new(
                Status::GenericFailure,
                "sleeve is already running",
            ));
        }
        let listen = inner.settings.listen;
        let udp = OsUdp::bind(listen, POLL).map_err(|e| {
            Error::new(
                Status::GenericFailure,
                format!("cannot bind udp {listen}: {e}"),
            )
        })?;
        let factory = OsTapFactory { poll: POLL };
        let engine = Engine::start(
            &inner.settings.engine,
            factory,
            udp,
            MonotonicClock::new(),
            inner.stats.clone(),
        )
        .map_err(engine_error)?;
        inner.engine = Some(engine);
        Ok(())
    }

    /// Stops and joins the packet threads, closing the socket and TAPs. Idempotent.
    #[napi]
    pub fn stop(&self) -> Result<()> {
        let engine = self.lock()?.engine.take();
        if let Some(engine) = engine {
            engine.stop();
        }
        Ok(())
    }

    #[napi]
    pub fn stats(&self) -> Result<SleeveStats> {
        let inner = self.lock()?;
        let offloads = inner.engine.as_ref().map(|e| e.udp_offloads());
        Ok(to_js_stats(inner.stats.snapshot(), offloads))
    }

    /// Each configured peer's traffic while running (empty when stopped).
    #[napi]
    pub fn peer_traffic(&self) -> Result<Vec<SleevePeerTraffic>> {
        let inner = self.lock()?;
        let Some(engine) = inner.engine.as_ref() else {
            return Ok(Vec::new());
        };
        let b = BigInt::from;
        Ok(engine
            .peer_traffic()
            .into_iter()
            .map(|(peer, t)| SleevePeerTraffic {
                peer_id: b(peer),
                frames_out: b(t.frames_out),
                datagrams_out: b(t.datagrams_out),
                bytes_out: b(t.bytes_out),
                frames_in: b(t.frames_in),
                datagrams_in: b(t.datagrams_in),
                bytes_in: b(t.bytes_in),
            })
            .collect())
    }

    /// Each configured peer's encryption state while running (empty when stopped).
    #[napi]
    pub fn sessions(&self) -> Result<Vec<SleeveSession>> {
        let inner = self.lock()?;
        let Some(engine) = inner.engine.as_ref() else {
            return Ok(Vec::new());
        };
        let (now, sessions) = engine.sessions();
        Ok(sessions.iter().map(|s| to_js_session(s, now)).collect())
    }
}

fn to_js_session(s: &PeerStatus, now: Duration) -> SleeveSession {
    let state = match s.state(now) {
        SessionState::Established => "established",
        SessionState::Handshaking => "handshaking",
        SessionState::WrongPassword => "wrongPassword",
        SessionState::PlaintextPeer => "plaintextPeer",
        SessionState::EncryptedPeer => "encryptedPeer",
        SessionState::Off => "off",
    };
    SleeveSession {
        peer_id: BigInt::from(s.peer),
        state: state.into(),
        established: s.established,
        wrong_password: s.wrong_password,
        handshake_age_ms: s
            .last_handshake
            .map(|t| now.saturating_sub(t).as_secs_f64() * 1000.0),
    }
}

impl Sleeve {
    fn lock(&self) -> Result<MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| Error::new(Status::GenericFailure, "sleeve state poisoned by a panic"))
    }
}

fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let p = parts.next()?;
        if p.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

fn invalid(msg: String) -> Error {
    Error::new(Status::InvalidArg, msg)
}

fn engine_error(e: EngineError) -> Error {
    let status = match e {
        EngineError::Config(_) => Status::InvalidArg,
        _ => Status::GenericFailure,
    };
    Error::new(status, e.to_string())
}

fn peer_id(v: &BigInt, what: &str) -> Result<u64> {
    let (negative, value, lossless) = v.get_u64();
    if negative || !lossless || value == 0 {
        return Err(invalid(format!("{what} must be an integer in 1..2^64")));
    }
    Ok(value)
}

/// The key for `c`'s password: `previous`'s if the password did not change.
fn crypto(c: &SleeveConfig, previous: Option<&Settings>) -> Result<Option<CryptoConfig>> {
    let Some(password) = c.password.as_deref() else {
        return Ok(None);
    };
    if password.is_empty() || password.len() > 1024 {
        return Err(invalid("password must be 1-1024 bytes".into()));
    }
    let mut limits = Limits::default();
    if let Some(m) = c.rekey_after_messages {
        if !(m.fract() == 0.0 && (100.0..=4_294_967_296.0).contains(&m)) {
            return Err(invalid(format!(
                "rekeyAfterMessages {m} is outside 100..=2^32"
            )));
        }
        limits.rekey_after_messages = m as u64;
    }
    if let Some(secs) = c.rekey_after_seconds {
        if !(1..=86_400).contains(&secs) {
            return Err(invalid(format!(
                "rekeyAfterSeconds {secs} is outside 1..=86400"
            )));
        }
        let margin = limits.reject_after_time - limits.rekey_after_time;
        limits.rekey_after_time = Duration::from_secs(secs.into());
        limits.reject_after_time = limits.rekey_after_time + margin;
    }
    let same = previous.and_then(|p| {
        let key = &p.engine.crypto.as_ref()?.psk;
        (p.password.as_deref()?.as_str() == password).then(|| key.clone())
    });
    let psk = same.unwrap_or_else(|| Arc::new(Psk::derive(password.as_bytes())));
    Ok(Some(CryptoConfig { psk, limits }))
}

fn settings(c: &SleeveConfig, previous: Option<&Settings>) -> Result<Settings> {
    let host: IpAddr = c
        .listen_host
        .as_deref()
        .unwrap_or("0.0.0.0")
        .parse()
        .map_err(|_| {
            invalid(format!(
                "listenHost {:?} is not an IP address",
                c.listen_host
            ))
        })?;
    let port = c.listen_port.unwrap_or(DEFAULT_LISTEN_PORT as u32);
    let port = u16::try_from(port).map_err(|_| invalid(format!("listenPort {port} > 65535")))?;
    let mut engine = EngineConfig::new(peer_id(&c.peer_id, "peerId")?);
    engine.packet_thread_nice = Some(DEFAULT_PACKET_THREAD_NICE);
    for p in &c.peers {
        let addr = p
            .address
            .parse()
            .map_err(|_| invalid(format!("peer address {:?} is not ip:port", p.address)))?;
        let id = peer_id(&p.id, "peer id")?;
        let mtu = p
            .mtu
            .map(|m| {
                u16::try_from(m)
                    .ok()
                    .filter(|&m| m >= MIN_MTU)
                    .ok_or_else(|| invalid(format!("peer {id}'s mtu {m} is outside 576..=65535")))
            })
            .transpose()?;
        engine.peers.push(PeerConfig { id, addr, mtu });
    }
    for n in &c.networks {
        let local_macs = n
            .local_macs
            .iter()
            .flatten()
            .map(|m| {
                parse_mac(m)
                    .ok_or_else(|| invalid(format!("local MAC {m:?} is not aa:bb:cc:dd:ee:ff")))
            })
            .collect::<Result<Vec<_>>>()?;
        let send_to = n
            .send_to
            .as_ref()
            .map(|ids| ids.iter().map(|id| peer_id(id, "sendTo peer id")).collect())
            .transpose()?;
        engine.networks.push(NetworkConfig {
            id: n.id,
            tap: n.tap.clone(),
            local_macs,
            send_to,
            multicast: n.multicast.unwrap_or(false),
        });
    }
    if let Some(ms) = c.mac_max_age_ms {
        engine.mac_max_age = Duration::from_millis(ms as u64);
    }
    if let Some(b) = c.batch_bytes {
        engine.batch_bytes = b as usize;
    }
    engine.crypto = crypto(c, previous)?;
    engine.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(Settings {
        listen: SocketAddr::new(host, port),
        engine,
        password: c.password.clone().map(Zeroizing::new),
    })
}

/// `offloads` is `None` when stopped.
fn to_js_stats(s: StatsSnapshot, offloads: Option<UdpOffloads>) -> SleeveStats {
    let b = BigInt::from;
    let udp = offloads.unwrap_or_default();
    SleeveStats {
        running: offloads.is_some(),
        udp_gso: udp.gso,
        udp_gro: udp.gro,
        tap_frames_in: b(s.tap_frames_in),
        tap_frames_out: b(s.tap_frames_out),
        tap_super_frames_in: b(s.tap_super_frames_in),
        tap_super_frames_out: b(s.tap_super_frames_out),
        taps_without_offload: b(s.taps_without_offload),
        frames_to_peers: b(s.frames_to_peers),
        floods: b(s.floods),
        datagrams_out: b(s.datagrams_out),
        bytes_out: b(s.bytes_out),
        datagrams_in: b(s.datagrams_in),
        bytes_in: b(s.bytes_in),
        frames_from_peers: b(s.frames_from_peers),
        tap_read_errors: b(s.tap_read_errors),
        tap_write_errors: b(s.tap_write_errors),
        udp_send_errors: b(s.udp_send_errors),
        udp_recv_errors: b(s.udp_recv_errors),
        udp_gso_fallbacks: b(s.udp_gso_fallbacks),
        thread_nice_refused: b(s.thread_nice_refused),
        drop_unknown_peer: b(s.drop_unknown_peer),
        drop_sender_mismatch: b(s.drop_sender_mismatch),
        drop_unknown_network: b(s.drop_unknown_network),
        drop_no_peers: b(s.drop_no_peers),
        drop_peer_elsewhere: b(s.drop_peer_elsewhere),
        drop_frame_too_large: b(s.drop_frame_too_large),
        drop_path_mtu: b(s.drop_path_mtu),
        icmp_frag_needed_sent: b(s.icmp_frag_needed_sent),
        icmp6_packet_too_big_sent: b(s.icmp6_packet_too_big_sent),
        icmp_rate_limited: b(s.icmp_rate_limited),
        oversize_forwarded: b(s.oversize_forwarded),
        drop_runt_frame: b(s.drop_runt_frame),
        drop_invalid_source: b(s.drop_invalid_source),
        drop_local_destination: b(s.drop_local_destination),
        drop_local_only_source: b(s.drop_local_only_source),
        drop_multicast_off: b(s.drop_multicast_off),
        drop_multicast_off_from_peer: b(s.drop_multicast_off_from_peer),
        drop_offload_short_read: b(s.drop_offload_short_read),
        drop_offload_unsupported_gso: b(s.drop_offload_unsupported_gso),
        drop_offload_bad_checksum_offsets: b(s.drop_offload_bad_checksum_offsets),
        drop_offload_not_ip: b(s.drop_offload_not_ip),
        drop_offload_bad_ip_header: b(s.drop_offload_bad_ip_header),
        drop_offload_bad_l4_header: b(s.drop_offload_bad_l4_header),
        drop_offload_segment_too_large: b(s.drop_offload_segment_too_large),
        malformed_short_header: b(s.malformed_short_header),
        malformed_bad_magic: b(s.malformed_bad_magic),
        malformed_bad_version: b(s.malformed_bad_version),
        malformed_unknown_flags: b(s.malformed_unknown_flags),
        malformed_truncated: b(s.malformed_truncated),
        malformed_trailing_bytes: b(s.malformed_trailing_bytes),
        malformed_runt_frame: b(s.malformed_runt_frame),
        malformed_frame_too_large: b(s.malformed_frame_too_large),
        handshakes_sent: b(s.handshakes_sent),
        handshakes_answered: b(s.handshakes_answered),
        handshakes_completed: b(s.handshakes_completed),
        handshakes_failed: b(s.handshakes_failed),
        handshake_replays: b(s.handshake_replays),
        handshakes_ignored: b(s.handshakes_ignored),
        rekeys: b(s.rekeys),
        drop_no_session: b(s.drop_no_session),
        drop_plaintext: b(s.drop_plaintext),
        drop_encrypted: b(s.drop_encrypted),
        decrypt_failures: b(s.decrypt_failures),
        replays_dropped: b(s.replays_dropped),
        drop_unknown_session: b(s.drop_unknown_session),
        drop_session_expired: b(s.drop_session_expired),
    }
}
