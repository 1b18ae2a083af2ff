//! OpenID Connect relying party: discovery, the authorization code flow with PKCE,
//! and the checks that turn an ID token into an [`ExternalIdentity`].
//!
//! The flow in three calls: [`discover`] once per configured provider (and again to
//! pick up configuration changes), [`OidcProvider::begin`] when a browser asks to sign
//! in (the caller keeps the [`PendingOidc`] server-side, bound to that browser), and
//! [`OidcProvider::complete`] on the callback. This module never touches the store,
//! sessions, cookies or HTTP serving.
//!
//! What `complete` checks, in order: the transaction belongs to this provider and is
//! younger than [`PENDING_LIFETIME`]; `state` (constant time); the RFC 9207 `iss`
//! response parameter (required when the provider advertises it or the caller asks,
//! which it does when several providers are configured: the mix-up defence); the
//! provider's `error`; the code exchange with the PKCE verifier; the ID token's
//! signature (allowlisted algorithms, keys only from the provider's JWKS, refetched at
//! most once per [`JWKS_REFETCH_INTERVAL`] when the token names an unknown key), `iss`,
//! `aud` (no other audiences), `azp`, `exp`, `iat` (not ahead of our clock by more than
//! [`CLOCK_SKEW`]), `nonce`, `at_hash` when present, and `auth_time` against `max_age`
//! when one was requested.
//!
//! RP-initiated logout is not offered: it would need the raw ID token kept in the
//! session, and the gateway's own logout ends its session either way.

mod settings;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthenticationFlow, CoreClaimName, CoreClaimType, CoreClient,
    CoreClientAuthMethod, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreSubjectIdentifierType,
};
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthType, AuthorizationCode,
    ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, DiscoveryError, EndpointMaybeSet,
    EndpointNotSet, EndpointSet, IdToken, IdTokenClaims, IdTokenVerifier, IssuerUrl, JsonWebKeySet,
    JsonWebKeySetUrl, JwsSigningAlgorithm, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadata, RedirectUrl, RequestTokenError, Scope,
    SignatureVerificationError, TokenResponse,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub use self::settings::{OidcPreset, OidcSettings, SecretString};
use super::ExternalIdentity;
pub use super::http::HttpError;
use super::http::{Origin, ProviderHttp};

/// How long a started sign-in may wait for its callback.
pub const PENDING_LIFETIME: Duration = Duration::from_secs(10 * 60);

/// How far the provider's clock may be ahead of ours (`iat`, `auth_time`) or behind
/// (`exp`).
pub const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// The least time between two JWKS refetches caused by unknown key ids.
pub const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(60);

