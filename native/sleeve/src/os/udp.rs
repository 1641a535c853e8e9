//! The real UDP socket: `sendmmsg`/`recvmmsg` so a train or a burst costs one syscall, and
//! large socket buffers so bursts from a TAP super-frame are not dropped.

use std::io;
use std::mem;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::sockaddr;
use super::{nothing_yet, RecvBatch, Sent, Slot, Udp};
use crate::core::train::{Datagrams, MAX_TRAIN_DATAGRAMS};

/// Socket buffer size asked for (the kernel doubles it for bookkeeping).
const SOCKET_BUFFER: libc::c_int = 8 << 20;
/// Messages per `recvmmsg`.
pub const RECV_BATCH: usize = 32;
/// `SO_SNDBUFFORCE` / `SO_RCVBUFFORCE` (asm-generic): like the plain options, but past
/// `net.core.[rw]mem_max` when the process has CAP_NET_ADMIN.
const SO_SNDBUFFORCE: libc::c_int = 32;
const SO_RCVBUFFORCE: libc::c_int = 33;

pub struct OsUdp {
    socket: UdpSocket,
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
        Ok(OsUdp { socket })
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

impl OsUdp {
    /// One `sendmmsg` per up to [`MAX_TRAIN_DATAGRAMS`] datagrams. A refused datagram is counted
    /// and skipped, so one bad message does not hold back the rest.
    fn send_plain(&self, datagrams: Datagrams<'_>, to: SocketAddr) -> Sent {
        let (mut name, name_len) = sockaddr::to_raw(to);
        // SAFETY: all-zero iovecs and mmsghdrs are valid (null pointers, zero lengths).
        let mut iov: [libc::iovec; MAX_TRAIN_DATAGRAMS] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut msgs: [libc::mmsghdr; MAX_TRAIN_DATAGRAMS] = unsafe { mem::zeroed() };
        let mut n = 0;
        for d in datagrams.iter().take(MAX_TRAIN_DATAGRAMS) {
            iov[n] = iovec(d);
            n += 1;
        }
        for (m, v) in msgs.iter_mut().zip(iov.iter_mut()).take(n) {
            m.msg_hdr.msg_name = (&mut name as *mut libc::sockaddr_storage).cast();
            m.msg_hdr.msg_namelen = name_len;
            m.msg_hdr.msg_iov = v;
            m.msg_hdr.msg_iovlen = 1;
        }
        let mut sent = Sent::default();
        let mut at = 0;
        while at < n {
            // SAFETY: msgs[at..n] point at `iov`, `name` and the datagrams, all alive here.
            let rc = unsafe {
                libc::sendmmsg(
                    self.fd(),
                    msgs[at..].as_mut_ptr(),
                    (n - at) as libc::c_uint,
                    0,
                )
            };
            if rc < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                sent.failed += 1;
                at += 1;
            } else {
                let done = &msgs[at..at + rc as usize];
                sent.ok += done.len();
                sent.bytes += done.iter().map(|m| m.msg_len as usize).sum::<usize>();
                at += rc as usize;
            }
        }
        sent
    }
}

impl Udp for OsUdp {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        nothing_yet(self.socket.recv_from(buf))
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(datagram, to).map(|_| ())
    }

    fn send_train(&self, datagrams: Datagrams<'_>, to: SocketAddr) -> Sent {
        let mut total = Sent::default();
        let mut rest = datagrams;
        while !rest.is_empty() {
            let k = rest.lens.len().min(MAX_TRAIN_DATAGRAMS);
            let bytes: usize = rest.lens[..k].iter().map(|&l| l as usize).sum();
            let head = Datagrams {
                bytes: &rest.bytes[..bytes],
                lens: &rest.lens[..k],
            };
            total += self.send_plain(head, to);
            rest = Datagrams {
                bytes: &rest.bytes[bytes..],
                lens: &rest.lens[k..],
            };
        }
        total
    }

    /// One `recvmmsg`: blocks (up to the read timeout) for the first datagram only.
    fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let slot_len = batch.slot_len();
        let (buf, slots) = batch.parts_mut();
        let n = slots.len().min(RECV_BATCH);
        // SAFETY: all-zero iovecs, sockaddr_storage and mmsghdrs are valid.
        let mut iov: [libc::iovec; RECV_BATCH] = unsafe { mem::zeroed() };
        // SAFETY: as above.
        let mut names: [libc::sockaddr_storage; RECV_BATCH] = unsafe { mem::zeroed() };
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
        }
        // SAFETY: each message points at its own slot of `buf`, name and iovec, alive here.
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
            slots[filled] = Slot {
                len: msgs[i].msg_len as usize,
                from,
                segment: 0,
            };
            if filled != i {
                buf.copy_within(
                    i * slot_len..i * slot_len + slots[filled].len,
                    filled * slot_len,
                );
            }
            filled += 1;
        }
        batch.set_filled(filled);
        Ok(filled)
    }
}
