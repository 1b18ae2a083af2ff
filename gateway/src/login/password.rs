//! Passwords: argon2id hashing on its own low-priority threads, and the password policy.
//!
//! Each hash pins a core and its memory cost for tens of milliseconds, so hashing runs
//! on a few threads of its own (the caller picks how many: the gateway uses half the
//! cores) behind a semaphore: a login flood queues instead of spreading over every
//! thread. Those threads also run at the lowest CPU priority (on Linux the idle
//! scheduling class, `SCHED_IDLE`, at nice 19), so when the proxy and a login flood
//! want the same cores, the proxied requests win and the sign-ins wait: on a machine
//! the proxy keeps busy, a flood slows sign-ins down instead of every proxied
//! request's tail latency. Parameters live in the PHC string,
//! so old hashes keep verifying after a change and are re-hashed on the next
//! successful login. An unknown user costs one verification against a fixed hash, so
//! timing does not tell whether an account exists.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

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
    /// The hashing job did not complete.
    #[error("password hashing task failed")]
    Task,
    /// The hashing threads could not be started.
    #[error("starting the password hashing threads: {0}")]
    Threads(String),
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

/// One hashing job, run on a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Hashes and verifies on its own bounded, low-priority threads.
#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
    /// At most as many jobs as threads are queued or running; more wait here.
    permits: Arc<Semaphore>,
    jobs: mpsc::Sender<Job>,
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
        let threads = concurrency.max(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        for n in 0..threads {
            let queue = Arc::clone(&queue);
            std::thread::Builder::new()
                .name(format!("argon2-{n}"))
                .spawn(move || hashing_thread(&queue))
                .map_err(|err| PasswordError::Threads(err.to_string()))?;
        }
        Ok(PasswordHasher {
            params,
            permits: Arc::new(Semaphore::new(threads)),
            jobs,
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
        // The permit travels with the job and is released when the hash is done, not
        // when the caller goes: a client that hangs up mid-sign-in cannot leave more
        // queued hashes behind than there are threads.
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Task)?;
        let (done, result) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            // The caller may have gone (a client that hung up); nothing to tell then.
            let _ = done.send(work());
            drop(permit);
        });
        self.jobs.send(job).map_err(|_| PasswordError::Task)?;
        result.await.map_err(|_| PasswordError::Task)
    }
}

/// Runs hashing jobs until every [`PasswordHasher`] clone is gone.
fn hashing_thread(queue: &Mutex<mpsc::Receiver<Job>>) {
    lower_priority();
    loop {
        let job = match queue.lock() {
            Ok(queue) => queue.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else {
            return;
        };
        // A job that panics loses its answer (the caller gets `Task`), not the thread.
        let _ = std::panic::catch_unwind(AssertUnwindSafe(job));
    }
}

/// Puts the calling thread at the lowest CPU priority: the idle scheduling class, at
/// nice 19. Neither needs a privilege; where either fails, hashing still works.
///
/// Nice 19 alone is not enough: the kernel lets a running thread of the normal class
/// finish its time slice (a few milliseconds) before a thread that wakes up gets the
/// core, whatever its niceness, so every proxied request that arrived while a hash
/// held the core waited up to a slice (measured: c=1 p99 from 0.07 to 1.5-3.1 ms during
/// a login storm). A thread of the idle class is preempted as soon as any other thread
/// wants its core (same storm: 0.3-1.6 ms, and a plain nginx beside it 0.4-0.6 ms
/// instead of 2.4-2.9 ms).
#[cfg(target_os = "linux")]
fn lower_priority() {
    use thread_priority::{
        NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        set_thread_priority_and_policy, thread_native_id,
    };
    let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
    if let Err(err) = set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
    {
        tracing::warn!(error = ?err, "could not move a password hashing thread to the idle scheduling class");
    }
    // On Linux a thread id names just this thread (the process id would be all).
    let thread = rustix::thread::gettid();
    if let Err(err) = rustix::process::setpriority_process(Some(thread), 19) {
        tracing::warn!(error = %err, "could not lower the priority of a password hashing thread");
    }
}

#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

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

/// An organization's password policy profile (the `password_profile` setting).
///
/// - `nist` (the default): NIST SP 800-63B. At least 15 characters, no composition
///   rules, no expiry, not a common password, not the account's name.
/// - `compliance`: for auditors who ask for the older rules (for example PCI DSS v4.0
///   requirements 8.3.6, 8.3.7 and 8.3.9). Everything `nist` checks, plus at least three
///   of four character classes, expiry after 90 days, and none of the last 4 passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PasswordProfile {
    /// NIST SP 800-63B.
    #[default]
    Nist,
    /// NIST plus complexity classes, expiry and history.
    Compliance,
}

/// The compliance profile's expiry.
const COMPLIANCE_MAX_AGE: time::Duration = time::Duration::days(90);
/// How many previous passwords the compliance profile refuses.
const COMPLIANCE_HISTORY: u32 = 4;

impl PasswordProfile {
    /// The profile a setting names; unset means `nist`.
    pub fn parse(name: Option<&str>) -> Result<PasswordProfile, String> {
        match name {
            None | Some("nist") => Ok(PasswordProfile::Nist),
            Some("compliance") => Ok(PasswordProfile::Compliance),
            Some(other) => Err(format!(
                "unknown password profile `{other}`: use `nist` or `compliance`"
            )),
        }
    }

