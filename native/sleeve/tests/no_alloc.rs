//! STYLE point 7, checked: once running, neither direction allocates per packet.
//! A counting global allocator watches the whole process while an engine floods 100k frames
//! from a non-allocating TAP to a non-allocating UDP sink, and then the other way round; then
//! both again with offloads: TSO super-frames cut into segments, and received segments joined;
//! then both with encryption: trains sealed in place, and sealed bursts opened in place (the
//! fake peers answer the engine's handshakes first, outside the window); then packets too big
//! for the peers' path MTU, each answered with an ICMP error built in place (IPv4 frames, and
//! IPv6 super-frames whose first segment is cut to be quoted).
//! Alone in its own test binary so no other test allocates during the window.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::Mutex;

use sleeve::config::{CryptoConfig, EngineConfig, NetworkConfig, PeerConfig};
use sleeve::core::clock::Clock;
use sleeve::core::crypto::handshake::Received;
use sleeve::core::crypto::message::{Init, HEADER_LEN, OVERHEAD};
use sleeve::core::crypto::{Limits, Psk, SendKey};
use sleeve::core::segment::{prepare_read, Prepared};
use sleeve::core::train::Train;
use sleeve::core::virtio::VirtioHdr;
use sleeve::core::wire::Kind;
use sleeve::engine::Engine;
use sleeve::fake::packets::{frames_of, pattern, Packet};
use sleeve::fake::FakeClock;
use sleeve::os::{RecvBatch, Slot, Tap, TapFactory, Udp};
use sleeve::stats::Stats;

struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FRAMES: u64 = 100_000;
/// Calls into the idle side (its thread has finished starting up once this moves).
static SINK_POLLS: AtomicU64 = AtomicU64::new(0);
/// TAP reads start once this is set: after the handshakes, when encrypting.
static TAP_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn psk() -> Psk {
    Psk::from_bytes([7; 32])
}

/// The engine's peers 2, 3 and 4 as far as handshakes go: each initiation the engine sends is
/// answered, and the peer's key kept to seal what it sends back.
#[derive(Default)]
struct Peers {
    replies: Mutex<Vec<(Vec<u8>, SocketAddr)>>,
    keys: Mutex<Vec<(SocketAddr, Arc<SendKey>)>>,
}

impl Peers {
    fn on_send(&self, datagram: &[u8], to: SocketAddr) {
        if Kind::of(datagram) != Ok(Kind::HandshakeInit) {
            return; // sealed trains and keepalives: swallowed
        }
        let peer = u64::from(to.port()) + 1;
        let (init, noise) = Init::parse(datagram).unwrap();
        let received = Received::read(&psk(), peer, init, noise).unwrap();
        let (keys, msg) = received.respond(7, Duration::ZERO, Limits::default());
        self.replies.lock().unwrap().push((msg.to_vec(), to));
        self.keys.lock().unwrap().push((to, Arc::new(keys.send)));
    }

    /// A reply waiting, put in the batch's first slot.
    fn reply(&self, batch: &mut RecvBatch) -> bool {
        let Some((msg, from)) = self.replies.lock().unwrap().pop() else {
            return false;
        };
        let (buf, slots) = batch.parts_mut();
        buf[..msg.len()].copy_from_slice(&msg);
        slots[0] = Slot {
            len: msg.len(),
            from,
            segment: 0,
        };
        batch.set_filled(1);
        true
    }

    fn key(&self, from: SocketAddr) -> Option<Arc<SendKey>> {
        let keys = self.keys.lock().unwrap();
        keys.iter()
            .find(|(a, _)| *a == from)
            .map(|(_, k)| k.clone())
    }
}

/// Yields the same read `left` times, then idles: a broadcast frame, or with offloads a
/// TSO super-frame behind its virtio header.
struct LoopTap {
    read: Vec<u8>,
    vnet_hdr: bool,
    left: AtomicU64,
}

impl LoopTap {
    fn next(&self, buf: &mut [u8]) -> Option<usize> {
        if !TAP_OPEN.load(Relaxed) {
            return None;
        }
        self.left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .ok()?;
        buf[..self.read.len()].copy_from_slice(&self.read);
        Some(self.read.len())
    }
}

