//! Server-side sessions: an opaque id in a `__Host-` cookie, only its hash in the store.
//!
//! The cookie value is `<workspace>.<secret>`: the workspace (32 hex digits) lets the
//! lookup be a workspace-scoped query, the secret is 256 random bits. Sessions are
//! cached in memory (bounded), so a warm request does not touch the database: the
//! record is re-read at most every few seconds (which is also how a revocation made by
//! another process arrives), last-seen times are kept in memory and written back at
//! most once a minute, and a logout on this instance drops the entry at once. Idle and
//! absolute timeouts are checked on every request.
//!
//! A connection remembers the session its last signed-in request presented
//! ([`Remembered`]): the next request with the same cookie on that connection reuses the
//! record without parsing, hashing or asking the shared cache, under exactly the bounds
//! the shared cache keeps (see [`Remembered`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, HeaderValue, header};
use moka::future::Cache;
use time::OffsetDateTime;

use crate::assertion::IdentityMemo;
use crate::authz::bindings::UserBindings;
use crate::crypto::random::{is_lower_hex, random_hex256};
use crate::store::{
    AuthMethod, NewSession, OrganizationId, Session, SessionHash, Store, StoreError, UserId,
    WorkspaceId,
};

mod remembered;

pub use remembered::Remembered;

/// The session cookie's name. `__Host-` pins it to this host, `Secure` and `Path=/`.
pub const COOKIE: &str = "__Host-portcullis";
/// How long a cached session record is trusted before it is re-read.
const RECHECK: Duration = Duration::from_secs(5);
/// How many sessions the cache holds.
const CAPACITY: u64 = 1_000_000;
/// The longest a last-seen time stays only in memory.
const TOUCH_EVERY: time::Duration = time::Duration::seconds(60);

/// A freshly minted session id: the cookie value to send once, the hash to store.
pub struct MintedSession {
    /// The cookie value. Never logged.
    pub cookie_value: String,
    /// What the store keeps.
    pub hash: SessionHash,
}

/// Makes a new session id for `workspace`.
pub fn mint(workspace: WorkspaceId) -> MintedSession {
    let cookie_value = format!("{}.{}", workspace.simple(), random_hex256());
    let hash = SessionHash::of(cookie_value.as_bytes());
    MintedSession { cookie_value, hash }
}

/// The `Set-Cookie` value that hands a session to the browser.
pub fn set_cookie(cookie_value: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{COOKIE}={cookie_value}; Path=/; Secure; HttpOnly; SameSite=Lax"
    ))
    .ok()
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> HeaderValue {
    HeaderValue::from_static(
        "__Host-portcullis=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0",
    )
}

/// The session a request presents: its workspace and the hash to look up. More than
/// one session cookie (a sign of cookie tossing), or a malformed one, is none.
pub fn presented(headers: &HeaderMap) -> Option<(WorkspaceId, SessionHash)> {
    presented_cookie(headers).and_then(read_cookie)
}

/// The session cookie a request presents, as sent. More than one session cookie (a
/// sign of cookie tossing) is none.
pub fn presented_cookie(headers: &HeaderMap) -> Option<&[u8]> {
    presented_cookie_in(
        headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes),
    )
}

/// [`presented_cookie`] among `Cookie` header values given as bytes.
pub fn presented_cookie_in<'a>(lines: impl Iterator<Item = &'a [u8]>) -> Option<&'a [u8]> {
    let mut values = cookie_value_bytes(lines, COOKIE);
    let value = values.next()?;
    values.next().is_none().then_some(value)
}

/// What a session cookie value names: its workspace and the hash to look up. A
/// malformed value names none.
pub fn read_cookie(value: &[u8]) -> Option<(WorkspaceId, SessionHash)> {
    // `<workspace: 32 hex>.<secret: 64 hex>`, checked byte by byte as it is read.
    let (workspace, secret) = value.split_at_checked(32)?;
    let secret = secret.strip_prefix(b".")?;
    let workspace = WorkspaceId::from_simple(workspace)?;
    if !is_lower_hex(secret, 64) {
        return None;
    }
    Some((workspace, SessionHash::of(value)))
}

