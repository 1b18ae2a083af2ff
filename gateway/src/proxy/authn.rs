//! Authentication: who is calling. The result is a [`Principal`] or a refusal.
//!
//! Credentials: the session cookie (browser sign-in) and the API token
//! (`Authorization: Bearer pcl_…`). Token records are cached for a few seconds, so a warm request does
//! not touch the database; a revoked token stops working within that time on every
//! instance. Any doubt (malformed header, unknown, expired or revoked token, store
//! failure) refuses the request.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use moka::future::Cache;

use super::reject::Reject;
use super::request::{Known, RequestHeaders};
use super::route::Route;
use crate::api_token;
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
    session: Remembered<session::Cached>,
    token: Remembered<CachedToken>,
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
        headers: &RequestHeaders,
        remembered: &ConnCredentials,
        route: &Route,
        now: SystemTime,
    ) -> Result<Principal, Reject> {
        let unauthenticated = || Reject::Unauthenticated {
            resource: route.resource.clone().unwrap_or_default(),
        };
        if let (Some(sessions), Some(cookie)) = (
            &self.sessions,
            session::presented_cookie_in(headers.get_all(Known::Cookie)),
        ) {
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
        let mut authorization = headers.get_all(Known::Authorization);
        let (Some(value), None) = (authorization.next(), authorization.next()) else {
            return Err(unauthenticated());
        };
        let Some(text) = std::str::from_utf8(value).ok().and_then(|value| {
            value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .map(str::trim)
        }) else {
            return Err(unauthenticated());
        };
        // Tokens are revoked only in the store, so no generation moves here.
        let now_monotonic = crate::clock::monotonic_now();
        let record = match remembered
            .token
            .get(text.as_bytes(), 0, now_monotonic, TOKEN_CACHE_TTL)
        {
            Some(cached) => Some(cached),
            None => {
                let Some((workspace, hash)) = api_token::parse(text) else {
                    return Err(unauthenticated());
                };
                let record = self.lookup(workspace, hash).await?;
                if let Some(cached) = &record {
                    remembered
                        .token
                        .set(text.as_bytes(), cached, 0, cached.read_at);
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
