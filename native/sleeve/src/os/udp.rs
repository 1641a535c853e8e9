//! The real UDP socket: `sendmmsg`/`recvmmsg` so a train or a burst costs one syscall, UDP GSO
//! so a run of equal datagrams is one message, UDP GRO so a burst arrives as one buffer, and
//! large socket buffers so the bursts a TAP super-frame makes are not dropped.
//!
//! GSO and GRO are probed when the socket is bound. If a GSO send fails at run time with `EIO`
//! (the egress device cannot checksum, as wireguard-go found), GSO is switched off for good;
//! any other failure of a GSO message resends that run as plain datagrams.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::sockaddr;
use super::{nothing_yet, RecvBatch, Sent, Slot, Udp, UdpOffloads};
use crate::core::gso::{self, Run};
use crate::core::train::{Datagrams, MAX_TRAIN_DATAGRAMS};

/// Socket buffer size asked for (the kernel doubles it for bookkeeping).
const SOCKET_BUFFER: libc::c_int = 8 << 20;
/// Messages per `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// `SO_SNDBUFFORCE` / `SO_RCVBUFFORCE` (asm-generic): like the plain options, but past
/// `net.core.[rw]mem_max` when the process has CAP_NET_ADMIN.
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;
/// Room for one cmsg with an int (`CMSG_SPACE(4)` is 24 on 64-bit Linux), aligned for cmsghdr.
type CmsgBuf = [u64; 4];

pub struct OsUdp {
    socket: UdpSocket,
    gso: AtomicBool,
    gro: bool,
}

impl OsUdp {
    /// Binds `addr`; reads wait at most `poll` so the receive thread can notice a stop.
    pub fn bind(addr: SocketAddr, poll: Duration) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(poll))?;
        let fd = socket.as_raw_fd();
        // Best effort: the kernel's default still works, only with more drops under load.
        let _ = set_buffer(fd, SO_RCVBUFFORCE, libc::SO_RCVBUF);
        let _ = set_buffer(fd, SO_SNDBUFFORCE, libc::SO_SNDBUF);
        let gso = get_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT).is_ok();
        let gro = set_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        Ok(OsUdp {
            socket,
            gso: AtomicBool::new(gso),
            gro,
        })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    fn fd(&self) -> libc::c_int {
        self.socket.as_raw_fd()
    }
}

