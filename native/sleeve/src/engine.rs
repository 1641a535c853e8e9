//! The packet loops, generic over the TAP, the UDP socket and the clock.
//!
//! Threads: one per network reads its TAP, learns, and encodes batches to peers; one reads the
//! UDP socket, validates and writes frames to the right TAP (and sweeps aged MACs). The
//! configuration they read is an immutable [`View`] swapped in by [`Engine::apply`]; each
//! thread notices a new generation with one atomic load (per wake-up; a TAP thread per frame
//! read), so the hot path takes no config lock. Buffers are allocated when a thread starts or
//! the view changes, never per packet.
//!
//! A TAP thread also holds each frame against the path MTU of the peer it goes to: one too big
//! is answered with an ICMP error written back into its TAP (`core::pmtu`, rate-limited).
//!
//! With a password, the UDP thread also owns the sessions ([`Mesh`]): it answers and starts
//! handshakes, runs their timers, and decrypts in place before parsing. It publishes each peer's
//! send key the way `apply` publishes the view (a generation the TAP threads check per frame
//! read); a TAP thread seals each train in place with one atomic add for its counters.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::config::{ConfigError, CryptoConfig, EngineConfig, PeerConfig};
use crate::core::clock::Clock;
use crate::core::coalesce::{Coalescer, Push};
use crate::core::crypto::mesh::{Handshake, HandshakeRefused};
use crate::core::crypto::tunnel::{Completed, HandshakeDrop, RecvDrop};
use crate::core::crypto::{message, Mesh, Out, PeerStatus, SendKey};
use crate::core::mac::{src_mac, Action, Mac, MacTable, Port};
use crate::core::multicast;
use crate::core::pmtu::{self, IpPacket, RateLimit, TooBig};
use crate::core::segment::{self, Prepared, Segmenter};
use crate::core::train::{Room, Train};
use crate::core::wire::{Datagram, Kind, PushError, MAX_FRAME_LEN, MIN_FRAME_LEN};
use crate::core::{NetworkId, PeerId};
use crate::os::{sched, RecvBatch, Tap, TapFactory, Udp, UdpOffloads};
use crate::stats::{PeerTraffic, PeerTrafficSnapshot, Stats};

/// Frames read from a TAP per wake-up before the batches are flushed.
const TAP_BATCH: usize = 64;
/// Aged MACs are swept this often (by the injected clock).
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Pause after an OS error so a broken descriptor does not spin a core.
const ERROR_BACKOFF: Duration = Duration::from_millis(10);
/// Read buffer: a virtio header and the largest super-frame, with room to see oversize ones.
const READ_BUF: usize = 65_536 + 64;
/// Datagrams (or GRO trains) taken per UDP wake-up. With GRO a slot holds a whole train (up to
/// 64 KiB), so 8 slots are already hundreds of datagrams; 32 made a 2 MiB buffer that no longer
/// fit in L2 next to everything else, and the receive thread spent ~10% more CPU per bit.
const RECV_SLOTS: usize = 8;
/// Room for a whole GRO train, and more than any one valid datagram so oversize ones show.
const RECV_SLOT_LEN: usize = 65_536;

#[derive(Debug)]
pub enum EngineError {
    Config(ConfigError),
    /// Opening the TAP for a network failed; nothing was changed.
    OpenTap {
        tap: String,
        source: io::Error,
    },
    Spawn(io::Error),
}

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EngineError::Config(e) => write!(f, "invalid config: {e}"),
            EngineError::OpenTap { tap, source } => write!(f, "cannot open tap {tap:?}: {source}"),
            EngineError::Spawn(e) => write!(f, "cannot start a packet thread: {e}"),
        }
    }
}

impl std::error::Error for EngineError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EngineError::Config(e) => Some(e),
            EngineError::OpenTap { source, .. } => Some(source),
            EngineError::Spawn(e) => Some(e),
        }
    }
}

/// What the packet threads see of the configuration. Immutable once published.
struct View<T> {
    local: PeerId,
    peers: Vec<PeerConfig>,
    /// Each peer's counters, in the order of `peers`.
    traffic: Vec<Arc<PeerTraffic>>,
    /// A peer by address, with its index in `peers` (its slot in the [`Mesh`]).
    by_addr: HashMap<SocketAddr, (PeerId, usize)>,
    taps: HashMap<NetworkId, (String, Arc<T>)>,
    local_macs: HashMap<NetworkId, Vec<Mac>>,
    /// Networks whose frames go to some peers only (the others are on the fast path).
    send_to: HashMap<NetworkId, Vec<PeerId>>,
    /// Networks whose multicast beyond the link crosses hosts (`core::multicast`).
    multicast: HashSet<NetworkId>,
    batch_bytes: usize,
    thread_nice: Option<i32>,
    crypto: Option<CryptoConfig>,
}

impl<T> View<T> {
    fn is_local_only(&self, network: NetworkId, frame: &[u8]) -> bool {
        frame.len() >= MIN_FRAME_LEN
            && self
                .local_macs
                .get(&network)
                .is_some_and(|macs| macs.contains(&src_mac(frame)))
    }

    /// Multicast that must stay on this host: the network does not carry it across.
    fn keeps_multicast(&self, network: NetworkId, frame: &[u8]) -> bool {
        frame.len() >= MIN_FRAME_LEN
            && multicast::governed(frame)
            && !self.multicast.contains(&network)
    }
}

