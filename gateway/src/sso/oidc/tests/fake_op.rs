//! The token-level attacks, against a tiny fake provider on loopback that serves
//! discovery, a JWKS and a token endpoint returning whatever ID token the test crafted
//! (signed with ring keys made here).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::super::*;

const CLIENT_ID: &str = "portcullis";
const CLIENT_SECRET: &str = "fake-op-client-secret";
const REDIRECT_URI: &str = "https://gateway.example.test/oidc/callback";

/// An ES256 key with its `kid`.
struct SigningKey {
    kid: String,
    pair: EcdsaKeyPair,
}

impl SigningKey {
    fn generate(kid: &str) -> SigningKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        SigningKey {
            kid: kid.to_owned(),
            pair,
        }
    }

    fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        })
    }

    /// A compact JWS over `claims` with this key, naming `kid` (or no key id).
    fn sign_as(&self, kid: Option<&str>, claims: &Value) -> String {
        let header = match kid {
            Some(kid) => json!({"alg": "ES256", "typ": "JWT", "kid": kid}),
            None => json!({"alg": "ES256", "typ": "JWT"}),
        };
        let input = signing_input(&header, claims);
        let signature = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(Some(&self.kid), claims)
    }
}

fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

#[derive(Default)]
struct OpState {
    discovery_issuer: Option<String>,
    jwks_uri: Option<String>,
    token_endpoint: Option<String>,
    redirect_discovery: bool,
    oversized_discovery: bool,
    jwks: Value,
    id_token: String,
    jwks_fetches: usize,
    token_requests: Vec<String>,
}

/// The fake provider; its server task ends when it is dropped.
struct FakeOp {
    issuer: String,
    state: Arc<Mutex<OpState>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOp {
    async fn start(key: &SigningKey) -> FakeOp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let state = Arc::new(Mutex::new(OpState {
            jwks: json!({"keys": [key.jwk()]}),
            ..OpState::default()
        }));
        let server = tokio::spawn({
            let state = state.clone();
            let issuer = issuer.clone();
            async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let state = state.clone();
                    let issuer = issuer.clone();
                    tokio::spawn(async move {
                        let service = service_fn(move |request| {
                            respond(request, state.clone(), issuer.clone())
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            }
        });
        FakeOp {
            issuer,
            state,
            server,
        }
    }

    fn with<R>(&self, change: impl FnOnce(&mut OpState) -> R) -> R {
        change(&mut self.state.lock().unwrap())
    }

    fn settings(&self, extra: &str) -> OidcSettings {
        toml::from_str(&format!(
            "id = \"fake\"\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\ngroups_claim = \"groups\"\ntrusted_mfa_amr = [\"hwk\"]\n{extra}",
            self.issuer
        ))
        .unwrap()
    }

    async fn provider(&self, extra: &str) -> OidcProvider {
        discover(&self.settings(extra), REDIRECT_URI).await.unwrap()
    }

    /// Good claims for a sign-in with `nonce`, issued now.
    fn claims(&self, nonce: &str) -> Value {
        let now = crate::clock::now_utc().unix_timestamp();
        json!({
            "iss": self.issuer, "sub": "user-1", "aud": CLIENT_ID,
            "exp": now + 300, "iat": now, "auth_time": now - 10, "nonce": nonce,
            "email": "user@example.test", "email_verified": true, "name": "User One",
            "groups": ["staff", "admins"], "amr": ["pwd", "hwk"],
        })
    }
}

async fn respond(
    request: ::http::Request<Incoming>,
    state: Arc<Mutex<OpState>>,
    issuer: String,
) -> Result<::http::Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path().to_owned();
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let mut state = state.lock().unwrap();
    let json_response = |value: Value| {
        ::http::Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(value.to_string())))
            .unwrap()
    };
    let response = match path.as_str() {
        "/.well-known/openid-configuration" if state.redirect_discovery => {
            ::http::Response::builder()
                .status(302)
                .header("location", format!("{issuer}/elsewhere"))
                .body(Full::new(Bytes::new()))
                .unwrap()
        }
        "/.well-known/openid-configuration" if state.oversized_discovery => {
            ::http::Response::builder()
                .header("content-type", "application/json")
                .body(Full::new(Bytes::from(vec![
                    b' ';
                    2 * crate::sso::http::MAX_BODY
                ])))
                .unwrap()
        }
        "/.well-known/openid-configuration" => json_response(json!({
            "issuer": state.discovery_issuer.clone().unwrap_or_else(|| issuer.clone()),
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": state.token_endpoint.clone().unwrap_or_else(|| format!("{issuer}/token")),
            "jwks_uri": state.jwks_uri.clone().unwrap_or_else(|| format!("{issuer}/jwks")),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        })),
        "/jwks" => {
            state.jwks_fetches += 1;
            json_response(state.jwks.clone())
        }
        "/token" => {
            state
                .token_requests
                .push(String::from_utf8_lossy(&body).into_owned());
            json_response(json!({
                "access_token": "fake-access-token", "token_type": "Bearer",
                "expires_in": 300, "id_token": state.id_token,
            }))
        }
        _ => ::http::Response::builder()
            .status(404)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    };
    Ok(response)
}

