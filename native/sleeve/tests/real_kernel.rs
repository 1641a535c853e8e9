//! Real TAPs and real UDP, in throwaway network namespaces owned by threads made for them.
//! Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN): `cargo test -- --ignored`.
//!
//! Two engines in a namespace, peered over its loopback. A frame transmitted on TAP `wa7`
//! (through an AF_PACKET socket, as the bridge would) is read by engine A, sent over UDP, written
//! by engine B into TAP `wb7`, and seen arriving there by another AF_PACKET socket. Then TCP:
//! `wb7` is created in a second namespace, so a connection from the first namespace's `wa7`
//! address to `wb7`'s crosses both engines with the kernel's TSO super-frames, UDP GSO and GRO.
//! The TCP test runs twice, plain and with a password (then the underlay carries only sealed
//! datagrams), and prints each run's throughput for a quick comparison. Last, path MTU: a ping
//! of 1,400 bytes with DF set, from `wa7`'s address towards a peer whose path MTU is 1300, is
//! answered with "fragmentation needed", the kernel's route learns `mtu 1300` and refuses the
//! next one itself (EMSGSIZE), and only a ping that fits reaches the peer's socket.
//! The namespaces, TAPs and sockets vanish when the threads and their descriptors end.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sleeve::config::{CryptoConfig, EngineConfig, NetworkConfig, PeerConfig};
use sleeve::core::checksum;
use sleeve::core::clock::MonotonicClock;
use sleeve::core::crypto::Psk;
use sleeve::core::wire::Datagram;
use sleeve::engine::Engine;
use sleeve::os::tap::OsTapFactory;
use sleeve::os::udp::OsUdp;
use sleeve::stats::Stats;

const ETHERTYPE: u16 = 0x88b5; // IEEE local experimental
const POLL: Duration = Duration::from_millis(20);

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

#[repr(C)]
struct IfReqFlags {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

/// An IPv4 datagram socket, for interface ioctls.
fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2), owned at once.
    Ok(unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0))?) })
}

fn sockaddr_in(a: Ipv4Addr) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.octets()),
        },
        sin_zero: [0; 8],
    }
}

/// `SO_RCVTIMEO` of 100 ms.
fn set_recv_timeout(fd: &OwnedFd) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: a valid pointer and size for setsockopt.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of_val(&tv) as u32,
        )
    })
    .map(|_| ())
}

/// `ip link set <name> up`, by ioctl.
fn set_up(name: &str) -> io::Result<()> {
    let s = inet_socket()?;
    let mut req = IfReqFlags {
        name: [0; libc::IFNAMSIZ],
        flags: 0,
        _pad: [0; 22],
    };
    for (d, b) in req.name.iter_mut().zip(name.bytes()) {
        *d = b as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write an ifreq we own.
    unsafe {
        check(libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req))?;
        req.flags |= libc::IFF_UP as libc::c_short;
        check(libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, &req))?;
    }
    Ok(())
}

/// A raw packet socket bound to one interface.
fn packet_socket(ifname: &str) -> io::Result<OwnedFd> {
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2), owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            proto as i32,
        ))?)
    };
    let cname = std::ffi::CString::new(ifname).unwrap();
    // SAFETY: NUL-terminated name.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    if index == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: zeroed sockaddr_ll is valid; we fill the fields bind needs.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = index as i32;
    // SAFETY: a valid pointer and size for bind.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of_val(&sll) as u32,
        )
    })?;
    set_recv_timeout(&fd)?;
    Ok(fd)
}

fn engine(
    local: u64,
    port: u16,
    peer: (u64, u16),
    tap: &str,
    stats: Arc<Stats>,
    crypto: Option<CryptoConfig>,
) -> Engine<OsTapFactory, OsUdp, MonotonicClock> {
    let udp = OsUdp::bind(format!("127.0.0.1:{port}").parse().unwrap(), POLL).unwrap();
    engine_on(udp, local, peer, tap, stats, crypto)
}

/// An engine on an already bound socket: its TAP is created in the calling thread's namespace.
fn engine_on(
    udp: OsUdp,
    local: u64,
    peer: (u64, u16),
    tap: &str,
    stats: Arc<Stats>,
    crypto: Option<CryptoConfig>,
) -> Engine<OsTapFactory, OsUdp, MonotonicClock> {
    let c = config(local, peer, tap, crypto);
    Engine::start(
        &c,
        OsTapFactory { poll: POLL },
        udp,
        MonotonicClock::new(),
        stats,
    )
    .unwrap()
}

