//! The engine end to end over the in-memory fakes: two engines back to back, a raw fake socket
//! for hostile input, and a stepped clock. No root, no real network.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sleeve::config::{EngineConfig, NetworkConfig, PeerConfig};
use sleeve::core::wire::{BatchEncoder, Datagram};
use sleeve::engine::{Engine, EngineError};
use sleeve::fake::packets::{pattern, Ip, Packet};
use sleeve::fake::{ChannelTapFactory, FakeClock, FakeNet, FakeUdp, TapHandle};
use sleeve::os::Udp;
use sleeve::stats::{Stats, StatsSnapshot};

const WAIT: Duration = Duration::from_secs(2);
const QUIET: Duration = Duration::from_millis(150);

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
const BCAST: [u8; 6] = [0xff; 6];

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn eth(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(60);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    f.resize(60, tag);
    f
}

fn datagram(network: u32, sender: u64, frames: &[Vec<u8>]) -> Vec<u8> {
    let mut enc = BatchEncoder::new(1472);
    enc.begin(network, sender);
    for f in frames {
        enc.push(f).unwrap();
    }
    enc.finish().to_vec()
}

type FakeEngine = Engine<ChannelTapFactory, FakeUdp, FakeClock>;

struct Node {
    engine: FakeEngine,
    factory: ChannelTapFactory,
    stats: Arc<Stats>,
}

impl Node {
    fn tap(&self, name: &str) -> TapHandle {
        self.factory.handle(name).expect("tap opened")
    }

    fn stats(&self) -> StatsSnapshot {
        self.stats.snapshot()
    }

    fn wait_for(&self, what: &str, cond: impl Fn(&StatsSnapshot) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !cond(&self.stats()) {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {:?}",
                self.stats()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

fn config(local: u64, peers: &[(u64, &str)], networks: &[(u32, &str)]) -> EngineConfig {
    let mut c = EngineConfig::new(local);
    c.peers = peers
        .iter()
        .map(|(id, a)| PeerConfig {
            id: *id,
            addr: addr(a),
            mtu: None,
        })
        .collect();
    c.networks = networks
        .iter()
        .map(|(id, t)| NetworkConfig {
            id: *id,
            tap: t.to_string(),
            local_macs: Vec::new(),
            send_to: None,
            multicast: false,
        })
        .collect();
    c
}

fn node(net: &FakeNet, at: &str, clock: &FakeClock, config: &EngineConfig) -> Node {
    node_with(net, at, clock, config, ChannelTapFactory::default())
}

fn node_with(
    net: &FakeNet,
    at: &str,
    clock: &FakeClock,
    config: &EngineConfig,
    factory: ChannelTapFactory,
) -> Node {
    let stats = Arc::new(Stats::default());
    let udp = net.bind(addr(at));
    let engine = Engine::start(config, factory.clone(), udp, clock.clone(), stats.clone()).unwrap();
    Node {
        engine,
        factory,
        stats,
    }
}

const A: &str = "10.0.0.1:6784";
const B: &str = "10.0.0.2:6784";
const RAW: &str = "10.0.0.3:6784";
const STRANGER: &str = "10.0.0.9:6784";

/// A (peer 1) and B (peer 2), both on networks 7 and 8. B also lists the raw socket as peer 3.
fn pair(net: &FakeNet, clock: &FakeClock) -> (Node, Node) {
    let nets = [(7, "t7"), (8, "t8")];
    let a = node(net, A, clock, &config(1, &[(2, B)], &nets));
    let b = node(net, B, clock, &config(2, &[(1, A), (3, RAW)], &nets));
    (a, b)
}

fn recv(h: &TapHandle) -> Option<Vec<u8>> {
    h.written.recv_timeout(WAIT).ok()
}

/// `raw` (B's peer 3) sends `frame` on network 7: B drops it (`what`, once `dropped` holds) and
/// writes nothing to its TAP `b7`.
fn refused_by_b(
    raw: &FakeUdp,
    b: &Node,
    b7: &TapHandle,
    frame: Vec<u8>,
    what: &str,
    dropped: impl Fn(&StatsSnapshot) -> bool,
) {
    raw.send_to(&datagram(7, 3, &[frame]), addr(B)).unwrap();
    b.wait_for(what, dropped);
    assert!(
        b7.written.recv_timeout(QUIET).is_err(),
        "{what}: nothing reached B's TAP"
    );
}

#[test]
fn frames_cross_on_their_own_network_only() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let (a, b) = pair(&net, &clock);
    let (a7, a8, b7, b8) = (a.tap("t7"), a.tap("t8"), b.tap("t7"), b.tap("t8"));

    let hello = eth(BCAST, MAC_A, 1);
    a7.inject.send(hello.clone()).unwrap();
    assert_eq!(recv(&b7), Some(hello));
    assert!(
        b8.written.recv_timeout(QUIET).is_err(),
        "network 8 must not see network 7's frame"
    );

    // B learned MAC_A behind peer 1 on network 7, so the reply is unicast back.
    let reply = eth(MAC_A, MAC_B, 2);
    b7.inject.send(reply.clone()).unwrap();
    assert_eq!(recv(&a7), Some(reply));
    assert!(a8.written.recv_timeout(QUIET).is_err());

    // Counters are bumped just after the write the test already saw; let them settle.
    a.wait_for("reply counted", |s| s.tap_frames_out == 1);
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.tap_frames_in, sa.floods, sa.frames_to_peers), (1, 1, 1));
    assert_eq!((sb.frames_from_peers, sb.tap_frames_out), (1, 1));
    assert_eq!(sb.floods, 0, "the reply was unicast");
    assert_eq!((sb.tap_frames_in, sb.frames_to_peers), (1, 1));
    a.engine.stop();
    b.engine.stop();
}

