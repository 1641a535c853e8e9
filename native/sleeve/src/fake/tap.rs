use std::collections::HashMap;
use std::io;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::core::virtio::VirtioHdr;
use crate::os::{Tap, TapFactory};

/// The engine's end of a fake TAP: frames injected by the test come out of `recv`, frames the
/// engine `send`s go to the test's [`TapHandle`].
///
/// An offloading one behaves like a TAP opened with `IFF_VNET_HDR`: what the test injects and
/// what it reads back start with a virtio header (build them with `fake::packets`).
pub struct ChannelTap {
    inbound: Mutex<Receiver<Vec<u8>>>,
    outbound: Sender<Vec<u8>>,
    poll: Duration,
    vnet_hdr: bool,
}

/// The test's end: what the "bridge" would write into and read from the TAP.
pub struct TapHandle {
    pub inject: Sender<Vec<u8>>,
    pub written: Receiver<Vec<u8>>,
}

impl ChannelTap {
    pub fn pair(poll: Duration) -> (ChannelTap, TapHandle) {
        ChannelTap::pair_with(poll, false)
    }

    pub fn pair_with(poll: Duration, vnet_hdr: bool) -> (ChannelTap, TapHandle) {
        let (inject, inbound) = channel();
        let (outbound, written) = channel();
        (
            ChannelTap {
                inbound: Mutex::new(inbound),
                outbound,
                poll,
                vnet_hdr,
            },
            TapHandle { inject, written },
        )
    }

    fn emit(&self, bytes: Vec<u8>) -> io::Result<()> {
        self.outbound
            .send(bytes)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "fake tap handle dropped"))
    }

    fn take(&self, buf: &mut [u8], wait: Option<Duration>) -> io::Result<Option<usize>> {
        let rx = self.inbound.lock().expect("fake tap lock");
        let frame = match wait {
            Some(d) => match rx.recv_timeout(d) {
                Ok(f) => f,
                Err(RecvTimeoutError::Timeout) => return Ok(None),
                Err(RecvTimeoutError::Disconnected) => return Ok(None),
            },
            None => match rx.try_recv() {
                Ok(f) => f,
                Err(_) => return Ok(None),
            },
        };
        let n = frame.len().min(buf.len()); // a real TAP truncates too
        buf[..n].copy_from_slice(&frame[..n]);
        Ok(Some(n))
    }
}

impl Tap for ChannelTap {
    fn recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.take(buf, Some(self.poll))
    }

    fn try_recv(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        self.take(buf, None)
    }

    fn send(&self, frame: &[u8]) -> io::Result<()> {
        self.send_gso(&VirtioHdr::NONE, frame)
    }

    fn vnet_hdr(&self) -> bool {
        self.vnet_hdr
    }

    fn send_gso(&self, hdr: &VirtioHdr, frame: &[u8]) -> io::Result<()> {
        if !self.vnet_hdr {
            return match *hdr == VirtioHdr::NONE {
                true => self.emit(frame.to_vec()),
                false => Err(io::Error::from(io::ErrorKind::Unsupported)),
            };
        }
        let mut bytes = hdr.encode().to_vec();
        bytes.extend_from_slice(frame);
        self.emit(bytes)
    }
}

/// Creates [`ChannelTap`]s by name and keeps their handles for the test. Names listed with
/// [`ChannelTapFactory::fail`] fail to open, to exercise error paths.
#[derive(Clone, Default)]
pub struct ChannelTapFactory {
    inner: Arc<Mutex<FactoryState>>,
}

#[derive(Default)]
struct FactoryState {
    handles: HashMap<String, TapHandle>,
    failing: Vec<String>,
    preloaded: HashMap<String, Vec<Vec<u8>>>,
    vnet_hdr: bool,
}

const FAKE_POLL: Duration = Duration::from_millis(5);

impl ChannelTapFactory {
    /// A factory whose TAPs behave as if opened with offloads.
    pub fn offloading() -> Self {
        let f = ChannelTapFactory::default();
        f.inner.lock().expect("factory lock").vnet_hdr = true;
        f
    }

    /// Takes the test's end of the TAP opened under `name`.
    pub fn handle(&self, name: &str) -> Option<TapHandle> {
        self.inner
            .lock()
            .expect("factory lock")
            .handles
            .remove(name)
    }

    /// Frames already waiting in the TAP named `name` when it is opened, so the engine's first
    /// wake-up sees them all at once (deterministic batching in tests).
    pub fn preload(&self, name: &str, frames: Vec<Vec<u8>>) {
        self.inner
            .lock()
            .expect("factory lock")
            .preloaded
            .insert(name.to_owned(), frames);
    }

    pub fn fail(&self, name: &str) {
        self.inner
            .lock()
            .expect("factory lock")
            .failing
            .push(name.to_owned());
    }
}

impl TapFactory for ChannelTapFactory {
    type Tap = ChannelTap;
    fn open(&self, name: &str) -> io::Result<ChannelTap> {
        let mut s = self.inner.lock().expect("factory lock");
        if s.failing.iter().any(|n| n == name) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("fake: cannot open {name}"),
            ));
        }
        let (tap, handle) = ChannelTap::pair_with(FAKE_POLL, s.vnet_hdr);
        for frame in s.preloaded.remove(name).unwrap_or_default() {
            handle.inject.send(frame).expect("receiver alive");
        }
        s.handles.insert(name.to_owned(), handle);
        Ok(tap)
    }
}