struct Shared<T, U, C> {
    udp: U,
    clock: C,
    stats: Arc<Stats>,
    stop: AtomicBool,
    view: Mutex<Arc<View<T>>>,
    generation: AtomicU64,
    macs: Mutex<MacTable>,
    /// Each established peer's send key, published by the UDP thread.
    keys: Mutex<Arc<SendKeys>>,
    keys_generation: AtomicU64,
    /// A TAP thread's train crossed a key's rekey count: the UDP thread starts a handshake.
    rekey_wanted: AtomicBool,
    sessions: Mutex<Vec<PeerStatus>>,
    /// Each configured peer's traffic; kept across configurations while the peer stays.
    traffic: Mutex<HashMap<PeerId, Arc<PeerTraffic>>>,
}

type SendKeys = HashMap<PeerId, Arc<SendKey>>;

impl<T, U, C> Shared<T, U, C> {
    fn publish_keys(&self, keys: SendKeys) {
        *self.keys.lock().expect("keys lock") = Arc::new(keys);
        self.keys_generation.fetch_add(1, Ordering::Release);
    }

    fn publish(&self, view: View<T>) {
        *self.view.lock().expect("view lock") = Arc::new(view);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn load(&self) -> (u64, Arc<View<T>>) {
        let generation = self.generation.load(Ordering::Acquire);
        (generation, self.view.lock().expect("view lock").clone())
    }
}

/// A thread's cached view, refreshed when the generation moves.
struct Cached<T> {
    generation: u64,
    view: Arc<View<T>>,
}

impl<T> Cached<T> {
    fn new<U, C>(shared: &Shared<T, U, C>) -> Self {
        let (generation, view) = shared.load();
        Cached { generation, view }
    }

    /// True when a new view was loaded.
    fn refresh<U, C>(&mut self, shared: &Shared<T, U, C>) -> bool {
        if shared.generation.load(Ordering::Acquire) == self.generation {
            return false;
        }
        *self = Cached::new(shared);
        true
    }
}

struct TapWorker {
    tap: String,
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// A running data path. Dropping it stops and joins its threads.
pub struct Engine<F: TapFactory, U: Udp, C: Clock> {
    shared: Arc<Shared<F::Tap, U, C>>,
    factory: F,
    workers: HashMap<NetworkId, TapWorker>,
    udp_thread: Option<JoinHandle<()>>,
}

impl<F: TapFactory, U: Udp, C: Clock> Engine<F, U, C> {
    /// Opens the configured TAPs and starts the threads. On error nothing is left running.
    pub fn start(
        config: &EngineConfig,
        factory: F,
        udp: U,
        clock: C,
        stats: Arc<Stats>,
    ) -> Result<Self, EngineError> {
        config.validate().map_err(EngineError::Config)?;
        let empty = View {
            local: config.local_peer,
            peers: Vec::new(),
            traffic: Vec::new(),
            by_addr: HashMap::new(),
            taps: HashMap::new(),
            local_macs: HashMap::new(),
            send_to: HashMap::new(),
            multicast: HashSet::new(),
            batch_bytes: config.batch_bytes,
            thread_nice: config.packet_thread_nice,
            crypto: None,
        };
        let shared = Arc::new(Shared {
            udp,
            clock,
            stats,
            stop: AtomicBool::new(false),
            view: Mutex::new(Arc::new(empty)),
            generation: AtomicU64::new(0),
            macs: Mutex::new(MacTable::new(config.mac_max_age, config.mac_capacity)),
            keys: Mutex::default(),
            keys_generation: AtomicU64::new(0),
            rekey_wanted: AtomicBool::new(false),
            sessions: Mutex::default(),
            traffic: Mutex::default(),
        });
        let mut engine = Engine {
            shared,
            factory,
            workers: HashMap::new(),
            udp_thread: None,
        };
        engine.apply(config)?;
        let shared = engine.shared.clone();
        let udp_thread = thread::Builder::new()
            .name("sleeve-udp".into())
            .spawn(move || udp_loop(&shared))
            .map_err(EngineError::Spawn)?;
        engine.udp_thread = Some(udp_thread);
        Ok(engine)
    }

    /// Swaps in a new configuration. TAPs for new networks are opened first; if one fails,
    /// those just opened are closed and the running configuration is untouched.
    /// `local_peer` changes take effect for datagrams encoded after the swap.
    pub fn apply(&mut self, config: &EngineConfig) -> Result<(), EngineError> {
        config.validate().map_err(EngineError::Config)?;
        let current = self.shared.load().1;
        let mut taps = HashMap::new();
        for n in &config.networks {
            let tap = match current.taps.get(&n.id) {
                Some((name, tap)) if *name == n.tap => tap.clone(),
                _ => {
                    let tap = self
                        .factory
                        .open(&n.tap)
                        .map_err(|source| EngineError::OpenTap {
                            tap: n.tap.clone(),
                            source,
                        })?;
                    if !tap.vnet_hdr() {
                        Stats::inc(&self.shared.stats.taps_without_offload);
                    }
                    Arc::new(tap)
                }
            };
            taps.insert(n.id, (n.tap.clone(), tap));
        }
        self.forget_departed(config);
        let traffic = self.traffic_of(config);
        self.shared.publish(View {
            local: config.local_peer,
            peers: config.peers.clone(),
            traffic,
            by_addr: config
                .peers
                .iter()
                .enumerate()
                .map(|(i, p)| (p.addr, (p.id, i)))
                .collect(),
            taps,
            local_macs: config
                .networks
                .iter()
                .filter(|n| !n.local_macs.is_empty())
                .map(|n| (n.id, n.local_macs.clone()))
                .collect(),
            send_to: config
                .networks
                .iter()
                .filter_map(|n| Some((n.id, n.send_to.clone()?)))
                .collect(),
            multicast: config
                .networks
                .iter()
                .filter(|n| n.multicast)
                .map(|n| n.id)
                .collect(),
            batch_bytes: config.batch_bytes,
            thread_nice: config.packet_thread_nice,
            crypto: config.crypto.clone(),
        });
        self.reconcile_workers()
    }