    /// The setting's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordProfile::Nist => "nist",
            PasswordProfile::Compliance => "compliance",
        }
    }

    /// The stricter of the organization's and the workspace's profiles. An unreadable
    /// setting counts as the strictest, so a typo never weakens the policy.
    pub fn resolve(settings: &[Option<&str>]) -> PasswordProfile {
        let strict = settings.iter().any(|setting| {
            PasswordProfile::parse(*setting).map_or(true, |p| p == PasswordProfile::Compliance)
        });
        if strict {
            PasswordProfile::Compliance
        } else {
            PasswordProfile::Nist
        }
    }

    /// Checks a new password's text (not its history); the message says which rule
    /// failed.
    pub fn check(self, password: &str, email: &str) -> Result<(), &'static str> {
        check_policy(password, email)?;
        if self == PasswordProfile::Compliance {
            let classes = [
                password.chars().any(char::is_lowercase),
                password.chars().any(char::is_uppercase),
                password.chars().any(|c| c.is_ascii_digit()),
                password.chars().any(|c| !c.is_alphanumeric()),
            ];
            if classes.into_iter().filter(|present| *present).count() < 3 {
                return Err(
                    "use at least three of: lower-case letters, upper-case letters, digits, symbols",
                );
            }
        }
        Ok(())
    }

    /// How many previous passwords a new one must differ from (0: no history rule).
    pub fn history_depth(self) -> u32 {
        match self {
            PasswordProfile::Nist => 0,
            PasswordProfile::Compliance => COMPLIANCE_HISTORY,
        }
    }

    /// Whether a password set at `changed_at` has expired at `now`.
    pub fn is_expired(self, changed_at: time::OffsetDateTime, now: time::OffsetDateTime) -> bool {
        match self {
            PasswordProfile::Nist => false,
            PasswordProfile::Compliance => now - changed_at >= COMPLIANCE_MAX_AGE,
        }
    }
}

/// The message for a password found in the history.
pub const REUSED: &str = "do not reuse one of your last 4 passwords";

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
    use super::{HashParams, PasswordHasher, PasswordProfile, Verified, check_policy};

    const CHEAP: HashParams = HashParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    /// A login flood must lose to proxied traffic for the CPU: the hashing threads run
    /// in the idle scheduling class at nice 19. (Each test runs in its own process
    /// under nextest, so the only hashing threads here are this hasher's.)
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn hashing_threads_run_at_the_lowest_priority() {
        let hasher = PasswordHasher::new(CHEAP, 1).unwrap();
        // The one thread has lowered itself before it ran this job.
        hasher.hash("correct horse battery staple").await.unwrap();
        let mut priorities = Vec::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap() {
            let task = task.unwrap().path();
            let name = std::fs::read_to_string(task.join("comm")).unwrap();
            if !name.starts_with("argon2-") {
                continue;
            }
            let stat = std::fs::read_to_string(task.join("stat")).unwrap();
            // Fields after the command name: state is field 3, nice field 19 and the
            // scheduling policy field 41 (`SCHED_IDLE` is 5).
            let (_, after_name) = stat.rsplit_once(')').unwrap();
            let fields: Vec<&str> = after_name.split_whitespace().collect();
            let nice = fields[16].parse::<i32>().unwrap();
            let policy = fields[38].parse::<u32>().unwrap();
            priorities.push((nice, policy));
        }
        assert_eq!(priorities, [(19, 5)]);
    }

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

    #[test]
    fn profiles_parse_resolve_and_check() {
        assert_eq!(PasswordProfile::parse(None), Ok(PasswordProfile::Nist));
        assert_eq!(
            PasswordProfile::parse(Some("compliance")),
            Ok(PasswordProfile::Compliance)
        );
        assert_eq!(
            PasswordProfile::parse(Some("pci")),
            Err("unknown password profile `pci`: use `nist` or `compliance`".to_owned())
        );
        assert_eq!(
            PasswordProfile::resolve(&[None, None]),
            PasswordProfile::Nist
        );
        assert_eq!(
            PasswordProfile::resolve(&[Some("nist"), Some("compliance")]),
            PasswordProfile::Compliance
        );
        assert_eq!(
            PasswordProfile::resolve(&[Some("typo")]),
            PasswordProfile::Compliance,
            "an unreadable setting never weakens the policy"
        );

        let email = "olga.smith@acme.test";
        let compliance = PasswordProfile::Compliance;
        assert_eq!(
            compliance.check("seven quiet lanterns drift", email),
            Err("use at least three of: lower-case letters, upper-case letters, digits, symbols")
        );
        assert_eq!(
            compliance.check("Seven quiet lanterns drift 4", email),
            Ok(())
        );
        assert_eq!(
            compliance.check("Short1!", email),
            Err("use at least 15 characters"),
            "the NIST rules still apply"
        );
        assert_eq!(
            PasswordProfile::Nist.check("seven quiet lanterns drift", email),
            Ok(())
        );
        assert_eq!(compliance.history_depth(), 4);
        assert_eq!(PasswordProfile::Nist.history_depth(), 0);

        let set = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert!(!compliance.is_expired(set, set + time::Duration::days(89)));
        assert!(compliance.is_expired(set, set + time::Duration::days(90)));
        assert!(!PasswordProfile::Nist.is_expired(set, set + time::Duration::days(3650)));
    }
}
