//! In-memory fakes of the OS interfaces and the clock, for tests without root.
//! They allocate per frame; only the real implementations are on a hot path.

pub mod clock;
pub mod packets;
pub mod tap;
pub mod udp;

pub use clock::FakeClock;
pub use tap::{ChannelTap, ChannelTapFactory, TapHandle};
pub use udp::{FakeNet, FakeUdp};