    /// The counters of the configured peers, in their order: a staying peer keeps its own.
    fn traffic_of(&self, config: &EngineConfig) -> Vec<Arc<PeerTraffic>> {
        let mut all = self.shared.traffic.lock().expect("traffic lock");
        all.retain(|id, _| config.peers.iter().any(|p| p.id == *id));
        config
            .peers
            .iter()
            .map(|p| all.entry(p.id).or_default().clone())
            .collect()
    }

    /// Each configured peer's traffic so far.
    pub fn peer_traffic(&self) -> Vec<(PeerId, PeerTrafficSnapshot)> {
        let all = self.shared.traffic.lock().expect("traffic lock");
        let mut out: Vec<_> = all.iter().map(|(id, t)| (*id, t.snapshot())).collect();
        out.sort_by_key(|(id, _)| *id);
        out
    }

    fn forget_departed(&self, config: &EngineConfig) {
        let mut macs = self.shared.macs.lock().expect("mac lock");
        macs.set_max_age(config.mac_max_age);
        macs.retain(|net, port| {
            config.networks.iter().any(|n| n.id == net)
                && match port {
                    Port::Local => true,
                    Port::Peer(p) => config.peers.iter().any(|c| c.id == p),
                }
        });
    }

    /// Stops workers whose network left or whose TAP changed; starts the missing ones.
    fn reconcile_workers(&mut self) -> Result<(), EngineError> {
        let view = self.shared.load().1;
        let stale: Vec<NetworkId> = self
            .workers
            .iter()
            .filter(|(id, w)| view.taps.get(id).is_none_or(|(name, _)| *name != w.tap))
            .map(|(id, _)| *id)
            .collect();
        for id in stale {
            if let Some(w) = self.workers.remove(&id) {
                w.stop.store(true, Ordering::Release);
                let _ = w.thread.join();
            }
        }
        for (id, (name, tap)) in &view.taps {
            if self.workers.contains_key(id) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let (shared, tap, network, flag) =
                (self.shared.clone(), tap.clone(), *id, stop.clone());
            let thread = thread::Builder::new()
                .name(format!("sleeve-tap-{id}"))
                .spawn(move || tap_loop(&shared, network, &tap, &flag))
                .map_err(EngineError::Spawn)?;
            self.workers.insert(
                *id,
                TapWorker {
                    tap: name.clone(),
                    stop,
                    thread,
                },
            );
        }
        Ok(())
    }

    pub fn stats(&self) -> &Stats {
        &self.shared.stats
    }

    pub fn udp_offloads(&self) -> UdpOffloads {
        self.shared.udp.offloads()
    }

    /// Each configured peer's session state as the UDP thread last published it, and the
    /// clock's time to read it against.
    pub fn sessions(&self) -> (Duration, Vec<PeerStatus>) {
        let sessions = self.shared.sessions.lock().expect("sessions lock").clone();
        (self.shared.clock.now(), sessions)
    }

    /// Stops and joins every thread. Also done on drop.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        for (_, w) in self.workers.drain() {
            let _ = w.thread.join();
        }
        if let Some(t) = self.udp_thread.take() {
            let _ = t.join();
        }
    }
}

impl<F: TapFactory, U: Udp, C: Clock> Drop for Engine<F, U, C> {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Per-peer trains for one network, rebuilt when the view changes.
struct Outbox {
    slots: Vec<(PeerId, SocketAddr, Train)>,
    /// Each slot's peer counters.
    traffic: Vec<Arc<PeerTraffic>>,
    index: HashMap<PeerId, usize>,
    /// Each slot's path MTU, and the smallest of them (a flood's).
    mtus: Vec<Option<u16>>,
    flood_mtu: Option<u16>,
    /// Configured peers this network does not send to: they get its frames another way.
    elsewhere: Vec<PeerId>,
    /// Encryption is on: each slot's train is sealed with its key, and without one nothing is
    /// sent to that peer.
    sealed: bool,
    keys: Vec<Option<Arc<SendKey>>>,
    /// The generation of `Shared::keys` in `keys`.
    keys_generation: Option<u64>,
}

/// What a TAP read gave, ready to encode.
#[derive(Clone, Copy)]
enum Read<'a> {
    Frame(&'a [u8]),
    /// A super-frame and how to cut it.
    Super(&'a [u8], Segmenter),
}

impl<'a> Read<'a> {
    /// The bytes that start with the Ethernet header (for a super-frame, every segment's).
    fn bytes(&self) -> &'a [u8] {
        match *self {
            Read::Frame(f) | Read::Super(f, _) => f,
        }
    }

    fn frames(&self) -> usize {
        match self {
            Read::Frame(_) => 1,
            Read::Super(_, seg) => seg.count(),
        }
    }
}

impl Outbox {
    fn new<T>(network: NetworkId, view: &View<T>) -> Self {
        let mut slots = Vec::with_capacity(view.peers.len());
        let mut index = HashMap::with_capacity(view.peers.len());
        let mut elsewhere = Vec::new();
        let only = view.send_to.get(&network);
        let room = match view.crypto {
            Some(_) => Room {
                head: message::HEADER_LEN,
                tail: message::TAG_LEN,
            },
            None => Room::default(),
        };
        let mut mtus = Vec::with_capacity(view.peers.len());
        let mut traffic = Vec::with_capacity(view.peers.len());
        for (p, counters) in view.peers.iter().zip(&view.traffic) {
            if only.is_some_and(|only| !only.contains(&p.id)) {
                elsewhere.push(p.id);
                continue;
            }
            let i = slots.len();
            let train = Train::with_room(view.batch_bytes, network, view.local, room);
            slots.push((p.id, p.addr, train));
            traffic.push(counters.clone());
            mtus.push(p.mtu);
            index.insert(p.id, i);
        }
        Outbox {
            keys: vec![None; slots.len()],
            slots,
            traffic,
            index,
            flood_mtu: mtus.iter().flatten().min().copied(),
            mtus,
            elsewhere,
            sealed: view.crypto.is_some(),
            keys_generation: None,
        }
    }