/// Why a discovery or sign-in failed. Messages are safe to log: they never hold
/// tokens, codes, secrets or the provider's free-text error descriptions.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// The settings are invalid (see [`OidcSettings::validate`]).
    #[error("{0}")]
    InvalidSettings(String),
    /// Talking to the provider failed (refused host, redirect, size, time, network).
    #[error("oidc provider `{provider}`: {source}")]
    Http {
        /// The configured provider id.
        provider: String,
        /// What went wrong.
        source: HttpError,
    },
    /// The discovery document or JWKS was unusable.
    #[error("oidc provider `{provider}`: discovery: {problem}")]
    Discovery {
        /// The configured provider id.
        provider: String,
        /// What was wrong with it.
        problem: String,
    },
    /// The discovery document names a different issuer than the configured one.
    #[error(
        "oidc provider `{provider}`: discovery document names issuer `{found}`, expected `{expected}`"
    )]
    IssuerMismatch {
        /// The configured provider id.
        provider: String,
        /// The configured issuer.
        expected: String,
        /// The issuer in the document.
        found: String,
    },
    /// The callback query could not be parsed.
    #[error("malformed callback: {0}")]
    MalformedCallback(&'static str),
    /// The pending sign-in was started for another provider.
    #[error("sign-in was started with another provider")]
    WrongProvider,
    /// The pending sign-in is older than [`PENDING_LIFETIME`].
    #[error("sign-in took too long; start again")]
    PendingExpired,
    /// The callback's `state` does not match the pending sign-in.
    #[error("callback state does not match this browser's sign-in")]
    StateMismatch,
    /// The callback lacks the `iss` parameter although it is required.
    #[error("callback lacks the `iss` parameter")]
    IssParamMissing,
    /// The callback's `iss` parameter names another issuer.
    #[error("callback `iss` parameter names another issuer")]
    IssParamMismatch,
    /// The provider answered the authorization request with an error.
    #[error("provider returned error `{error}`")]
    ProviderError {
        /// The OAuth error code, reduced to safe characters.
        error: String,
    },
    /// The code exchange failed.
    #[error("code exchange failed: {0}")]
    TokenExchange(String),
    /// The token response carried no ID token.
    #[error("token response has no ID token")]
    MissingIdToken,
    /// The ID token's signature or algorithm was refused.
    #[error("ID token signature refused: {0}")]
    IdTokenSignature(String),
    /// The ID token names another issuer.
    #[error("ID token issuer refused: {0}")]
    IdTokenIssuer(String),
    /// The ID token is not for this client alone.
    #[error("ID token audience refused: {0}")]
    IdTokenAudience(String),
    /// The ID token has expired.
    #[error("ID token expired")]
    IdTokenExpired,
    /// The ID token was issued in the future.
    #[error("ID token issued in the future")]
    IdTokenIssuedInFuture,
    /// The ID token's nonce does not match the pending sign-in.
    #[error("ID token nonce does not match this sign-in")]
    IdTokenNonce,
    /// The person authenticated longer ago than the requested `max_age`, or the token
    /// does not say when.
    #[error("authentication is not recent enough: {0}")]
    AuthTooOld(&'static str),
    /// The ID token is otherwise unacceptable.
    #[error("ID token refused: {0}")]
    IdTokenInvalid(String),
}

impl OidcError {
    /// A stable machine code for logs, metrics and audit events.
    pub fn code(&self) -> &'static str {
        match self {
            OidcError::InvalidSettings(_) => "oidc_invalid_settings",
            OidcError::Http { .. } => "oidc_http",
            OidcError::Discovery { .. } => "oidc_discovery",
            OidcError::IssuerMismatch { .. } => "oidc_issuer_mismatch",
            OidcError::MalformedCallback(_) => "oidc_malformed_callback",
            OidcError::WrongProvider => "oidc_wrong_provider",
            OidcError::PendingExpired => "oidc_pending_expired",
            OidcError::StateMismatch => "oidc_state_mismatch",
            OidcError::IssParamMissing => "oidc_iss_missing",
            OidcError::IssParamMismatch => "oidc_iss_mismatch",
            OidcError::ProviderError { .. } => "oidc_provider_error",
            OidcError::TokenExchange(_) => "oidc_token_exchange",
            OidcError::MissingIdToken => "oidc_missing_id_token",
            OidcError::IdTokenSignature(_) => "oidc_id_token_signature",
            OidcError::IdTokenIssuer(_) => "oidc_id_token_issuer",
            OidcError::IdTokenAudience(_) => "oidc_id_token_audience",
            OidcError::IdTokenExpired => "oidc_id_token_expired",
            OidcError::IdTokenIssuedInFuture => "oidc_id_token_iat_future",
            OidcError::IdTokenNonce => "oidc_id_token_nonce",
            OidcError::AuthTooOld(_) => "oidc_auth_too_old",
            OidcError::IdTokenInvalid(_) => "oidc_id_token_invalid",
        }
    }
}

/// A configured, discovered OpenID Provider, ready to start and finish sign-ins.
pub struct OidcProvider {
    id: String,
    display_name: String,
    issuer: IssuerUrl,
    client_id: ClientId,
    /// Set only when an `HS*` algorithm is allowed: the client secret is then the key.
    hmac_secret: Option<ClientSecret>,
    client: DiscoveredClient,
    http: ProviderHttp,
    jwks_url: JsonWebKeySetUrl,
    keys: Mutex<KeyCache>,
    allowed_algs: Vec<CoreJwsSigningAlgorithm>,
    scopes: Vec<String>,
    groups_claim: Option<String>,
    trusted_mfa_amr: Vec<String>,
    iss_param_required: bool,
}

/// What the callback needs from the start of a sign-in. The caller keeps it
/// server-side, bound to the browser that started it, and uses it once.
pub struct PendingOidc {
    provider: String,
    state: CsrfToken,
    nonce: Nonce,
    pkce_verifier: PkceCodeVerifier,
    max_age: Option<Duration>,
    created: OffsetDateTime,
}