#[test]
fn many_frames_arrive_in_order_batched() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let frames: Vec<Vec<u8>> = (0..200).map(|i| eth(BCAST, MAC_A, i as u8)).collect();
    let factory = ChannelTapFactory::default();
    factory.preload("t7", frames.clone());
    // B first: datagrams to an address nobody bound yet are lost, as with real UDP.
    let b = node(&net, B, &clock, &config(2, &[(1, A)], &[(7, "t7")]));
    let a_config = config(1, &[(2, B)], &[(7, "t7")]);
    let a = node_with(&net, A, &clock, &a_config, factory);
    let b7 = b.tap("t7");
    for f in &frames {
        assert_eq!(recv(&b7).as_ref(), Some(f));
    }
    a.wait_for("all sent", |s| s.frames_to_peers == 200);
    // 60-byte frames take 62 bytes each: 23 fit a 1472-byte datagram after the 20-byte header.
    // One wake-up reads up to 64 frames: 64 = 23+23+18, three times, then 8.
    assert_eq!(a.stats().datagrams_out, 10);
    b.wait_for("all received", |s| {
        s.datagrams_in == 10 && s.frames_from_peers == 200
    });
}

#[test]
fn hostile_datagrams_are_dropped_and_counted() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let (_a, b) = pair(&net, &clock);
    let b7 = b.tap("t7");
    let raw = net.bind(addr(RAW)); // configured on B as peer 3
    let stranger = net.bind(addr(STRANGER)); // not a peer
    let good = datagram(7, 3, &[eth(BCAST, MAC_A, 1)]);

    stranger.send_to(&good, addr(B)).unwrap();
    b.wait_for("unknown peer", |s| s.drop_unknown_peer == 1);

    raw.send_to(b"hello, not a weave datagram", addr(B))
        .unwrap();
    b.wait_for("bad magic", |s| s.malformed_bad_magic == 1);
    raw.send_to(&good[..good.len() - 1], addr(B)).unwrap();
    b.wait_for("truncated", |s| s.malformed_truncated == 1);
    raw.send_to(&good[..5], addr(B)).unwrap();
    b.wait_for("short header", |s| s.malformed_short_header == 1);
    let mut bad_version = good.clone();
    bad_version[2] = 9;
    raw.send_to(&bad_version, addr(B)).unwrap();
    b.wait_for("bad version", |s| s.malformed_bad_version == 1);

    raw.send_to(&datagram(7, 99, &[eth(BCAST, MAC_A, 1)]), addr(B))
        .unwrap();
    b.wait_for("sender mismatch", |s| s.drop_sender_mismatch == 1);
    raw.send_to(&datagram(9, 3, &[eth(BCAST, MAC_A, 1)]), addr(B))
        .unwrap();
    b.wait_for("unknown network", |s| s.drop_unknown_network == 1);
    raw.send_to(
        &datagram(7, 3, &[eth(BCAST, [0x01, 0, 0, 0, 0, 1], 1)]),
        addr(B),
    )
    .unwrap();
    b.wait_for("invalid source", |s| s.drop_invalid_source == 1);

    assert!(
        b7.written.recv_timeout(QUIET).is_err(),
        "nothing hostile reached the tap"
    );
    raw.send_to(&good, addr(B)).unwrap();
    assert_eq!(recv(&b7), Some(eth(BCAST, MAC_A, 1)));
    b.wait_for("delivery counted", |s| s.tap_frames_out == 1);
    let s = b.stats();
    assert_eq!(s.malformed_total(), 4);
    assert_eq!(s.datagrams_in, 9);
}

#[test]
fn the_anycast_gateway_mac_never_crosses_the_wire() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    const GW: [u8; 6] = [0x02, 0x57, 0, 0, 0, 1];
    let mut ca = config(1, &[(2, B)], &[(7, "t7")]);
    ca.networks[0].local_macs = vec![GW];
    let mut cb = config(2, &[(1, A), (3, RAW)], &[(7, "t7")]);
    cb.networks[0].local_macs = vec![GW];
    let (a, b) = (node(&net, A, &clock, &ca), node(&net, B, &clock, &cb));
    let (a7, b7) = (a.tap("t7"), b.tap("t7"));

    // A's bridge answering ARP for the gateway: stays on A.
    a7.inject.send(eth(MAC_B, GW, 1)).unwrap();
    a.wait_for("local-only drop on the way out", |s| {
        s.drop_local_only_source == 1
    });
    // A peer that sends one anyway does not get it onto B's bridge.
    let raw = net.bind(addr(RAW));
    refused_by_b(
        &raw,
        &b,
        &b7,
        eth(BCAST, GW, 2),
        "local-only drop on the way in",
        |s| s.drop_local_only_source == 1,
    );

    // Everything else still crosses.
    a7.inject.send(eth(BCAST, MAC_A, 3)).unwrap();
    assert_eq!(recv(&b7), Some(eth(BCAST, MAC_A, 3)));
    // Counted just after the send the test already saw arrive.
    a.wait_for("one datagram out", |s| s.datagrams_out == 1);
}

