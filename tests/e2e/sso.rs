//! Single sign-on end to end through the real binary, against real identity providers
//! started by the test: panva's certified `oidc-provider` (npm) and a `pysaml2` IdP
//! (PyPI). The test plays the browser across both sites, keeping cookies per host.

use std::collections::HashMap;
use std::process::Command;

use crate::login::signed_in_setup_then;
use crate::peers::{Peer, peer_dir, python};
use crate::support::{EchoUpstream, Gateway, TempDir, admin_cli, header_values, raw_exchange};

/// A browser that follows nothing on its own and keeps cookies per `host:port`.
#[derive(Default)]
struct Browser {
    jars: HashMap<String, HashMap<String, String>>,
}

struct Answer {
    status: u16,
    location: Option<String>,
    body: String,
}

/// (`host:port`, path and query) of an absolute `http://` URL.
fn split_url(url: &str) -> (String, String) {
    let rest = url
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("not http: {url}"));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (
        host.to_owned(),
        if path.is_empty() {
            "/".to_owned()
        } else {
            path.to_owned()
        },
    )
}

impl Browser {
    async fn send(&mut self, url: &str, form: Option<&str>) -> Answer {
        let (host, path) = split_url(url);
        let jar = self.jars.entry(host.clone()).or_default();
        let cookies: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut request = format!(
            "{} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: text/html\r\n",
            if form.is_some() { "POST" } else { "GET" }
        );
        if !cookies.is_empty() {
            request.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        if let Some(form) = form {
            request.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            ));
        } else {
            request.push_str("\r\n");
        }
        let response = raw_exchange(host.parse().unwrap(), request.as_bytes()).await;
        let header = |line: &str, name: &str| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        };
        for line in response.head.lines() {
            let Some(cookie) = header(line, "set-cookie") else {
                continue;
            };
            let pair = cookie.split(';').next().unwrap();
            if let Some((name, value)) = pair.split_once('=') {
                if value.is_empty() || cookie.contains("Max-Age=0") {
                    jar.remove(name);
                } else {
                    jar.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        let location = response
            .head
            .lines()
            .find_map(|line| header(line, "location"))
            .map(|to| {
                if to.starts_with("http://") {
                    to
                } else {
                    format!("http://{host}{to}")
                }
            });
        Answer {
            status: response.status,
            location,
            body: response.body,
        }
    }

    fn cookie(&self, base: &str, name: &str) -> Option<String> {
        self.jars.get(&split_url(base).0)?.get(name).cloned()
    }

    fn forget(&mut self, base: &str, name: &str) {
        if let Some(jar) = self.jars.get_mut(&split_url(base).0) {
            jar.remove(name);
        }
    }
}

fn attribute(body: &str, marker: &str) -> String {
    let start = body
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {body}"))
        + marker.len();
    html_unescape(body[start..].split('"').next().unwrap())
}

fn html_unescape(text: &str) -> String {
    text.replace("&amp;", "&")
        .replace("&#x2B;", "+")
        .replace("&#43;", "+")
        .replace("&#x3D;", "=")
        .replace("&#61;", "=")
}

/// Starts at the gateway and returns the SAMLResponse of the IdP's auto-submit form
/// (`flags` are the test IdP's misbehaviour switches).
async fn answer_form(browser: &mut Browser, start: &str, flags: &str) -> String {
    let started = browser.send(start, None).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let to_idp = started.location.unwrap();
    let form = browser.send(&format!("{to_idp}{flags}"), None).await;
    assert_eq!(form.status, 200, "{}", form.body);
    form_field(&form.body, "SAMLResponse")
}

fn form_field(body: &str, name: &str) -> String {
    attribute(body, &format!("name=\"{name}\" value=\""))
}

/// The OpenID Provider, or `None` (skip) when it is not installed outside CI.
fn start_oidc_provider(redirect_uri: &str) -> Option<(Peer, String)> {
    let dir = peer_dir("oidc");
    if !dir.join("node_modules/oidc-provider/package.json").exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "peer `oidc` is not installed; CI must run tests/peers/oidc/install.sh"
        );
        eprintln!(
            "notice: skipping: peer `oidc` is not installed (run tests/peers/oidc/install.sh)"
        );
        return None;
    }
    let mut command = Command::new("node");
    command
        .arg("provider.mjs")
        .arg("0")
        .current_dir(&dir)
        .env("OIDC_PEER_CLIENT_ID", "portcullis-e2e")
        .env("OIDC_PEER_CLIENT_SECRET", "e2e-client-secret")
        .env("OIDC_PEER_REDIRECT_URIS", redirect_uri);
    Some(Peer::start(command))
}