/// Network 7 on `tap`, one peer on loopback.
fn config(local: u64, peer: (u64, u16), tap: &str, crypto: Option<CryptoConfig>) -> EngineConfig {
    let mut c = EngineConfig::new(local);
    c.crypto = crypto;
    c.peers.push(PeerConfig {
        id: peer.0,
        addr: format!("127.0.0.1:{}", peer.1).parse().unwrap(),
        mtu: None,
    });
    c.networks.push(NetworkConfig {
        id: 7,
        tap: tap.into(),
        local_macs: Vec::new(),
        send_to: None,
        multicast: false,
    });
    c
}

fn scenario() -> io::Result<()> {
    // SAFETY: affects only this thread, which exists for this test.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    set_up("lo")?;
    let (sa, sb) = (Arc::new(Stats::default()), Arc::new(Stats::default()));
    let a = engine(1, 40001, (2, 40002), "wa7", sa.clone(), None);
    let b = engine(2, 40002, (1, 40001), "wb7", sb.clone(), None);
    set_up("wa7")?;
    set_up("wb7")?;
    let tx = packet_socket("wa7")?;
    let rx = packet_socket("wb7")?;

    let mut frame = vec![0xff; 6];
    frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 0xa]);
    frame.extend_from_slice(&ETHERTYPE.to_be_bytes());
    frame.extend_from_slice(b"weave sleeve real kernel test");
    frame.resize(60, 0);
    // SAFETY: sending from a valid buffer on a bound packet socket.
    check(unsafe { libc::send(tx.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) } as i32)?;

    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: receiving into a valid buffer.
        let n = unsafe { libc::recv(rx.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n > 0 && buf[..n as usize] == frame[..] {
            // The sender counts a datagram once its send returned: the frame can arrive first.
            let counted = Instant::now() + Duration::from_secs(1);
            while sa.snapshot().datagrams_out < 1 && Instant::now() < counted {
                std::thread::sleep(Duration::from_millis(1));
            }
            assert!(sa.snapshot().datagrams_out >= 1);
            a.stop();
            b.stop();
            return Ok(());
        }
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "frame never reached wb7: a={:?} b={:?}",
            sa.snapshot(),
            sb.snapshot()
        ),
    ))
}

#[test]
#[ignore = "needs root: creates TAPs in a throwaway network namespace (cargo test -- --ignored)"]
fn frame_crosses_two_real_taps_in_a_throwaway_netns() {
    in_own_thread("netns-test", scenario);
}

/// Runs a scenario on a thread made for it: it may unshare or enter namespaces, which end with it.
fn in_own_thread(name: &str, scenario: impl FnOnce() -> io::Result<()> + Send + 'static) {
    let t = std::thread::Builder::new()
        .name(name.into())
        .spawn(scenario)
        .unwrap();
    t.join()
        .expect("scenario thread panicked")
        .expect("scenario");
}

/// The calling thread's network namespace.
fn current_netns() -> io::Result<OwnedFd> {
    let path = std::ffi::CString::new("/proc/thread-self/ns/net").unwrap();
    // SAFETY: plain open(2), owned at once.
    let fd = check(unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) })?;
    // SAFETY: a fresh descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A new, empty network namespace, kept alive by the returned descriptor.
fn new_netns() -> io::Result<OwnedFd> {
    std::thread::spawn(|| {
        // SAFETY: affects only this short-lived thread.
        check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
        current_netns()
    })
    .join()
    .expect("netns thread")
}

fn enter(ns: &OwnedFd) -> io::Result<()> {
    // SAFETY: setns on a namespace descriptor; this thread exists for the test.
    check(unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) }).map(|_| ())
}

#[repr(C)]
struct IfReqAddr {
    name: [libc::c_char; libc::IFNAMSIZ],
    addr: libc::sockaddr_in,
    _pad: [u8; 8],
}

