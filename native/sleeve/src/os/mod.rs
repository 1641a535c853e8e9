//! The OS-facing interfaces the engine is generic over, and their Linux implementations.
//! In-memory fakes of the same traits live in `crate::fake`.
//!
//! Reads wait at most a short poll interval so the engine's threads notice `stop()`.
//! Batched calls have per-item defaults, so simple implementations (the fakes) only provide the
//! one-datagram methods.

use std::io;
use std::net::SocketAddr;

use crate::core::train::Datagrams;
use crate::core::virtio::VirtioHdr;

pub mod batch;
pub mod sched;
mod sockaddr;
pub mod tap;
pub mod udp;

pub use batch::{RecvBatch, Slot};

/// One layer-2 device carrying Ethernet frames.
///
/// When [`Tap::vnet_hdr`] is true, every read starts with a `virtio_net_hdr` and may hold a
/// super-frame (see `core::segment`), and [`Tap::send_gso`] takes one back; `send` still takes
/// a plain frame.
pub trait Tap: Send + Sync + 'static {
    /// Reads one frame, waiting at most the device's poll interval. `Ok(None)`: nothing came.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Reads one frame only if one is ready now; used to batch after a wake-up.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    fn send(&self, frame: &[u8]) -> io::Result<()>;

    /// Whether reads carry a virtio header and super-frames may be written.
    fn vnet_hdr(&self) -> bool {
        false
    }

    /// Writes a frame with its virtio header (a super-frame for the kernel to take whole).
    fn send_gso(&self, hdr: &VirtioHdr, frame: &[u8]) -> io::Result<()> {
        if *hdr == VirtioHdr::NONE {
            return self.send(frame);
        }
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

/// Opens TAP devices by name as networks are configured.
pub trait TapFactory: Send + Sync + 'static {
    type Tap: Tap;
    fn open(&self, name: &str) -> io::Result<Self::Tap>;
}

/// One bound UDP socket shared by all peers.
pub trait Udp: Send + Sync + 'static {
    /// Receives one datagram, waiting at most the socket's poll interval.
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>>;
    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()>;

    /// Fills `batch` with what is ready, waiting at most the poll interval for the first
    /// datagram. Returns how many slots were filled.
    fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let slot_len = batch.slot_len();
        let (buf, slots) = batch.parts_mut();
        let Some((len, from)) = self.recv_from(&mut buf[..slot_len])? else {
            return Ok(0);
        };
        slots[0] = Slot {
            len,
            from,
            segment: 0,
        };
        batch.set_filled(1);
        Ok(1)
    }

    /// What the socket does in the kernel; fakes do neither.
    fn offloads(&self) -> UdpOffloads {
        UdpOffloads::default()
    }

    /// Sends every datagram of a train to one peer.
    fn send_train(&self, datagrams: Datagrams<'_>, to: SocketAddr) -> Sent {
        let mut sent = Sent::default();
        for d in datagrams.iter() {
            match self.send_to(d, to) {
                Ok(()) => {
                    sent.ok += 1;
                    sent.bytes += d.len();
                }
                Err(_) => sent.failed += 1,
            }
        }
        sent
    }
}

/// Datagrams of a train sent and refused, the bytes of those sent, and GSO messages the kernel
/// refused that were resent as plain datagrams.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub ok: usize,
    pub failed: usize,
    pub bytes: usize,
    pub gso_fallbacks: usize,
}

impl std::ops::AddAssign for Sent {
    fn add_assign(&mut self, o: Sent) {
        self.ok += o.ok;
        self.failed += o.failed;
        self.bytes += o.bytes;
        self.gso_fallbacks += o.gso_fallbacks;
    }
}

/// UDP offloads in force: `gso` may turn false at run time if the kernel refuses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UdpOffloads {
    pub gso: bool,
    pub gro: bool,
}

/// `WouldBlock`/`TimedOut`/`Interrupted` mean "nothing yet", not failure.
pub(crate) fn nothing_yet<T>(r: io::Result<T>) -> io::Result<Option<T>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