fn set_int(
    fd: libc::c_int,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: setsockopt reads one c_int from a valid pointer of the given size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn get_int(fd: libc::c_int, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `value`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// The forcing option first (root), then the one capped by `net.core.*mem_max`.
fn set_buffer(fd: libc::c_int, force: libc::c_int, plain: libc::c_int) -> io::Result<()> {
    set_int(fd, libc::SOL_SOCKET, force, SOCKET_BUFFER)
        .or_else(|_| set_int(fd, libc::SOL_SOCKET, plain, SOCKET_BUFFER))
}

fn iovec(bytes: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    }
}

/// Messages for one `sendmmsg`, all to one address, built on the stack.
struct Batch {
    name: libc::sockaddr_storage,
    name_len: libc::socklen_t,
    iov: [libc::iovec; MAX_TRAIN_DATAGRAMS],
    cmsg: [CmsgBuf; MAX_TRAIN_DATAGRAMS],
    msgs: [libc::mmsghdr; MAX_TRAIN_DATAGRAMS],
    /// Datagrams in each message (more than one for a GSO message).
    datagrams: [usize; MAX_TRAIN_DATAGRAMS],
    len: usize,
}

impl Batch {
    /// On the stack (about 8 KiB): sending must not allocate.
    fn new(to: SocketAddr) -> Batch {
        let (name, name_len) = sockaddr::to_raw(to);
        // SAFETY: all-zero iovecs, cmsg buffers and mmsghdrs are valid (null, zero lengths).
        let mut b: Batch = unsafe { mem::zeroed() };
        b.name = name;
        b.name_len = name_len;
        b
    }

    /// Adds a message; `segment` asks the kernel to cut it (UDP GSO).
    fn push(&mut self, bytes: &[u8], datagrams: usize, segment: Option<u16>) {
        let i = self.len;
        self.iov[i] = iovec(bytes);
        self.datagrams[i] = datagrams;
        let m = &mut self.msgs[i].msg_hdr;
        m.msg_name = (&mut self.name as *mut libc::sockaddr_storage).cast();
        m.msg_namelen = self.name_len;
        m.msg_iov = &mut self.iov[i];
        m.msg_iovlen = 1;
        m.msg_control = std::ptr::null_mut();
        m.msg_controllen = 0;
        if let Some(size) = segment {
            m.msg_control = self.cmsg[i].as_mut_ptr().cast();
            // SAFETY: CMSG_SPACE is a pure size computation.
            m.msg_controllen = unsafe { libc::CMSG_SPACE(mem::size_of::<u16>() as u32) } as _;
            // SAFETY: msg_control points at a buffer of msg_controllen bytes, aligned for
            // cmsghdr, with room for one header and a u16.
            unsafe {
                let c = libc::CMSG_FIRSTHDR(m);
                (*c).cmsg_level = libc::SOL_UDP;
                (*c).cmsg_type = libc::UDP_SEGMENT;
                (*c).cmsg_len = libc::CMSG_LEN(mem::size_of::<u16>() as u32) as _;
                libc::CMSG_DATA(c).cast::<u16>().write_unaligned(size);
            }
        }
        self.len += 1;
    }
}

impl OsUdp {
    /// Sends `datagrams` as the runs `plan` yields, in as few `sendmmsg` calls as the kernel
    /// allows. Failed GSO messages are resent plainly; failed plain ones are counted.
    fn send_runs(
        &self,
        datagrams: Datagrams<'_>,
        to: SocketAddr,
        runs: impl Iterator<Item = Run>,
    ) -> Sent {
        let mut sent = Sent::default();
        let mut runs = runs.peekable();
        let mut batch = Batch::new(to);
        while runs.peek().is_some() {
            batch.len = 0;
            while batch.len < MAX_TRAIN_DATAGRAMS {
                let Some(run) = runs.next() else { break };
                batch.push(
                    &datagrams.bytes[run.bytes.clone()],
                    run.datagrams,
                    run.segment,
                );
            }
            sent += self.flush(&mut batch, datagrams, to);
        }
        sent
    }

    fn flush(&self, batch: &mut Batch, datagrams: Datagrams<'_>, to: SocketAddr) -> Sent {
        let mut sent = Sent::default();
        let mut at = 0;
        while at < batch.len {
            // SAFETY: msgs[at..len] point at the batch's own name, iovecs and cmsgs, and at
            // `datagrams`, all alive for this call.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd(),
                    batch.msgs[at..].as_mut_ptr(),
                    (batch.len - at) as libc::c_uint,
                    0,
                )
            };
            if rc >= 0 {
                for m in &batch.msgs[at..at + rc as usize] {
                    sent.bytes += m.msg_len as usize;
                }
                sent.ok += batch.datagrams[at..at + rc as usize].iter().sum::<usize>();
                at += rc as usize;
                continue;
            }
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if batch.msgs[at].msg_hdr.msg_controllen == 0 {
                sent.failed += 1;
            } else {
                if e.raw_os_error() == Some(libc::EIO) {
                    self.gso.store(false, Ordering::Relaxed);
                }
                sent.gso_fallbacks += 1;
                let iov = batch.iov[at];
                // The iovec was made from a slice of `datagrams.bytes`: its offset is the run's.
                let start = iov.iov_base as usize - datagrams.bytes.as_ptr() as usize;
                let run = start..start + iov.iov_len;
                sent += self.send_plain(datagrams, to, run, batch.datagrams[at]);
            }
            at += 1;
        }
        sent
    }

    /// The datagrams of one failed GSO run, one message each.
    fn send_plain(
        &self,
        datagrams: Datagrams<'_>,
        to: SocketAddr,
        run: std::ops::Range<usize>,
        count: usize,
    ) -> Sent {
        let mut first = 0;
        let mut offset = 0;
        while offset < run.start {
            offset += datagrams.lens[first] as usize;
            first += 1;
        }
        let part = Datagrams {
            bytes: &datagrams.bytes[run],
            lens: &datagrams.lens[first..first + count],
        };
        let lens = part.lens;
        let single = (0..lens.len()).scan(0usize, |at, i| {
            let r = *at..*at + lens[i] as usize;
            *at = r.end;
            Some(Run {
                bytes: r,
                datagrams: 1,
                segment: None,
            })
        });
        self.send_runs(part, to, single)
    }

    fn recv_mmsg(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let slot_len = batch.slot_len();
        let (buf, slots) = batch.parts_mut();
        let n = slots.len().min(RECV_BATCH);
        // SAFETY: all-zero iovecs, sockaddr_storage, cmsg buffers and mmsghdrs are valid.
        let mut iov: [libc::iovec; RECV_BATCH] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut cmsg: [CmsgBuf; RECV_BATCH] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; RECV_BATCH] = unsafe { mem::zeroed() };
        for (i, chunk) in buf.chunks_exact_mut(slot_len).take(n).enumerate() {
            iov[i] = libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: slot_len,
            };
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iov[i];
            h.msg_iovlen = 1;
            if self.gro {
                h.msg_control = cmsg[i].as_mut_ptr().cast();
                h.msg_controllen = mem::size_of::<CmsgBuf>() as _;
            }
        }
        // SAFETY: each message points at its own slot of `buf`, name, iovec and cmsg buffer.
        let rc = unsafe {
            libc::recvmmsg(
                self.fd(),
                msgs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if rc < 0 {
            return nothing_yet::<()>(Err(io::Error::last_os_error())).map(|_| 0);
        }
        let mut filled = 0;
        for i in 0..rc as usize {
            // A sender of another family cannot be a peer; its slot is skipped.
            let Some(from) = sockaddr::from_raw(&names[i]) else {
                continue;
            };
            let len = msgs[i].msg_len as usize;
            slots[filled] = Slot {
                len,
                from,
                segment: gro_segment(&msgs[i].msg_hdr),
            };
            if filled != i {
                buf.copy_within(i * slot_len..i * slot_len + len, filled * slot_len);
            }
            filled += 1;
        }
        batch.set_filled(filled);
        Ok(filled)
    }
}