fn broadcast_frame() -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xa, 0x08, 0x00]);
    f.resize(60, 0);
    f
}

impl Tap for LoopTap {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let n = self.next(buf);
        if n.is_none() {
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(n)
    }
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(self.next(buf))
    }
    fn send(&self, _frame: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
}

struct LoopFactory {
    read: Vec<u8>,
    vnet_hdr: bool,
    reads: u64,
}

impl TapFactory for LoopFactory {
    type Tap = LoopTap;
    fn open(&self, _name: &str) -> io::Result<LoopTap> {
        Ok(LoopTap {
            read: self.read.clone(),
            vnet_hdr: self.vnet_hdr,
            left: AtomicU64::new(self.reads),
        })
    }
}

/// Delivers the same burst of valid datagrams from peer 2 `left` times, then idles; each
/// burst is one receive batch, one GRO slot, as `recvmmsg` with `UDP_GRO` would return it.
struct LoopUdp {
    burst: Vec<Vec<u8>>,
    from: SocketAddr,
    left: AtomicU64,
    /// Encrypting: answers the handshakes, then seals each burst with fresh counters.
    peers: Option<Peers>,
}

impl LoopUdp {
    fn take(&self) -> bool {
        let ok = self
            .left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok();
        if !ok {
            std::thread::sleep(Duration::from_millis(5));
        }
        ok
    }
}

impl Udp for LoopUdp {
    fn recv_from(&self, _buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        unreachable!("the engine receives in batches")
    }
    fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let key = match &self.peers {
            Some(peers) if peers.reply(batch) => return Ok(1),
            Some(peers) => match peers.key(self.from) {
                Some(key) => Some(key),
                None => return Ok(0), // no session yet
            },
            None => None,
        };
        if !self.take() {
            return Ok(0);
        }
        // One slot holding the whole burst as a UDP GRO train (its datagrams are equal-sized).
        let (buf, slots) = batch.parts_mut();
        let room = if key.is_some() { OVERHEAD } else { 0 };
        let first = key
            .as_ref()
            .map(|k| k.reserve(self.burst.len(), Duration::ZERO).unwrap().first);
        let mut len = 0;
        for (i, d) in self.burst.iter().enumerate() {
            let at = len + if key.is_some() { HEADER_LEN } else { 0 };
            buf[at..at + d.len()].copy_from_slice(d);
            let end = len + d.len() + room;
            if let (Some(key), Some(first)) = (&key, first) {
                key.seal(first + i as u64, &mut buf[len..end]);
            }
            len = end;
        }
        let segment = if self.burst.len() > 1 {
            self.burst[0].len() + room
        } else {
            0
        };
        slots[0] = Slot {
            len,
            from: self.from,
            segment,
        };
        batch.set_filled(1);
        Ok(1)
    }
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        if let Some(peers) = &self.peers {
            peers.on_send(datagram, to);
        }
        Ok(())
    }
}

/// A TAP that never yields frames and swallows what is written.
struct SinkTap {
    vnet_hdr: bool,
}
impl Tap for SinkTap {
    fn recv(&self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        SINK_POLLS.fetch_add(1, Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        Ok(None)
    }
    fn try_recv(&self, _buf: &mut [u8]) -> io::Result<Option<usize>> {
        Ok(None)
    }
    fn send(&self, _frame: &[u8]) -> io::Result<()> {
        Ok(())
    }
    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }
    fn send_gso(&self, _hdr: &VirtioHdr, _frame: &[u8]) -> io::Result<()> {
        Ok(())
    }
}

struct SinkFactory {
    vnet_hdr: bool,
}
impl TapFactory for SinkFactory {
    type Tap = SinkTap;
    fn open(&self, _name: &str) -> io::Result<SinkTap> {
        Ok(SinkTap {
            vnet_hdr: self.vnet_hdr,
        })
    }
}

