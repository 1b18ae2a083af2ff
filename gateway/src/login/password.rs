//! Passwords: argon2id hashing on a bounded blocking pool, and the password policy.
//!
//! Each hash pins a core and its memory cost for tens of milliseconds, so hashing runs
//! on tokio's blocking pool behind a semaphore sized to the machine: a login flood
//! queues behind it instead of starving proxied traffic. Parameters live in the PHC
//! string, so old hashes keep verifying after a change and are re-hashed on the next
//! successful login. An unknown user costs one verification against a fixed hash, so
//! timing does not tell whether an account exists.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

/// Why hashing could not run.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The configured parameters are not valid argon2id parameters.
    #[error("argon2 parameters: {0}")]
    Params(String),
    /// Hashing failed.
    #[error("argon2: {0}")]
    Hash(String),
    /// The blocking task did not complete.
    #[error("password hashing task failed")]
    Task,
}

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    /// Memory in KiB (OWASP: 19456).
    pub memory_kib: u32,
    /// Passes (OWASP: 2).
    pub iterations: u32,
    /// Lanes (OWASP: 1).
    pub parallelism: u32,
}

impl HashParams {
    /// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
    pub const OWASP: HashParams = HashParams {
        memory_kib: 19_456,
        iterations: 2,
        parallelism: 1,
    };
}

/// The outcome of checking a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// Wrong password (or no such user).
    No,
    /// Right password, hashed with the current parameters.
    Yes,
    /// Right password; store this new hash (the parameters changed).
    YesRehashed(String),
}

/// Hashes and verifies on a bounded blocking pool.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    permits: Arc<Semaphore>,
    dummy: Arc<str>,
}

impl PasswordHasher {
    /// A hasher with `params`, running at most `concurrency` hashes at once.
    pub fn new(params: HashParams, concurrency: usize) -> Result<PasswordHasher, PasswordError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|err| PasswordError::Params(err.to_string()))?;
        let dummy = argon2(&params)
            .hash_password(b"portcullis: no such user")
            .map_err(|err| PasswordError::Hash(err.to_string()))?
            .to_string();
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy: dummy.into(),
        })
    }

    /// A new PHC hash of `password`.
    pub async fn hash(&self, password: &str) -> Result<String, PasswordError> {
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        let params = self.params.clone();
        self.run(move || {
            argon2(&params)
                .hash_password(&password)
                .map(|hash| hash.to_string())
                .map_err(|err| PasswordError::Hash(err.to_string()))
        })
        .await?
    }

    /// Checks `password` against `stored` (a PHC string), or against a fixed hash when
    /// there is no stored hash, so both cost the same.
    pub async fn verify(
        &self,
        stored: Option<&str>,
        password: &str,
    ) -> Result<Verified, PasswordError> {
        let known = stored.is_some();
        let phc = stored.map_or_else(|| self.dummy.to_string(), str::to_owned);
        let password = zeroize::Zeroizing::new(password.as_bytes().to_vec());
        let params = self.params.clone();
        self.run(move || {
            let hasher = argon2(&params);
            let Ok(parsed) = argon2::password_hash::phc::PasswordHash::new(&phc) else {
                return Ok(Verified::No);
            };
            if hasher.verify_password(&password, &parsed).is_err() || !known {
                return Ok(Verified::No);
            }
            if current_params(&parsed, &params) {
                return Ok(Verified::Yes);
            }
            hasher
                .hash_password(&password)
                .map(|hash| Verified::YesRehashed(hash.to_string()))
                .map_err(|err| PasswordError::Hash(err.to_string()))
        })
        .await?
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| PasswordError::Task)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|_| PasswordError::Task)
    }
}

fn argon2(params: &Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone())
}

fn current_params(hash: &argon2::password_hash::phc::PasswordHash, params: &Params) -> bool {
    hash.algorithm.as_str() == "argon2id"
        && Params::try_from(hash).is_ok_and(|stored| {
            stored.m_cost() == params.m_cost()
                && stored.t_cost() == params.t_cost()
                && stored.p_cost() == params.p_cost()
        })
}

