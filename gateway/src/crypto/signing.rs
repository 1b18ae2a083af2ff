//! The key that signs identity assertions for upstreams: Ed25519, derived from the main
//! key with HKDF-SHA256, so every instance sharing a main key signs with the same key
//! and rotating the main key rotates it. The private half never leaves this module.

use ring::hkdf;
use ring::signature::{Ed25519KeyPair, KeyPair};

use super::keys::MainKey;

/// HKDF `info` naming what the derived key is for (a new purpose needs a new label).
const PURPOSE: &[u8] = b"portcullis identity assertion signing key v1";

/// An Ed25519 signing key with its key id.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    kid: String,
}

/// The seed length ring's HKDF produces for us.
struct SeedLen;

impl hkdf::KeyType for SeedLen {
    fn len(&self) -> usize {
        32
    }
}

impl SigningKey {
    /// Derives the assertion key from the main key.
    pub fn derive(main: &MainKey) -> Result<SigningKey, super::CryptoError> {
        let salt = hkdf::Salt::new(hkdf::HKDF_SHA256, b"portcullis");
        let prk = salt.extract(main.bytes());
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        prk.expand(&[PURPOSE], SeedLen)
            .and_then(|okm| okm.fill(seed.as_mut()))
            .map_err(|_| super::CryptoError::Derive)?;
        let pair = Ed25519KeyPair::from_seed_unchecked(seed.as_ref())
            .map_err(|_| super::CryptoError::Derive)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, pair.public_key().as_ref());
        let mut kid = String::with_capacity(16);
        super::random::push_hex(&mut kid, digest.as_ref().get(..8).unwrap_or_default());
        Ok(SigningKey { pair, kid })
    }

    /// Signs `message` (EdDSA).
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }

    /// The 32-byte public key.
    pub fn public_key(&self) -> &[u8] {
        self.pair.public_key().as_ref()
    }

    /// The key id published in the JWKS and in every assertion's header.
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

#[cfg(test)]
mod tests {
    use ring::signature::{ED25519, UnparsedPublicKey};

    use super::SigningKey;
    use crate::config::KeySource;
    use crate::crypto::{MainKey, load_main_key};

    fn main_key(hex: &str) -> MainKey {
        let hex = hex.to_owned();
        load_main_key(&KeySource::Env("K".into()), &move |_| Some(hex.clone())).unwrap()
    }

    #[test]
    fn derivation_is_stable_per_main_key_and_signatures_verify() {
        let main = main_key(&"11".repeat(32));
        let other = main_key(&"22".repeat(32));
        let key = SigningKey::derive(&main).unwrap();
        assert_eq!(
            key.public_key(),
            SigningKey::derive(&main).unwrap().public_key()
        );
        assert_ne!(
            key.public_key(),
            SigningKey::derive(&other).unwrap().public_key()
        );
        assert_eq!(key.kid().len(), 16);
        let signature = key.sign(b"message");
        let public = UnparsedPublicKey::new(&ED25519, key.public_key());
        assert!(public.verify(b"message", &signature).is_ok());
        assert!(public.verify(b"massage", &signature).is_err());
    }
}