/// The segment size of a GRO train, from its `UDP_GRO` control message (0: one datagram).
fn gro_segment(m: &libc::msghdr) -> usize {
    if m.msg_controllen == 0 {
        return 0;
    }
    // SAFETY: the kernel filled msg_control with msg_controllen bytes of well-formed cmsgs; the
    // CMSG_* walkers stay inside that and the data is read unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(m);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                let size = libc::CMSG_DATA(c).cast::<libc::c_int>().read_unaligned();
                return usize::try_from(size).unwrap_or(0);
            }
            c = libc::CMSG_NXTHDR(m, c);
        }
    }
    0
}

impl Udp for OsUdp {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        nothing_yet(self.socket.recv_from(buf))
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(datagram, to).map(|_| ())
    }

    fn send_train(&self, datagrams: Datagrams<'_>, to: SocketAddr) -> Sent {
        let max = if self.gso.load(Ordering::Relaxed) {
            MAX_TRAIN_DATAGRAMS
        } else {
            1
        };
        self.send_runs(datagrams, to, gso::runs(datagrams.lens, max))
    }

    /// One `recvmmsg`: blocks (up to the read timeout) for the first datagram only.
    fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        self.recv_mmsg(batch)
    }

    fn offloads(&self) -> UdpOffloads {
        UdpOffloads {
            gso: self.gso.load(Ordering::Relaxed),
            gro: self.gro,
        }
    }
}