    /// Takes the keys the UDP thread published last, if they changed (one atomic load).
    fn refresh_keys<T, U, C>(&mut self, shared: &Shared<T, U, C>) {
        let generation = shared.keys_generation.load(Ordering::Acquire);
        if !self.sealed || self.keys_generation == Some(generation) {
            return;
        }
        let keys = shared.keys.lock().expect("keys lock").clone();
        for ((peer, _, _), key) in self.slots.iter().zip(&mut self.keys) {
            *key = keys.get(peer).cloned();
        }
        self.keys_generation = Some(generation);
    }

    fn push<T, U: Udp, C: Clock>(&mut self, slot: usize, read: Read<'_>, shared: &Shared<T, U, C>) {
        if self.sealed && self.keys[slot].is_none() {
            return Stats::add(&shared.stats.drop_no_session, read.frames() as u64);
        }
        match read {
            Read::Frame(frame) => {
                self.push_one(slot, frame.len(), |out| out.copy_from_slice(frame), shared)
            }
            Read::Super(frame, seg) => {
                for i in 0..seg.count() {
                    let fill = |out: &mut [u8]| seg.write(frame, i, out);
                    self.push_one(slot, seg.len(i), fill, shared);
                }
            }
        }
    }

    fn push_one<T, U: Udp, C: Clock>(
        &mut self,
        slot: usize,
        len: usize,
        fill: impl Fn(&mut [u8]),
        shared: &Shared<T, U, C>,
    ) {
        let pushed = match self.slots[slot].2.push_with(len, &fill) {
            Err(PushError::Full) => {
                self.send(slot, shared);
                self.slots[slot].2.push_with(len, &fill)
            }
            other => other,
        };
        match pushed {
            Ok(()) => {
                Stats::inc(&shared.stats.frames_to_peers);
                Stats::inc(&self.traffic[slot].frames_out);
            }
            Err(_) => Stats::inc(&shared.stats.drop_frame_too_large),
        }
    }

    fn flush<T, U: Udp, C: Clock>(&mut self, shared: &Shared<T, U, C>) {
        for slot in 0..self.slots.len() {
            if !self.slots[slot].2.is_empty() {
                self.send(slot, shared);
            }
        }
    }

