//! STYLE point 7, checked: once running, neither direction allocates per packet.
//! A counting global allocator watches the whole process while an engine floods 100k frames
//! from a non-allocating TAP to a non-allocating UDP sink, and then the other way round; then
//! both again with offloads: TSO super-frames cut into segments, and received segments joined.
//! Alone in its own test binary so no other test allocates during the window.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sleeve::config::{EngineConfig, NetworkConfig, PeerConfig};
use sleeve::core::segment::{prepare_read, Prepared};
use sleeve::core::train::Train;
use sleeve::core::virtio::VirtioHdr;
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

/// Yields the same read `left` times, then idles: a broadcast frame, or with offloads a
/// TSO super-frame behind its virtio header.
struct LoopTap {
    read: Vec<u8>,
    vnet_hdr: bool,
    left: AtomicU64,
}

impl LoopTap {
    fn next(&self, buf: &mut [u8]) -> Option<usize> {
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
        if !self.take() {
            return Ok(0);
        }
        // One slot holding the whole burst as a UDP GRO train (its datagrams are equal-sized).
        let (buf, slots) = batch.parts_mut();
        let mut len = 0;
        for d in &self.burst {
            buf[len..len + d.len()].copy_from_slice(d);
            len += d.len();
        }
        let segment = if self.burst.len() > 1 {
            self.burst[0].len()
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
    fn send_to(&self, _datagram: &[u8], _to: SocketAddr) -> io::Result<()> {
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

/// Counts what it is asked to send; never receives.
struct SinkUdp;
impl Udp for SinkUdp {
    fn recv_from(&self, _buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        SINK_POLLS.fetch_add(1, Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        Ok(None)
    }
    fn send_to(&self, _datagram: &[u8], _to: SocketAddr) -> io::Result<()> {
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

fn config() -> EngineConfig {
    let mut c = EngineConfig::new(1);
    for (id, port) in [(2u64, 1u16), (3, 2), (4, 3)] {
        c.peers.push(PeerConfig {
            id,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        });
    }
    c.networks.push(NetworkConfig {
        id: 7,
        tap: "t7".into(),
        local_macs: Vec::new(),
            send_to: None,
    });
    c
}

/// Both directions, plain and with offloads, in one test: tests in one binary run in parallel
/// and would count each other's allocations.
#[test]
fn steady_state_does_not_allocate() {
    tap_to_peers(broadcast_frame(), false, 1);
    peers_to_tap(vec![datagram(&vec![broadcast_frame_b(); 4])], false);
    // A 64 KiB TSO super-frame: 47 segments, each its own 1472-byte datagram to 3 peers.
    let p = Packet::tcp4(pattern(64_000, 1));
    tap_to_peers(p.super_read(1384), true, 47);
    // 32 segments of one super-frame (a receive batch's worth), one per datagram, joined into
    // one write.
    let segments = segments_of(&p.super_read(1384));
    let burst: Vec<Vec<u8>> = segments[..32]
        .iter()
        .map(|s| datagram(std::slice::from_ref(s)))
        .collect();
    peers_to_tap(burst, true);
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
fn tap_to_peers(read: Vec<u8>, vnet_hdr: bool, segments: u64) {
    let reads = FRAMES / segments;
    let factory = LoopFactory {
        read,
        vnet_hdr,
        reads,
    };
    let stats = Arc::new(Stats::default());
    let engine = Engine::start(
        &config(),
        factory,
        SinkUdp,
        FakeClock::default(),
        stats.clone(),
    )
    .unwrap();
    let during = allocations_after_warm_up(&stats.tap_frames_in, reads);
    // Stopped first (threads joined), so the counters are read at rest, not mid-frame.
    engine.stop();
    let s = stats.snapshot();
    assert_eq!(s.frames_to_peers, 3 * segments * s.tap_frames_in, "{s:?}");
    assert_eq!(
        during, 0,
        "tap -> peers (offload {vnet_hdr}): allocations while {reads} reads flowed"
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

fn peers_to_tap(burst: Vec<Vec<u8>>, vnet_hdr: bool) {
    let frames_per_burst: u64 = burst
        .iter()
        .map(|d| u64::from(u16::from_be_bytes([d[16], d[17]])))
        .sum();
    let bursts = FRAMES / frames_per_burst;
    let udp = LoopUdp {
        burst,
        from: SocketAddr::from(([127, 0, 0, 1], 1)),
        left: AtomicU64::new(bursts),
    };
    let stats = Arc::new(Stats::default());
    let engine = Engine::start(
        &config(),
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
        "peers -> tap (offload {vnet_hdr}): allocations while {bursts} bursts flowed"
    );
}