/// The parameters of the provider's redirect back to us.
#[derive(Default)]
pub struct CallbackParams {
    /// The authorization code (a secret; never logged).
    pub code: Option<String>,
    /// The `state` we sent.
    pub state: Option<String>,
    /// RFC 9207: the issuer that answered.
    pub iss: Option<String>,
    /// The OAuth error code, if the provider refused.
    pub error: Option<String>,
    /// The provider's free-text error description (not trusted, not logged by us).
    pub error_description: Option<String>,
}

/// Discovers a provider: fetches its discovery document and JWKS (through the
/// restricted client) and checks that the document names exactly the configured issuer.
/// `redirect_uri` is this gateway's callback URL registered at the provider.
pub async fn discover(
    settings: &OidcSettings,
    redirect_uri: &str,
) -> Result<OidcProvider, OidcError> {
    settings.validate().map_err(OidcError::InvalidSettings)?;
    let provider = settings.id.clone();
    let issuer_text = settings.issuer_url().map_err(OidcError::InvalidSettings)?;
    let invalid = |problem: String| {
        OidcError::InvalidSettings(format!("oidc provider `{provider}`: {problem}"))
    };
    let secret = settings
        .client_secret
        .as_ref()
        .ok_or_else(|| invalid("client secret not resolved (client_secret_env)".into()))?;
    let issuer =
        IssuerUrl::new(issuer_text.clone()).map_err(|err| invalid(format!("issuer: {err}")))?;
    let redirect = RedirectUrl::new(redirect_uri.to_owned())
        .map_err(|err| invalid(format!("redirect URI: {err}")))?;
    let allowed_algs = settings
        .signing_algs()
        .map_err(OidcError::InvalidSettings)?;

    let issuer_parsed = issuer.url();
    let mut allowed =
        vec![Origin::of(issuer_parsed).ok_or_else(|| invalid("issuer has no host".into()))?];
    if settings.preset == OidcPreset::Google {
        allowed.extend(
            settings::GOOGLE_EXTRA_HOSTS
                .iter()
                .map(|host| Origin::https(host)),
        );
    }
    let http = ProviderHttp::new(allowed).map_err(invalid)?;

    let metadata = DiscoveredMetadata::discover_async(issuer.clone(), &http)
        .await
        .map_err(|err| discovery_error(&provider, &issuer_text, err))?;
    // The crate compares parsed URLs; the specification asks for the exact string.
    if metadata.issuer().as_str() != issuer_text {
        return Err(OidcError::IssuerMismatch {
            provider,
            expected: issuer_text,
            found: metadata.issuer().to_string(),
        });
    }
    let discovery_problem = |problem: &str| OidcError::Discovery {
        provider: provider.clone(),
        problem: problem.to_owned(),
    };
    let Some(token_url) = metadata.token_endpoint() else {
        return Err(discovery_problem("no token_endpoint"));
    };
    http.check_url(token_url.as_str())
        .map_err(|source| OidcError::Http {
            provider: provider.clone(),
            source,
        })?;
    let authorization_url = metadata.authorization_endpoint().url();
    let browser_url_ok = authorization_url.scheme() == "https"
        || (authorization_url.scheme() == "http" && settings::is_loopback(issuer_parsed));
    if !browser_url_ok {
        return Err(discovery_problem("authorization_endpoint must use https"));
    }
    let supports_code = metadata
        .response_types_supported()
        .iter()
        .any(|types| types.len() == 1 && types.contains(&CoreResponseType::Code));
    if !supports_code {
        return Err(discovery_problem("provider does not support the code flow"));
    }
    let iss_param_advertised = metadata
        .additional_metadata()
        .authorization_response_iss_parameter_supported
        .unwrap_or(false);
    let auth_type = match metadata.token_endpoint_auth_methods_supported() {
        Some(methods)
            if !methods.contains(&CoreClientAuthMethod::ClientSecretBasic)
                && methods.contains(&CoreClientAuthMethod::ClientSecretPost) =>
        {
            AuthType::RequestBody
        }
        _ => AuthType::BasicAuth,
    };
    let jwks_url = metadata.jwks_uri().clone();
    let keys = metadata.jwks().clone();
    let client_secret = ClientSecret::new(secret.expose().to_owned());
    let hmac_secret = allowed_algs
        .iter()
        .any(JwsSigningAlgorithm::uses_shared_secret)
        .then(|| client_secret.clone());
    let client_id = ClientId::new(settings.client_id.clone());
    let client =
        CoreClient::from_provider_metadata(metadata, client_id.clone(), Some(client_secret))
            .set_redirect_uri(redirect)
            .set_auth_type(auth_type);
    Ok(OidcProvider {
        display_name: settings
            .display_name
            .clone()
            .unwrap_or_else(|| provider.clone()),
        id: provider,
        issuer,
        client_id,
        hmac_secret,
        client,
        http,
        jwks_url,
        keys: Mutex::new(KeyCache {
            keys,
            last_refetch: None,
        }),
        allowed_algs,
        scopes: settings.scopes.clone(),
        groups_claim: settings.groups_claim.clone(),
        trusted_mfa_amr: settings.trusted_mfa_amr.clone(),
        iss_param_required: iss_param_advertised,
    })
}