/// Starts a sign-in, lets the fake provider answer with the token `craft` makes for
/// it, and completes it with a genuine callback.
async fn sign_in(
    op: &FakeOp,
    provider: &OidcProvider,
    max_age: Option<Duration>,
    craft: impl FnOnce(&PendingOidc) -> String,
) -> Result<ExternalIdentity, OidcError> {
    let (_url, pending) = provider.begin(max_age);
    let token = craft(&pending);
    op.with(|state| state.id_token = token);
    let callback = CallbackParams {
        code: Some("fake-code".into()),
        state: Some(pending.state.secret().clone()),
        ..CallbackParams::default()
    };
    provider
        .complete(&pending, &callback, crate::clock::now_utc())
        .await
}

fn nonce(pending: &PendingOidc) -> &str {
    pending.nonce.secret()
}

#[tokio::test]
async fn well_formed_es256_token_maps_to_identity_and_pkce_verifier_is_sent() {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    let identity = sign_in(&op, &provider, None, |pending| {
        key.sign(&op.claims(nonce(pending)))
    })
    .await
    .unwrap();
    assert_eq!(identity.provider, "fake");
    assert_eq!(identity.subject, "user-1");
    assert_eq!(identity.email.as_deref(), Some("user@example.test"));
    assert!(identity.email_verified);
    assert_eq!(identity.display_name.as_deref(), Some("User One"));
    assert_eq!(identity.groups, ["staff", "admins"]);
    assert!(identity.mfa);
    assert!(identity.auth_time.is_some());
    let requests = op.with(|state| state.token_requests.clone());
    assert_eq!(requests.len(), 1);
    assert!(requests[0].contains("code_verifier="));
    assert!(requests[0].contains("grant_type=authorization_code"));
}

#[tokio::test]
async fn token_without_kid_is_checked_against_the_only_key() {
    let key = SigningKey::generate("k1");
    let attacker = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    sign_in(&op, &provider, None, |pending| {
        key.sign_as(None, &op.claims(nonce(pending)))
    })
    .await
    .unwrap();
    let err = sign_in(&op, &provider, None, |pending| {
        attacker.sign_as(None, &op.claims(nonce(pending)))
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), "oidc_id_token_signature", "{err}");
}

#[tokio::test]
async fn token_signed_by_key_not_in_jwks_is_refused() {
    let key = SigningKey::generate("k1");
    let attacker = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    let err = sign_in(&op, &provider, None, |pending| {
        attacker.sign(&op.claims(nonce(pending)))
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), "oidc_id_token_signature", "{err}");
}

