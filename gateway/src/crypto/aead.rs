//! AES-256-GCM sealing behind the [`SecretBox`] interface.
//!
//! A sealed value is `version (1 byte) ‖ nonce (12 bytes, random) ‖ ciphertext ‖ tag
//! (16 bytes)`. The version byte is authenticated too (it is prefixed to the associated
//! data), and the associated data names the row the secret belongs to, so a sealed
//! value copied into another row, table or tenant fails to open.

use aes_gcm::aead::{Aead, Generate, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key};
use uuid::Uuid;
use zeroize::Zeroizing;

use super::{CryptoError, MainKey};
use crate::store::{OrganizationId, WorkspaceId};

type Nonce = aes_gcm::aead::Nonce<Aes256Gcm>;

/// The format written by [`MainKeyBox`]: sealed directly under the main key.
const VERSION_MAIN_KEY: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// The shortest sealed value: version, nonce and the tag of an empty plaintext.
const MIN_SEALED_LEN: usize = 1 + NONCE_LEN + TAG_LEN;

/// Encrypts and decrypts secrets at rest, bound to associated data.
pub trait SecretBox: Send + Sync {
    /// Encrypts `plaintext`; `aad` (see [`record_aad`]) must be given again to open it.
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError>;
    /// Decrypts a value made by [`SecretBox::seal`] with the same associated data.
    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError>;
}

/// The tenant that owns a sealed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOwner {
    /// An organization-level row (a user's TOTP seed, for example).
    Organization(OrganizationId),
    /// A workspace-level row (a connection credential, for example).
    Workspace(WorkspaceId),
}

/// The associated data for a secret stored in `table`, row `record`, owned by `owner`.
/// The encoding is unambiguous: a fixed prefix, the owner's kind and id, the table name
/// with its length, and the record id.
pub fn record_aad(owner: RecordOwner, table: &str, record: Uuid) -> Vec<u8> {
    const PREFIX: &[u8] = b"portcullis.record.v1";
    let (kind, owner_id) = match owner {
        RecordOwner::Organization(id) => (b'o', id.as_uuid()),
        RecordOwner::Workspace(id) => (b'w', id.as_uuid()),
    };
    let table_len = u32::try_from(table.len()).unwrap_or(u32::MAX);
    let mut aad = Vec::with_capacity(PREFIX.len() + 1 + 16 + 4 + table.len() + 16);
    aad.extend_from_slice(PREFIX);
    aad.push(kind);
    aad.extend_from_slice(owner_id.as_bytes());
    aad.extend_from_slice(&table_len.to_be_bytes());
    aad.extend_from_slice(table.as_bytes());
    aad.extend_from_slice(record.as_bytes());
    aad
}

/// Seals directly under the main key with AES-256-GCM and random 96-bit nonces (safe
/// for far more values than one deployment stores under one key before the key
/// hierarchy replaces it).
pub struct MainKeyBox {
    cipher: Aes256Gcm,
}

impl MainKeyBox {
    /// A box using `key`. The cipher keeps its own copy of the key schedule, zeroed on
    /// drop.
    pub fn new(key: &MainKey) -> MainKeyBox {
        let key: &Key<Aes256Gcm> = key.bytes().into();
        MainKeyBox {
            cipher: Aes256Gcm::new(key),
        }
    }
}

/// The version byte followed by the caller's associated data.
fn versioned_aad(version: u8, aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(1 + aad.len());
    full.push(version);
    full.extend_from_slice(aad);
    full
}