    /// Sends a slot's train, sealed first when encryption is on.
    fn send<T, U: Udp, C: Clock>(&mut self, slot: usize, shared: &Shared<T, U, C>) {
        let (_, addr, train) = &mut self.slots[slot];
        if self.sealed && !seal(train, self.keys[slot].as_deref(), shared) {
            Stats::add(&shared.stats.drop_no_session, train.frames() as u64);
            return train.clear();
        }
        let stats = &*shared.stats;
        let sent = shared.udp.send_train(train.datagrams(), *addr);
        Stats::add(&stats.datagrams_out, sent.ok as u64);
        Stats::add(&stats.bytes_out, sent.bytes as u64);
        Stats::add(&stats.udp_send_errors, sent.failed as u64);
        Stats::add(&stats.udp_gso_fallbacks, sent.gso_fallbacks as u64);
        let peer = &self.traffic[slot];
        Stats::add(&peer.datagrams_out, sent.ok as u64);
        Stats::add(&peer.bytes_out, sent.bytes as u64);
        train.clear();
    }
}

/// Seals every datagram of `train` in place with consecutive counters (one atomic add for the
/// train). False when there is no usable key: the train must not be sent.
fn seal<T, U, C: Clock>(
    train: &mut Train,
    key: Option<&SendKey>,
    shared: &Shared<T, U, C>,
) -> bool {
    let Some(key) = key else {
        return false;
    };
    let n = train.datagrams().lens.len();
    let Some(reserved) = key.reserve(n, shared.clock.now()) else {
        return false;
    };
    if reserved.rekey {
        shared.rekey_wanted.store(true, Ordering::Release);
    }
    train.seal_each(|i, datagram| key.seal(reserved.first + i as u64, datagram));
    true
}

fn tap_loop<T: Tap, U: Udp, C: Clock>(
    shared: &Shared<T, U, C>,
    network: NetworkId,
    tap: &T,
    stop: &AtomicBool,
) {
    let mut buf = vec![0u8; READ_BUF];
    let mut cached = Cached::new(shared);
    prioritise(cached.view.thread_nice, &shared.stats);
    let mut outbox = Outbox::new(network, &cached.view);
    let mut pmtu = PathMtu::new();
    while !stop.load(Ordering::Acquire) && !shared.stop.load(Ordering::Acquire) {
        // Under load a frame is usually waiting: read first, and only poll when none is.
        let read = match tap.try_recv(&mut buf) {
            Ok(None) => tap.recv(&mut buf),
            other => other,
        };
        let mut n = match read {
            Ok(Some(n)) => n,
            Ok(None) => {
                // Idle: still drop our hold on TAPs that left the configuration.
                if cached.refresh(shared) {
                    outbox = Outbox::new(network, &cached.view);
                }
                continue;
            }
            Err(_) => {
                Stats::inc(&shared.stats.tap_read_errors);
                thread::sleep(ERROR_BACKOFF);
                continue;
            }
        };
        for i in 0..TAP_BATCH {
            if i > 0 {
                match tap.try_recv(&mut buf) {
                    Ok(Some(more)) => n = more,
                    Ok(None) => break,
                    Err(_) => {
                        Stats::inc(&shared.stats.tap_read_errors);
                        break;
                    }
                }
            }
            // After every read (one atomic load), so a frame read after `apply` returned sees
            // the new view even in the middle of a batch.
            if cached.refresh(shared) {
                outbox.flush(shared);
                outbox = Outbox::new(network, &cached.view);
            }
            outbox.refresh_keys(shared);
            let mut side = TapSide {
                shared,
                view: &cached.view,
                network,
                tap,
                outbox: &mut outbox,
                pmtu: &mut pmtu,
            };
            side.read(&mut buf[..n]);
        }
        outbox.flush(shared);
    }
}

/// Asks for the configured priority once, when a packet thread starts (a later change of the
/// nice value applies to threads started after it).
fn prioritise(nice: Option<i32>, stats: &Stats) {
    if let Some(nice) = nice {
        if sched::set_current_thread_nice(nice).is_err() {
            Stats::inc(&stats.thread_nice_refused);
        }
    }
}

/// A TAP thread's work on one wake-up's reads.
struct TapSide<'a, T, U, C> {
    shared: &'a Shared<T, U, C>,
    view: &'a View<T>,
    network: NetworkId,
    tap: &'a T,
    outbox: &'a mut Outbox,
    pmtu: &'a mut PathMtu,
}

impl<T: Tap, U: Udp, C: Clock> TapSide<'_, T, U, C> {
    /// A TAP with offloads prefixes a virtio header and may hand over a super-frame.
    fn read(&mut self, read: &mut [u8]) {
        if !self.tap.vnet_hdr() {
            return self.frame(Read::Frame(read));
        }
        let stats = &*self.shared.stats;
        match segment::prepare_read(read) {
            Ok((frame, Prepared::Frame)) => self.frame(Read::Frame(frame)),
            Ok((frame, Prepared::Segments(seg))) => {
                Stats::inc(&stats.tap_super_frames_in);
                self.frame(Read::Super(frame, seg))
            }
            Err(e) => {
                Stats::inc(&stats.tap_frames_in);
                Stats::inc(stats.offload_drop(e));
            }
        }
    }

    fn frame(&mut self, read: Read<'_>) {
        let (shared, view, network) = (self.shared, self.view, self.network);
        let stats = &*shared.stats;
        let frame = read.bytes();
        Stats::inc(&stats.tap_frames_in);
        if matches!(read, Read::Frame(_)) && frame.len() > MAX_FRAME_LEN {
            Stats::inc(&stats.drop_frame_too_large);
            return;
        }
        if view.is_local_only(network, frame) {
            return Stats::inc(&stats.drop_local_only_source);
        }
        if view.keeps_multicast(network, frame) {
            return Stats::inc(&stats.drop_multicast_off);
        }
        // One decision for a whole super-frame: its segments share the Ethernet header.
        let now = shared.clock.now();
        let action = shared
            .macs
            .lock()
            .expect("mac lock")
            .from_tap(network, frame, now);
        let slot = match action {
            Action::SendToPeer { peer, .. } => match self.outbox.index.get(&peer) {
                Some(&slot) => Some(slot),
                // The bridge sent it here from a stale entry; the owner gets it over the fast path.
                None if self.outbox.elsewhere.contains(&peer) => {
                    return Stats::inc(&stats.drop_peer_elsewhere)
                }
                None => None, // peer left since it was learned: flood
            },
            Action::Flood { .. } => None,
            Action::Drop(reason) => return Stats::inc(stats.switch_drop(reason)),
            Action::WriteToTap { .. } => return, // never returned for TAP input
        };
        let mtu = slot.map_or(self.outbox.flood_mtu, |s| self.outbox.mtus[s]);
        if !self.pmtu.admits(read, mtu, self.tap, stats, now) {
            return;
        }
        match slot {
            Some(slot) => self.outbox.push(slot, read, shared),
            None => flood(self.outbox, read, shared),
        }
    }
}

