//! The mesh's pre-shared key, derived from its password once, when the password is configured.

use std::fmt;

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroize;

/// Fixed for every weave mesh: the password is what differs between meshes.
const SALT: &[u8] = b"weave sleeve mesh psk v1";
/// Argon2id at OWASP's smallest recommended cost (19 MiB, 2 passes): tens of milliseconds once
/// per password change, and a guess costs an attacker as much.
const MEMORY_KIB: u32 = 19 * 1024;
const PASSES: u32 = 2;

pub const PSK_LEN: usize = 32;

/// The 32-byte key mixed into every handshake (Noise's `psk`). Wiped when dropped; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Psk([u8; PSK_LEN]);

impl Psk {
    /// Argon2id of the password with the mesh salt.
    pub fn derive(password: &[u8]) -> Psk {
        let params = Params::new(MEMORY_KIB, PASSES, 1, Some(PSK_LEN)).expect("valid parameters");
        let mut key = [0u8; PSK_LEN];
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(password, SALT, &mut key)
            .expect("output length and salt are in range");
        Psk(key)
    }

    /// A key as is (tests; the engine always derives one).
    pub fn from_bytes(key: [u8; PSK_LEN]) -> Psk {
        Psk(key)
    }

    pub(crate) fn bytes(&self) -> &[u8; PSK_LEN] {
        &self.0
    }
}

impl Drop for Psk {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Psk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Psk(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_password_bound() {
        let a = Psk::derive(b"correct horse");
        assert_eq!(a, Psk::derive(b"correct horse"));
        assert_ne!(a, Psk::derive(b"correct horse!"));
        assert_eq!(format!("{a:?}"), "Psk(..)");
    }
}
