//! Full sign-ins against a real, certified OpenID Provider: panva's `oidc-provider`
//! from `tests/peers/oidc` (installed by its `install.sh`), started on loopback per
//! test. The test plays the browser: it follows the authorization URL, submits the
//! provider's login and consent forms with cookies, and reads the redirect to our
//! callback. Without the peer the tests skip with a notice, and fail under `CI=true`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openidconnect::url::Url;

use super::super::*;

const CLIENT_ID: &str = "portcullis-test";
const CLIENT_SECRET: &str = "peer-client-secret";
const REDIRECT_URI: &str = "http://127.0.0.1:9/oidc/callback";

/// The provider process; killed (by its PID, through `Child`) when dropped.
struct Peer {
    child: Child,
    issuer: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn peer_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/oidc")
}

/// Starts the provider, or returns `None` (after a notice) when it is not installed
/// and this is not CI.
fn start_peer() -> Option<Peer> {
    let dir = peer_dir();
    let installed = dir.join("node_modules/oidc-provider/package.json").exists()
        && Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
    if !installed {
        let notice = "OIDC peer not installed: run tests/peers/oidc/install.sh";
        if std::env::var("CI").is_ok_and(|value| value == "true") {
            panic!("{notice}");
        }
        eprintln!("skipping OIDC peer test: {notice}");
        return None;
    }
    let mut child = Command::new("node")
        .arg("provider.mjs")
        .arg("0")
        .current_dir(&dir)
        .env("OIDC_PEER_CLIENT_ID", CLIENT_ID)
        .env("OIDC_PEER_CLIENT_SECRET", CLIENT_SECRET)
        .env("OIDC_PEER_REDIRECT_URIS", REDIRECT_URI)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting node");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = mpsc::channel();
    // Keep reading after the READY line: the provider logs notices to stdout and
    // would die of a broken pipe if nobody read them.
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(issuer) = line.strip_prefix("READY ") {
                let _ = ready_tx.send(issuer.to_owned());
            }
        }
    });
    let issuer = ready_rx
        .recv_timeout(std::time::Duration::from_secs(30))
        .expect("OIDC peer did not print its READY line within 30 s");
    Some(Peer { child, issuer })
}

impl Peer {
    fn settings(&self, extra: &str) -> OidcSettings {
        toml::from_str(&format!(
            "id = \"peer\"\nissuer = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nscopes = [\"openid\", \"email\", \"profile\", \"groups\"]\ngroups_claim = \"groups\"\ntrusted_mfa_amr = [\"otp\"]\nallowed_algs = [\"RS256\"]\n{extra}",
            self.issuer
        ))
        .unwrap()
    }

    async fn provider(&self) -> OidcProvider {
        discover(&self.settings(""), REDIRECT_URI).await.unwrap()
    }
}

/// A cookie-keeping HTTP client that stops at redirects, like a browser with a very
/// simple mind.
struct Browser {
    client: Client<HttpConnector, Full<Bytes>>,
    cookies: HashMap<String, String>,
}

struct Page {
    status: u16,
    location: Option<Url>,
    body: String,
}

impl Browser {
    fn new() -> Browser {
        Browser {
            client: Client::builder(TokioExecutor::new()).build(HttpConnector::new()),
            cookies: HashMap::new(),
        }
    }

    async fn send(&mut self, url: &Url, form: Option<String>) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ");
        let builder = ::http::Request::builder()
            .uri(url.as_str())
            .header("cookie", cookie);
        let request = match form {
            Some(form) => builder
                .method("POST")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(Full::new(Bytes::from(form))),
            None => builder.method("GET").body(Full::new(Bytes::new())),
        }
        .unwrap();
        let response = self.client.request(request).await.unwrap();
        for set_cookie in response.headers().get_all("set-cookie") {
            let pair = set_cookie.to_str().unwrap().split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                self.cookies.insert(name.trim().into(), value.trim().into());
            }
        }
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|location| url.join(location.to_str().unwrap()).unwrap());
        let body = response.into_body().collect().await.unwrap().to_bytes();
        Page {
            status,
            location,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    }

    /// Follows the authorization URL through login and consent to the redirect to
    /// our callback, and returns the callback's query.
    async fn sign_in(&mut self, authorize_url: &str, login: &str, password: &str) -> String {
        let mut url = Url::parse(authorize_url).unwrap();
        let mut form = None;
        for _ in 0..20 {
            let page = self.send(&url, form.take()).await;
            if let Some(location) = page.location {
                if location.as_str().starts_with(REDIRECT_URI) {
                    return location.query().unwrap_or_default().to_owned();
                }
                url = location;
                continue;
            }
            assert_eq!(page.status, 200, "{}", page.body);
            let action = page
                .body
                .split("action=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no form in {}", page.body));
            url = url.join(action).unwrap();
            form = Some(if page.body.contains("name=\"login\"") {
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("prompt", "login")
                    .append_pair("login", login)
                    .append_pair("password", password)
                    .finish()
            } else {
                "prompt=consent".to_owned()
            });
        }
        panic!("no redirect to the callback after 20 steps");
    }
}