/// Swallows what it is asked to send; receives only answers to handshakes, when encrypting.
struct SinkUdp {
    peers: Option<Peers>,
}
impl Udp for SinkUdp {
    fn recv_from(&self, _buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        unreachable!("the engine receives in batches")
    }
    fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        if self.peers.as_ref().is_some_and(|p| p.reply(batch)) {
            return Ok(1);
        }
        SINK_POLLS.fetch_add(1, Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        Ok(0)
    }
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        if let Some(peers) = &self.peers {
            peers.on_send(datagram, to);
        }
        Ok(())
    }
}

fn wait_until(counter: &AtomicU64, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while counter.load(Relaxed) < n {
        assert!(Instant::now() < deadline, "engine stalled");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn config(encrypted: bool) -> EngineConfig {
    let mut c = EngineConfig::new(1);
    c.crypto = encrypted.then(|| CryptoConfig {
        psk: Arc::new(psk()),
        limits: Limits::default(),
    });
    for (id, port) in [(2u64, 1u16), (3, 2), (4, 3)] {
        c.peers.push(PeerConfig {
            id,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            mtu: None,
        });
    }
    c.networks.push(NetworkConfig {
        id: 7,
        tap: "t7".into(),
        local_macs: Vec::new(),
        send_to: None,
        multicast: false,
    });
    c
}

/// Both directions, plain and with offloads, in one test: tests in one binary run in parallel
/// and would count each other's allocations.
#[test]
fn steady_state_does_not_allocate() {
    for encrypted in [false, true] {
        tap_to_peers(broadcast_frame(), false, 1, encrypted);
        peers_to_tap(
            vec![datagram(&vec![broadcast_frame_b(); 4])],
            false,
            encrypted,
        );
        // A 64 KiB TSO super-frame: 47 segments, each its own datagram to 3 peers (1472
        // bytes; encrypted, the segments are cut 32 bytes shorter to fit the same size).
        let mss = if encrypted { 1352 } else { 1384 };
        let p = Packet::tcp4(pattern(64_000, 1));
        tap_to_peers(
            p.super_read(mss),
            true,
            64_000u64.div_ceil(mss as u64),
            encrypted,
        );
        // 32 segments of one super-frame (a receive batch's worth), one per datagram, joined
        // into one write.
        let segments = segments_of(&p.super_read(mss));
        let burst: Vec<Vec<u8>> = segments[..32]
            .iter()
            .map(|s| datagram(std::slice::from_ref(s)))
            .collect();
        peers_to_tap(burst, true, encrypted);
    }
    tap_answers(Packet::udp4(pattern(1372, 2)).frame(), false, 1);
    let p = Packet::tcp6(pattern(64_000, 3));
    tap_answers(p.super_read(1384), true, 64_000u64.div_ceil(1384));
}

/// Moves 10 ms at every reading, so the ICMP rate limit (one per 10 ms) refills as fast as the
/// TAP thread reads: every too-big packet is answered.
#[derive(Default)]
struct SteppingClock(AtomicU64);

impl Clock for SteppingClock {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.0.fetch_add(10_000_000, Relaxed))
    }
    fn wall_nanos(&self) -> u64 {
        self.now().as_nanos() as u64
    }
}

/// Reads too big for every peer's path (1300 bytes): each answered into the TAP, none sent.
/// The reads are FRAMES / segments, as in [`tap_to_peers`].
fn tap_answers(read: Vec<u8>, vnet_hdr: bool, segments: u64) {
    let reads = FRAMES / segments;
    let factory = LoopFactory {
        read,
        vnet_hdr,
        reads,
    };
    let mut c = config(false);
    for p in &mut c.peers {
        p.mtu = Some(1300);
    }
    let stats = Arc::new(Stats::default());
    let udp = SinkUdp { peers: None };
    TAP_OPEN.store(true, Relaxed);
    let engine = Engine::start(&c, factory, udp, SteppingClock::default(), stats.clone()).unwrap();
    let during = allocations_after_warm_up(&stats.tap_frames_in, reads);
    engine.stop();
    let s = stats.snapshot();
    let answered = s.icmp_frag_needed_sent + s.icmp6_packet_too_big_sent;
    assert_eq!((s.drop_path_mtu, answered), (reads, reads), "{s:?}");
    assert_eq!((s.frames_to_peers, s.icmp_rate_limited), (0, 0), "{s:?}");
    assert_eq!(
        during, 0,
        "tap answers (offload {vnet_hdr}): allocations while {reads} reads flowed"
    );
}

