use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::train::Datagrams;
use crate::os::{RecvBatch, Sent, Slot, Udp};

type Datagram = (Vec<u8>, SocketAddr);
/// What one send puts on the wire: a datagram, or a whole train at once (as GSO would).
type Wire = Sender<Vec<Datagram>>;

/// An in-memory UDP "network": sockets bound on it reach each other by address. Datagrams to
/// an address nobody bound are dropped, as UDP would.
#[derive(Clone, Default)]
pub struct FakeNet {
    sockets: Arc<Mutex<HashMap<SocketAddr, Wire>>>,
    /// Every datagram put on the net, as a packet capture on the underlay would see it.
    captured: Arc<Mutex<Option<Vec<Captured>>>>,
}

/// A datagram seen on the fake net: from, to, bytes.
pub type Captured = (SocketAddr, SocketAddr, Vec<u8>);

struct Inbox {
    rx: Receiver<Vec<Datagram>>,
    /// Datagrams of an arrival not taken yet.
    pending: VecDeque<Datagram>,
}

impl Inbox {
    fn next(&mut self, wait: Option<Duration>) -> Option<Datagram> {
        if self.pending.is_empty() {
            let arrival = match wait {
                Some(d) => match self.rx.recv_timeout(d) {
                    Ok(a) => a,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
                },
                None => self.rx.try_recv().ok()?,
            };
            self.pending.extend(arrival);
        }
        self.pending.pop_front()
    }
}

pub struct FakeUdp {
    addr: SocketAddr,
    net: FakeNet,
    inbox: Mutex<Inbox>,
    poll: Duration,
}

impl FakeNet {
    /// Starts keeping a copy of every datagram sent from now on.
    pub fn capture(&self) {
        *self.captured.lock().expect("capture lock") = Some(Vec::new());
    }

    /// What was captured so far.
    pub fn captured(&self) -> Vec<Captured> {
        self.captured
            .lock()
            .expect("capture lock")
            .clone()
            .unwrap_or_default()
    }

    /// Puts a datagram on the net as if `from` had sent it (a spoofed or replayed one).
    pub fn inject(&self, from: SocketAddr, to: SocketAddr, bytes: Vec<u8>) {
        self.deliver(from, to, vec![(bytes, from)]);
    }

    fn deliver(&self, from: SocketAddr, to: SocketAddr, arrival: Vec<Datagram>) {
        if let Some(c) = self.captured.lock().expect("capture lock").as_mut() {
            c.extend(arrival.iter().map(|(d, _)| (from, to, d.clone())));
        }
        if let Some(wire) = self.sockets.lock().expect("fake net lock").get(&to) {
            let _ = wire.send(arrival);
        }
    }

    pub fn bind(&self, addr: SocketAddr) -> FakeUdp {
        let (tx, rx) = channel();
        self.sockets.lock().expect("fake net lock").insert(addr, tx);
        FakeUdp {
            addr,
            net: self.clone(),
            inbox: Mutex::new(Inbox {
                rx,
                pending: VecDeque::new(),
            }),
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
        self.inbox.lock().expect("fake udp lock").next(Some(wait))
    }

    fn put(&self, to: SocketAddr, arrival: Vec<Datagram>) {
        self.net.deliver(self.addr, to, arrival);
    }
}

impl Udp for FakeUdp {
    fn recv_from(&self, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
        let next = self
            .inbox
            .lock()
            .expect("fake udp lock")
            .next(Some(self.poll));
        Ok(next.map(|(d, from)| {
            let n = d.len().min(buf.len());
            buf[..n].copy_from_slice(&d[..n]);
            (n, from)
        }))
    }

    /// Like `recvmmsg` with `UDP_GRO`: waits for the first datagram, then takes what is already
    /// queued, a train's equal datagrams in one slot.
    fn recv_batch(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        let mut inbox = self.inbox.lock().expect("fake udp lock");
        let slot_len = batch.slot_len();
        let (buf, slots) = batch.parts_mut();
        let mut n = 0;
        while n < slots.len() {
            let wait = (n == 0).then_some(self.poll);
            let Some((d, from)) = inbox.next(wait) else {
                break;
            };
            let slot = &mut buf[n * slot_len..(n + 1) * slot_len];
            let mut len = d.len().min(slot_len);
            slot[..len].copy_from_slice(&d[..len]);
            let (size, mut joined) = (d.len(), 1);
            // Like UDP GRO: the rest of this arrival (one GSO send) joins the slot while its
            // datagrams have the first one's size; a shorter one may close it.
            while let Some((next, _)) = inbox.pending.front() {
                if size == 0 || next.len() > size || len + next.len() > slot_len {
                    break;
                }
                let (next, _) = inbox.pending.pop_front().expect("front exists");
                slot[len..len + next.len()].copy_from_slice(&next);
                len += next.len();
                joined += 1;
                if next.len() < size {
                    break;
                }
            }
            slots[n] = Slot {
                len,
                from,
                segment: if joined > 1 { size } else { 0 },
            };
            n += 1;
        }
        drop(inbox);
        batch.set_filled(n);
        Ok(n)
    }

    fn send_to(&self, datagram: &[u8], to: SocketAddr) -> io::Result<()> {
        self.put(to, vec![(datagram.to_vec(), self.addr)]);
        Ok(())
    }

    /// The whole train arrives at once, as a GSO send would reach a GRO socket.
    fn send_train(&self, datagrams: Datagrams<'_>, to: SocketAddr) -> Sent {
        let arrival: Vec<Datagram> = datagrams.iter().map(|d| (d.to_vec(), self.addr)).collect();
        let sent = Sent {
            ok: arrival.len(),
            bytes: datagrams.bytes.len(),
            ..Sent::default()
        };
        self.put(to, arrival);
        sent
    }
}

impl Drop for FakeUdp {
    fn drop(&mut self) {
        if let Ok(mut s) = self.net.sockets.lock() {
            s.remove(&self.addr);
        }
    }
}
