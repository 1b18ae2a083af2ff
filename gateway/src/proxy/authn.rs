//! Authentication: who is calling. The result is a [`Principal`] or a refusal.
//!
//! Credentials: the session cookie (browser sign-in) and the API token
//! (`Authorization: Bearer pcl_…`). Token records are cached for a few seconds, so a warm request does
//! not touch the database; a revoked token stops working within that time on every
//! instance. Any doubt (malformed header, unknown, expired or revoked token, store
//! failure) refuses the request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, header};
use moka::future::Cache;
use zeroize::Zeroizing;

use super::reject::Reject;
use super::route::Route;
use crate::api_token;
use crate::crypto::constant_time_eq;
use crate::session::{self, Live, Remembered, SessionMemo, Sessions};
use crate::store::{ApiToken, SessionHash, Store, TokenHash, UserId, WorkspaceId};

/// How long a token record (or its absence) is trusted without asking the store.
const TOKEN_CACHE_TTL: Duration = Duration::from_secs(5);
/// How many token records the cache holds.
const TOKEN_CACHE_CAPACITY: u64 = 100_000;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    user_id: Arc<str>,
    /// The user's email, when the store knows it.
    email: Option<Arc<str>>,
    /// The user and workspace as stored, when the credential came from the store.
    stored: Option<(UserId, WorkspaceId)>,
    /// The session, when the credential is a session cookie.
    session: Option<Live>,
    /// What the session's requests may reuse, for a session principal.
    memo: Option<Arc<SessionMemo>>,
    auth_method: &'static str,
    mfa: bool,
    authenticated_at: SystemTime,
}

impl Principal {
    /// A principal (for tests and tools that act as someone).
    pub fn new(
        user_id: String,
        auth_method: &'static str,
        mfa: bool,
        authenticated_at: SystemTime,
    ) -> Principal {
        Principal {
            user_id: Arc::from(user_id),
            email: None,
            stored: None,
            session: None,
            memo: None,
            auth_method,
            mfa,
            authenticated_at,
        }
    }

    /// The user's email, if known.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }

    /// The user's id (the Cedar principal is `User::"<id>"`).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The user's id, shared (the decision takes it without a copy).
    pub fn user_id_shared(&self) -> &Arc<str> {
        &self.user_id
    }

    /// The stored user and the workspace the credential belongs to, if any.
    pub fn stored(&self) -> Option<(UserId, WorkspaceId)> {
        self.stored
    }

    /// The session behind this principal (its workspace and hash), if the credential
    /// was a session cookie.
    pub fn session(&self) -> Option<(WorkspaceId, &SessionHash)> {
        self.session
            .as_ref()
            .map(|live| (live.session().workspace_id, &live.session().hash))
    }

    /// The same principal as if it came with a session's memo (for tests).
    #[cfg(test)]
    pub(crate) fn with_session_memo(mut self, memo: Arc<SessionMemo>) -> Principal {
        self.memo = Some(memo);
        self
    }

    /// What this principal's session may reuse, if the credential was a session.
    pub fn session_memo(&self) -> Option<&SessionMemo> {
        self.memo.as_deref()
    }

    /// How the caller signed in: `password`, `oidc`, `saml`, `email_code`, `api_token`.
    pub fn auth_method(&self) -> &'static str {
        self.auth_method
    }

    /// Whether a second factor was completed.
    pub fn mfa(&self) -> bool {
        self.mfa
    }

    /// When the caller signed in (for a token: this request).
    pub fn authenticated_at(&self) -> SystemTime {
        self.authenticated_at
    }
}

/// Turns request credentials into principals.
pub struct Authenticator {
    store: Store,
    sessions: Option<Arc<Sessions>>,
    /// Keyed by the token's SHA-256, held inline so a lookup does not allocate; a
    /// digest needs no SipHash, a fast seeded hash is enough.
    tokens: Cache<[u8; 32], Option<Arc<CachedToken>>, foldhash::fast::RandomState>,
}