#[tokio::test]
async fn unknown_kid_refetches_jwks_at_most_once_per_interval() {
    let key = SigningKey::generate("k1");
    let attacker = SigningKey::generate("attacker");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    assert_eq!(op.with(|state| state.jwks_fetches), 1);
    for _ in 0..3 {
        let err = sign_in(&op, &provider, None, |pending| {
            attacker.sign(&op.claims(nonce(pending)))
        })
        .await
        .unwrap_err();
        assert_eq!(err.code(), "oidc_id_token_signature", "{err}");
    }
    assert_eq!(op.with(|state| state.jwks_fetches), 2);
}

#[tokio::test]
async fn rotated_signing_key_is_picked_up_by_one_jwks_refetch() {
    let old = SigningKey::generate("old");
    let new = SigningKey::generate("new");
    let op = FakeOp::start(&old).await;
    let provider = op.provider("").await;
    op.with(|state| state.jwks = json!({"keys": [new.jwk()]}));
    let identity = sign_in(&op, &provider, None, |pending| {
        new.sign(&op.claims(nonce(pending)))
    })
    .await
    .unwrap();
    assert_eq!(identity.subject, "user-1");
    assert_eq!(op.with(|state| state.jwks_fetches), 2);
}

#[tokio::test]
async fn alg_none_token_is_refused() {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    let err = sign_in(&op, &provider, None, |pending| {
        let input = signing_input(&json!({"alg": "none"}), &op.claims(nonce(pending)));
        format!("{input}.")
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), "oidc_id_token_signature", "{err}");
}