impl OidcProvider {
    /// The configured provider id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The label for the login page.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// Requires the RFC 9207 `iss` callback parameter. The integration sets it when
    /// several providers are configured (mix-up defence); it is already on when the
    /// provider advertises `authorization_response_iss_parameter_supported`.
    pub fn require_iss_param(mut self) -> OidcProvider {
        self.iss_param_required = true;
        self
    }

    /// Whether the callback must carry the `iss` parameter.
    pub fn iss_param_required(&self) -> bool {
        self.iss_param_required
    }

    /// Starts a sign-in: the URL to send the browser to, and what the callback will
    /// need. `max_age` asks the provider to re-authenticate anyone who signed in longer
    /// ago, and makes `complete` check `auth_time`.
    pub fn begin(&self, max_age: Option<Duration>) -> (String, PendingOidc) {
        let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                || CsrfToken::new_random_len(32),
                || Nonce::new_random_len(32),
            )
            .set_pkce_challenge(challenge);
        for scope in self.scopes.iter().filter(|scope| *scope != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if let Some(max_age) = max_age {
            request = request.set_max_age(max_age);
        }
        let (url, state, nonce) = request.url();
        let pending = PendingOidc {
            provider: self.id.clone(),
            state,
            nonce,
            pkce_verifier,
            max_age,
            created: crate::clock::now_utc(),
        };
        (url.to_string(), pending)
    }

    /// Finishes a sign-in from the provider's callback; see the module documentation for
    /// what is checked. The caller must discard `pending` afterwards, whatever the
    /// outcome.
    pub async fn complete(
        &self,
        pending: &PendingOidc,
        callback: &CallbackParams,
        now: OffsetDateTime,
    ) -> Result<ExternalIdentity, OidcError> {
        if pending.provider != self.id {
            return Err(OidcError::WrongProvider);
        }
        if now - pending.created > PENDING_LIFETIME {
            return Err(OidcError::PendingExpired);
        }
        let state = callback
            .state
            .as_deref()
            .ok_or(OidcError::MalformedCallback("no state"))?;
        if !equal_secrets(state, pending.state.secret()) {
            return Err(OidcError::StateMismatch);
        }
        match &callback.iss {
            Some(iss) if iss != self.issuer.as_str() => return Err(OidcError::IssParamMismatch),
            None if self.iss_param_required => return Err(OidcError::IssParamMissing),
            _ => {}
        }
        if let Some(error) = &callback.error {
            return Err(OidcError::ProviderError {
                error: safe_error_code(error),
            });
        }
        let code = callback
            .code
            .as_deref()
            .ok_or(OidcError::MalformedCallback("no code"))?;

        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|_| OidcError::TokenExchange("no token endpoint".into()))?
            .set_pkce_verifier(PkceCodeVerifier::new(
                pending.pkce_verifier.secret().clone(),
            ))
            .request_async(&self.http)
            .await
            .map_err(|err| self.token_error(err))?;
        let id_token = response.id_token().ok_or(OidcError::MissingIdToken)?;
        // Re-read the token with a claims type that keeps the non-standard claims
        // (the groups claim); the standard response type drops them.
        let id_token = parse_id_token(&id_token.to_string())?;