/// A UDP frame from MAC_A to an IP multicast `group` (IPv4 or IPv6), at its group MAC.
fn to_group(group: IpAddr) -> Vec<u8> {
    let mut p = Packet::udp4(pattern(20, 1));
    p.src_mac = MAC_A;
    (p.dst_mac, p.ip) = match group {
        IpAddr::V4(g) => {
            let o = g.octets();
            let src = [10, 0, 0, 1];
            (
                [1, 0, 0x5e, o[1] & 0x7f, o[2], o[3]],
                Ip::V4 {
                    src,
                    dst: o,
                    id: 1,
                    frag: 0,
                    options: Vec::new(),
                },
            )
        }
        IpAddr::V6(g) => {
            let o = g.octets();
            let src = "fe80::1".parse::<Ipv6Addr>().unwrap().octets();
            (
                [0x33, 0x33, o[12], o[13], o[14], o[15]],
                Ip::V6 { src, dst: o },
            )
        }
    };
    p.frame()
}

#[test]
fn multicast_beyond_the_link_crosses_only_networks_that_carry_it() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    // Network 7 without the option (the default), network 8 with it, on both sides.
    let with_8 = |mut c: EngineConfig| {
        c.networks[1].multicast = true;
        c
    };
    let a = node(
        &net,
        A,
        &clock,
        &with_8(config(1, &[(2, B)], &[(7, "t7"), (8, "t8")])),
    );
    let b = node(
        &net,
        B,
        &clock,
        &with_8(config(2, &[(1, A), (3, RAW)], &[(7, "t7"), (8, "t8")])),
    );
    let (a7, a8, b7, b8) = (a.tap("t7"), a.tap("t8"), b.tap("t7"), b.tap("t8"));
    let group = to_group("239.1.2.3".parse().unwrap());

    a7.inject.send(group.clone()).unwrap();
    a.wait_for("the group's frame kept on A", |s| s.drop_multicast_off == 1);
    // What a link needs crosses network 7 all the same: mDNS, IPv6 neighbour discovery.
    for link in ["224.0.0.251", "ff02::1:ff00:2"] {
        let frame = to_group(link.parse().unwrap());
        a7.inject.send(frame.clone()).unwrap();
        assert_eq!(recv(&b7), Some(frame), "{link}");
    }
    assert_eq!(a.stats().floods, 2, "the group's frame was never flooded");
    // Network 8 carries the group, and IPv6 beyond the link too.
    for frame in [group.clone(), to_group("ff05::1:3".parse().unwrap())] {
        a8.inject.send(frame.clone()).unwrap();
        assert_eq!(recv(&b8), Some(frame));
    }

    // A peer that sends the group anyway does not get it onto network 7 here; network 8 takes it.
    let raw = net.bind(addr(RAW));
    refused_by_b(
        &raw,
        &b,
        &b7,
        group.clone(),
        "the peer's group frame dropped",
        |s| s.drop_multicast_off_from_peer == 1,
    );
    raw.send_to(&datagram(8, 3, std::slice::from_ref(&group)), addr(B))
        .unwrap();
    assert_eq!(recv(&b8), Some(group));
    assert_eq!(
        (
            a.stats().drop_multicast_off,
            b.stats().drop_multicast_off_from_peer
        ),
        (1, 1)
    );
}

#[test]
fn a_network_sends_only_to_its_listed_peers_and_still_hears_the_others() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let a = node(&net, A, &clock, &config(1, &[(2, B)], &[(7, "t7")]));
    // B reaches A over the fast path on network 7: its sleeve sends there to the raw peer only.
    let mut cb = config(2, &[(1, A), (3, RAW)], &[(7, "t7")]);
    cb.networks[0].send_to = Some(vec![3]);
    let b = node(&net, B, &clock, &cb);
    let (a7, b7) = (a.tap("t7"), b.tap("t7"));
    let raw = net.bind(addr(RAW));

    // A still uses the sleeve towards B, and B takes it in: the choice is per direction.
    a7.inject.send(eth(BCAST, MAC_A, 1)).unwrap();
    assert_eq!(recv(&b7), Some(eth(BCAST, MAC_A, 1)));
    // B's flood goes to the raw peer only.
    b7.inject.send(eth(BCAST, MAC_B, 2)).unwrap();
    assert!(
        raw.recv_within(WAIT).is_some(),
        "the listed peer gets the flood"
    );
    assert!(
        a7.written.recv_timeout(QUIET).is_err(),
        "A gets it over the fast path, not here"
    );
    // A unicast to MAC_A, learned behind peer 1, is dropped: it would arrive twice.
    b7.inject.send(eth(MAC_A, MAC_B, 3)).unwrap();
    b.wait_for("a drop for the peer on the fast path", |s| {
        s.drop_peer_elsewhere == 1
    });
    assert!(a7.written.recv_timeout(QUIET).is_err());
    assert!(raw.recv_within(QUIET).is_none(), "not flooded either");
}

#[test]
fn learned_macs_age_out_with_the_clock() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let (a, b) = pair(&net, &clock);
    let (a7, b7) = (a.tap("t7"), b.tap("t7"));
    let raw = net.bind(addr(RAW));

    a7.inject.send(eth(BCAST, MAC_A, 1)).unwrap();
    assert!(recv(&b7).is_some());
    // Known: unicast to A only, the raw peer hears nothing.
    b7.inject.send(eth(MAC_A, MAC_B, 2)).unwrap();
    assert!(recv(&a7).is_some());
    assert!(raw.recv_within(QUIET).is_none());

    clock.advance(Duration::from_secs(301));
    b7.inject.send(eth(MAC_A, MAC_B, 3)).unwrap();
    assert!(recv(&a7).is_some());
    let (bytes, from) = raw
        .recv_within(WAIT)
        .expect("aged out: flooded to every peer");
    assert_eq!(from, addr(B));
    assert_eq!(
        sleeve::core::wire::Datagram::parse(&bytes)
            .unwrap()
            .header
            .sender,
        2
    );
    b.wait_for("one flood", |s| s.floods == 1);
}

