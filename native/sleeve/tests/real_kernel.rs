//! Real TAPs and real UDP, in a throwaway network namespace owned by one thread made for it.
//! Needs root (CAP_NET_ADMIN + CAP_SYS_ADMIN): `cargo test -- --ignored`.
//!
//! Two engines in the namespace, peered over its loopback. A frame transmitted on TAP `wa7`
//! (through an AF_PACKET socket, as the bridge would) is read by engine A, sent over UDP, written
//! by engine B into TAP `wb7`, and seen arriving there by another AF_PACKET socket.
//! The namespace, TAPs and sockets vanish when the thread and its descriptors end.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sleeve::config::{EngineConfig, NetworkConfig, PeerConfig};
use sleeve::core::clock::MonotonicClock;
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

/// `ip link set <name> up`, by ioctl.
fn set_up(name: &str) -> io::Result<()> {
    // SAFETY: plain socket(2), owned at once.
    let s =
        unsafe { OwnedFd::from_raw_fd(check(libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0))?) };
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
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: valid pointers and sizes for bind and setsockopt.
    unsafe {
        check(libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of_val(&sll) as u32,
        ))?;
        check(libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of_val(&tv) as u32,
        ))?;
    }
    Ok(fd)
}

fn engine(
    local: u64,
    port: u16,
    peer: (u64, u16),
    tap: &str,
    stats: Arc<Stats>,
) -> Engine<OsTapFactory, OsUdp, MonotonicClock> {
    let mut c = EngineConfig::new(local);
    c.peers.push(PeerConfig {
        id: peer.0,
        addr: format!("127.0.0.1:{}", peer.1).parse().unwrap(),
    });
    c.networks.push(NetworkConfig {
        id: 7,
        tap: tap.into(),
        local_macs: Vec::new(),
    });
    let udp = OsUdp::bind(format!("127.0.0.1:{port}").parse().unwrap(), POLL).unwrap();
    Engine::start(
        &c,
        OsTapFactory { poll: POLL },
        udp,
        MonotonicClock::new(),
        stats,
    )
    .unwrap()
}

fn scenario() -> io::Result<()> {
    // SAFETY: affects only this thread, which exists for this test.
    check(unsafe { libc::unshare(libc::CLONE_NEWNET) })?;
    set_up("lo")?;
    let (sa, sb) = (Arc::new(Stats::default()), Arc::new(Stats::default()));
    let a = engine(1, 40001, (2, 40002), "wa7", sa.clone());
    let b = engine(2, 40002, (1, 40001), "wb7", sb.clone());
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
    let t = std::thread::Builder::new()
        .name("netns-test".into())
        .spawn(scenario)
        .unwrap();
    t.join()
        .expect("scenario thread panicked")
        .expect("scenario");
}