/// The default (NIST SP 800-63B) password rules: long, no composition rules, no
/// expiry, not common, not the account's own name.
pub fn check_policy(password: &str, email: &str) -> Result<(), &'static str> {
    let length = password.chars().count();
    if length < 15 {
        return Err("use at least 15 characters");
    }
    if length > 128 {
        return Err("use at most 128 characters");
    }
    let lower = password.to_lowercase();
    if COMMON.iter().any(|common| lower.contains(common)) {
        return Err("this password contains a commonly used password; choose another");
    }
    let local = email.split('@').next().unwrap_or_default().to_lowercase();
    if local.len() >= 4 && lower.contains(&local) {
        return Err("do not use your email address in your password");
    }
    let mut chars = lower.chars();
    if let Some(first) = chars.next()
        && chars.all(|c| c == first)
    {
        return Err("do not repeat one character");
    }
    Ok(())
}

/// Frequently chosen passwords and password stems (written here from common knowledge
/// of leaked-password rankings); a password containing one is refused.
const COMMON: &[&str] = &[
    "password",
    "passw0rd",
    "p@ssw0rd",
    "p@ssword",
    "123456789",
    "12345678",
    "1234567890",
    "987654321",
    "qwerty",
    "qwertz",
    "azerty",
    "asdfgh",
    "zxcvbn",
    "letmein",
    "welcome",
    "iloveyou",
    "admin",
    "changeme",
    "default",
    "secret",
    "monkey",
    "dragon",
    "football",
    "baseball",
    "sunshine",
    "princess",
    "trustno1",
    "abc123",
    "abcdef",
    "111111",
    "000000",
    "123123",
    "654321",
    "superman",
    "batman",
    "master",
    "shadow",
    "starwars",
    "whatever",
    "computer",
    "internet",
    "login",
    "portcullis",
    "correcthorsebatterystaple",
];

#[cfg(test)]
mod tests {
    use super::{HashParams, PasswordHasher, Verified, check_policy};

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    #[tokio::test]
    async fn hash_verify_and_rehash_on_parameter_change() {
        let hasher = PasswordHasher::new(CHEAP, 2).unwrap();
        let phc = hasher.hash("a long enough pass phrase").await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert_eq!(
            hasher
                .verify(Some(&phc), "a long enough pass phrase")
                .await
                .unwrap(),
            Verified::Yes
        );
        assert_eq!(
            hasher
                .verify(Some(&phc), "a long enough pass phrasE")
                .await
                .unwrap(),
            Verified::No
        );
        assert_eq!(
            hasher
                .verify(None, "a long enough pass phrase")
                .await
                .unwrap(),
            Verified::No
        );
        assert_eq!(
            hasher.verify(Some("not a phc string"), "x").await.unwrap(),
            Verified::No
        );

        let stronger = PasswordHasher::new(
            HashParams {
                memory_kib: 128,
                ..CHEAP
            },
            2,
        )
        .unwrap();
        let Verified::YesRehashed(new) = stronger
            .verify(Some(&phc), "a long enough pass phrase")
            .await
            .unwrap()
        else {
            panic!("expected a rehash");
        };
        assert!(new.starts_with("$argon2id$v=19$m=128,t=1,p=1$"), "{new}");
        assert_eq!(
            stronger
                .verify(Some(&new), "a long enough pass phrase")
                .await
                .unwrap(),
            Verified::Yes
        );
    }

    #[test]
    fn owasp_parameters_are_the_default_profile() {
        assert_eq!(
            (HashParams::OWASP.memory_kib, HashParams::OWASP.iterations),
            (19_456, 2)
        );
    }

    #[test]
    fn policy_messages() {
        let check = |password: &str| check_policy(password, "olga.smith@acme.test");
        assert_eq!(check("short"), Err("use at least 15 characters"));
        assert_eq!(check(&"x".repeat(129)), Err("use at most 128 characters"));
        assert_eq!(
            check("MyPassword-is-long"),
            Err("this password contains a commonly used password; choose another")
        );
        assert_eq!(
            check("olga.smith rides bikes"),
            Err("do not use your email address in your password")
        );
        assert_eq!(
            check("aaaaaaaaaaaaaaaa"),
            Err("do not repeat one character")
        );
        assert_eq!(check("tangerine orbit under glass"), Ok(()));
        // No composition rules: plain lower-case words are fine when long.
        assert_eq!(check("seven quiet lanterns drift"), Ok(()));
    }
}