/// Every value of cookie `name` across the request's `Cookie` headers (a value that
/// is not UTF-8 is left out).
pub fn cookie_values<'a>(
    headers: &'a HeaderMap,
    name: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    cookie_value_bytes(
        headers
            .get_all(header::COOKIE)
            .iter()
            .map(HeaderValue::as_bytes),
        name,
    )
    .filter_map(|value| std::str::from_utf8(value).ok())
}

/// Every value of cookie `name` in `lines` (`Cookie` header values), as bytes: pairs
/// are split on `;`, trimmed, and
/// match when their name is exactly `name`. Read without converting whole lines to
/// text (this runs on every signed-in request).
fn cookie_value_bytes<'a>(
    lines: impl Iterator<Item = &'a [u8]>,
    name: &'a str,
) -> impl Iterator<Item = &'a [u8]> {
    lines
        .flat_map(cookie_pairs)
        .filter_map(move |pair| pair.strip_prefix(name.as_bytes())?.strip_prefix(b"="))
}

/// The `name=value` pairs of one `Cookie` line: split on `;`, trimmed, empty ones
/// left out. The separators are found with `memchr`, not byte by byte: a session
/// cookie alone is about a hundred bytes, read on every signed-in request.
pub fn cookie_pairs(line: &[u8]) -> CookiePairs<'_> {
    CookiePairs { rest: Some(line) }
}

/// The iterator [`cookie_pairs`] returns.
#[derive(Debug, Clone)]
pub struct CookiePairs<'a> {
    rest: Option<&'a [u8]>,
}

impl<'a> Iterator for CookiePairs<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            let rest = self.rest?;
            let (pair, after) = match memchr::memchr(b';', rest) {
                Some(at) => (rest.get(..at), rest.get(at + 1..)),
                None => (Some(rest), None),
            };
            self.rest = after;
            let pair = pair.unwrap_or_default().trim_ascii();
            if !pair.is_empty() {
                return Some(pair);
            }
        }
    }
}

/// The store failed while sessions were being read or written.
#[derive(Debug, Clone, thiserror::Error)]
#[error("session store: {0}")]
pub struct SessionError(Arc<StoreError>);

impl From<StoreError> for SessionError {
    fn from(err: StoreError) -> SessionError {
        SessionError(Arc::new(err))
    }
}

/// A cached session and its in-memory last-seen time, with what every request reads
/// of it prepared once when the record is read.
pub(crate) struct Cached {
    session: Session,
    /// The last request seen, in Unix seconds (written back to the store now and then).
    last_seen: AtomicI64,
    last_written: AtomicI64,
    /// What this session's requests computed and may reuse while the record lives.
    memo: Arc<SessionMemo>,
    /// The user id as text (the Cedar principal, the identity header).
    user_text: Arc<str>,
    /// The record's times on the clock requests carry, so a request's checks compare
    /// instants instead of converting calendar dates.
    created: SystemTime,
    expires: SystemTime,
    stored_last_seen: SystemTime,
    idle: Duration,
    /// How many seconds the last-seen time may stay only in memory.
    touch_every: i64,
    /// When the record was read from the store (the shared cache keeps it [`RECHECK`]).
    read_at: Instant,
}

impl Cached {
    fn new(session: Session) -> Cached {
        let seen = session.last_seen_at.unix_timestamp();
        Cached {
            user_text: Arc::from(session.user_id.to_text()),
            created: SystemTime::from(session.created_at),
            expires: SystemTime::from(session.absolute_expiry),
            stored_last_seen: SystemTime::from(session.last_seen_at),
            // A negative idle timeout (never stored) ends the session at once.
            idle: Duration::try_from(session.idle_timeout).unwrap_or_default(),
            touch_every: TOUCH_EVERY.min(session.idle_timeout / 4).whole_seconds(),
            last_seen: AtomicI64::new(seen),
            last_written: AtomicI64::new(seen),
            memo: Arc::default(),
            read_at: crate::clock::monotonic_now(),
            session,
        }
    }