/// Packets too big for their path: answered with an ICMP error written back into the TAP they
/// came from, at most as often as the rate limit allows. One per TAP thread, so per network.
struct PathMtu {
    limit: RateLimit,
    /// A super-frame's first segment, cut to be quoted.
    segment: Vec<u8>,
    answer: Vec<u8>,
}

impl PathMtu {
    fn new() -> Self {
        PathMtu {
            limit: RateLimit::default(),
            segment: vec![0; MAX_FRAME_LEN],
            answer: vec![0; pmtu::MAX_ANSWER_LEN],
        }
    }

    /// True when `read` may go to a path of `mtu`; false when it was answered (or dropped).
    fn admits<T: Tap>(
        &mut self,
        read: Read<'_>,
        mtu: Option<u16>,
        tap: &T,
        stats: &Stats,
        now: Duration,
    ) -> bool {
        let Some(mtu) = mtu else {
            return true;
        };
        let packet = match read {
            Read::Frame(frame) => IpPacket::parse(frame),
            Read::Super(frame, seg) => IpPacket::of_segment(frame, seg.len(0)),
        };
        match packet.and_then(|p| p.too_big(read.bytes(), mtu)) {
            None => true,
            Some(TooBig::Unanswerable) => {
                Stats::inc(&stats.oversize_forwarded);
                true
            }
            Some(TooBig::Answer) => {
                Stats::inc(&stats.drop_path_mtu);
                match self.limit.allow(now) {
                    true => self.answer(read, mtu, tap, stats),
                    false => Stats::inc(&stats.icmp_rate_limited),
                }
                false
            }
        }
    }

    /// Writes the ICMP error for `read` (for a super-frame, its first segment) into `tap`.
    fn answer<T: Tap>(&mut self, read: Read<'_>, mtu: u16, tap: &T, stats: &Stats) {
        let frame = match read {
            Read::Frame(frame) => frame,
            Read::Super(frame, seg) => {
                let out = &mut self.segment[..seg.len(0)];
                seg.write(frame, 0, out);
                out
            }
        };
        let Some(packet) = IpPacket::parse(frame) else {
            return; // a segment's own header always parses
        };
        let n = pmtu::answer(frame, packet, mtu, &mut self.answer);
        let sent = match packet.is_v6() {
            false => &stats.icmp_frag_needed_sent,
            true => &stats.icmp6_packet_too_big_sent,
        };
        match tap.send(&self.answer[..n]) {
            Ok(()) => Stats::inc(sent),
            Err(_) => Stats::inc(&stats.tap_write_errors),
        }
    }
}

fn flood<T, U: Udp, C: Clock>(outbox: &mut Outbox, read: Read<'_>, shared: &Shared<T, U, C>) {
    if outbox.slots.is_empty() {
        Stats::inc(&shared.stats.drop_no_peers);
        return;
    }
    Stats::inc(&shared.stats.floods);
    for slot in 0..outbox.slots.len() {
        outbox.push(slot, read, shared);
    }
}

/// Frames on their way into TAPs. For a TAP with offloads, consecutive segments of a TCP flow
/// are joined into one super-frame; whatever is pending is written before anything else goes
/// to that TAP, and at the end of every receive batch.
struct TapWriter {
    coalescer: Coalescer,
    /// The network whose TAP the pending super-frame is for.
    network: Option<NetworkId>,
}

impl TapWriter {
    fn new() -> Self {
        TapWriter {
            coalescer: Coalescer::new(),
            network: None,
        }
    }

    fn write<T: Tap>(
        &mut self,
        view: &View<T>,
        network: NetworkId,
        tap: &T,
        frame: &[u8],
        stats: &Stats,
    ) {
        if !tap.vnet_hdr() {
            return count_write(tap.send(frame), 1, stats);
        }
        if self.network != Some(network) {
            self.flush(view, stats);
            self.network = Some(network);
        }
        let mut pushed = self.coalescer.push(frame);
        if pushed == Push::Busy {
            write_pending(tap, &mut self.coalescer, stats);
            pushed = self.coalescer.push(frame);
        }
        if pushed != Push::Held {
            write_pending(tap, &mut self.coalescer, stats);
            count_write(tap.send(frame), 1, stats);
        }
    }

    fn flush<T: Tap>(&mut self, view: &View<T>, stats: &Stats) {
        if let Some((_, tap)) = self.network.take().and_then(|n| view.taps.get(&n)) {
            write_pending(&**tap, &mut self.coalescer, stats);
        }
        self.coalescer.take(); // a TAP that left: nowhere to write
    }
}

fn write_pending<T: Tap>(tap: &T, coalescer: &mut Coalescer, stats: &Stats) {
    if let Some((hdr, frames, bytes)) = coalescer.take() {
        if frames > 1 {
            Stats::inc(&stats.tap_super_frames_out);
        }
        count_write(tap.send_gso(&hdr, bytes), frames, stats);
    }
}

fn count_write(r: std::io::Result<()>, frames: usize, stats: &Stats) {
    match r {
        Ok(()) => Stats::add(&stats.tap_frames_out, frames as u64),
        Err(_) => Stats::add(&stats.tap_write_errors, frames as u64),
    }
}