fn hs256(secret: &str, claims: &Value) -> String {
    let input = signing_input(&json!({"alg": "HS256", "typ": "JWT"}), claims);
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

#[tokio::test]
async fn hs256_token_keyed_with_client_secret_is_refused_unless_allowed() {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    let err = sign_in(&op, &provider, None, |pending| {
        hs256(CLIENT_SECRET, &op.claims(nonce(pending)))
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), "oidc_id_token_signature", "{err}");

    // Listed explicitly, HS256 works with the client secret as the key, and only it.
    let provider = op.provider("allowed_algs = [\"HS256\"]").await;
    sign_in(&op, &provider, None, |pending| {
        hs256(CLIENT_SECRET, &op.claims(nonce(pending)))
    })
    .await
    .unwrap();
    let err = sign_in(&op, &provider, None, |pending| {
        hs256("guessed-secret", &op.claims(nonce(pending)))
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), "oidc_id_token_signature", "{err}");
}

/// Signs good claims changed by `change`, and returns the sign-in's error code.
async fn refused_claims(
    max_age: Option<Duration>,
    change: impl FnOnce(&mut serde_json::Map<String, Value>),
) -> String {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    let err = sign_in(&op, &provider, max_age, |pending| {
        let mut claims = op.claims(nonce(pending));
        change(claims.as_object_mut().unwrap());
        key.sign(&claims)
    })
    .await
    .unwrap_err();
    err.code().to_owned()
}

#[tokio::test]
async fn token_for_another_audience_is_refused() {
    let code = refused_claims(None, |claims| {
        claims.insert("aud".into(), json!("another-client"));
    })
    .await;
    assert_eq!(code, "oidc_id_token_audience");
}

#[tokio::test]
async fn token_with_an_extra_untrusted_audience_is_refused() {
    let code = refused_claims(None, |claims| {
        claims.insert("aud".into(), json!([CLIENT_ID, "another-client"]));
        claims.insert("azp".into(), json!(CLIENT_ID));
    })
    .await;
    assert_eq!(code, "oidc_id_token_audience");
}

#[tokio::test]
async fn token_authorized_for_another_party_is_refused() {
    let code = refused_claims(None, |claims| {
        claims.insert("azp".into(), json!("another-client"));
    })
    .await;
    assert_eq!(code, "oidc_id_token_audience");
}

#[tokio::test]
async fn token_from_another_issuer_is_refused() {
    let code = refused_claims(None, |claims| {
        claims.insert("iss".into(), json!("https://evil.example.test"));
    })
    .await;
    assert_eq!(code, "oidc_id_token_issuer");
}

#[tokio::test]
async fn expired_token_is_refused() {
    let code = refused_claims(None, |claims| {
        let now = crate::clock::now_utc().unix_timestamp();
        claims.insert("iat".into(), json!(now - 600));
        claims.insert("exp".into(), json!(now - 120));
    })
    .await;
    assert_eq!(code, "oidc_id_token_expired");
}

#[tokio::test]
async fn token_issued_in_the_future_is_refused() {
    let code = refused_claims(None, |claims| {
        let now = crate::clock::now_utc().unix_timestamp();
        claims.insert("iat".into(), json!(now + 600));
        claims.insert("exp".into(), json!(now + 900));
    })
    .await;
    assert_eq!(code, "oidc_id_token_iat_future");
}

#[tokio::test]
async fn token_with_another_nonce_is_refused() {
    let code = refused_claims(None, |claims| {
        claims.insert("nonce".into(), json!("a-nonce-from-another-sign-in"));
    })
    .await;
    assert_eq!(code, "oidc_id_token_nonce");
}

#[tokio::test]
async fn token_without_nonce_is_refused() {
    let code = refused_claims(None, |claims| {
        claims.remove("nonce");
    })
    .await;
    assert_eq!(code, "oidc_id_token_nonce");
}

#[tokio::test]
async fn authentication_older_than_max_age_is_refused() {
    let code = refused_claims(Some(Duration::from_secs(300)), |claims| {
        let now = crate::clock::now_utc().unix_timestamp();
        claims.insert("auth_time".into(), json!(now - 3600));
    })
    .await;
    assert_eq!(code, "oidc_auth_too_old");
}

#[tokio::test]
async fn missing_auth_time_is_refused_when_max_age_was_requested() {
    let code = refused_claims(Some(Duration::from_secs(300)), |claims| {
        claims.remove("auth_time");
    })
    .await;
    assert_eq!(code, "oidc_auth_too_old");
}

#[tokio::test]
async fn groups_claim_of_the_wrong_type_is_refused() {
    let code = refused_claims(None, |claims| {
        claims.insert("groups".into(), json!({"admin": true}));
    })
    .await;
    assert_eq!(code, "oidc_id_token_invalid");
}

#[tokio::test]
async fn untrusted_amr_is_not_mfa_and_single_string_group_is_kept() {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    let identity = sign_in(&op, &provider, None, |pending| {
        let mut claims = op.claims(nonce(pending));
        claims["amr"] = json!(["pwd", "otp"]);
        claims["groups"] = json!("staff");
        key.sign(&claims)
    })
    .await
    .unwrap();
    assert!(!identity.mfa);
    assert_eq!(identity.groups, ["staff"]);
}

async fn discovery_error_code(change: impl FnOnce(&mut OpState, &str)) -> (String, String) {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let issuer = op.issuer.clone();
    op.with(|state| change(state, &issuer));
    let err = discover(&op.settings(""), REDIRECT_URI).await.unwrap_err();
    (err.code().to_owned(), err.to_string())
}

#[tokio::test]
async fn discovery_document_naming_another_issuer_is_refused() {
    let (code, _) = discovery_error_code(|state, issuer| {
        state.discovery_issuer = Some(format!("{issuer}/other"));
    })
    .await;
    assert_eq!(code, "oidc_issuer_mismatch");
}

#[tokio::test]
async fn discovery_issuer_differing_only_by_trailing_slash_is_refused() {
    let (code, _) = discovery_error_code(|state, issuer| {
        state.discovery_issuer = Some(format!("{issuer}/"));
    })
    .await;
    assert_eq!(code, "oidc_issuer_mismatch");
}

#[tokio::test]
async fn redirect_from_discovery_url_is_not_followed() {
    let (code, message) = discovery_error_code(|state, _| state.redirect_discovery = true).await;
    assert_eq!(code, "oidc_http");
    assert!(message.contains("redirect status 302"), "{message}");
}

#[tokio::test]
async fn oversized_discovery_document_is_refused() {
    let (code, message) = discovery_error_code(|state, _| state.oversized_discovery = true).await;
    assert_eq!(code, "oidc_http");
    assert!(message.contains("larger than"), "{message}");
}

#[tokio::test]
async fn jwks_url_on_another_host_is_refused() {
    let (code, message) = discovery_error_code(|state, issuer| {
        state.jwks_uri = Some(issuer.replace("127.0.0.1", "localhost") + "/jwks");
    })
    .await;
    assert_eq!(code, "oidc_http");
    assert!(message.contains("not the issuer's host"), "{message}");
}

#[tokio::test]
async fn token_endpoint_on_another_host_is_refused() {
    let (code, message) = discovery_error_code(|state, _| {
        state.token_endpoint = Some("http://169.254.169.254/latest/meta-data".into());
    })
    .await;
    assert_eq!(code, "oidc_http");
    assert!(message.contains("not the issuer's host"), "{message}");
}

#[tokio::test]
async fn pending_sign_in_for_another_provider_is_refused() {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    let (_url, mut pending) = provider.begin(None);
    pending.provider = "other".into();
    let callback = CallbackParams {
        code: Some("fake-code".into()),
        state: Some(pending.state.secret().clone()),
        ..CallbackParams::default()
    };
    let err = provider
        .complete(&pending, &callback, crate::clock::now_utc())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "oidc_wrong_provider");
}