    /// [`Session::is_active`] with the in-memory last-seen time, on the request clock.
    fn is_active(&self, now: SystemTime) -> bool {
        let remembered = u64::try_from(self.last_seen.load(Ordering::Relaxed))
            .map_or(SystemTime::UNIX_EPOCH, |secs| {
                SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
            });
        let seen = self.stored_last_seen.max(remembered);
        self.session.revoked_at.is_none() && now < self.expires && now < seen + self.idle
    }
}

/// A live session as one request found it: the cached record, shared (nothing is
/// copied per request).
#[derive(Clone)]
pub struct Live(Arc<Cached>);

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Live(..)")
    }
}

impl Live {
    /// The record as it was read (its last-seen time may be older than the session's).
    pub fn session(&self) -> &Session {
        &self.0.session
    }

    /// What the session's requests may reuse while this record lives.
    pub fn memo(&self) -> &Arc<SessionMemo> {
        &self.0.memo
    }

    /// The user id as text.
    pub fn user_text(&self) -> &Arc<str> {
        &self.0.user_text
    }

    /// When the session began.
    pub fn created(&self) -> SystemTime {
        self.0.created
    }
}

/// What a session's requests computed and may reuse while its cached record lives
/// (at most [`RECHECK`], the same bound the shared caches keep): a revoked or re-read
/// session takes it with it.
#[derive(Debug, Default)]
pub struct SessionMemo {
    /// The identity each route was given (see `assertion`).
    pub(crate) identities: IdentityMemo,
    /// The user's role bindings from the store, merged with the file's.
    bindings: std::sync::Mutex<Option<Arc<UserBindings>>>,
}

impl SessionMemo {
    /// The bindings remembered for this session's user, if any.
    pub fn bindings(&self) -> Option<Arc<UserBindings>> {
        self.bindings.lock().ok()?.clone()
    }

    /// Remembers the user's bindings for the rest of the record's life.
    pub fn remember_bindings(&self, bindings: &Arc<UserBindings>) {
        if let Ok(mut slot) = self.bindings.lock() {
            *slot = Some(Arc::clone(bindings));
        }
    }
}

/// The cached record with its in-memory last-seen time folded in.
fn current(cached: &Cached) -> Session {
    let mut session = cached.session.clone();
    if let Ok(seen) = OffsetDateTime::from_unix_timestamp(cached.last_seen.load(Ordering::Relaxed))
    {
        session.last_seen_at = session.last_seen_at.max(seen);
    }
    session
}

/// Creates, finds and revokes sessions.
pub struct Sessions {
    store: Store,
    /// Keyed by the session hash, held inline so a lookup does not allocate; the key
    /// is a SHA-256 digest, so a fast seeded hash is enough (SipHash cost ~270
    /// instructions a lookup).
    cache: Cache<[u8; 32], Option<Arc<Cached>>, foldhash::fast::RandomState>,
    /// Moves on every revocation on this instance: a record a connection remembers
    /// from before is not used again.
    generation: AtomicU64,
}

impl Sessions {
    /// Sessions kept in `store`.
    pub fn new(store: Store) -> Sessions {
        Sessions {
            store,
            cache: Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_live(RECHECK)
                .support_invalidation_closures()
                .build_with_hasher(foldhash::fast::RandomState::default()),
            generation: AtomicU64::new(0),
        }
    }

    /// Starts a session; returns the cookie value to set.
    pub async fn create(
        &self,
        workspace: WorkspaceId,
        user: UserId,
        timeouts: Timeouts,
        auth_method: AuthMethod,
        mfa_done: bool,
        now: OffsetDateTime,
    ) -> Result<String, SessionError> {
        let minted = mint(workspace);
        let new = NewSession {
            hash: minted.hash,
            user_id: user,
            idle_timeout: timeouts.idle,
            absolute_expiry: now + timeouts.absolute,
            mfa_done,
            auth_method,
        };
        self.store.insert_session(workspace, &new, now).await?;
        Ok(minted.cookie_value)
    }

    /// The live session with this hash, if any. Refreshes its last-seen time.
    pub async fn find(
        &self,
        workspace: WorkspaceId,
        hash: &SessionHash,
        now: OffsetDateTime,
    ) -> Result<Option<Session>, SessionError> {
        Ok(self
            .find_live(workspace, hash, SystemTime::from(now))
            .await?
            .map(|live| current(&live.0)))
    }

