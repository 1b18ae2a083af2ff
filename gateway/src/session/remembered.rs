//! What a connection remembers of the credential its last authenticated request
//! presented (a session cookie, an API token), shared by both kinds.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::crypto::constant_time_eq;

/// A connection's last credential and the record it found, kept for the connection's
/// next requests.
///
/// A request that presents the same credential (compared in constant time: behind a
/// front proxy, one connection carries many users' requests) reuses the record without
/// parsing the credential, hashing it or asking the shared cache. It gets nothing the
/// shared cache would not give it: the record is used only within the shared cache's
/// lifetime of being read from the store and only while the caller's revocation
/// generation has not moved. The credential is wiped when replaced or when the
/// connection ends.
pub struct Remembered<T>(Mutex<Option<Held<T>>>);

struct Held<T> {
    secret: Zeroizing<Vec<u8>>,
    record: Arc<T>,
    /// The caller's revocation generation when the record was found.
    generation: u64,
    /// When the record was read from the store.
    read_at: Instant,
}

impl<T> Default for Remembered<T> {
    fn default() -> Self {
        Remembered(Mutex::new(None))
    }
}

impl<T> std::fmt::Debug for Remembered<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Remembered(..)")
    }
}

impl<T> Remembered<T> {
    /// The record remembered for `secret`, if it may still be used at `now` (on the
    /// monotonic clock): read less than `lifetime` ago, revocations still at
    /// `generation`.
    pub(crate) fn get(
        &self,
        secret: &[u8],
        generation: u64,
        now: Instant,
        lifetime: Duration,
    ) -> Option<Arc<T>> {
        let held = self.0.lock().ok()?;
        let held = held.as_ref()?;
        let usable = held.generation == generation
            && constant_time_eq(&held.secret, secret)
            && now.saturating_duration_since(held.read_at) < lifetime;
        usable.then(|| Arc::clone(&held.record))
    }

    /// Remembers `record`, read from the store at `read_at`, for `secret`.
    pub(crate) fn set(&self, secret: &[u8], record: &Arc<T>, generation: u64, read_at: Instant) {
        if let Ok(mut held) = self.0.lock() {
            *held = Some(Held {
                secret: Zeroizing::new(secret.to_vec()),
                record: Arc::clone(record),
                generation,
                read_at,
            });
        }
    }

    /// Forgets what was remembered.
    pub(crate) fn forget(&self) {
        if let Ok(mut held) = self.0.lock() {
            *held = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::Remembered;

    /// A remembered record is used only for the very credential that found it, only
    /// within its lifetime, and never after the revocation generation moved.
    #[test]
    fn a_remembered_record_is_used_only_while_the_shared_cache_would() {
        let lifetime = Duration::from_secs(5);
        let record = Arc::new("record");
        let secret = b"0192f3c4000070008000000000000001.0123456789abcdef".to_vec();
        let read = crate::clock::monotonic_now();
        let connection = Remembered::default();
        assert!(
            connection.get(&secret, 0, read, lifetime).is_none(),
            "nothing held yet"
        );
        connection.set(&secret, &record, 7, read);
        let found = connection.get(&secret, 7, read + lifetime / 2, lifetime);
        assert!(found.is_some_and(|found| Arc::ptr_eq(&found, &record)));
        // Any other value: one byte changed anywhere, shorter, longer, empty.
        for index in 0..secret.len() {
            let mut other = secret.clone();
            other[index] ^= 0x01;
            assert!(
                connection.get(&other, 7, read, lifetime).is_none(),
                "byte {index}"
            );
        }
        let shorter = &secret[..secret.len() - 1];
        assert!(connection.get(shorter, 7, read, lifetime).is_none());
        let longer = [&secret[..], b"0"].concat();
        assert!(connection.get(&longer, 7, read, lifetime).is_none());
        assert!(connection.get(b"", 7, read, lifetime).is_none());
        // A revocation since, or the shared cache's lifetime over.
        assert!(connection.get(&secret, 8, read, lifetime).is_none());
        assert!(
            connection
                .get(&secret, 7, read + lifetime, lifetime)
                .is_none()
        );
        assert!(connection.get(&secret, 7, read, lifetime).is_some());
        connection.forget();
        assert!(connection.get(&secret, 7, read, lifetime).is_none());
    }
}