#[test]
fn apply_swaps_networks_and_rolls_back_failed_opens() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let (a, mut b) = pair(&net, &clock);
    let a7 = a.tap("t7");
    let b7 = b.tap("t7");

    b.factory.fail("broken");
    let bad = config(2, &[(1, A)], &[(7, "t7"), (9, "broken")]);
    assert!(matches!(
        b.engine.apply(&bad),
        Err(EngineError::OpenTap { .. })
    ));
    a7.inject.send(eth(BCAST, MAC_A, 1)).unwrap();
    assert!(
        recv(&b7).is_some(),
        "network 7 still delivered after the failed apply"
    );

    // Network 7 leaves B: A's frames for it are now dropped as unknown.
    b.engine.apply(&config(2, &[(1, A)], &[(8, "t8")])).unwrap();
    a7.inject.send(eth(BCAST, MAC_A, 2)).unwrap();
    b.wait_for("unknown network", |s| s.drop_unknown_network == 1);

    // And it comes back on a new TAP.
    b.engine
        .apply(&config(2, &[(1, A)], &[(7, "t7b"), (8, "t8")]))
        .unwrap();
    let b7b = b.tap("t7b");
    a7.inject.send(eth(BCAST, MAC_A, 3)).unwrap();
    assert_eq!(recv(&b7b), Some(eth(BCAST, MAC_A, 3)));
}

#[test]
fn invalid_config_is_refused_and_stop_is_prompt() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let dup = config(1, &[(2, B), (2, RAW)], &[]);
    let r = Engine::start(
        &dup,
        ChannelTapFactory::default(),
        net.bind(addr(A)),
        clock.clone(),
        Arc::default(),
    );
    assert!(matches!(r, Err(EngineError::Config(_))));

    let n = node(&net, B, &clock, &config(2, &[], &[(7, "t7")]));
    n.tap("t7").inject.send(eth(BCAST, MAC_B, 1)).unwrap();
    n.wait_for("no peers", |s| s.drop_no_peers == 1);
    let t = Instant::now();
    n.engine.stop();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "stop took {:?}",
        t.elapsed()
    );
}

mod offload {
    //! TAPs with offloads: a TSO super-frame read on one side crosses as ordinary segments (one
    //! frame each on the wire) and is written on the other side as few super-frames.

    use super::*;
    use sleeve::core::segment::prepare;
    use sleeve::core::virtio::{VirtioHdr, F_NEEDS_CSUM};
    use sleeve::fake::packets::{self as packets, inspect, pattern, Packet};

    /// 66 bytes of headers: segments are 1450-byte frames, 1472-byte datagrams.
    const MSS: u16 = 1384;

    fn offloading(net: &FakeNet, at: &str, clock: &FakeClock, config: &EngineConfig) -> Node {
        node_with(net, at, clock, config, ChannelTapFactory::offloading())
    }

    /// The frames a written TAP record stands for, cut the way the kernel would.
    fn frames_of(record: &[u8]) -> (VirtioHdr, Vec<Vec<u8>>) {
        let mut bytes = record.to_vec();
        let (hdr, frame) = VirtioHdr::split(&mut bytes).expect("virtio header");
        let prepared = prepare(&hdr, frame).expect("a well-formed record");
        (hdr, packets::frames_of(frame, prepared))
    }

    fn payload(frames: &[Vec<u8>]) -> Vec<u8> {
        frames
            .iter()
            .flat_map(|f| {
                let s = inspect(f).expect("IP frame");
                assert!(s.ip_checksum_ok && s.l4_checksum_ok);
                s.payload
            })
            .collect()
    }

    #[test]
    fn a_tso_super_frame_crosses_as_segments_and_is_joined_again() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let nets = [(7, "t7")];
        let a = offloading(&net, A, &clock, &config(1, &[(2, B)], &nets));
        let b = offloading(&net, B, &clock, &config(2, &[(1, A)], &nets));
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));

        let p = Packet::tcp4(pattern(30_000, 1));
        a7.inject.send(p.super_read(MSS)).unwrap();
        let segments = 30_000usize.div_ceil(MSS as usize);
        b.wait_for("all segments delivered", |s| {
            s.tap_frames_out == segments as u64
        });

        let mut got = Vec::new();
        let mut records = 0;
        while let Ok(record) = b7.written.recv_timeout(QUIET) {
            let (hdr, frames) = frames_of(&record);
            if frames.len() > 1 {
                assert_eq!((hdr.flags, hdr.gso_size), (F_NEEDS_CSUM, MSS));
            }
            got.extend(frames);
            records += 1;
        }
        assert_eq!(payload(&got), p.payload);
        // The train arrives in one receive batch; only the 64 KiB limit could split it.
        assert_eq!(records, 1, "{records} writes for {segments} segments");
        let (sa, sb) = (a.stats(), b.stats());
        assert_eq!(
            (sa.tap_super_frames_in, sa.frames_to_peers),
            (1, segments as u64)
        );
        assert_eq!(
            sa.datagrams_out, segments as u64,
            "one 1450-byte segment per datagram"
        );
        assert_eq!(sb.tap_super_frames_out, records as u64);
    }

    #[test]
    fn a_plain_tap_gets_ordinary_frames_from_an_offloading_peer() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let nets = [(7, "t7")];
        let a = offloading(&net, A, &clock, &config(1, &[(2, B)], &nets));
        let b = node(&net, B, &clock, &config(2, &[(1, A)], &nets));
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));

        let p = Packet::tcp6(pattern(5_000, 2));
        a7.inject.send(p.super_read(MSS)).unwrap();
        let got: Vec<Vec<u8>> = (0..4).map(|_| recv(&b7).expect("a segment")).collect();
        assert!(got.iter().all(|f| f.len() <= 14 + 40 + 32 + MSS as usize));
        assert_eq!(payload(&got), p.payload);
        assert_eq!(b.stats().taps_without_offload, 1);
    }

    #[test]
    fn checksums_left_to_us_are_completed_and_bad_headers_counted() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let nets = [(7, "t7")];
        let a = offloading(&net, A, &clock, &config(1, &[(2, B)], &nets));
        let b = offloading(&net, B, &clock, &config(2, &[(1, A)], &nets));
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));

        let small = Packet::udp4(pattern(200, 3));
        a7.inject.send(small.partial_read()).unwrap();
        let (hdr, frames) = frames_of(&recv(&b7).expect("delivered"));
        assert_eq!((hdr, frames), (VirtioHdr::NONE, vec![small.frame()]));

        let mut bogus = Packet::tcp4(pattern(3_000, 4)).super_read(MSS);
        bogus[8..10].copy_from_slice(&7u16.to_ne_bytes()); // csum_offset
        a7.inject.send(bogus).unwrap();
        a7.inject.send(vec![0; 5]).unwrap();
        a.wait_for("both dropped", |s| {
            s.drop_offload_bad_checksum_offsets == 1 && s.drop_offload_short_read == 1
        });
        assert!(b7.written.recv_timeout(QUIET).is_err());
        assert_eq!(a.stats().tap_frames_in, 3);
    }
}

