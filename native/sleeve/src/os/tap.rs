//! A Linux TAP device: `/dev/net/tun` with `IFF_TAP | IFF_NO_PI`, and `IFF_VNET_HDR` with
//! checksum and segmentation offloads when the kernel grants them.
//!
//! Opening a name that exists as a persistent TAP (`ip tuntap add dev X mode tap`, which sets
//! `IFF_NO_PI` by default) attaches to it; otherwise the kernel creates a device that lives as
//! long as the descriptor. Link state, MTU and bridge membership are the caller's (netwire's).
//!
//! With offloads the bridge hands us TCP (and UDP) packets of up to 64 KiB with their checksums
//! left to us, one read each instead of one per MSS, and takes back super-frames the same way.
//! Offloads are asked for from the most to the least and the device works plainly without them.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::{nothing_yet, Tap, TapFactory};
use crate::core::virtio::{self, VirtioHdr};

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `_IOW('T', 208, unsigned int)`: the offloads we can take, passed by value.
const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
/// `_IOW('T', 216, int)`.
const TUNSETVNETHDRSZ: libc::c_ulong = 0x4004_54d8;
const IFF_VNET_HDR: libc::c_short = 0x4000;
const TUN_F_CSUM: libc::c_uint = 0x01;
const TUN_F_TSO4: libc::c_uint = 0x02;
const TUN_F_TSO6: libc::c_uint = 0x04;
const TUN_F_USO4: libc::c_uint = 0x20;
const TUN_F_USO6: libc::c_uint = 0x40;
/// Tried in order: UDP segmentation offload needs Linux 6.2.
const OFFLOADS: [libc::c_uint; 3] = [
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_USO4 | TUN_F_USO6,
    TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6,
    TUN_F_CSUM,
];

/// `struct ifreq` reduced to the two members TUNSETIFF reads (40 bytes on Linux).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

pub struct OsTap {
    fd: OwnedFd,
    name: String,
    poll_ms: libc::c_int,
    /// Frames carry a virtio header both ways.
    vnet_hdr: bool,
    /// The `TUN_F_*` flags the kernel accepted (0 without a virtio header).
    offloads: libc::c_uint,
}

impl OsTap {
    /// Opens `name` with offloads if the kernel grants them, plainly otherwise.
    pub fn open(name: &str, poll: Duration) -> io::Result<Self> {
        match OsTap::open_with(name, poll, true) {
            Ok(tap) => Ok(tap),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => OsTap::open_with(name, poll, false),
            Err(e) => Err(e),
        }
    }

    /// Opens `name` without offloads: one frame per read and write.
    pub fn open_plain(name: &str, poll: Duration) -> io::Result<Self> {
        OsTap::open_with(name, poll, false)
    }

    fn open_with(name: &str, poll: Duration, vnet_hdr: bool) -> io::Result<Self> {
        let mut req = ifreq(name)?;
        if vnet_hdr {
            req.flags |= IFF_VNET_HDR;
        }
        let path = CString::new("/dev/net/tun").expect("no NUL");
        // SAFETY: plain open(2); the result is checked and owned immediately.
        let raw = unsafe {
            libc::open(
                path.as_ptr(),
                libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: TUNSETIFF reads an ifreq; `req` is a properly sized, initialised one.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETIFF as _, &req) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let offloads = if vnet_hdr { enable_offloads(&fd)? } else { 0 };
        let poll_ms = poll.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        Ok(OsTap {
            fd,
            name: name.to_owned(),
            poll_ms,
            vnet_hdr,
            offloads,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The `TUN_F_*` offloads in force.
    pub fn offloads(&self) -> libc::c_uint {
        self.offloads
    }

    fn writev(&self, parts: &[&[u8]]) -> io::Result<()> {
        let iov = [iovec(parts[0]), iovec(parts.get(1).copied().unwrap_or(&[]))];
        // SAFETY: the iovecs point at live buffers of the stated lengths; writev only reads.
        let n = unsafe {
            libc::writev(
                self.fd.as_raw_fd(),
                iov.as_ptr(),
                parts.len().min(2) as libc::c_int,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: reading into a valid, writable buffer of `buf.len()` bytes.
        let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

fn iovec(b: &[u8]) -> libc::iovec {
    libc::iovec {
        iov_base: b.as_ptr() as *mut libc::c_void,
        iov_len: b.len(),
    }
}

/// Sets the header size we parse and asks for the most offloads the kernel grants; none is
/// fine too (the header then only ever says "plain frame").
fn enable_offloads(fd: &OwnedFd) -> io::Result<libc::c_uint> {
    let size = virtio::LEN as libc::c_int;
    // SAFETY: TUNSETVNETHDRSZ reads one int through the pointer.
    if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETVNETHDRSZ as _, &size) } < 0 {
        return Err(io::Error::last_os_error());
    }
    for flags in OFFLOADS {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        if unsafe { libc::ioctl(fd.as_raw_fd(), TUNSETOFFLOAD as _, flags as libc::c_ulong) } == 0 {
            return Ok(flags);
        }
    }
    Ok(0)
}

fn ifreq(name: &str) -> io::Result<IfReq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?}"),
        ));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        flags: (libc::IFF_TAP | libc::IFF_NO_PI) as _,
        _pad: [0; 22],
    };
    for (d, s) in req.name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    Ok(req)
}

impl Tap for OsTap {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready = unsafe { libc::poll(&mut pfd, 1, self.poll_ms) };
        if ready < 0 {
            return nothing_yet::<()>(Err(io::Error::last_os_error())).map(|_| None);
        }
        if ready == 0 {
            return Ok(None);
        }
        self.try_recv(buf)
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        nothing_yet(self.read(buf))
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        if self.vnet_hdr {
            return self.writev(&[&VirtioHdr::NONE.encode(), frame]);
        }
        self.writev(&[frame])
    }

    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    fn send_gso(&self, hdr: &VirtioHdr, frame: &[u8]) -> io::Result<()> {
        if !self.vnet_hdr {
            return Err(io::Error::from(io::ErrorKind::Unsupported));
        }
        self.writev(&[&hdr.encode(), frame])
    }
}

/// Opens real TAPs with one poll interval.
pub struct OsTapFactory {
    pub poll: Duration,
}

impl TapFactory for OsTapFactory {
    type Tap = OsTap;
    fn open(&self, name: &str) -> io::Result<OsTap> {
        OsTap::open(name, self.poll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ioctl_numbers_match_libc() {
        assert_eq!(TUNSETIFF, libc::TUNSETIFF as libc::c_ulong);
        assert_eq!(TUNSETOFFLOAD, libc::TUNSETOFFLOAD as libc::c_ulong);
        assert_eq!(TUNSETVNETHDRSZ, libc::TUNSETVNETHDRSZ as libc::c_ulong);
        assert_eq!(IFF_VNET_HDR as libc::c_int, libc::IFF_VNET_HDR);
        assert_eq!(TUN_F_USO6, libc::TUN_F_USO6);
    }

    #[test]
    fn ifreq_layout_and_names() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        assert!(ifreq("").is_err());
        assert!(ifreq("0123456789abcdef").is_err()); // 16 bytes: no room for NUL
        assert!(ifreq("a\0b").is_err());
        let r = ifreq("vethwe-7").unwrap();
        assert_eq!(r.name[7] as u8, b'7');
        assert_eq!(r.name[8], 0);
    }
}