        let keys = self.current_keys();
        let claims = match self.verify(&id_token, keys, pending, now, response.access_token()) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) if self.may_refetch_keys(now) => {
                let keys = self.refetch_keys().await?;
                self.verify(&id_token, keys, pending, now, response.access_token())
            }
            other => other,
        }
        .map_err(verification_error)?;
        self.check_times_and_party(&claims, pending, now)?;
        self.identity(&claims)
    }

    fn token_error(
        &self,
        err: RequestTokenError<
            HttpError,
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        >,
    ) -> OidcError {
        match err {
            RequestTokenError::ServerResponse(response) => OidcError::TokenExchange(format!(
                "provider returned error `{}`",
                safe_error_code(response.error().as_ref())
            )),
            RequestTokenError::Request(source) => OidcError::Http {
                provider: self.id.clone(),
                source,
            },
            RequestTokenError::Parse(_, _) => {
                OidcError::TokenExchange("unparseable token response".into())
            }
            RequestTokenError::Other(_) => OidcError::TokenExchange("unexpected response".into()),
        }
    }

    fn current_keys(&self) -> ProviderKeys {
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys
            .clone()
    }

    /// Claims the one refetch allowed per interval; false when one happened recently.
    fn may_refetch_keys(&self, now: OffsetDateTime) -> bool {
        let mut cache = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        match cache.last_refetch {
            Some(last) if now - last < JWKS_REFETCH_INTERVAL && now >= last => false,
            _ => {
                cache.last_refetch = Some(now);
                true
            }
        }
    }

    async fn refetch_keys(&self) -> Result<ProviderKeys, OidcError> {
        let keys = JsonWebKeySet::fetch_async(&self.jwks_url, &self.http)
            .await
            .map_err(|err| discovery_error(&self.id, self.issuer.as_str(), err))?;
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys = keys.clone();
        Ok(keys)
    }

    fn verify(
        &self,
        id_token: &ProviderIdToken,
        keys: ProviderKeys,
        pending: &PendingOidc,
        now: OffsetDateTime,
        access_token: &openidconnect::AccessToken,
    ) -> Result<ProviderClaims, ClaimsVerificationError> {
        let verifier = match &self.hmac_secret {
            Some(secret) => IdTokenVerifier::new_confidential_client(
                self.client_id.clone(),
                secret.clone(),
                self.issuer.clone(),
                keys,
            ),
            None => IdTokenVerifier::new_public_client(
                self.client_id.clone(),
                self.issuer.clone(),
                keys,
            ),
        };
        let exp_reference = to_chrono(now - CLOCK_SKEW);
        let verifier = verifier
            .set_allowed_algs(self.allowed_algs.iter().cloned())
            .set_time_fn(move || exp_reference);
        let claims = id_token.claims(&verifier, &pending.nonce)?.clone();
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(ClaimsVerificationError::SignatureVerification)?;
            if !alg.uses_shared_secret() {
                let key = id_token
                    .signing_key(&verifier)
                    .map_err(ClaimsVerificationError::SignatureVerification)?;
                let actual = AccessTokenHash::from_token(access_token, alg, key).map_err(|_| {
                    ClaimsVerificationError::Other("at_hash cannot be computed".into())
                })?;
                if actual != *expected {
                    return Err(ClaimsVerificationError::Other(
                        "at_hash does not match the access token".into(),
                    ));
                }
            }
        }
        Ok(claims)
    }

    fn check_times_and_party(
        &self,
        claims: &ProviderClaims,
        pending: &PendingOidc,
        now: OffsetDateTime,
    ) -> Result<(), OidcError> {
        let latest_acceptable = to_chrono(now + CLOCK_SKEW);
        if claims.issue_time() > latest_acceptable {
            return Err(OidcError::IdTokenIssuedInFuture);
        }
        // OIDC Core 3.1.3.7 steps 4-5: the crate leaves `azp` to us.
        match claims.authorized_party() {
            Some(party) if **party != *self.client_id => {
                return Err(OidcError::IdTokenAudience("azp is another client".into()));
            }
            None if claims.audiences().len() > 1 => {
                return Err(OidcError::IdTokenAudience(
                    "several audiences but no azp".into(),
                ));
            }
            _ => {}
        }
        let auth_time = claims.auth_time();
        if auth_time.is_some_and(|auth_time| auth_time > latest_acceptable) {
            return Err(OidcError::IdTokenInvalid(
                "auth_time is in the future".into(),
            ));
        }
        if let Some(max_age) = pending.max_age {
            let Some(auth_time) = auth_time.and_then(from_chrono) else {
                return Err(OidcError::AuthTooOld(
                    "no auth_time although max_age was sent",
                ));
            };
            if auth_time + max_age + CLOCK_SKEW < now {
                return Err(OidcError::AuthTooOld("auth_time is older than max_age"));
            }
        }
        Ok(())
    }

    fn identity(&self, claims: &ProviderClaims) -> Result<ExternalIdentity, OidcError> {
        let groups = match &self.groups_claim {
            None => Vec::new(),
            Some(name) => match claims.additional_claims().other.get(name) {
                None | Some(serde_json::Value::Null) => Vec::new(),
                Some(serde_json::Value::String(group)) => vec![group.clone()],
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| {
                        OidcError::IdTokenInvalid(format!(
                            "claim `{name}` holds something other than strings"
                        ))
                    })?,
                Some(_) => {
                    return Err(OidcError::IdTokenInvalid(format!(
                        "claim `{name}` is neither a string nor an array of strings"
                    )));
                }
            },
        };
        let mfa = claims.auth_method_refs().is_some_and(|methods| {
            methods.iter().any(|method| {
                self.trusted_mfa_amr
                    .iter()
                    .any(|trusted| **method == *trusted)
            })
        });
        Ok(ExternalIdentity {
            provider: self.id.clone(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|email| email.to_string()),
            email_verified: claims.email_verified().unwrap_or(false),
            display_name: claims
                .name()
                .and_then(|name| name.get(None))
                .map(|name| name.to_string()),
            groups,
            mfa,
            auth_time: claims.auth_time().and_then(from_chrono),
        })
    }
}