    /// The live session a request's session cookie value names, for the request path:
    /// the shared cached record, with what the session's requests may reuse while it
    /// lives. `remembered` is the connection's (see [`Remembered`]): it holds only
    /// while no session was revoked on this instance since it was found.
    pub(crate) async fn find_presented(
        &self,
        remembered: &Remembered<Cached>,
        cookie: &[u8],
        now: SystemTime,
    ) -> Result<Option<Live>, SessionError> {
        // Read before the lookup: a revocation during it makes the record unusable
        // for the connection's next request.
        let generation = self.generation.load(Ordering::Acquire);
        if let Some(cached) =
            remembered.get(cookie, generation, crate::clock::monotonic_now(), RECHECK)
        {
            let live = self.admit(cached, now);
            if live.is_none() {
                remembered.forget();
            }
            return Ok(live);
        }
        let Some((workspace, hash)) = read_cookie(cookie) else {
            return Ok(None);
        };
        let Some(cached) = self.cached(workspace, &hash).await? else {
            return Ok(None);
        };
        let live = self.admit(Arc::clone(&cached), now);
        if live.is_some() {
            remembered.set(cookie, &cached, generation, cached.read_at);
        }
        Ok(live)
    }

    /// As [`Sessions::find`], for the request path: the shared cached record, with
    /// what the session's requests may reuse while it lives.
    pub async fn find_live(
        &self,
        workspace: WorkspaceId,
        hash: &SessionHash,
        now: SystemTime,
    ) -> Result<Option<Live>, SessionError> {
        let Some(cached) = self.cached(workspace, hash).await? else {
            return Ok(None);
        };
        Ok(self.admit(cached, now))
    }

    /// The record as a live session at `now`, if it is one; counts as activity.
    fn admit(&self, cached: Arc<Cached>, now: SystemTime) -> Option<Live> {
        if !cached.is_active(now) {
            return None;
        }
        let now_secs = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| {
                i64::try_from(since.as_secs()).unwrap_or(i64::MAX)
            });
        // Read first: the stamp moves once a second, and a write on every request
        // would bounce its cache line between the cores serving one session.
        if cached.last_seen.load(Ordering::Relaxed) < now_secs {
            cached.last_seen.fetch_max(now_secs, Ordering::Relaxed);
        }
        let written = cached.last_written.load(Ordering::Relaxed);
        if now_secs - written >= cached.touch_every
            && cached
                .last_written
                .compare_exchange(written, now_secs, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            let store = self.store.clone();
            let workspace = cached.session.workspace_id;
            let hash = cached.session.hash.clone();
            let now = OffsetDateTime::from(now);
            tokio::spawn(async move {
                if let Err(err) = store.touch_session(workspace, &hash, now).await {
                    tracing::warn!(error = %err, "could not record session activity");
                }
            });
        }
        Some(Live(cached))
    }

    /// Whether the session is still live at `now`, without counting as activity (for
    /// long-lived connections opened under it). A store failure counts as not live.
    pub async fn is_live(
        &self,
        workspace: WorkspaceId,
        hash: &SessionHash,
        now: OffsetDateTime,
    ) -> bool {
        match self.cached(workspace, hash).await {
            Ok(Some(cached)) => cached.is_active(SystemTime::from(now)),
            Ok(None) | Err(_) => false,
        }
    }

    async fn cached(
        &self,
        workspace: WorkspaceId,
        hash: &SessionHash,
    ) -> Result<Option<Arc<Cached>>, SessionError> {
        let Ok(key) = <[u8; 32]>::try_from(hash.as_bytes()) else {
            // Every session hash is a SHA-256; anything else names no session.
            return Ok(None);
        };
        let store = &self.store;
        let lookup = hash.clone();
        // By reference: the owned-key variant allocates the key on every hit.
        self.cache
            .try_get_with_by_ref(&key, async move {
                let found = store.get_session(workspace, &lookup).await?;
                Ok::<_, StoreError>(found.map(|session| Arc::new(Cached::new(session))))
            })
            .await
            .map_err(SessionError)
    }

    /// Revokes the session with this hash; later requests on this instance fail at once.
    pub async fn revoke(
        &self,
        workspace: WorkspaceId,
        hash: &SessionHash,
        now: OffsetDateTime,
    ) -> Result<bool, SessionError> {
        let revoked = self.store.revoke_session(workspace, hash, now).await?;
        self.cache.invalidate(hash.as_bytes()).await;
        self.generation.fetch_add(1, Ordering::Release);
        Ok(revoked)
    }
}