/// `ip addr add <ip>/24 dev <name>`, by ioctl (the /24 route comes with it).
fn set_addr(name: &str, ip: Ipv4Addr) -> io::Result<()> {
    let s = inet_socket()?;
    let mut req = IfReqAddr {
        name: [0; libc::IFNAMSIZ],
        addr: sockaddr_in(ip),
        _pad: [0; 8],
    };
    for (d, b) in req.name.iter_mut().zip(name.bytes()) {
        *d = b as libc::c_char;
    }
    // SAFETY: SIOCSIFADDR/SIOCSIFNETMASK read an ifreq we own.
    unsafe {
        check(libc::ioctl(s.as_raw_fd(), libc::SIOCSIFADDR, &req))?;
        req.addr = sockaddr_in(Ipv4Addr::new(255, 255, 255, 0));
        check(libc::ioctl(s.as_raw_fd(), libc::SIOCSIFNETMASK, &req))?;
    }
    Ok(())
}

const TCP_BYTES: usize = 8 << 20;
/// Streamed after the checked transfer, to time the path.
const TIMED_BYTES: usize = 1 << 30;

fn wait_for(what: &str, f: impl Fn() -> bool) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !f() {
        if Instant::now() > deadline {
            return Err(io::Error::new(io::ErrorKind::TimedOut, what.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

fn tcp_scenario(crypto: Option<CryptoConfig>) -> io::Result<()> {
    let label = if crypto.is_some() {
        "encrypted"
    } else {
        "plain"
    };
    // SAFETY: affects only this thread, which exists for this test.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    set_up("lo")?;
    let (host, other) = (current_netns()?, new_netns()?);
    let (sa, sb) = (Arc::new(Stats::default()), Arc::new(Stats::default()));
    let a = engine(1, 40001, (2, 40002), "wa7", sa.clone(), crypto.clone());
    set_up("wa7")?;
    set_addr("wa7", Ipv4Addr::new(10, 9, 0, 1))?;
    // B's socket lives here, on loopback with A's; its TAP and the listener in `other`.
    let udp_b = OsUdp::bind("127.0.0.1:40002".parse().unwrap(), POLL)?;
    enter(&other)?;
    let b = engine_on(udp_b, 2, (1, 40001), "wb7", sb.clone(), crypto.clone());
    set_up("wb7")?;
    set_addr("wb7", Ipv4Addr::new(10, 9, 0, 2))?;
    let listener = TcpListener::bind("10.9.0.2:5201")?;
    enter(&host)?;
    if crypto.is_some() {
        let up = |s: &Stats| s.snapshot().handshakes_completed >= 1;
        wait_for("sessions", || up(&sa) && up(&sb))?;
    }

    let data: Vec<u8> = (0..TCP_BYTES).map(|i| (i % 251) as u8).collect();
    let receiver = std::thread::spawn(move || -> io::Result<(Vec<u8>, usize)> {
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut got = Vec::with_capacity(TCP_BYTES);
        conn.read_to_end(&mut got)?;
        let (mut conn, _) = listener.accept()?;
        conn.set_read_timeout(Some(Duration::from_secs(10)))?;
        let (mut buf, mut timed) = (vec![0u8; 1 << 20], 0);
        loop {
            match conn.read(&mut buf)? {
                0 => return Ok((got, timed)),
                n => timed += n,
            }
        }
    });
    let target = SocketAddr::from(([10, 9, 0, 2], 5201));
    let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    conn.write_all(&data)?;
    drop(conn);
    let start = Instant::now();
    let mut conn = TcpStream::connect_timeout(&target, Duration::from_secs(5))?;
    for chunk in data.chunks(1 << 20).cycle().take(TIMED_BYTES >> 20) {
        conn.write_all(chunk)?;
    }
    drop(conn);
    let (got, timed) = receiver.join().expect("receiver thread")?;
    let gbits = timed as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9;
    let (ra, rb) = (sa.snapshot(), sb.snapshot());
    let offloads = (a.udp_offloads(), b.udp_offloads());
    a.stop();
    b.stop();
    eprintln!("tcp over two {label} engines: {gbits:.2} Gbit/s\na={ra:?}\nb={rb:?}");
    assert_eq!(timed, TIMED_BYTES);
    if crypto.is_some() {
        assert_eq!((ra.decrypt_failures, rb.decrypt_failures), (0, 0));
        assert_eq!((ra.drop_plaintext, rb.drop_plaintext), (0, 0));
    }
    assert!(offloads.0.gso && offloads.1.gro, "{offloads:?}");
    assert_eq!(ra.udp_gso_fallbacks, 0);
    assert!(
        got == data,
        "{} of {} bytes arrived intact",
        got.len(),
        data.len()
    );
    assert!(
        ra.tap_super_frames_in > 0,
        "no TSO super-frame read: {ra:?}"
    );
    assert!(
        rb.tap_super_frames_out > 0,
        "no super-frame written: {rb:?}"
    );
    assert_eq!((ra.taps_without_offload, rb.taps_without_offload), (0, 0));
    let dropped = |s: &sleeve::stats::StatsSnapshot| {
        s.drop_offload_short_read
            + s.drop_offload_unsupported_gso
            + s.drop_offload_bad_checksum_offsets
            + s.drop_offload_not_ip
            + s.drop_offload_bad_ip_header
            + s.drop_offload_bad_l4_header
            + s.drop_offload_segment_too_large
    };
    assert_eq!((dropped(&ra), dropped(&rb)), (0, 0), "{ra:?} {rb:?}");
    Ok(())
}

#[test]
#[ignore = "needs root: creates TAPs in throwaway network namespaces (cargo test -- --ignored)"]
fn tcp_crosses_two_engines_as_tso_super_frames() {
    let secret = CryptoConfig {
        psk: Arc::new(Psk::from_bytes([9; 32])),
        limits: Default::default(),
    };
    for crypto in [None, Some(secret)] {
        in_own_thread("netns-tcp-test", move || tcp_scenario(crypto));
    }
}

/// `ip neigh add <ip> lladdr <mac> dev <name> nud permanent`, by ioctl.
fn set_neighbour(name: &str, ip: Ipv4Addr, mac: [u8; 6]) -> io::Result<()> {
    const ATF_COM: libc::c_int = 0x02;
    const ATF_PERM: libc::c_int = 0x04;
    let s = inet_socket()?;
    // SAFETY: an all-zero arpreq is valid; the fields SIOCSARP reads are filled below.
    let mut req: libc::arpreq = unsafe { std::mem::zeroed() };
    // SAFETY: sockaddr_in and sockaddr have the same size; arp_pa is a sockaddr.
    req.arp_pa =
        unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(sockaddr_in(ip)) };
    req.arp_ha.sa_family = libc::ARPHRD_ETHER;
    for (d, b) in req.arp_ha.sa_data.iter_mut().zip(mac) {
        *d = b as libc::c_char;
    }
    req.arp_flags = ATF_COM | ATF_PERM;
    for (d, b) in req.arp_dev.iter_mut().zip(name.bytes()) {
        *d = b as libc::c_char;
    }
    // SAFETY: SIOCSARP reads an arpreq we own.
    check(unsafe { libc::ioctl(s.as_raw_fd(), libc::SIOCSARP, &req) }).map(|_| ())
}

/// A raw ICMP socket connected to `to`, with DF on everything it sends (`ping -M do`).
fn ping_socket(to: Ipv4Addr) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2), owned at once.
    let fd = unsafe {
        OwnedFd::from_raw_fd(check(libc::socket(
            libc::AF_INET,
            libc::SOCK_RAW,
            libc::IPPROTO_ICMP,
        ))?)
    };
    let sin = sockaddr_in(to);
    let pmtudisc: libc::c_int = libc::IP_PMTUDISC_DO;
    // SAFETY: valid pointers and sizes for setsockopt and connect.
    unsafe {
        check(libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&pmtudisc as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as u32,
        ))?;
        check(libc::connect(
            fd.as_raw_fd(),
            (&sin as *const libc::sockaddr_in).cast(),
            std::mem::size_of_val(&sin) as u32,
        ))?;
    }
    set_recv_timeout(&fd)?;
    Ok(fd)
}