/// The nice values of this process's threads called `name` (field 19 of /proc/.../stat).
fn thread_nices(name: &str) -> Vec<i64> {
    let mut out = Vec::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if comm.trim() != name {
            continue;
        }
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        // Fields after the parenthesised name, which may hold spaces: state is field 3.
        let Some(end) = stat.rfind(')') else {
            continue; // the thread ended meanwhile
        };
        let rest = &stat[end + 2..];
        out.push(rest.split(' ').nth(16).unwrap().parse().unwrap());
    }
    out
}

#[test]
fn packet_threads_take_the_configured_nice_value() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let mut c = config(1, &[(2, B)], &[(41, "t41")]);
    // Raising the value needs no privilege, so the test runs as any user.
    c.packet_thread_nice = Some(7);
    let a = node(&net, A, &clock, &c);
    let deadline = Instant::now() + WAIT;
    while thread_nices("sleeve-tap-41").is_empty() || thread_nices("sleeve-udp").is_empty() {
        assert!(Instant::now() < deadline, "threads did not start");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(QUIET); // past the threads' first lines
    assert_eq!(thread_nices("sleeve-tap-41"), [7]);
    assert!(thread_nices("sleeve-udp").contains(&7));
    assert_eq!(a.stats().thread_nice_refused, 0);
}

mod encrypted {
    //! Engines with a password: sessions, the wire seen from outside, other passwords, replays.

    use super::*;
    use sleeve::config::CryptoConfig;
    use sleeve::core::crypto::{Limits, Psk, SessionState};

    const C: &str = "10.0.0.4:6784";

    fn secret(b: u8) -> CryptoConfig {
        CryptoConfig {
            psk: Arc::new(Psk::from_bytes([b; 32])),
            limits: Limits::default(),
        }
    }

    fn with(mut c: EngineConfig, crypto: Option<CryptoConfig>) -> EngineConfig {
        c.crypto = crypto;
        c
    }

    /// `None` until the receive thread has published the peer.
    fn state(n: &Node, peer: u64) -> Option<SessionState> {
        let (now, sessions) = n.engine.sessions();
        sessions
            .iter()
            .find(|s| s.peer == peer)
            .map(|s| s.state(now))
    }