fn udp_loop<T: Tap, U: Udp, C: Clock>(shared: &Shared<T, U, C>) {
    let mut batch = RecvBatch::new(RECV_SLOTS, RECV_SLOT_LEN);
    let mut writer = TapWriter::new();
    let mut cached = Cached::new(shared);
    prioritise(cached.view.thread_nice, &shared.stats);
    let mut mesh = Mesh::new(cached.view.local);
    configure(&mut mesh, &cached.view);
    publish(shared, &mut mesh);
    let mut last_sweep = shared.clock.now();
    while !shared.stop.load(Ordering::Acquire) {
        match shared.udp.recv_batch(&mut batch) {
            Ok(n) => {
                // After waking: see the view current at receipt.
                if cached.refresh(shared) {
                    configure(&mut mesh, &cached.view);
                }
                if n > 0 {
                    let now = shared.clock.now(); // one reading per batch: it arrived at once
                    let mut seen = Seen::default(); // per batch: the view and `now` are fixed
                    let rx = Rx {
                        shared,
                        view: &cached.view,
                        now,
                    };
                    for (datagram, from) in batch.datagrams_mut() {
                        rx.datagram(&mut mesh, datagram, from, &mut seen, &mut writer);
                    }
                    writer.flush(&cached.view, &shared.stats);
                }
            }
            Err(_) => {
                Stats::inc(&shared.stats.udp_recv_errors);
                thread::sleep(ERROR_BACKOFF);
            }
        }
        let now = shared.clock.now();
        let woken = shared.rekey_wanted.load(Ordering::Relaxed)
            && shared.rekey_wanted.swap(false, Ordering::AcqRel);
        if woken || now >= mesh.deadline() {
            let rx = Rx {
                shared,
                view: &cached.view,
                now,
            };
            mesh.poll(now, shared.clock.wall_nanos(), &mut |peer, out, bytes| {
                rx.send(peer, out, bytes)
            });
        }
        publish(shared, &mut mesh);
        if now.saturating_sub(last_sweep) >= SWEEP_EVERY {
            shared.macs.lock().expect("mac lock").expire(now);
            last_sweep = now;
        }
    }
}

/// The mesh follows the view: its peers (slot `i` is `view.peers[i]`) and its password.
fn configure<T>(mesh: &mut Mesh, view: &View<T>) {
    let peers: Vec<PeerId> = view.peers.iter().map(|p| p.id).collect();
    let (psk, limits) = match &view.crypto {
        Some(c) => (Some(c.psk.clone()), c.limits),
        None => (None, Default::default()),
    };
    mesh.configure(view.local, psk, limits, &peers);
}

/// Hands what the mesh changed to the TAP threads (keys) and to `sessions()` (status).
fn publish<T, U, C>(shared: &Shared<T, U, C>, mesh: &mut Mesh) {
    if mesh.take_keys_changed() {
        shared.publish_keys(mesh.send_keys());
    }
    if mesh.take_status_changed() {
        *shared.sessions.lock().expect("sessions lock") = mesh.status();
    }
}

/// What the previous datagrams of one receive batch already settled, so that the segments of a
/// train (one sender, one network, one source MAC) do not each hash the same keys and take the
/// MAC table's lock again. Only valid for one batch: one view, one clock reading.
#[derive(Default)]
struct Seen {
    /// The last sender address, the peer it is and its slot.
    peer: Option<(SocketAddr, (PeerId, usize))>,
    /// The last source learnt: forwarding another frame of it would learn the same entry at the
    /// same time, and it already passed the local-only check.
    learnt: Option<(NetworkId, PeerId, Mac)>,
}

impl Seen {
    fn peer<T>(&mut self, view: &View<T>, from: SocketAddr) -> Option<(PeerId, usize)> {
        match self.peer {
            Some((addr, peer)) if addr == from => Some(peer),
            _ => {
                let peer = *view.by_addr.get(&from)?;
                self.peer = Some((from, peer));
                Some(peer)
            }
        }
    }

    fn learnt(&self, network: NetworkId, peer: PeerId, frame: &[u8]) -> bool {
        frame.len() >= MIN_FRAME_LEN && self.learnt == Some((network, peer, src_mac(frame)))
    }
}

/// The receive thread's context for one batch (or one timer run).
struct Rx<'a, T, U, C> {
    shared: &'a Shared<T, U, C>,
    view: &'a View<T>,
    now: Duration,
}