impl Sessions {
    /// Revokes every session of the user in the organization (password change, "sign
    /// out everywhere"); later requests on this instance fail at once. Returns how many.
    pub async fn revoke_user(
        &self,
        organization: OrganizationId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<u64, SessionError> {
        let revoked = self
            .store
            .revoke_user_sessions(organization, user, now)
            .await?;
        let dropped = self.cache.invalidate_entries_if(move |_, cached| {
            cached
                .as_ref()
                .is_some_and(|cached| cached.session.user_id == user)
        });
        self.generation.fetch_add(1, Ordering::Release);
        if dropped.is_err() {
            // Not reachable with closures enabled; the entries still expire within
            // RECHECK, and the store already says revoked.
            tracing::warn!("could not drop cached sessions of a revoked user");
        }
        Ok(revoked)
    }
}

/// A session's public handle, for listings and "sign this one out": the first half of
/// its hash in hex. It names one of a user's sessions; it cannot be used as one.
pub fn handle(hash: &SessionHash) -> String {
    let mut out = String::with_capacity(32);
    crate::crypto::random::push_hex(&mut out, hash.as_bytes().get(..16).unwrap_or_default());
    out
}

/// A session's idle timeout and absolute lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Ends after this long without a request.
    pub idle: time::Duration,
    /// Ends this long after login, whatever the activity.
    pub absolute: time::Duration,
}