#[tokio::test]
async fn stale_pending_sign_in_is_refused() {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    let (_url, pending) = provider.begin(None);
    let callback = CallbackParams {
        code: Some("fake-code".into()),
        state: Some(pending.state.secret().clone()),
        ..CallbackParams::default()
    };
    let later = crate::clock::now_utc() + PENDING_LIFETIME + Duration::from_secs(1);
    let err = provider
        .complete(&pending, &callback, later)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "oidc_pending_expired");
    assert!(op.with(|state| state.token_requests.is_empty()));
}

#[tokio::test]
async fn begin_sends_pkce_s256_state_nonce_and_max_age() {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op
        .provider("scopes = [\"openid\", \"email\", \"groups\"]")
        .await;
    let (url, pending) = provider.begin(Some(Duration::from_secs(300)));
    let url = openidconnect::url::Url::parse(&url).unwrap();
    let query: HashMap<String, String> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["response_type"], "code");
    assert_eq!(query["max_age"], "300");
    assert_eq!(query["scope"], "openid email groups");
    assert_eq!(query["state"], *pending.state.secret());
    assert_eq!(query["nonce"], *pending.nonce.secret());
    // 32 random bytes, base64url: 43 characters.
    assert_eq!(pending.state.secret().len(), 43);
    assert_eq!(pending.nonce.secret().len(), 43);
    let debug = format!("{pending:?}");
    assert!(!debug.contains(pending.state.secret().as_str()));
    assert!(!debug.contains(pending.pkce_verifier.secret().as_str()));
}

#[tokio::test]
async fn missing_iss_is_refused_when_the_gateway_requires_it() {
    let key = SigningKey::generate("k1");
    let op = FakeOp::start(&key).await;
    let provider = op.provider("").await;
    assert!(
        !provider.iss_param_required(),
        "the fake provider does not advertise RFC 9207"
    );
    let provider = provider.require_iss_param();
    let err = sign_in(&op, &provider, None, |pending| {
        key.sign(&op.claims(nonce(pending)))
    })
    .await
    .unwrap_err();
    assert_eq!(err.code(), "oidc_iss_missing");
    assert!(op.with(|state| state.token_requests.is_empty()));
}