/// Sends an ICMP echo request with `size` bytes of data (`ping -s size`: IP length size + 28).
fn ping(fd: &OwnedFd, size: usize, seq: u16) -> io::Result<()> {
    let mut msg = vec![0u8; 8 + size];
    msg[0] = 8; // echo request
    msg[4..8].copy_from_slice(&[0x57, 0x56, (seq >> 8) as u8, seq as u8]);
    msg[8..]
        .iter_mut()
        .enumerate()
        .for_each(|(i, b)| *b = i as u8);
    let c = checksum::finish(checksum::sum(&msg, 0));
    msg[2..4].copy_from_slice(&c);
    // SAFETY: sending from a valid buffer on a connected socket.
    check(unsafe { libc::send(fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) } as i32)
        .map(|_| ())
}

/// The "fragmentation needed" a raw ICMP socket saw (it gets a copy of every ICMP packet): the
/// next-hop MTU it carries.
fn frag_needed_seen(fd: &OwnedFd) -> Option<u16> {
    let mut buf = [0u8; 2048];
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        // SAFETY: receiving into a valid buffer.
        let n = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        let Ok(n) = usize::try_from(n) else { continue };
        let ihl = usize::from(buf[0] & 0xf) * 4;
        if n >= ihl + 8 && buf[ihl..ihl + 2] == [3, 4] {
            return Some(u16::from_be_bytes([buf[ihl + 6], buf[ihl + 7]]));
        }
    }
    None
}