impl Timeouts {
    /// The strictest of the given levels (deployment default, organization, workspace,
    /// user): a level can shorten the timeouts, never lengthen them.
    pub fn strictest(
        default: Timeouts,
        levels: &[(Option<time::Duration>, Option<time::Duration>)],
    ) -> Timeouts {
        levels
            .iter()
            .fold(default, |acc, (idle, absolute)| Timeouts {
                idle: idle.map_or(acc.idle, |idle| acc.idle.min(idle)),
                absolute: absolute.map_or(acc.absolute, |absolute| acc.absolute.min(absolute)),
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;
    use std::time::SystemTime;

    use http::{HeaderMap, HeaderValue, header};
    use time::{Duration, OffsetDateTime};

    use super::{Cached, Timeouts, cookie_pairs, current, mint, presented};
    use crate::store::{AuthMethod, Session, SessionHash};

    /// The request path's check on the cached record ([`Cached::is_active`], on
    /// `SystemTime`) and the store's rule ([`Session::is_active`], on the record with
    /// the in-memory last-seen time folded in) agree on every side of every boundary.
    #[test]
    fn the_cached_check_is_the_stored_rule() {
        let at = |secs: i64| OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let workspace = "0192f3c4-0000-7000-8000-000000000001".parse().unwrap();
        let user = "0192f3c4-0000-7000-8000-000000000002".parse().unwrap();
        let organization = "0192f3c4-0000-7000-8000-000000000003".parse().unwrap();
        let session = |revoked: bool| Session {
            hash: SessionHash::of(b"s"),
            organization_id: organization,
            workspace_id: workspace,
            user_id: user,
            created_at: at(1_000),
            last_seen_at: at(1_000) + Duration::milliseconds(500),
            idle_timeout: Duration::seconds(100),
            absolute_expiry: at(1_300) + Duration::milliseconds(250),
            mfa_done: false,
            auth_method: AuthMethod::Password,
            revoked_at: revoked.then(|| at(1_050)),
            user_email: None,
        };
        for revoked in [false, true] {
            for remembered in [None, Some(1_150), Some(1_250)] {
                let cached = Cached::new(session(revoked));
                if let Some(seen) = remembered {
                    cached.last_seen.store(seen, Ordering::Relaxed);
                }
                for millis in (990_000..1_360_000).step_by(250) {
                    let now = at(0) + Duration::milliseconds(millis);
                    assert_eq!(
                        cached.is_active(SystemTime::from(now)),
                        current(&cached).is_active(now),
                        "revoked {revoked}, remembered {remembered:?}, at {millis} ms"
                    );
                }
            }
        }
    }

    fn headers(cookies: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for cookie in cookies {
            map.append(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        }
        map
    }

    #[test]
    fn cookie_pairs_are_split_trimmed_and_never_empty() {
        let pairs = |line: &str| -> Vec<String> {
            cookie_pairs(line.as_bytes())
                .map(|pair| String::from_utf8_lossy(pair).into_owned())
                .collect()
        };
        assert_eq!(pairs("a=1"), ["a=1"]);
        assert_eq!(pairs(" a=1 ;b=2;  c = 3 "), ["a=1", "b=2", "c = 3"]);
        assert_eq!(pairs(";; a=1;;\t;b=2;"), ["a=1", "b=2"]);
        assert!(pairs("").is_empty());
        assert!(pairs(" ; ;").is_empty());
        // A value is not split on anything but `;`.
        assert_eq!(pairs("x=a,b=c"), ["x=a,b=c"]);
    }

    #[test]
    fn cookie_round_trip_and_refusals() {
        let workspace = "0192f3c4-0000-7000-8000-000000000001".parse().unwrap();
        let minted = mint(workspace);
        let cookie = format!("theme=dark; __Host-portcullis={}", minted.cookie_value);
        let (found_workspace, hash) = presented(&headers(&[&cookie])).unwrap();
        assert_eq!((found_workspace, hash), (workspace, minted.hash));
        // Two session cookies (one tossed in from a sibling domain): trust neither.
        let tossed = format!(
            "__Host-portcullis={}; __Host-portcullis={}",
            minted.cookie_value,
            mint(workspace).cookie_value
        );
        assert!(presented(&headers(&[&tossed])).is_none());
        let split = [
            format!("__Host-portcullis={}", minted.cookie_value),
            "__Host-portcullis=x".to_owned(),
        ];
        assert!(presented(&headers(&[&split[0], &split[1]])).is_none());
        for bad in [
            "__Host-portcullis=",
            "__Host-portcullis=abc.def",
            "portcullis=whatever",
            "__host-portcullis=x",
        ] {
            assert!(presented(&headers(&[bad])).is_none(), "{bad}");
        }
        assert!(presented(&headers(&[&cookie.to_uppercase()])).is_none());
        // The exact shape and nothing else: lengths, separator, case, neighbours.
        let value = &minted.cookie_value;
        let (ws, secret) = value.split_once('.').unwrap();
        for bad in [
            format!("__Host-portcullis={}.{secret}", &ws[1..]),
            format!("__Host-portcullis={ws}0.{secret}"),
            format!("__Host-portcullis={ws}_{secret}"),
            format!("__Host-portcullis={ws}.{}", &secret[1..]),
            format!("__Host-portcullis={value}0"),
            format!("__Host-portcullis={ws}.{}", secret.to_uppercase()),
            format!("__Host-portcullis={}.{secret}", ws.to_uppercase()),
            format!("__Host-portcullis2={value}"),
            format!("__Host-portcullis ={value}"),
            format!("x__Host-portcullis={value}"),
        ] {
            assert!(presented(&headers(&[&bad])).is_none(), "{bad}");
        }
        // Whitespace around a pair is not part of it; other lines do not matter.
        let spaced = format!("a=1;  __Host-portcullis={value} ;b=2");
        assert_eq!(
            presented(&headers(&[&spaced, "c=3"])).map(|(ws, _)| ws),
            Some(workspace)
        );
    }

    #[test]
    fn strictest_timeouts_win() {
        let default = Timeouts {
            idle: Duration::minutes(30),
            absolute: Duration::hours(12),
        };
        let resolved = Timeouts::strictest(
            default,
            &[
                (Some(Duration::minutes(15)), None),
                (Some(Duration::hours(1)), Some(Duration::hours(8))),
                (None, None),
            ],
        );
        assert_eq!(
            resolved,
            Timeouts {
                idle: Duration::minutes(15),
                absolute: Duration::hours(8)
            }
        );
    }
}
