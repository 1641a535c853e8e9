//! STYLE point 7, checked: once running, neither direction allocates per packet.
//! A counting global allocator watches the whole process while an engine floods 100k frames
//! from a non-allocating TAP to a non-allocating UDP sink, and then the other way round.
//! Alone in its own test binary so no other test allocates during the window.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sleeve::config::{EngineConfig, NetworkConfig, PeerConfig};
use sleeve::engine::Engine;
use sleeve::fake::FakeClock;
use sleeve::os::{Tap, TapFactory, Udp};
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

/// Yields the same broadcast frame `FRAMES` times, then idles.
struct LoopTap {
    left: AtomicU64,
}

impl LoopTap {
    fn next(&self, buf: &mut [u8]) -> Option<usize> {
        self.left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .ok()?;
        buf[..6].fill(0xff);
        buf[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 0xa]);
        buf[12..14].copy_from_slice(&[0x08, 0x00]);
        buf[14..60].fill(0);
        Some(60)
    }
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
}

struct LoopFactory;
impl TapFactory for LoopFactory {
    type Tap = LoopTap;
    fn open(&self, _name: &str) -> io::Result<LoopTap> {
        Ok(LoopTap {
            left: AtomicU64::new(FRAMES),
        })
    }
}

/// Delivers the same valid datagram from peer 2 `FRAMES` times, then idles.
struct LoopUdp {
    datagram: Vec<u8>,
    from: SocketAddr,
    left: AtomicU64,
}

impl Udp for LoopUdp {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        if self
            .left
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            std::thread::sleep(Duration::from_millis(5));
            return Ok(None);
        }
        buf[..self.datagram.len()].copy_from_slice(&self.datagram);
        Ok(Some((self.datagram.len(), self.from)))
    }
    fn send_to(&self, _datagram: &[u8], _to: SocketAddr) -> io::Result<()> {
        Ok(())
    }
}

/// A TAP that never yields frames and swallows what is written.
struct SinkTap;
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
}

struct SinkFactory;
impl TapFactory for SinkFactory {
    type Tap = SinkTap;
    fn open(&self, _name: &str) -> io::Result<SinkTap> {
        Ok(SinkTap)
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
    });
    c
}

/// Both directions in one test: tests in one binary run in parallel and would count each
/// other's allocations.
#[test]
fn steady_state_does_not_allocate() {
    tap_to_peers();
    peers_to_tap();
}

fn tap_to_peers() {
    let stats = Arc::new(Stats::default());
    let engine = Engine::start(
        &config(),
        LoopFactory,
        SinkUdp,
        FakeClock::default(),
        stats.clone(),
    )
    .unwrap();
    let during = allocations_after_warm_up(&stats.tap_frames_in);
    let s = stats.snapshot();
    engine.stop();
    assert_eq!(s.frames_to_peers, 3 * s.tap_frames_in, "{s:?}");
    assert_eq!(
        during,
        0,
        "tap -> peers: allocations while {} frames flowed",
        FRAMES - 1_000
    );
}

/// Allocations while `progress` goes from 1,000 to FRAMES: by 1,000 the buffers and MAC entries
/// are in place, and once the sink has been polled the other thread is past its start-up
/// allocations.
fn allocations_after_warm_up(progress: &AtomicU64) -> u64 {
    SINK_POLLS.store(0, Relaxed);
    wait_until(progress, 1_000);
    wait_until(&SINK_POLLS, 1);
    let before = ALLOCS.load(Relaxed);
    wait_until(progress, FRAMES);
    ALLOCS.load(Relaxed) - before
}

fn peers_to_tap() {
    let mut enc = sleeve::core::wire::BatchEncoder::new(1472);
    enc.begin(7, 2);
    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xb, 0x08, 0x00]);
    frame.resize(60, 0);
    for _ in 0..4 {
        enc.push(&frame).unwrap();
    }
    let udp = LoopUdp {
        datagram: enc.finish().to_vec(),
        from: SocketAddr::from(([127, 0, 0, 1], 1)),
        left: AtomicU64::new(FRAMES),
    };
    let stats = Arc::new(Stats::default());
    let engine = Engine::start(
        &config(),
        SinkFactory,
        udp,
        FakeClock::default(),
        stats.clone(),
    )
    .unwrap();
    let during = allocations_after_warm_up(&stats.datagrams_in);
    let s = stats.snapshot();
    engine.stop();
    assert_eq!(s.tap_frames_out, 4 * s.datagrams_in, "{s:?}");
    assert_eq!(
        during,
        0,
        "peers -> tap: allocations while {} datagrams flowed",
        FRAMES - 1_000
    );
}
