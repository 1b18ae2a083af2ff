//! Secrets at rest: the main key and AES-256-GCM sealing of stored secrets (TOTP
//! seeds today; connection credentials and transaction records later).
//!
//! Callers see one small interface, [`SecretBox`]: seal with associated data that
//! names the row (owner tenant, table, record id; see [`record_aad`]), open with the
//! same. [`MainKeyBox`] seals directly under the 256-bit main key; the full hierarchy
//! (main key → per-workspace key-encryption keys → per-record data keys, rotation by
//! re-wrapping) will be another implementation of the same trait, and every sealed
//! value carries a format version byte so both can be told apart.

pub mod aead;
pub mod keys;
pub mod random;
pub mod signing;

use std::path::PathBuf;

pub use aead::{MainKeyBox, RecordOwner, SecretBox, record_aad};
pub use keys::{MainKey, load_main_key};
pub use signing::SigningKey;

/// Whether `a` and `b` are equal, in time that depends on their lengths only (for
/// comparing a presented secret with a known one).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why loading a key, sealing or opening failed. Never contains key material,
/// plaintext or ciphertext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A key could not be derived from the main key.
    #[error("cannot derive a key from the main key")]
    Derive,
    /// The key file could not be read.
    #[error("cannot read the main key file `{path}`")]
    KeyFileUnreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The environment variable that should hold the key is not set (or not UTF-8).
    #[error("environment variable `{name}` holding the main key is not set")]
    KeyEnvMissing {
        /// The variable's name.
        name: String,
    },
    /// The key text has the wrong length.
    #[error(
        "the main key from {origin} must be 64 hexadecimal characters (256 bits), found {found}"
    )]
    KeyLength {
        /// Where the key came from, e.g. "file `/etc/portcullis/main.key`".
        origin: String,
        /// How many characters it had.
        found: usize,
    },
    /// The key text has a character that is not a hexadecimal digit.
    #[error("the main key from {origin} must be hexadecimal (0-9, a-f, A-F)")]
    KeyNotHex {
        /// Where the key came from.
        origin: String,
    },
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// Encryption failed (the plaintext is too long for AES-GCM).
    #[error("encryption failed")]
    Seal,
    /// The sealed value is shorter than a version byte, a nonce and a tag.
    #[error("sealed value is {len} bytes, shorter than the minimum of {min}")]
    SealedTooShort {
        /// Its length.
        len: usize,
        /// The minimum.
        min: usize,
    },
    /// The sealed value's format version is not one this build can open.
    #[error("sealed value has unknown format version {version}")]
    UnknownVersion {
        /// The version byte found.
        version: u8,
    },
    /// Authentication failed: wrong key, associated data of another row, or the value
    /// was altered.
    #[error("sealed value cannot be opened: wrong key, wrong record, or altered")]
    Open,
}