impl fmt::Debug for OidcProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcProvider")
            .field("id", &self.id)
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.client_id.as_str())
            .field("iss_param_required", &self.iss_param_required)
            .finish_non_exhaustive()
    }
}

impl PendingOidc {
    /// The configured provider id this sign-in was started with.
    pub fn provider(&self) -> &str {
        &self.provider
    }

    /// When the sign-in started.
    pub fn created(&self) -> OffsetDateTime {
        self.created
    }

    /// The `max_age` that was requested, if any.
    pub fn max_age(&self) -> Option<Duration> {
        self.max_age
    }
}

/// Manual because the crate's PKCE verifier is not `Clone`; caches such as moka need
/// their values to be.
impl Clone for PendingOidc {
    fn clone(&self) -> PendingOidc {
        PendingOidc {
            provider: self.provider.clone(),
            state: self.state.clone(),
            nonce: self.nonce.clone(),
            pkce_verifier: PkceCodeVerifier::new(self.pkce_verifier.secret().clone()),
            max_age: self.max_age,
            created: self.created,
        }
    }
}

impl fmt::Debug for PendingOidc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingOidc")
            .field("provider", &self.provider)
            .field("state", &"***")
            .field("nonce", &"***")
            .field("pkce_verifier", &"***")
            .field("max_age", &self.max_age)
            .field("created", &self.created)
            .finish()
    }
}

impl CallbackParams {
    /// Parses the callback's query string (without `?`). A parameter given twice is
    /// refused, since the two copies could be read differently by different layers.
    pub fn from_query(query: &str) -> Result<CallbackParams, OidcError> {
        const MAX_QUERY: usize = 16 * 1024;
        if query.len() > MAX_QUERY {
            return Err(OidcError::MalformedCallback("query too long"));
        }
        let mut params = CallbackParams::default();
        for (name, value) in form_urlencoded::parse(query.as_bytes()) {
            let slot = match name.as_ref() {
                "code" => &mut params.code,
                "state" => &mut params.state,
                "iss" => &mut params.iss,
                "error" => &mut params.error,
                "error_description" => &mut params.error_description,
                _ => continue,
            };
            if slot.replace(value.into_owned()).is_some() {
                return Err(OidcError::MalformedCallback("repeated parameter"));
            }
        }
        Ok(params)
    }
}

impl fmt::Debug for CallbackParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackParams")
            .field("code", &self.code.as_ref().map(|_| "***"))
            .field("state", &self.state.as_ref().map(|_| "***"))
            .field("iss", &self.iss)
            .field("error", &self.error.as_deref().map(safe_error_code))
            .finish_non_exhaustive()
    }
}

/// Claims beyond the standard ones, kept so a configured groups claim can be read.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    other: HashMap<String, serde_json::Value>,
}

impl AdditionalClaims for ExtraClaims {}

/// Discovery fields the core metadata type does not carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExtraMetadata {
    /// RFC 9207: the provider sends `iss` in authorization responses.
    authorization_response_iss_parameter_supported: Option<bool>,
}

impl AdditionalProviderMetadata for ExtraMetadata {}

type DiscoveredMetadata = ProviderMetadata<
    ExtraMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;