/// A token record with what every request reads of it prepared once.
struct CachedToken {
    token: ApiToken,
    user_text: Arc<str>,
    email: Option<Arc<str>>,
    /// Until when the token may be used (`None`: revoked), on the request clock.
    usable_until: Option<SystemTime>,
    /// When it was read from the store (the shared cache keeps it [`TOKEN_CACHE_TTL`]).
    read_at: Instant,
}

/// The credentials a connection's last authenticated requests presented, so its next
/// requests with the same ones skip the parse, the hash and the shared caches (see
/// [`Remembered`]: the same bounds hold for tokens, whose only revocation is the
/// store's, which the shared cache also learns only within [`TOKEN_CACHE_TTL`]).
#[derive(Debug, Default)]
pub struct ConnCredentials {
    session: Remembered,
    token: RememberedToken,
}

/// The API token a connection's last token request presented, and its record.
#[derive(Default)]
struct RememberedToken(Mutex<Option<HeldToken>>);

impl std::fmt::Debug for RememberedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RememberedToken(..)")
    }
}

struct HeldToken {
    /// The token as presented; compared in constant time, wiped when replaced.
    text: Zeroizing<Vec<u8>>,
    cached: Arc<CachedToken>,
}

impl RememberedToken {
    /// The record remembered for `text`, if the shared cache would still hold it at
    /// `now` (on the monotonic clock).
    fn get(&self, text: &[u8], now: Instant) -> Option<Arc<CachedToken>> {
        let held = self.0.lock().ok()?;
        let held = held.as_ref()?;
        let usable = constant_time_eq(&held.text, text)
            && now.saturating_duration_since(held.cached.read_at) < TOKEN_CACHE_TTL;
        usable.then(|| Arc::clone(&held.cached))
    }

    fn set(&self, text: &[u8], cached: &Arc<CachedToken>) {
        if let Ok(mut held) = self.0.lock() {
            *held = Some(HeldToken {
                text: Zeroizing::new(text.to_vec()),
                cached: Arc::clone(cached),
            });
        }
    }
}