    /// Waits for `peer`'s session on `n`; every 200 ms of waiting steps the clock a second,
    /// which lets a handshake retry (one lost before the other engine was bound, say).
    fn wait_state(n: &Node, peer: u64, want: SessionState, clock: &FakeClock) {
        let deadline = Instant::now() + WAIT;
        for i in 1.. {
            if state(n, peer) == Some(want) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{peer}: {:?}, {:?}",
                state(n, peer),
                n.stats()
            );
            std::thread::sleep(Duration::from_millis(10));
            if i % 20 == 0 {
                clock.advance(Duration::from_secs(1));
            }
        }
    }

    /// A (1) and B (2) on network 7, both with password 1, sessions up.
    fn pair(net: &FakeNet, clock: &FakeClock, crypto: CryptoConfig) -> (Node, Node) {
        let nets = [(7, "t7")];
        let a = node(
            net,
            A,
            clock,
            &with(config(1, &[(2, B), (3, C)], &nets), Some(crypto.clone())),
        );
        let b = node(
            net,
            B,
            clock,
            &with(config(2, &[(1, A), (3, C)], &nets), Some(crypto)),
        );
        wait_state(&a, 2, SessionState::Established, clock);
        wait_state(&b, 1, SessionState::Established, clock);
        (a, b)
    }

    #[test]
    fn same_password_exchanges_frames_and_the_wire_shows_no_payload() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (a, b) = pair(&net, &clock, secret(1));
        net.capture();
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));
        let payload = b"a known payload that must not be seen on the underlay";
        let mut hello = eth(BCAST, MAC_A, 0);
        hello.extend_from_slice(payload);
        a7.inject.send(hello.clone()).unwrap();
        assert_eq!(recv(&b7), Some(hello));
        let mut reply = eth(MAC_A, MAC_B, 0);
        reply.extend_from_slice(payload);
        b7.inject.send(reply.clone()).unwrap();
        assert_eq!(recv(&a7), Some(reply));

        let wire = net.captured();
        assert!(wire.len() >= 2, "{wire:?}");
        for (_, _, d) in &wire {
            assert!(
                !d.windows(payload.len()).any(|w| w == payload),
                "plaintext on the wire"
            );
            assert!(!d.windows(6).any(|w| w == MAC_A), "not even the MACs");
        }
        let (sa, sb) = (a.stats(), b.stats());
        assert!(sa.handshakes_completed >= 1 && sb.handshakes_completed >= 1);
        assert_eq!((sa.decrypt_failures, sb.decrypt_failures), (0, 0));
    }

    #[test]
    fn another_password_delivers_nothing_and_shows_in_status() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (a, b) = pair(&net, &clock, secret(1));
        let c = node(
            &net,
            C,
            &clock,
            &with(config(3, &[(1, A), (2, B)], &[(7, "t7")]), Some(secret(2))),
        );
        wait_state(&c, 1, SessionState::WrongPassword, &clock);
        wait_state(&a, 3, SessionState::WrongPassword, &clock);
        let c7 = c.tap("t7");
        // A floods to both; C has no session with anyone, so nothing reaches its TAP.
        a.tap("t7").inject.send(eth(BCAST, MAC_A, 1)).unwrap();
        c7.inject.send(eth(BCAST, [2, 0, 0, 0, 0, 0xc], 2)).unwrap();
        assert!(recv(&b.tap("t7")).is_some(), "B still hears A");
        assert!(
            c7.written.recv_timeout(QUIET).is_err(),
            "C delivers nothing"
        );
        let (sa, sc) = (a.stats(), c.stats());
        assert!(
            sa.handshakes_failed > 0 && sc.handshakes_failed > 0,
            "{sa:?} {sc:?}"
        );
        assert_eq!((sc.frames_from_peers, sc.tap_frames_out), (0, 0));
        assert!(
            sa.drop_no_session >= 1 && sc.drop_no_session >= 1,
            "nothing sent in plaintext"
        );
        assert_eq!(state(&b, 1), Some(SessionState::Established));
    }

    #[test]
    fn a_replayed_datagram_is_dropped() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (a, b) = pair(&net, &clock, secret(1));
        net.capture();
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));
        a7.inject.send(eth(BCAST, MAC_A, 1)).unwrap();
        assert!(recv(&b7).is_some());
        let wire = net.captured();
        let (from, to, datagram) = wire
            .iter()
            .find(|(_, to, _)| *to == addr(B))
            .unwrap()
            .clone();
        net.inject(from, to, datagram.clone());
        b.wait_for("the replay dropped", |s| s.replays_dropped == 1);
        let mut forged = datagram;
        forged[15] = forged[15].wrapping_add(100); // a fresh counter: the tag no longer fits
        net.inject(from, to, forged);
        b.wait_for("the forgery dropped", |s| s.decrypt_failures == 1);
        assert!(
            b7.written.recv_timeout(QUIET).is_err(),
            "delivered once only"
        );
    }

    #[test]
    fn plaintext_and_encrypted_meshes_refuse_each_other_visibly() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (a, _b) = pair(&net, &clock, secret(1));
        let c = node(&net, C, &clock, &config(3, &[(1, A), (2, B)], &[(7, "t7")]));
        c.tap("t7")
            .inject
            .send(eth(BCAST, [2, 0, 0, 0, 0, 0xc], 1))
            .unwrap();
        a.wait_for("plaintext dropped", |s| s.drop_plaintext >= 1);
        wait_state(&a, 3, SessionState::PlaintextPeer, &clock); // published after the batch
        wait_state(&c, 1, SessionState::EncryptedPeer, &clock); // A's initiations to C
        assert!(c.stats().drop_encrypted >= 1);
        assert_eq!(c.stats().tap_frames_out, 0);
    }

    #[test]
    fn traffic_flows_across_rekeys_by_count_and_by_time() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let limits = Limits {
            rekey_after_messages: 20,
            ..Limits::default()
        };
        let (a, b) = pair(
            &net,
            &clock,
            CryptoConfig {
                limits,
                ..secret(1)
            },
        );
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));
        let mut next = 0u32;
        let mut round = |n: usize| {
            for _ in 0..n {
                let mut f = eth(BCAST, MAC_A, 0);
                f.extend_from_slice(&next.to_be_bytes());
                a7.inject.send(f.clone()).unwrap();
                assert_eq!(recv(&b7), Some(f), "frame {next}");
                next += 1;
            }
        };
        // Each round crosses the count (one datagram per frame), and the frames sent while
        // the handshake is under way still arrive.
        for rekeys in 1..=3 {
            round(30);
            a.wait_for("rekeyed by count", |s| s.rekeys >= rekeys);
        }
        let before = a.stats().rekeys + b.stats().rekeys;
        clock.advance(sleeve::core::crypto::REKEY_AFTER_TIME); // and once by time
        let deadline = Instant::now() + WAIT;
        while a.stats().rekeys + b.stats().rekeys < before + 2 {
            assert!(Instant::now() < deadline, "no rekey by time");
            std::thread::sleep(Duration::from_millis(2));
        }
        round(10);
        b.wait_for("all counted", |s| s.tap_frames_out == 100); // just after the last write
        let (sa, sb) = (a.stats(), b.stats());
        // Only the flood's copies for C (configured, never up) found no session.
        assert_eq!(
            (sa.drop_no_session, sb.replays_dropped, sb.decrypt_failures),
            (100, 0, 0)
        );
    }

    #[test]
    fn a_new_password_ends_the_sessions_until_the_peer_has_it_too() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (mut a, mut b) = pair(&net, &clock, secret(1));
        let nets = [(7, "t7")];
        a.engine
            .apply(&with(config(1, &[(2, B), (3, C)], &nets), Some(secret(5))))
            .unwrap();
        wait_state(&a, 2, SessionState::WrongPassword, &clock);
        b.engine
            .apply(&with(config(2, &[(1, A), (3, C)], &nets), Some(secret(5))))
            .unwrap();
        wait_state(&a, 2, SessionState::Established, &clock);
        wait_state(&b, 1, SessionState::Established, &clock);
        a.tap("t7").inject.send(eth(BCAST, MAC_A, 1)).unwrap();
        assert!(recv(&b.tap("t7")).is_some());
    }
}

