use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::os::Udp;

type Wire = Sender<(Vec<u8>, SocketAddr)>;

/// An in-memory UDP "network": sockets bound on it reach each other by address. Datagrams to
/// an address nobody bound are dropped, as UDP would.
#[derive(Clone, Default)]
pub struct FakeNet {
    sockets: Arc<Mutex<HashMap<SocketAddr, Wire>>>,
}

pub struct FakeUdp {
    addr: SocketAddr,
    net: FakeNet,
    inbox: Mutex<Receiver<(Vec<u8>, SocketAddr)>>,
    poll: Duration,
}

impl FakeNet {
    pub fn bind(&self, addr: SocketAddr) -> FakeUdp {
        let (tx, rx) = channel();
        self.sockets.lock().expect("fake net lock").insert(addr, tx);
        FakeUdp {
            addr,
            net: self.clone(),
            inbox: Mutex::new(rx),
            poll: Duration::from_millis(5),
        }
    }
}

impl FakeUdp {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Test helper: the next datagram, waiting up to `wait`.
    pub fn recv_within(&self, wait: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        self.inbox
            .lock()
            .expect("fake udp lock")
            .recv_timeout(wait)
            .ok()
    }
}

impl Udp for FakeUdp {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        let rx = self.inbox.lock().expect("fake udp lock");
        match rx.recv_timeout(self.poll) {
            Ok((d, from)) => {
                let n = d.len().min(buf.len());
                buf[..n].copy_from_slice(&d[..n]);
                Ok(Some((n, from)))
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => Ok(None),
        }
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        if let Some(wire) = self.net.sockets.lock().expect("fake net lock").get(&to) {
            let _ = wire.send((datagram.to_vec(), self.addr));
        }
        Ok(())
    }
}

impl Drop for FakeUdp {
    fn drop(&mut self) {
        if let Ok(mut s) = self.net.sockets.lock() {
            s.remove(&self.addr);
        }
    }
}
