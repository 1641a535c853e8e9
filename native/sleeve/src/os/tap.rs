//! A Linux TAP device: `/dev/net/tun` with `IFF_TAP | IFF_NO_PI`.
//!
//! Opening a name that exists as a persistent TAP (`ip tuntap add dev X mode tap`, which sets
//! `IFF_NO_PI` by default) attaches to it; otherwise the kernel creates a device that lives as
//! long as the descriptor. Link state, MTU and bridge membership are the caller's (netwire's).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use super::{nothing_yet, Tap, TapFactory};

/// `_IOW('T', 202, int)`.
const TUNSETIFF: libc::c_ulong = 0x4004_54ca;

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
}

impl OsTap {
    pub fn open(name: &str, poll: Duration) -> io::Result<Self> {
        let req = ifreq(name)?;
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
        let poll_ms = poll.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
        Ok(OsTap {
            fd,
            name: name.to_owned(),
            poll_ms,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
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
        // SAFETY: writing from a valid buffer of `frame.len()` bytes.
        let n = unsafe { libc::write(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
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