impl SecretBox for MainKeyBox {
    fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let nonce = Nonce::try_generate().map_err(|_| CryptoError::Random)?;
        let full_aad = versioned_aad(VERSION_MAIN_KEY, aad);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &full_aad,
                },
            )
            .map_err(|_| CryptoError::Seal)?;
        let mut sealed = Vec::with_capacity(1 + NONCE_LEN + ciphertext.len());
        sealed.push(VERSION_MAIN_KEY);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        if sealed.len() < MIN_SEALED_LEN {
            return Err(CryptoError::SealedTooShort {
                len: sealed.len(),
                min: MIN_SEALED_LEN,
            });
        }
        let Some((&version, rest)) = sealed.split_first() else {
            return Err(CryptoError::SealedTooShort {
                len: 0,
                min: MIN_SEALED_LEN,
            });
        };
        if version != VERSION_MAIN_KEY {
            return Err(CryptoError::UnknownVersion { version });
        }
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN.min(rest.len()));
        let nonce = Nonce::try_from(nonce).map_err(|_| CryptoError::Open)?;
        let full_aad = versioned_aad(version, aad);
        self.cipher
            .decrypt(
                &nonce,
                Payload {
                    msg: ciphertext,
                    aad: &full_aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Open)
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::config::KeySource;
    use crate::crypto::load_main_key;

    fn key_box(hex_digit: char) -> MainKeyBox {
        let hex: String = std::iter::repeat_n(hex_digit, 64).collect();
        let env = move |_: &str| Some(hex.clone());
        MainKeyBox::new(&load_main_key(&KeySource::Env("KEY".into()), &env).unwrap())
    }

    fn ids() -> (OrganizationId, WorkspaceId, Uuid, Uuid) {
        // Ids as the store makes them; the store's generator is crate-internal.
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        (
            crate::store::OrganizationId::generate(now),
            crate::store::WorkspaceId::generate(now),
            crate::store::UserId::generate(now).as_uuid(),
            crate::store::UserId::generate(now).as_uuid(),
        )
    }

    #[test]
    fn round_trip_with_fresh_nonces() {
        let sealer = key_box('a');
        let (org, _, record, _) = ids();
        let aad = record_aad(RecordOwner::Organization(org), "totp_enrolments", record);
        let first = sealer.seal(&aad, b"JBSWY3DPEHPK3PXP").unwrap();
        let second = sealer.seal(&aad, b"JBSWY3DPEHPK3PXP").unwrap();
        assert_ne!(first, second, "each seal draws a new nonce");
        assert_eq!(first[0], 1, "format version byte");
        assert_eq!(first.len(), MIN_SEALED_LEN + 16);
        assert_eq!(
            sealer.open(&aad, &first).unwrap().as_slice(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert_eq!(
            sealer.open(&aad, &second).unwrap().as_slice(),
            b"JBSWY3DPEHPK3PXP"
        );
        let empty = sealer.seal(&aad, b"").unwrap();
        assert_eq!(empty.len(), MIN_SEALED_LEN);
        assert!(sealer.open(&aad, &empty).unwrap().is_empty());
    }

    #[test]
    fn another_rows_aad_fails() {
        let sealer = key_box('a');
        let (org, workspace, record, other_record) = ids();
        let aad = record_aad(RecordOwner::Organization(org), "totp_enrolments", record);
        let sealed = sealer.seal(&aad, b"seed").unwrap();
        let others = [
            record_aad(
                RecordOwner::Organization(org),
                "totp_enrolments",
                other_record,
            ),
            record_aad(RecordOwner::Organization(org), "connections", record),
            record_aad(RecordOwner::Workspace(workspace), "totp_enrolments", record),
            Vec::new(),
        ];
        for other in others {
            assert_ne!(other, aad);
            let error = sealer.open(&other, &sealed).unwrap_err();
            assert_eq!(
                error.to_string(),
                "sealed value cannot be opened: wrong key, wrong record, or altered"
            );
        }
    }

    #[test]
    fn tampering_anywhere_fails() {
        let sealer = key_box('a');
        let (org, _, record, _) = ids();
        let aad = record_aad(RecordOwner::Organization(org), "totp_enrolments", record);
        let sealed = sealer.seal(&aad, b"seed").unwrap();
        // Every byte after the version: nonce, ciphertext and tag.
        for index in 1..sealed.len() {
            let mut altered = sealed.clone();
            altered[index] ^= 0x01;
            assert!(
                matches!(sealer.open(&aad, &altered), Err(CryptoError::Open)),
                "byte {index} altered"
            );
        }
        let mut altered = sealed.clone();
        altered[0] = 2;
        assert_eq!(
            sealer.open(&aad, &altered).unwrap_err().to_string(),
            "sealed value has unknown format version 2"
        );
        assert_eq!(
            sealer
                .open(&aad, &sealed[..MIN_SEALED_LEN - 1])
                .unwrap_err()
                .to_string(),
            "sealed value is 28 bytes, shorter than the minimum of 29"
        );
        let mut longer = sealed.clone();
        longer.push(0);
        assert!(matches!(sealer.open(&aad, &longer), Err(CryptoError::Open)));
    }

    #[test]
    fn wrong_key_fails() {
        let (org, _, record, _) = ids();
        let aad = record_aad(RecordOwner::Organization(org), "totp_enrolments", record);
        let sealed = key_box('a').seal(&aad, b"seed").unwrap();
        assert!(matches!(
            key_box('b').open(&aad, &sealed),
            Err(CryptoError::Open)
        ));
        assert_eq!(
            key_box('a').open(&aad, &sealed).unwrap().as_slice(),
            b"seed"
        );
    }
}