impl Authenticator {
    /// An authenticator reading API tokens from `store` and, when browser login is
    /// configured, sessions from `sessions`.
    pub fn new(store: Store, sessions: Option<Arc<Sessions>>) -> Authenticator {
        Authenticator {
            store,
            sessions,
            tokens: Cache::builder()
                .max_capacity(TOKEN_CACHE_CAPACITY)
                .time_to_live(TOKEN_CACHE_TTL)
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// The session store, when browser sign-in is configured.
    pub fn sessions(&self) -> Option<&Arc<Sessions>> {
        self.sessions.as_ref()
    }

    /// Finds the principal for a request to a protected route.
    /// `remembered` is what the connection's last authenticated requests presented.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        remembered: &ConnCredentials,
        route: &Route,
        now: SystemTime,
    ) -> Result<Principal, Reject> {
        let unauthenticated = || Reject::Unauthenticated {
            resource: route.resource.clone().unwrap_or_default(),
        };
        if let (Some(sessions), Some(cookie)) = (&self.sessions, session::presented_cookie(headers))
        {
            let found = sessions
                .find_presented(&remembered.session, cookie, now)
                .await
                .map_err(|err| {
                    tracing::error!(error = %err, "session lookup failed");
                    Reject::StoreUnavailable
                })?;
            if let Some(live) = found {
                let session = live.session();
                return Ok(Principal {
                    user_id: Arc::clone(live.user_text()),
                    email: session.user_email.clone(),
                    stored: Some((session.user_id, session.workspace_id)),
                    memo: Some(Arc::clone(live.memo())),
                    auth_method: session.auth_method.as_str(),
                    mfa: session.mfa_done,
                    authenticated_at: live.created(),
                    session: Some(live),
                });
            }
        }
        let mut authorization = headers.get_all(header::AUTHORIZATION).iter();
        let (Some(value), None) = (authorization.next(), authorization.next()) else {
            return Err(unauthenticated());
        };
        let Some(text) = value.to_str().ok().and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
        }) else {
            return Err(unauthenticated());
        };
        let record = match remembered
            .token
            .get(text.as_bytes(), crate::clock::monotonic_now())
        {
            Some(cached) => Some(cached),
            None => {
                let Some((workspace, hash)) = api_token::parse(text) else {
                    return Err(unauthenticated());
                };
                let record = self.lookup(workspace, hash).await?;
                if let Some(cached) = &record {
                    remembered.token.set(text.as_bytes(), cached);
                }
                record
            }
        };
        match record {
            Some(cached) if cached.usable_until.is_some_and(|until| now < until) => Ok(Principal {
                user_id: Arc::clone(&cached.user_text),
                email: cached.email.clone(),
                stored: Some((cached.token.created_by, cached.token.workspace_id)),
                session: None,
                memo: None,
                auth_method: "api_token",
                mfa: false,
                // A bearer token authenticates each request anew.
                authenticated_at: now,
            }),
            _ => Err(unauthenticated()),
        }
    }

    async fn lookup(
        &self,
        workspace: crate::store::WorkspaceId,
        hash: TokenHash,
    ) -> Result<Option<Arc<CachedToken>>, Reject> {
        let key = <[u8; 32]>::try_from(hash.as_bytes())
            .map_err(|_| Reject::Internal("token hash is not SHA-256"))?;
        let store = &self.store;
        // By reference: the owned-key variant allocates the key on every hit.
        self.tokens
            .try_get_with_by_ref(&key, async move {
                store
                    .get_api_token_by_hash(workspace, &hash)
                    .await
                    .map(|found| {
                        found.map(|token| {
                            Arc::new(CachedToken {
                                read_at: crate::clock::monotonic_now(),
                                usable_until: token
                                    .revoked_at
                                    .is_none()
                                    .then(|| SystemTime::from(token.expires_at)),
                                user_text: Arc::from(token.created_by.to_text()),
                                email: token.creator_email.as_deref().map(Arc::from),
                                token,
                            })
                        })
                    })
            })
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "token lookup failed");
                Reject::StoreUnavailable
            })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use time::OffsetDateTime;

    use super::{CachedToken, RememberedToken, TOKEN_CACHE_TTL};
    use crate::store::ApiToken;

    /// A connection's remembered token is used only for the very token text that
    /// found it and only while the shared cache would still hold its record.
    #[test]
    fn a_remembered_token_is_used_only_while_the_shared_cache_would() {
        let now = OffsetDateTime::from_unix_timestamp(1_000).unwrap();
        let user = "0192f3c4-0000-7000-8000-000000000002".parse().unwrap();
        let cached = Arc::new(CachedToken {
            token: ApiToken {
                id: "0192f3c4-0000-7000-8000-000000000004".parse().unwrap(),
                workspace_id: "0192f3c4-0000-7000-8000-000000000001".parse().unwrap(),
                name: "ci".into(),
                created_by: user,
                created_at: now,
                expires_at: now + time::Duration::days(1),
                revoked_at: None,
                creator_email: None,
            },
            user_text: Arc::from("u"),
            email: None,
            usable_until: None,
            read_at: crate::clock::monotonic_now(),
        });
        let text = crate::api_token::mint(cached.token.workspace_id).text;
        let read = cached.read_at;
        let connection = RememberedToken::default();
        assert!(
            connection.get(text.as_bytes(), read).is_none(),
            "nothing held yet"
        );
        connection.set(text.as_bytes(), &cached);
        let found = connection.get(text.as_bytes(), read + TOKEN_CACHE_TTL / 2);
        assert!(found.is_some_and(|found| Arc::ptr_eq(&found, &cached)));
        for index in 0..text.len() {
            let mut other = text.clone().into_bytes();
            other[index] ^= 0x01;
            assert!(connection.get(&other, read).is_none(), "byte {index}");
        }
        assert!(connection.get(&text.as_bytes()[1..], read).is_none());
        assert!(connection.get(b"", read).is_none());
        assert!(
            connection
                .get(text.as_bytes(), read + TOKEN_CACHE_TTL)
                .is_none()
        );
    }
}
