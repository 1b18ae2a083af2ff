//! Signed identity assertions for upstreams: a short-lived JWT (EdDSA, `kid`,
//! `aud` = the route, `exp` 60 s after issue) in `X-Portcullis-Assertion`, verifiable
//! with the public key at `/.portcullis/jwks.json`. An assertion is reused for the same
//! principal and route while it has at least half its life left, so a warm request does
//! not sign; it is kept as a ready header value, so a warm request does not copy it
//! either. The plain identity headers' values ([`UpstreamIdentity`]) are prepared with
//! it and reused the same way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::HeaderValue;
use moka::future::Cache;

use crate::crypto::SigningKey;
use crate::proxy::authn::Principal;
use crate::proxy::headers::{HeaderLines, identity_lines};

/// The `iss` of every assertion.
pub const ISSUER: &str = "portcullis";
/// How long an assertion is valid.
const LIFETIME: Duration = Duration::from_secs(60);

/// What an upstream is told about a principal on a route, as ready header values:
/// the signed assertion and the plain identity headers, prepared together when the
/// assertion is issued and shared (not copied) by every request that reuses it.
#[derive(Debug)]
pub struct UpstreamIdentity {
    /// When the assertion was signed: it is reused for half its lifetime from then.
    issued_at: SystemTime,
    user: Option<HeaderValue>,
    email: Option<HeaderValue>,
    auth_method: Option<HeaderValue>,
    workspace: Option<HeaderValue>,
    assertion: Option<HeaderValue>,
    /// All of the above as the header lines a forwarded request gets.
    lines: HeaderLines,
}

impl UpstreamIdentity {
    /// The identity with its header lines written (they are derived from the values).
    fn with_lines(mut self) -> UpstreamIdentity {
        self.lines = identity_lines(&self);
        self
    }

    /// The identity as header lines for a forwarded request (the roles excepted).
    pub fn lines(&self) -> &HeaderLines {
        &self.lines
    }

    /// `X-Portcullis-User`; `None` if the user id is not a valid header value.
    pub fn user(&self) -> Option<&HeaderValue> {
        self.user.as_ref()
    }

    /// `X-Portcullis-Email`, when the email is known.
    pub fn email(&self) -> Option<&HeaderValue> {
        self.email.as_ref()
    }

    /// `X-Portcullis-Auth-Method`.
    pub fn auth_method(&self) -> Option<&HeaderValue> {
        self.auth_method.as_ref()
    }

    /// `X-Portcullis-Workspace`, for a principal from the store.
    pub fn workspace(&self) -> Option<&HeaderValue> {
        self.workspace.as_ref()
    }

    /// `X-Portcullis-Assertion`; `None` only if the token is not a valid header value.
    pub fn assertion(&self) -> Option<&HeaderValue> {
        self.assertion.as_ref()
    }
}

/// How long an issued assertion is handed out again: an upstream always gets at least
/// half its lifetime (30 s) of validity.
const REUSE: Duration = Duration::from_secs(LIFETIME.as_secs() / 2);

/// How many routes' identities one session remembers.
const MEMO_ROUTES: usize = 4;

/// The identities one session's requests were given lately, by route: kept with the
/// cached session record (`session::SessionMemo`), so a warm request of a signed-in browser finds its identity
/// without a cache lookup (the principal of a session never changes within the
/// record, and the record goes when the session is revoked or re-read).
#[derive(Debug, Default)]
pub struct IdentityMemo(Mutex<Vec<(Box<str>, Arc<UpstreamIdentity>)>>);

impl IdentityMemo {
    /// The identity remembered for `route`, if it may still be reused at `now`.
    fn get(&self, route: &str, now: SystemTime) -> Option<Arc<UpstreamIdentity>> {
        let remembered = self.0.lock().ok()?;
        remembered
            .iter()
            .find(|(at, identity)| &**at == route && reusable(identity, now))
            .map(|(_, identity)| Arc::clone(identity))
    }

    /// Remembers `identity` for `route`, in place of the stalest entry when full.
    fn put(&self, route: &str, identity: &Arc<UpstreamIdentity>) {
        let Ok(mut remembered) = self.0.lock() else {
            return;
        };
        if let Some(entry) = remembered.iter_mut().find(|(at, _)| &**at == route) {
            entry.1 = Arc::clone(identity);
            return;
        }
        if remembered.len() >= MEMO_ROUTES
            && let Some(stalest) = remembered
                .iter()
                .enumerate()
                .min_by_key(|(_, (_, identity))| identity.issued_at)
                .map(|(index, _)| index)
        {
            remembered.swap_remove(stalest);
        }
        remembered.push((route.into(), Arc::clone(identity)));
    }
}