/// Issue 4: a 1,400-byte ping with DF set, towards a peer whose path MTU is 1300, is answered
/// with "fragmentation needed"; the kernel's route learns the MTU and refuses the next one
/// itself (EMSGSIZE), while a ping that fits goes to the peer.
fn pmtu_scenario() -> io::Result<()> {
    // SAFETY: affects only this thread, which exists for this test.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    set_up("lo")?;
    let stats = Arc::new(Stats::default());
    let mut c = config(1, (2, 40002), "wa7", None);
    c.peers[0].mtu = Some(1300);
    let udp = OsUdp::bind("127.0.0.1:40001".parse().unwrap(), POLL)?;
    let peer = std::net::UdpSocket::bind("127.0.0.1:40002")?;
    peer.set_read_timeout(Some(Duration::from_millis(100)))?;
    let a = Engine::start(
        &c,
        OsTapFactory { poll: POLL },
        udp,
        MonotonicClock::new(),
        stats.clone(),
    )
    .unwrap();
    set_up("wa7")?;
    let (local, remote) = (Ipv4Addr::new(10, 9, 0, 1), Ipv4Addr::new(10, 9, 0, 2));
    set_addr("wa7", local)?;
    set_neighbour("wa7", remote, [0x02, 0, 0, 0, 0, 0xb])?;
    let sock = ping_socket(remote)?;

    ping(&sock, 1400, 1)?; // the route still says 1500: it leaves, and is answered
    let mtu = frag_needed_seen(&sock);
    wait_for("the answer counted", || {
        stats.snapshot().icmp_frag_needed_sent == 1
    })?;
    assert_eq!(mtu, Some(1300), "fragmentation needed, next-hop MTU 1300");
    let refused = (0..50).find_map(|i| match ping(&sock, 1400, 2 + i) {
        Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => Some(()),
        _ => {
            std::thread::sleep(Duration::from_millis(10));
            None
        }
    });
    let route = std::process::Command::new("ip")
        .args(["-4", "route", "get", &remote.to_string()])
        .output();
    let s = stats.snapshot();
    assert!(refused.is_some(), "the kernel did not learn the MTU: {s:?}");
    match route {
        Ok(out) => {
            let text = String::from_utf8_lossy(&out.stdout);
            eprintln!("ip route get {remote}: {}", text.trim());
            assert!(text.contains("mtu 1300"), "{text}");
        }
        Err(e) => eprintln!("no `ip` to show the route ({e}); EMSGSIZE showed it"),
    }
    ping(&sock, 1300 - 28, 100)?;
    // What reached the peer: IPv4 lengths of the frames (IPv6 neighbour discovery aside).
    let mut lengths = Vec::new();
    let mut buf = [0u8; 65_536];
    while let Ok(n) = peer.recv(&mut buf) {
        let d = Datagram::parse(&buf[..n]).expect("a sleeve datagram");
        let ip4 = d
            .frames()
            .filter(|f| f.len() >= 34 && f[12..14] == [0x08, 0x00]);
        lengths.extend(ip4.map(|f| u16::from_be_bytes([f[16], f[17]])));
    }
    a.stop();
    assert_eq!(lengths, [1300], "only the ping that fits crossed");
    // A retry may beat the route update to the wire: each is answered too.
    let s = stats.snapshot();
    assert_eq!(s.drop_path_mtu, s.icmp_frag_needed_sent, "{s:?}");
    Ok(())
}

#[test]
#[ignore = "needs root: creates a TAP in a throwaway network namespace (cargo test -- --ignored)"]
fn a_ping_too_big_for_the_path_gets_fragmentation_needed() {
    in_own_thread("netns-pmtu-test", pmtu_scenario);
}