fn broadcast_frame_b() -> Vec<u8> {
    let mut f = broadcast_frame();
    f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xb]);
    f
}

fn datagram(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut t = Train::new(1472, 7, 2);
    for f in frames {
        t.push(f).unwrap();
    }
    let d = t.datagrams();
    assert_eq!(d.lens.len(), 1);
    d.bytes.to_vec()
}

fn segments_of(read: &[u8]) -> Vec<Vec<u8>> {
    let mut read = read.to_vec();
    let Ok((frame, prepared @ Prepared::Segments(_))) = prepare_read(&mut read) else {
        panic!("a super-frame")
    };
    frames_of(frame, prepared)
}

/// `segments` frames per read; the reads are FRAMES / segments so every run moves as much.
fn tap_to_peers(read: Vec<u8>, vnet_hdr: bool, segments: u64, encrypted: bool) {
    let reads = FRAMES / segments;
    let factory = LoopFactory {
        read,
        vnet_hdr,
        reads,
    };
    let stats = Arc::new(Stats::default());
    let udp = SinkUdp {
        peers: encrypted.then(Peers::default),
    };
    TAP_OPEN.store(false, Relaxed);
    let engine = Engine::start(
        &config(encrypted),
        factory,
        udp,
        FakeClock::default(),
        stats.clone(),
    )
    .unwrap();
    if encrypted {
        wait_until(&stats.handshakes_completed, 3);
    }
    TAP_OPEN.store(true, Relaxed);
    let during = allocations_after_warm_up(&stats.tap_frames_in, reads);
    // Stopped first (threads joined), so the counters are read at rest, not mid-frame.
    engine.stop();
    let s = stats.snapshot();
    assert_eq!(s.frames_to_peers, 3 * segments * s.tap_frames_in, "{s:?}");
    assert_eq!(s.drop_no_session, 0, "{s:?}");
    assert_eq!(
        during, 0,
        "tap -> peers (offload {vnet_hdr}, encrypted {encrypted}): allocations while {reads} reads flowed"
    );
}

/// Allocations while `progress` goes from 1% to `total`: by then the buffers and MAC entries
/// are in place, and once the sink has been polled the other thread is past its start-up
/// allocations.
fn allocations_after_warm_up(progress: &AtomicU64, total: u64) -> u64 {
    SINK_POLLS.store(0, Relaxed);
    wait_until(progress, total / 100);
    wait_until(&SINK_POLLS, 1);
    let before = ALLOCS.load(Relaxed);
    wait_until(progress, total);
    ALLOCS.load(Relaxed) - before
}

fn peers_to_tap(burst: Vec<Vec<u8>>, vnet_hdr: bool, encrypted: bool) {
    let frames_per_burst: u64 = burst
        .iter()
        .map(|d| u64::from(u16::from_be_bytes([d[16], d[17]])))
        .sum();
    let bursts = FRAMES / frames_per_burst;
    let udp = LoopUdp {
        burst,
        from: SocketAddr::from(([127, 0, 0, 1], 1)),
        left: AtomicU64::new(bursts),
        peers: encrypted.then(Peers::default),
    };
    let stats = Arc::new(Stats::default());
    let engine = Engine::start(
        &config(encrypted),
        SinkFactory { vnet_hdr },
        udp,
        FakeClock::default(),
        stats.clone(),
    )
    .unwrap();
    let during = allocations_after_warm_up(&stats.frames_from_peers, bursts * frames_per_burst);
    // Stopped first (threads joined), so the counters are read at rest, not mid-frame.
    engine.stop();
    let s = stats.snapshot();
    assert_eq!(s.tap_frames_out, s.frames_from_peers, "{s:?}");
    if vnet_hdr {
        assert_eq!(s.tap_super_frames_out, bursts, "one write per burst: {s:?}");
    }
    assert_eq!(
        during, 0,
        "peers -> tap (offload {vnet_hdr}, encrypted {encrypted}): allocations while {bursts} bursts flowed"
    );
}