/// A fresh sign-in up to the callback: the provider, what `begin` kept, and the
/// callback the provider sent the browser to.
async fn signed_in(
    peer: &Peer,
    login: &str,
    password: &str,
) -> (OidcProvider, PendingOidc, CallbackParams) {
    let provider = peer.provider().await;
    let (url, pending) = provider.begin(Some(Duration::from_secs(300)));
    let query = Browser::new().sign_in(&url, login, password).await;
    let callback = CallbackParams::from_query(&query).unwrap();
    (provider, pending, callback)
}

#[tokio::test]
async fn alice_signs_in_through_a_certified_provider() {
    let Some(peer) = start_peer() else { return };
    let (provider, pending, callback) = signed_in(&peer, "alice", "alice-password").await;
    assert!(
        provider.iss_param_required(),
        "the peer advertises RFC 9207"
    );
    let identity = provider
        .complete(&pending, &callback, crate::clock::now_utc())
        .await
        .unwrap();
    assert_eq!(identity.provider, "peer");
    assert_eq!(identity.subject, "alice");
    assert_eq!(identity.email.as_deref(), Some("alice@example.test"));
    assert!(identity.email_verified);
    assert_eq!(identity.display_name.as_deref(), Some("Alice Example"));
    assert_eq!(identity.groups, ["engineering", "admins"]);
    assert!(identity.mfa, "alice's amr includes the trusted `otp`");
    assert!(
        identity.auth_time.is_some(),
        "max_age was sent, so auth_time is back"
    );
}

#[tokio::test]
async fn bob_gets_a_single_string_group_an_unverified_email_and_no_mfa() {
    let Some(peer) = start_peer() else { return };
    let (provider, pending, callback) = signed_in(&peer, "bob", "bob-password").await;
    let identity = provider
        .complete(&pending, &callback, crate::clock::now_utc())
        .await
        .unwrap();
    assert_eq!(identity.subject, "bob");
    assert!(!identity.email_verified);
    assert_eq!(identity.groups, ["ops"]);
    assert!(!identity.mfa, "bob's amr is only `pwd`");
}

#[tokio::test]
async fn replayed_authorization_code_is_refused() {
    let Some(peer) = start_peer() else { return };
    let (provider, pending, callback) = signed_in(&peer, "alice", "alice-password").await;
    let now = crate::clock::now_utc();
    provider.complete(&pending, &callback, now).await.unwrap();
    let err = provider
        .complete(&pending, &callback, now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "oidc_token_exchange", "{err}");
    assert!(err.to_string().contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn tampered_callbacks_are_refused_before_the_code_is_spent() {
    let Some(peer) = start_peer() else { return };
    let (provider, pending, callback) = signed_in(&peer, "alice", "alice-password").await;
    let now = crate::clock::now_utc();
    let tampered = |change: &dyn Fn(&mut CallbackParams)| {
        let mut copy = CallbackParams {
            code: callback.code.clone(),
            state: callback.state.clone(),
            iss: callback.iss.clone(),
            error: None,
            error_description: None,
        };
        change(&mut copy);
        copy
    };

    let wrong_state = tampered(&|params| params.state = Some("forged-state".into()));
    let err = provider
        .complete(&pending, &wrong_state, now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "oidc_state_mismatch");

    let other_issuer = tampered(&|params| params.iss = Some("https://evil.example.test".into()));
    let err = provider
        .complete(&pending, &other_issuer, now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "oidc_iss_mismatch");

    let no_issuer = tampered(&|params| params.iss = None);
    let err = provider
        .complete(&pending, &no_issuer, now)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "oidc_iss_missing");

    // None of those reached the provider: the genuine callback still works.
    provider.complete(&pending, &callback, now).await.unwrap();
}

#[tokio::test]
async fn nonce_of_another_sign_in_is_refused() {
    let Some(peer) = start_peer() else { return };
    let (provider, pending, callback) = signed_in(&peer, "alice", "alice-password").await;
    let (_url, other) = provider.begin(None);
    // An attacker who knows this browser's state but injects a token minted for
    // another sign-in: everything matches except the nonce.
    let forged = PendingOidc {
        provider: pending.provider.clone(),
        state: pending.state.clone(),
        nonce: other.nonce.clone(),
        pkce_verifier: PkceCodeVerifier::new(pending.pkce_verifier.secret().clone()),
        max_age: pending.max_age,
        created: pending.created,
    };
    let err = provider
        .complete(&forged, &callback, crate::clock::now_utc())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "oidc_id_token_nonce", "{err}");
}

#[tokio::test]
async fn provider_error_on_the_callback_is_reported_without_its_description() {
    let Some(peer) = start_peer() else { return };
    let provider = peer.provider().await;
    let (_url, pending) = provider.begin(None);
    let query = format!(
        "error=access_denied&error_description=secret%20detail&state={}&iss={}",
        pending.state.secret(),
        form_urlencoded::byte_serialize(peer.issuer.as_bytes()).collect::<String>()
    );
    let callback = CallbackParams::from_query(&query).unwrap();
    let err = provider
        .complete(&pending, &callback, crate::clock::now_utc())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "oidc_provider_error");
    assert_eq!(err.to_string(), "provider returned error `access_denied`");
}