impl<T: Tap, U: Udp, C: Clock> Rx<'_, T, U, C> {
    fn datagram(
        &self,
        mesh: &mut Mesh,
        bytes: &mut [u8],
        from: SocketAddr,
        seen: &mut Seen,
        writer: &mut TapWriter,
    ) {
        let stats = &*self.shared.stats;
        Stats::inc(&stats.datagrams_in);
        Stats::add(&stats.bytes_in, bytes.len() as u64);
        let Some((peer, slot)) = seen.peer(self.view, from) else {
            return Stats::inc(&stats.drop_unknown_peer);
        };
        let traffic = &*self.view.traffic[slot];
        Stats::inc(&traffic.datagrams_in);
        Stats::add(&traffic.bytes_in, bytes.len() as u64);
        let kind = match Kind::of(bytes) {
            Ok(kind) => kind,
            Err(e) => return Stats::inc(stats.malformed(e)),
        };
        let plain: &[u8] = match kind {
            Kind::Plain if mesh.encrypting() => {
                mesh.saw_plaintext(slot, self.now);
                return Stats::inc(&stats.drop_plaintext);
            }
            Kind::Plain => bytes,
            _ if !mesh.encrypting() => {
                mesh.saw_encrypted(slot, self.now);
                return Stats::inc(&stats.drop_encrypted);
            }
            Kind::Transport => match self.open(mesh, slot, bytes) {
                Some(plain) => plain,
                None => return,
            },
            Kind::HandshakeInit | Kind::HandshakeResponse => {
                return self.handshake(mesh, slot, kind, bytes)
            }
        };
        if !plain.is_empty() {
            self.frames(peer, traffic, plain, seen, writer);
        } // else a keepalive
    }

    /// Decrypts a transport datagram in place; `None` when it was dropped (and counted).
    fn open<'b>(&self, mesh: &mut Mesh, slot: usize, bytes: &'b mut [u8]) -> Option<&'b [u8]> {
        let stats = &*self.shared.stats;
        let counter = match mesh.open(slot, bytes, self.now) {
            Ok(opened) => {
                if let Some(c) = opened.confirmed {
                    completed(stats, c);
                }
                return Some(opened.plain);
            }
            Err(Err(e)) => stats.malformed(e),
            Err(Ok(RecvDrop::Replay)) => &stats.replays_dropped,
            Err(Ok(RecvDrop::Decrypt)) => &stats.decrypt_failures,
            Err(Ok(RecvDrop::Expired)) => &stats.drop_session_expired,
            Err(Ok(RecvDrop::UnknownSession)) => &stats.drop_unknown_session,
        };
        Stats::inc(counter);
        None
    }

    fn handshake(&self, mesh: &mut Mesh, slot: usize, kind: Kind, bytes: &[u8]) {
        let stats = &*self.shared.stats;
        let send = &mut |peer, out, bytes: &[u8]| self.send(peer, out, bytes);
        let counter = match mesh.on_handshake(slot, kind, bytes, self.now, send) {
            Ok(Handshake::Completed(c)) => return completed(stats, c),
            Ok(Handshake::Answered) => return,
            Err(HandshakeRefused::Malformed(e)) => stats.malformed(e),
            Err(HandshakeRefused::SenderMismatch) => &stats.drop_sender_mismatch,
            Err(HandshakeRefused::Dropped(HandshakeDrop::Decrypt)) => &stats.handshakes_failed,
            Err(HandshakeRefused::Dropped(HandshakeDrop::Replay)) => &stats.handshake_replays,
            Err(HandshakeRefused::Dropped(HandshakeDrop::Ignored)) => &stats.handshakes_ignored,
        };
        Stats::inc(counter);
    }

    /// Sends a message of the mesh's (handshake or keepalive) to a peer.
    fn send(&self, peer: PeerId, out: Out, bytes: &[u8]) {
        let stats = &*self.shared.stats;
        let Some(i) = self.view.peers.iter().position(|p| p.id == peer) else {
            return;
        };
        match self.shared.udp.send_to(bytes, self.view.peers[i].addr) {
            Ok(()) => {
                Stats::inc(&stats.datagrams_out);
                Stats::add(&stats.bytes_out, bytes.len() as u64);
                let traffic = &self.view.traffic[i];
                Stats::inc(&traffic.datagrams_out);
                Stats::add(&traffic.bytes_out, bytes.len() as u64);
            }
            Err(_) => Stats::inc(&stats.udp_send_errors),
        }
        match out {
            Out::Init => Stats::inc(&stats.handshakes_sent),
            Out::Response => Stats::inc(&stats.handshakes_answered),
            Out::Keepalive => {}
        }
    }

    /// The frames of a plaintext datagram (received as is, or decrypted) from `peer`.
    fn frames(
        &self,
        peer: PeerId,
        traffic: &PeerTraffic,
        bytes: &[u8],
        seen: &mut Seen,
        writer: &mut TapWriter,
    ) {
        let (shared, view, now) = (self.shared, self.view, self.now);
        let stats = &*shared.stats;
        let datagram = match Datagram::parse(bytes) {
            Ok(d) => d,
            Err(e) => return Stats::inc(stats.malformed(e)),
        };
        if datagram.header.sender != peer {
            return Stats::inc(&stats.drop_sender_mismatch);
        }
        let network = datagram.header.network;
        let Some((_, tap)) = view.taps.get(&network) else {
            return Stats::inc(&stats.drop_unknown_network);
        };
        for frame in datagram.frames() {
            Stats::inc(&stats.frames_from_peers);
            Stats::inc(&traffic.frames_in);
            if view.keeps_multicast(network, frame) {
                Stats::inc(&stats.drop_multicast_off_from_peer);
                continue;
            }
            if seen.learnt(network, peer, frame) {
                writer.write(view, network, &**tap, frame, stats);
                continue;
            }
            if view.is_local_only(network, frame) {
                Stats::inc(&stats.drop_local_only_source);
                continue;
            }
            let action = shared
                .macs
                .lock()
                .expect("mac lock")
                .from_peer(network, peer, frame, now);
            match action {
                Action::WriteToTap { .. } => {
                    seen.learnt = Some((network, peer, src_mac(frame)));
                    writer.write(view, network, &**tap, frame, stats);
                }
                Action::Drop(reason) => Stats::inc(stats.switch_drop(reason)),
                Action::SendToPeer { .. } | Action::Flood { .. } => {} // never returned for peer input
            }
        }
    }
}

fn completed(stats: &Stats, c: Completed) {
    Stats::inc(&stats.handshakes_completed);
    if c.rekey {
        Stats::inc(&stats.rekeys);
    }
}