mod path_mtu {
    //! A packet too big for its peer's path MTU is answered with an ICMP error written back
    //! into the TAP it came from, and never reaches the wire.

    use super::*;
    use sleeve::core::virtio::VirtioHdr;
    use sleeve::fake::packets::{inspect, inspect_icmp, pattern, IcmpSeen, Packet};

    /// A (peer 1) reaches B (peer 2) over a path of 1300 bytes, and the raw socket (peer 3)
    /// without a limit.
    fn nodes(net: &FakeNet, clock: &FakeClock, factory: ChannelTapFactory) -> (Node, Node) {
        let nets = [(7, "t7")];
        let mut ca = config(1, &[(2, B), (3, RAW)], &nets);
        ca.peers[0].mtu = Some(1300);
        let a = node_with(net, A, clock, &ca, factory);
        let b = node(net, B, clock, &config(2, &[(1, A)], &nets));
        (a, b)
    }

    fn icmp(h: &TapHandle) -> IcmpSeen {
        let written = recv(h).expect("an answer written back");
        let s = inspect_icmp(&written).expect("an ICMP frame");
        assert!(s.ip_checksum_ok && s.icmp_checksum_ok, "{s:?}");
        s
    }

    /// A 1,400-byte ping with DF set, as `ping -M do -s 1372` sends it (ICMP echo, IP 1400).
    fn ping(size: usize) -> Vec<u8> {
        let mut f = Packet::udp4(pattern(size - 28, 5)).frame();
        f[23] = 1; // ICMP
        f[34..36].copy_from_slice(&[8, 0]); // echo request
        f
    }

