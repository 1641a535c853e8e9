//! The real UDP socket.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use super::{nothing_yet, Udp};

pub struct OsUdp {
    socket: UdpSocket,
}

impl OsUdp {
    /// Binds `addr`; reads wait at most `poll` so the receive thread can notice a stop.
    pub fn bind(addr: SocketAddr, poll: Duration) -> io::Result<Self> {
        let socket = UdpSocket::bind(addr)?;
        socket.set_read_timeout(Some(poll))?;
        Ok(OsUdp { socket })
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Udp for OsUdp {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        nothing_yet(self.socket.recv_from(buf))
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.socket.send_to(datagram, to).map(|_| ())
    }
}
