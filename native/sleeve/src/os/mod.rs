//! The OS-facing interfaces the engine is generic over, and their Linux implementations.
//! In-memory fakes of the same traits live in `crate::fake`.
//!
//! Reads wait at most a short poll interval so the engine's threads notice `stop()`.
//! Batching (recvmmsg/sendmmsg, UDP GSO/GRO, TAP superframes with IFF_VNET_HDR) would be added
//! as further methods with per-item defaults here, so fakes keep working unchanged.

use std::io;
use std::net::SocketAddr;

pub mod tap;
pub mod udp;

/// One layer-2 device carrying Ethernet frames without any prefix.
pub trait Tap: Send + Sync + 'static {
    /// Reads one frame, waiting at most the device's poll interval. `Ok(None)`: nothing came.
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    /// Reads one frame only if one is ready now; used to batch after a wake-up.
    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>>;
    fn send(&self, frame: &[u8]) -> io::Result<()>;
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