    #[test]
    fn a_too_big_df_packet_is_answered_and_one_that_fits_crosses() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (a, b) = nodes(&net, &clock, ChannelTapFactory::default());
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));
        let _raw = net.bind(addr(RAW));

        let big = ping(1400);
        a7.inject.send(big.clone()).unwrap(); // unknown destination: flooded, smallest MTU 1300
        let s = icmp(&a7);
        assert_eq!((s.icmp_type, s.code, s.mtu, s.df), (3, 4, 1300, true));
        assert_eq!((s.src, s.dst), (big[30..34].to_vec(), big[26..30].to_vec()));
        assert_eq!((s.src_mac, s.dst_mac), (MAC_B, MAC_A));
        assert_eq!(s.quote, big[14..14 + 548]);
        assert!(b7.written.recv_timeout(QUIET).is_err(), "nothing crossed");
        a.wait_for("answer counted", |s| s.icmp_frag_needed_sent == 1);
        let sa = a.stats();
        assert_eq!(sa.drop_path_mtu, 1);
        assert_eq!((sa.frames_to_peers, sa.datagrams_out, sa.floods), (0, 0, 0));

        let fits = ping(1300);
        a7.inject.send(fits.clone()).unwrap();
        assert_eq!(recv(&b7), Some(fits));
        // Without DF the sleeve does not fragment: it is sent as before (the underlay would
        // fragment the datagram), and counted.
        let no_df = Packet::udp4(pattern(1400, 6)).with_ip4_frag(0).frame();
        a7.inject.send(no_df.clone()).unwrap();
        assert_eq!(recv(&b7), Some(no_df));
        // IPv6 never fragments on the way: packet too big.
        let v6 = Packet::tcp6(pattern(1400, 7)).frame();
        a7.inject.send(v6.clone()).unwrap();
        let s = icmp(&a7);
        assert_eq!((s.v6, s.icmp_type, s.code, s.mtu), (true, 2, 0, 1300));
        assert_eq!((s.src, s.dst), (v6[38..54].to_vec(), v6[22..38].to_vec()));
        assert_eq!(s.quote, v6[14..14 + 1232]);
        a.wait_for("counted", |s| s.icmp6_packet_too_big_sent == 1);
        let sa = a.stats();
        assert_eq!((sa.drop_path_mtu, sa.oversize_forwarded), (2, 1));
        assert!(b7.written.recv_timeout(QUIET).is_err());
    }

    #[test]
    fn a_unicast_takes_its_own_peers_mtu_and_a_new_config_another() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (mut a, b) = nodes(&net, &clock, ChannelTapFactory::default());
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));
        let raw = net.bind(addr(RAW));
        let big = ping(1400);

        // MAC_B behind the raw peer, which has no limit: the big packet goes there whole.
        raw.send_to(&datagram(7, 3, &[eth(BCAST, MAC_B, 1)]), addr(A))
            .unwrap();
        assert!(recv(&a7).is_some());
        a7.inject.send(big.clone()).unwrap();
        let mut buf = vec![0; 2048];
        let deadline = Instant::now() + WAIT;
        let n = loop {
            if let Some((n, _)) = raw.recv_from(&mut buf).unwrap() {
                break n;
            }
            assert!(Instant::now() < deadline, "nothing sent to peer 3");
        };
        let got = Datagram::parse(&buf[..n]).unwrap();
        assert_eq!(got.frames().next(), Some(&big[..]));

        // MAC_B moves behind B, whose path is 1300 bytes.
        b7.inject.send(eth(BCAST, MAC_B, 2)).unwrap();
        assert!(recv(&a7).is_some());
        a7.inject.send(big.clone()).unwrap();
        assert_eq!(icmp(&a7).mtu, 1300);

        // The router lifts the limit: the same packet crosses.
        let mut c = config(1, &[(2, B), (3, RAW)], &[(7, "t7")]);
        c.peers[0].mtu = Some(1500);
        a.engine.apply(&c).unwrap();
        a7.inject.send(big.clone()).unwrap();
        assert_eq!(
            recv(&b7),
            Some(big),
            "the new MTU applies to the next frame read"
        );
        assert_eq!(a.stats().icmp_frag_needed_sent, 1);
    }

    #[test]
    fn a_super_frame_whose_segments_exceed_the_path_is_answered_for_its_first() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (a, b) = nodes(&net, &clock, ChannelTapFactory::offloading());
        let (a7, b7) = (a.tap("t7"), b.tap("t7"));
        let _raw = net.bind(addr(RAW));

        let p = Packet::tcp4(pattern(10_000, 8));
        a7.inject.send(p.super_read(1448)).unwrap(); // segments of IP length 1500
        let mut record = recv(&a7).expect("an answer");
        let (hdr, frame) = VirtioHdr::split(&mut record).unwrap();
        assert_eq!(hdr, VirtioHdr::NONE);
        let s = inspect_icmp(frame).expect("ICMP");
        assert!(s.ip_checksum_ok && s.icmp_checksum_ok);
        assert_eq!((s.icmp_type, s.code, s.mtu), (3, 4, 1300));
        let first = p.clone().with_tcp(0xffff_f000, 0x10).frame(); // headers of segment 0
        assert_eq!(u16::from_be_bytes([s.quote[2], s.quote[3]]), 1500);
        assert_eq!(s.quote[..20][12..], first[14..34][12..], "addresses");
        assert_eq!(s.quote[20..28], first[34..42], "ports and sequence number");
        assert!(b7.written.recv_timeout(QUIET).is_err());

        // Cut to 1248 bytes of payload (IP length 1300), the same packet crosses.
        a7.inject.send(p.super_read(1248)).unwrap();
        let got: Vec<Vec<u8>> = (0..9).map(|_| recv(&b7).expect("a segment")).collect();
        let payload: Vec<u8> = got
            .iter()
            .flat_map(|f| inspect(f).unwrap().payload)
            .collect();
        assert_eq!(payload, p.payload);
        let sa = a.stats();
        assert_eq!((sa.tap_super_frames_in, sa.drop_path_mtu), (2, 1));
        assert_eq!(sa.icmp_frag_needed_sent, 1);
    }

    #[test]
    fn answers_are_rate_limited_per_network() {
        let (net, clock) = (FakeNet::default(), FakeClock::default());
        let (a, _b) = nodes(&net, &clock, ChannelTapFactory::default());
        let a7 = a.tap("t7");
        for _ in 0..60 {
            a7.inject.send(ping(1400)).unwrap();
        }
        a.wait_for("all judged", |s| s.drop_path_mtu == 60);
        let answers = std::iter::from_fn(|| a7.written.recv_timeout(QUIET).ok()).count();
        let s = a.stats();
        assert_eq!(
            (answers, s.icmp_frag_needed_sent, s.icmp_rate_limited),
            (50, 50, 10)
        );
        // 100 a second: 10 more after 100 ms.
        clock.advance(Duration::from_millis(100));
        for _ in 0..15 {
            a7.inject.send(ping(1400)).unwrap();
        }
        a.wait_for("all judged", |s| s.drop_path_mtu == 75);
        let s = a.stats();
        assert_eq!((s.icmp_frag_needed_sent, s.icmp_rate_limited), (60, 15));
        assert_eq!(s.datagrams_out, 0);
    }
}

#[test]
fn traffic_is_counted_per_peer() {
    let (net, clock) = (FakeNet::default(), FakeClock::default());
    let (a, b) = pair(&net, &clock);
    let (a7, b7) = (a.tap("t7"), b.tap("t7"));
    // A floods to its one peer, B; B answers A alone (it learnt MAC_A behind peer 1), not peer 3.
    a7.inject.send(eth(BCAST, MAC_A, 1)).unwrap();
    assert!(recv(&b7).is_some());
    b7.inject.send(eth(MAC_A, MAC_B, 2)).unwrap();
    assert!(recv(&a7).is_some());
    a.wait_for("reply counted", |s| s.tap_frames_out == 1);
    let by_peer = |n: &Node| {
        n.engine
            .peer_traffic()
            .into_iter()
            .map(|(id, t)| {
                (
                    id,
                    (t.frames_out, t.datagrams_out, t.frames_in, t.datagrams_in),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(by_peer(&a), vec![(2, (1, 1, 1, 1))]);
    assert_eq!(by_peer(&b), vec![(1, (1, 1, 1, 1)), (3, (0, 0, 0, 0))]);
    let (ta, tb) = (a.engine.peer_traffic()[0].1, b.engine.peer_traffic()[0].1);
    // What one side sent to the other is what the other received from it, byte for byte.
    assert_eq!((ta.bytes_out, ta.bytes_in), (tb.bytes_in, tb.bytes_out));
    assert!(ta.bytes_out > 60);
    a.engine.stop();
    b.engine.stop();
}