/// Whether `identity` may be handed out at `now` (never before it was issued: a clock
/// that went back gets a fresh one).
fn reusable(identity: &UpstreamIdentity, now: SystemTime) -> bool {
    now.duration_since(identity.issued_at)
        .is_ok_and(|age| age < REUSE)
}

/// Issues and caches assertions; publishes the key set.
pub struct Assertions {
    key: SigningKey,
    cache: Cache<String, Arc<UpstreamIdentity>>,
    jwks: String,
}

impl Assertions {
    /// Assertions signed with `key`.
    pub fn new(key: SigningKey) -> Assertions {
        let jwks = serde_json::json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "alg": "EdDSA",
                "use": "sig",
                "kid": key.kid(),
                "x": URL_SAFE_NO_PAD.encode(key.public_key()),
            }]
        })
        .to_string();
        Assertions {
            key,
            // Reused for half the lifetime: an upstream always gets ≥ 30 s of validity.
            cache: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(REUSE)
                .build(),
            jwks,
        }
    }

    /// The JSON Web Key Set upstreams verify with.
    pub fn jwks(&self) -> &str {
        &self.jwks
    }

    /// What the upstream of route `route` is told about `principal`: the assertion,
    /// issued at `now` or reused, and the identity header values that go with it.
    pub async fn for_request(
        &self,
        principal: &Principal,
        route: &str,
        now: SystemTime,
    ) -> Arc<UpstreamIdentity> {
        let memo = principal.session_memo().map(|memo| &memo.identities);
        if let Some(identity) = memo.and_then(|memo| memo.get(route, now)) {
            return identity;
        }
        let identity = self.issue_or_reuse(principal, route, now).await;
        if let Some(memo) = memo {
            memo.put(route, &identity);
        }
        identity
    }

    /// The identity from the cache shared by every principal, or a new one.
    async fn issue_or_reuse(
        &self,
        principal: &Principal,
        route: &str,
        now: SystemTime,
    ) -> Arc<UpstreamIdentity> {
        // Built by hand: `format!` costs more than the rest of a cache hit. Every
        // principal field an identity header or the assertion shows is in the key but
        // the email, which a sign-in refresh changes within the assertion's reuse.
        let (user, method) = (principal.user_id(), principal.auth_method());
        let workspace = principal
            .stored()
            .map(|(_, workspace)| workspace.to_text())
            .unwrap_or_default();
        let mut key =
            String::with_capacity(user.len() + method.len() + workspace.len() + route.len() + 10);
        for part in [
            user,
            "|",
            method,
            "|",
            bool_text(principal.mfa()),
            "|",
            &workspace,
            "|",
            route,
        ] {
            key.push_str(part);
        }
        // By reference: the owned-key variant allocates the key on every hit.
        self.cache
            .get_with_by_ref(key.as_str(), async {
                let text = |value: &str| HeaderValue::from_str(value).ok();
                Arc::new(
                    UpstreamIdentity {
                        issued_at: now,
                        user: text(principal.user_id()),
                        email: principal.email().and_then(text),
                        auth_method: text(principal.auth_method()),
                        workspace: (!workspace.is_empty()).then(|| text(&workspace)).flatten(),
                        assertion: HeaderValue::from_maybe_shared(Bytes::from(
                            self.sign(principal, route, now),
                        ))
                        .ok(),
                        lines: HeaderLines::default(),
                    }
                    .with_lines(),
                )
            })
            .await
    }

    fn sign(&self, principal: &Principal, route: &str, now: SystemTime) -> String {
        let issued = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let header = serde_json::json!({ "alg": "EdDSA", "typ": "JWT", "kid": self.key.kid() });
        let jti: [u8; 16] = rand::random();
        let mut claims = serde_json::json!({
            "iss": ISSUER,
            "sub": principal.user_id(),
            "aud": route,
            "iat": issued,
            "nbf": issued,
            "exp": issued + LIFETIME.as_secs(),
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "amr": [principal.auth_method()],
            "mfa": principal.mfa(),
        });
        if let (Some(email), Some(map)) = (principal.email(), claims.as_object_mut()) {
            map.insert("email".to_owned(), serde_json::Value::from(email));
        }
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

fn bool_text(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use ring::signature::{ED25519, UnparsedPublicKey};

    use std::sync::Arc;

    use super::{Assertions, IdentityMemo, UpstreamIdentity};
    use crate::config::KeySource;
    use crate::crypto::{SigningKey, load_main_key};
    use crate::proxy::authn::Principal;
    use crate::session::SessionMemo;

    #[tokio::test]
    async fn assertions_are_signed_scoped_and_reused() {
        let main = load_main_key(&KeySource::Env("K".into()), &|_| Some("ab".repeat(32))).unwrap();
        let key = SigningKey::derive(&main).unwrap();
        let public = key.public_key().to_vec();
        let assertions = Assertions::new(key);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let olga = Principal::new("olga".into(), "password", true, now);
        let identity = assertions.for_request(&olga, "wiki", now).await;
        let token = identity.assertion().unwrap().clone();
        let parts: Vec<&str> = token.to_str().unwrap().split('.').collect();
        assert_eq!(parts.len(), 3);
        let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        let signed = format!("{}.{}", parts[0], parts[1]);
        assert!(
            UnparsedPublicKey::new(&ED25519, &public)
                .verify(signed.as_bytes(), &signature)
                .is_ok()
        );
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "olga");
        assert_eq!(claims["aud"], "wiki");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            60
        );
        assert_eq!(claims["mfa"], true);
        // Reused for the same principal and route; never shared across routes.
        let again = assertions.for_request(&olga, "wiki", now).await;
        assert_eq!(again.assertion(), Some(&token));
        assert_eq!(again.user().unwrap(), "olga");
        assert_eq!(again.auth_method().unwrap(), "password");
        assert_eq!(again.workspace(), None);
        let billing = assertions.for_request(&olga, "billing", now).await;
        assert_ne!(billing.assertion(), Some(&token));
        let jwks: serde_json::Value = serde_json::from_str(assertions.jwks()).unwrap();
        assert_eq!(jwks["keys"][0]["x"], URL_SAFE_NO_PAD.encode(&public));
    }

    fn identity(issued_at: SystemTime) -> Arc<UpstreamIdentity> {
        Arc::new(
            UpstreamIdentity {
                issued_at,
                user: None,
                email: None,
                auth_method: None,
                workspace: None,
                assertion: None,
                lines: crate::proxy::headers::HeaderLines::default(),
            }
            .with_lines(),
        )
    }

    #[test]
    fn a_session_memo_reuses_per_route_for_half_the_lifetime_only() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let at = |seconds: u64| t0 + Duration::from_secs(seconds);
        let memo = IdentityMemo::default();
        let wiki = identity(t0);
        memo.put("wiki", &wiki);
        let hit = memo.get("wiki", at(29)).unwrap();
        assert!(Arc::ptr_eq(&hit, &wiki));
        // Not at 30 s (the upstream would get less than half the lifetime), not for
        // another route or a prefix of it, not before it was issued.
        assert!(memo.get("wiki", at(30)).is_none());
        assert!(memo.get("billing", t0).is_none());
        assert!(memo.get("wik", t0).is_none());
        assert!(memo.get("wiki", t0 - Duration::from_secs(1)).is_none());
        // A newer identity replaces the route's entry.
        let newer = identity(at(30));
        memo.put("wiki", &newer);
        assert!(Arc::ptr_eq(&memo.get("wiki", at(31)).unwrap(), &newer));
        // Full: the stalest entry (wiki, issued at 30 s) makes room.
        for (offset, route) in (40..).zip(["a", "b", "c", "d"]) {
            memo.put(route, &identity(at(offset)));
        }
        assert!(memo.get("wiki", at(45)).is_none());
        for route in ["a", "b", "c", "d"] {
            assert!(memo.get(route, at(45)).is_some(), "{route}");
        }
    }

    #[tokio::test]
    async fn a_session_principal_finds_its_identity_in_its_memo() {
        let main = load_main_key(&KeySource::Env("K".into()), &|_| Some("cd".repeat(32))).unwrap();
        let assertions = Assertions::new(SigningKey::derive(&main).unwrap());
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let session = Arc::new(SessionMemo::default());
        let olga = Principal::new("olga".into(), "password", true, now)
            .with_session_memo(Arc::clone(&session));
        let memo = &session.identities;
        let first = assertions.for_request(&olga, "wiki", now).await;
        let remembered = memo.get("wiki", now).unwrap();
        assert!(Arc::ptr_eq(&first, &remembered));
        let later = assertions
            .for_request(&olga, "wiki", now + Duration::from_secs(10))
            .await;
        assert!(Arc::ptr_eq(&first, &later));
        let billing = assertions.for_request(&olga, "billing", now).await;
        assert_ne!(billing.assertion(), first.assertion());
        assert!(Arc::ptr_eq(&memo.get("billing", now).unwrap(), &billing));
    }
}