/// The client after discovery: authorization URL set, token endpoint possibly set.
type DiscoveredClient = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

type ProviderIdToken = IdToken<
    ExtraClaims,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type ProviderClaims = IdTokenClaims<ExtraClaims, CoreGenderClaim>;
type ProviderKeys = JsonWebKeySet<CoreJsonWebKey>;

struct KeyCache {
    keys: ProviderKeys,
    last_refetch: Option<OffsetDateTime>,
}

fn discovery_error(provider: &str, issuer: &str, err: DiscoveryError<HttpError>) -> OidcError {
    let problem = match err {
        DiscoveryError::Request(source) => {
            return OidcError::Http {
                provider: provider.to_owned(),
                source,
            };
        }
        DiscoveryError::Validation(_) => {
            // The crate's own issuer comparison; report it like ours.
            return OidcError::IssuerMismatch {
                provider: provider.to_owned(),
                expected: issuer.to_owned(),
                found: "another issuer".to_owned(),
            };
        }
        DiscoveryError::Response(status, _, message) => {
            format!("unexpected response (HTTP {status}): {message}")
        }
        DiscoveryError::Parse(err) => format!("unparseable document at `{}`", err.path()),
        DiscoveryError::UrlParse(_) => "issuer cannot be joined with the discovery path".into(),
        DiscoveryError::Other(message) => message,
        _ => "unexpected discovery failure".into(),
    };
    OidcError::Discovery {
        provider: provider.to_owned(),
        problem,
    }
}

fn verification_error(err: ClaimsVerificationError) -> OidcError {
    match err {
        ClaimsVerificationError::SignatureVerification(err) => {
            OidcError::IdTokenSignature(err.to_string())
        }
        ClaimsVerificationError::InvalidIssuer(message) => OidcError::IdTokenIssuer(message),
        ClaimsVerificationError::InvalidAudience(message) => OidcError::IdTokenAudience(message),
        ClaimsVerificationError::Expired(_) => OidcError::IdTokenExpired,
        ClaimsVerificationError::InvalidNonce(_) => OidcError::IdTokenNonce,
        other => OidcError::IdTokenInvalid(other.to_string()),
    }
}

/// Reads an ID token (the compact JWS text) with the claims type that keeps the
/// non-standard claims.
fn parse_id_token(text: &str) -> Result<ProviderIdToken, OidcError> {
    text.parse()
        .map_err(|_| OidcError::IdTokenInvalid("unparseable ID token".into()))
}

/// Parses an ID token as [`OidcProvider::complete`] does and checks its header and
/// signature against an empty key set, so it can never be accepted. Public for the
/// fuzz targets (`gateway/fuzz`), which cannot build a provider without a network;
/// not part of the API.
#[doc(hidden)]
pub fn fuzz_id_token(token: &str) -> Result<(), OidcError> {
    let id_token = parse_id_token(token)?;
    let issuer = IssuerUrl::new("https://op.example.test".to_owned())
        .map_err(|err| OidcError::InvalidSettings(err.to_string()))?;
    let verifier = IdTokenVerifier::new_public_client(
        ClientId::new("fuzz".to_owned()),
        issuer,
        ProviderKeys::new(Vec::new()),
    )
    .set_allowed_algs([CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256]);
    id_token
        .signing_alg()
        .map_err(|err| OidcError::IdTokenSignature(err.to_string()))?;
    id_token
        .claims(&verifier, &Nonce::new("fuzz".to_owned()))
        .map(drop)
        .map_err(verification_error)
}

/// Compares two secrets without an early exit that depends on their content.
fn equal_secrets(left: &str, right: &str) -> bool {
    let left = Sha256::digest(left.as_bytes());
    let right = Sha256::digest(right.as_bytes());
    left.iter()
        .zip(right.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

/// An OAuth error code reduced to what RFC 6749 allows in it, and bounded, so an
/// attacker-chosen value cannot forge log lines.
fn safe_error_code(error: &str) -> String {
    error
        .chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .take(64)
        .collect()
}

/// Our time in the crate's type. Every `OffsetDateTime` fits; if one did not, the
/// latest representable time makes every token look expired (fail closed).
fn to_chrono(at: OffsetDateTime) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp(at.unix_timestamp(), at.nanosecond())
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MAX_UTC)
}

fn from_chrono(at: chrono::DateTime<chrono::Utc>) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(at.timestamp()).ok()
}