/// Through the provider's login and consent pages, back to the gateway's callback.
async fn oidc_login(browser: &mut Browser, start: &str, login: &str, password: &str) -> String {
    let started = browser.send(start, None).await;
    assert_eq!(started.status, 303, "{}", started.body);
    let mut url = started.location.unwrap();
    let mut form: Option<String> = None;
    for _ in 0..20 {
        if url.contains("/.portcullis/sso/oidc/") && url.contains("/callback") {
            return url;
        }
        let answer = browser.send(&url, form.as_deref()).await;
        form = None;
        if let Some(next) = answer.location {
            url = next;
            continue;
        }
        assert_eq!(answer.status, 200, "{}", answer.body);
        let action = attribute(&answer.body, "action=\"");
        url = format!("http://{}{action}", split_url(&url).0);
        form = Some(if answer.body.contains("name=\"login\"") {
            form_urlencoded::Serializer::new(String::new())
                .append_pair("prompt", "login")
                .append_pair("login", login)
                .append_pair("password", password)
                .finish()
        } else {
            "prompt=consent".to_owned()
        });
    }
    panic!("never came back to the callback");
}

fn oidc_table(issuer: &str) -> String {
    format!(
        "[[sso.oidc]]\nid = \"corp\"\ndisplay_name = \"Corp ID\"\nissuer = \"{issuer}\"\n\
         client_id = \"portcullis-e2e\"\nclient_secret = \"e2e-client-secret\"\n\
         scopes = [\"openid\", \"email\", \"profile\", \"groups\"]\ngroups_claim = \"groups\"\n\
         trusted_mfa_amr = [\"otp\"]\nprovision = true\n\
         roles = [{{ group = \"engineering\", role = \"operator\", scope = 'App::\"app\"' }}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oidc_sign_in_provisions_maps_groups_and_keeps_the_2fa_rule() {
    let mut peer = None;
    let (upstream, gateway, _olga, _workspace, organization): (EchoUpstream, Gateway, _, _, _) =
        signed_in_setup_then(false, "", |base| {
            let Some((provider, issuer)) =
                start_oidc_provider(&format!("{base}/.portcullis/sso/oidc/corp/callback"))
            else {
                return String::new();
            };
            peer = Some(provider);
            format!("[sso]\npublic_url = \"{base}\"\n{}", oidc_table(&issuer))
        })
        .await;
    if peer.is_none() {
        return;
    }
    let base = format!("http://{}", gateway.addr);
    let mut browser = Browser::default();

    let page = browser
        .send(&format!("{base}/.portcullis/login?rd=%2Freports"), None)
        .await;
    assert!(page.body.contains("Sign in with Corp ID"), "{}", page.body);
    let start = format!("{base}/.portcullis/sso/oidc/corp/start?rd=%2Freports");

    // Alice: unknown here, provisioned, `engineering` → operator on the app, and her
    // provider asserted a trusted second factor (`otp`).
    let callback = oidc_login(&mut browser, &start, "alice", "alice-password").await;
    let signed_in = browser.send(&callback, None).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(
        signed_in.location.as_deref(),
        Some(format!("{base}/reports").as_str())
    );
    assert!(browser.cookie(&base, "__Host-portcullis").is_some());
    let app = browser.send(&format!("{base}/reports"), None).await;
    assert_eq!(app.status, 200, "the mapped role lets her in: {}", app.body);
    let seen = upstream.seen();
    let headers = &seen.last().unwrap().headers;
    assert_eq!(header_values(headers, "x-portcullis-auth-method"), ["oidc"]);

    // The callback works once: replaying it (state gone with the pending sign-in).
    let replay = browser.send(&callback, None).await;
    assert_eq!(replay.status, 400, "{}", replay.body);

    // A callback in a browser that did not start the sign-in is refused.
    let mut other = Browser::default();
    let callback = oidc_login(&mut browser, &start, "alice", "alice-password").await;
    let foreign = other.send(&callback, None).await;
    assert_eq!(foreign.status, 400);
    assert!(other.cookie(&base, "__Host-portcullis").is_none());

    // 2FA required: Bob's provider asserted no trusted MFA, so he must enrol here.
    admin_cli(
        &gateway.config,
        &[
            "org",
            "settings",
            "--organization",
            &organization,
            "--require-2fa",
            "true",
        ],
    );
    // (A fresh browser: the provider remembers who signed in there.)
    let mut browser = Browser::default();
    let callback = oidc_login(&mut browser, &start, "bob", "bob-password").await;
    let bob = browser.send(&callback, None).await;
    assert_eq!(bob.status, 303);
    assert_eq!(
        bob.location.as_deref(),
        Some(format!("{base}/.portcullis/2fa").as_str())
    );
    assert!(
        browser.cookie(&base, "__Host-portcullis").is_none(),
        "no session before 2FA"
    );
    // Alice's trusted `otp` counts as the second factor.
    let mut browser = Browser::default();
    let callback = oidc_login(&mut browser, &start, "alice", "alice-password").await;
    let alice = browser.send(&callback, None).await;
    assert_eq!(
        alice.location.as_deref(),
        Some(format!("{base}/reports").as_str())
    );

    // SSO required: the password form disappears and password sign-in is refused.
    admin_cli(
        &gateway.config,
        &[
            "org",
            "settings",
            "--organization",
            &organization,
            "--require-sso",
            "true",
        ],
    );
    let page = browser
        .send(&format!("{base}/.portcullis/login"), None)
        .await;
    assert!(!page.body.contains("name=\"password\""), "{}", page.body);
    assert!(page.body.contains("Sign in with Corp ID"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn saml_sign_in_and_tampered_or_unsolicited_answers() {
    let Some(python) = python("saml") else { return };
    let dir = TempDir::new("saml");
    let sp_metadata = dir.path().join("sp-metadata.xml");
    let mut command = Command::new(python);
    command
        .arg(peer_dir("saml").join("idp.py"))
        .arg("--sp-metadata")
        .arg(&sp_metadata)
        .env("PYTHONWARNINGS", "ignore");
    let (_idp, idp_base) = Peer::start(command);
    let mut browser = Browser::default();

    let (upstream, gateway, ..) = signed_in_setup_then(false, "", |base| {
        format!(
            "[sso]\npublic_url = \"{base}\"\n[[sso.saml]]\nid = \"idp\"\ndisplay_name = \"Test IdP\"\n\
             idp_metadata_url = \"{idp_base}/metadata\"\nprovision = true\n\
             roles = [{{ group = \"engineering\", role = \"operator\", scope = 'App::\"app\"' }}]\n",
        )
    })
    .await;
    let base = format!("http://{}", gateway.addr);
    let ours = browser
        .send(&format!("{base}/.portcullis/sso/saml/idp/metadata"), None)
        .await;
    assert_eq!(ours.status, 200);
    assert!(
        ours.body.contains("/.portcullis/sso/saml/idp/acs"),
        "{}",
        ours.body
    );
    std::fs::write(&sp_metadata, &ours.body).unwrap();

    let start = format!("{base}/.portcullis/sso/saml/idp/start?rd=%2Freports");
    let acs = format!("{base}/.portcullis/sso/saml/idp/acs");
    let post = |response: &str| {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("SAMLResponse", response)
            .finish()
    };

    let response = answer_form(&mut browser, &start, "").await;
    let signed_in = browser.send(&acs, Some(&post(&response))).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(
        signed_in.location.as_deref(),
        Some(format!("{base}/reports").as_str())
    );
    let app = browser.send(&format!("{base}/reports"), None).await;
    assert_eq!(app.status, 200, "{}", app.body);
    let seen = upstream.seen();
    assert_eq!(
        header_values(&seen.last().unwrap().headers, "x-portcullis-auth-method"),
        ["saml"]
    );

    // Replayed to another browser (no pending sign-in there): refused.
    let mut other = Browser::default();
    let replay = other.send(&acs, Some(&post(&response))).await;
    assert_eq!(replay.status, 401, "{}", replay.body);
    assert!(other.cookie(&base, "__Host-portcullis").is_none());

    // A real answer, tampered (the NameID edited after signing): refused.
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    browser.forget(&base, "__Host-portcullis");
    let response = answer_form(&mut browser, &start, "").await;
    let xml = String::from_utf8(engine.decode(&response).unwrap()).unwrap();
    let tampered = xml.replace("u-4f1c2a9e-alice", "u-4f1c2a9e-admin");
    assert_ne!(tampered, xml);
    let refused = browser
        .send(&acs, Some(&post(&engine.encode(tampered))))
        .await;
    assert_eq!(refused.status, 401, "{}", refused.body);
    assert!(browser.cookie(&base, "__Host-portcullis").is_none());

    // Signed by a key that is not in the IdP's metadata: refused.
    let response = answer_form(&mut browser, &start, "&test_key=other").await;
    let refused = browser.send(&acs, Some(&post(&response))).await;
    assert_eq!(refused.status, 401);
    assert!(browser.cookie(&base, "__Host-portcullis").is_none());
}
