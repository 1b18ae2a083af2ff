//! Tests of the SAML service provider against a real IdP (pysaml2, started by the
//! tests from `tests/peers/saml/idp.py`), using its real signed responses and
//! tampered copies of them. Without the peer installed (`tests/peers/saml/install.sh`)
//! these tests print a notice and pass, except under `CI=true`, where they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use base64::Engine;
use expect_test::{Expect, expect};
use time::{Duration, OffsetDateTime};

use super::*;

const BASE: &str = "https://gw.example.test";
const ACS: &str = "https://gw.example.test/.portcullis/sso/saml/corp/acs";
const SP_ENTITY: &str = "https://gw.example.test/.portcullis/sso/saml/corp/metadata";
const MFA: &str = "https://refeds.org/profile/mfa";
const ALICE: &str = "u-4f1c2a9e-alice";

fn settings() -> SamlSettings {
    SamlSettings {
        id: "corp".to_string(),
        idp_metadata_file: Some(PathBuf::from("idp.xml")),
        idp_metadata_url: None,
        sp_entity_id: None,
        allow_idp_initiated: false,
        max_clock_skew_secs: 60,
        email_attribute: None,
        name_attribute: None,
        groups_attribute: None,
        trusted_mfa_contexts: vec![MFA.to_string()],
        allowed_algorithms: default_allowed_algorithms(),
        display_name: None,
    }
}

fn b64(xml: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(xml)
}

fn unb64(text: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .expect("base64");
    String::from_utf8(bytes).expect("utf-8")
}

/// The pysaml2 IdP, running on loopback for one test; killed (by its PID) on drop.
struct Idp {
    child: Child,
    base: String,
    dir: PathBuf,
}

/// A response the IdP produced for a login we started.
struct Login {
    xml: String,
    pending: PendingSaml,
}

impl Idp {
    /// Starts the IdP, or says why not: a notice outside CI, a failure under CI.
    fn start() -> Option<Idp> {
        let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/peers/saml");
        let python = peer.join(".venv/bin/python");
        let xmlsec1 = Command::new("xmlsec1")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !python.exists() || !xmlsec1 {
            let message = "SAML IdP peer not installed: run tests/peers/saml/install.sh";
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("{message}");
            }
            eprintln!("notice: skipping: {message}");
            return None;
        }
        let dir = std::env::temp_dir().join(format!(
            "portcullis-saml-{}",
            crate::crypto::random::random_hex256()
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut child = Command::new(python)
            .arg(peer.join("idp.py"))
            .arg("--sp-metadata")
            .arg(dir.join("sp-metadata.xml"))
            .env("PYTHONWARNINGS", "ignore")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start idp.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read idp.py output");
        let base = line
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("idp.py did not start: {line:?}"))
            .trim()
            .to_string();
        Some(Idp { child, base, dir })
    }

    fn get(&self, path_and_query: &str) -> String {
        let host = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).expect("connect to idp");
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .expect("timeout");
        write!(
            stream,
            "GET {path_and_query} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read");
        let (head, body) = answer.split_once("\r\n\r\n").expect("http answer");
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "{head}\n{body}"
        );
        body.to_string()
    }

    fn metadata(&self) -> String {
        self.get("/metadata")
    }

    /// A provider for this IdP; its SP metadata is written where the IdP reads it.
    fn provider(&self, settings: &SamlSettings) -> SamlProvider {
        let provider = SamlProvider::new(settings, &self.metadata(), BASE).expect("provider");
        let sp_metadata = provider.metadata_xml().expect("sp metadata");
        std::fs::write(self.dir.join("sp-metadata.xml"), sp_metadata).expect("write");
        provider
    }

    /// Starts a login and follows the redirect like a browser, with test `flags`
    /// (`&test_x=y...`) for the IdP; returns the XML of the SAMLResponse it posts back.
    fn login(&self, provider: &SamlProvider, flags: &str) -> Login {
        let (url, pending) = provider.begin("state-1").expect("begin");
        let path = url
            .strip_prefix(&self.base)
            .unwrap_or_else(|| panic!("redirect {url} is not to the IdP {}", self.base));
        assert!(path.starts_with("/sso?SAMLRequest="), "{path}");
        let form = self.get(&format!("{path}{flags}"));
        assert!(form.contains(&format!("action=\"{ACS}\"")), "{form}");
        assert!(
            form.contains("name=\"RelayState\" value=\"state-1\""),
            "{form}"
        );
        Login {
            xml: unb64(&form_value(&form, "SAMLResponse")),
            pending,
        }
    }

    /// A response the IdP sends without a request (IdP-initiated login).
    fn unsolicited(&self, flags: &str) -> String {
        let form = self.get(&format!("/unsolicited?sp={SP_ENTITY}{flags}"));
        unb64(&form_value(&form, "SAMLResponse"))
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn form_value(form: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = form.find(&marker).expect("form field") + marker.len();
    let end = form[start..].find('"').expect("end of value") + start;
    form[start..end].to_string()
}

fn now() -> OffsetDateTime {
    crate::clock::now_utc()
}

fn complete(
    provider: &SamlProvider,
    xml: &str,
    pending: &PendingSaml,
) -> Result<ExternalIdentity, SamlError> {
    provider.complete(&b64(xml), Some(pending), now())
}

/// The code of the error, or the subject if the response was (wrongly) accepted.
fn outcome(result: Result<ExternalIdentity, SamlError>) -> String {
    match result {
        Ok(identity) => format!("ACCEPTED as {}", identity.subject),
        Err(error) => format!("{}: {error}", error.code()),
    }
}

/// The text between `open` (the start of a tag) and the end of its element.
fn element<'x>(xml: &'x str, open: &str, close: &str) -> &'x str {
    let start = xml.find(open).unwrap_or_else(|| panic!("{open} in {xml}"));
    let end = xml[start..].find(close).expect("close") + start + close.len();
    &xml[start..end]
}

fn signed_assertion(xml: &str) -> &str {
    element(xml, "<ns1:Assertion ", "</ns1:Assertion>")
}

fn signature(xml: &str) -> &str {
    element(xml, "<ns2:Signature", "</ns2:Signature>")
}

/// An unsigned copy of the assertion that names `admin` instead of Alice.
fn evil_assertion(xml: &str) -> String {
    let assertion = signed_assertion(xml);
    let id_start = assertion.find(" ID=\"").expect("ID") + 5;
    let id_end = assertion[id_start..].find('"').expect("ID end") + id_start;
    let unsigned = match assertion.contains("<ns2:Signature") {
        true => assertion.replace(signature(assertion), ""),
        false => assertion.to_string(),
    };
    unsigned
        .replace(&assertion[id_start..id_end], "_evil")
        .replace(ALICE, "admin")
}

#[test]
fn provider_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<SamlProvider>();
}

#[test]
fn real_idp_login_yields_persistent_subject_email_name_groups_mfa_and_auth_time() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    let identity = complete(&provider, &login.xml, &login.pending).expect("login");
    assert_eq!(identity.provider, "corp");
    assert_eq!(identity.subject, ALICE);
    assert_eq!(identity.email.as_deref(), Some("alice@example.com"));
    assert!(!identity.email_verified);
    assert_eq!(identity.display_name.as_deref(), Some("Alice Example"));
    assert_eq!(identity.groups, ["engineering", "admins"]);
    assert!(identity.mfa);
    let auth_time = identity.auth_time.expect("auth time");
    assert!((now() - auth_time).abs() < Duration::minutes(2));
}

#[test]
fn responses_signed_on_the_response_or_on_both_are_accepted() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    for sign in ["response", "both"] {
        let login = idp.login(&provider, &format!("&test_sign={sign}"));
        let identity = complete(&provider, &login.xml, &login.pending)
            .unwrap_or_else(|e| panic!("signed on {sign}: {e}"));
        assert_eq!(identity.subject, ALICE);
    }
}

#[test]
fn mfa_is_false_when_the_context_is_not_trusted_and_attribute_names_are_configurable() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&SamlSettings {
        trusted_mfa_contexts: vec![],
        email_attribute: Some("urn:example:no-such-attribute".to_string()),
        groups_attribute: Some("urn:oid:2.16.840.1.113730.3.1.241".to_string()),
        ..settings()
    });
    let login = idp.login(&provider, "");
    let identity = complete(&provider, &login.xml, &login.pending).expect("login");
    assert!(!identity.mfa);
    assert_eq!(identity.email, None);
    assert_eq!(identity.groups, ["Alice Example"]);
}

#[test]
fn unsigned_response_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_sign=none");
    let result = complete(&provider, &login.xml, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("signature"));
}

#[test]
fn real_response_with_its_signature_removed_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    let stripped = login.xml.replace(signature(&login.xml), "");
    let result = complete(&provider, &stripped, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("signature"));
    complete(&provider, &login.xml, &login.pending).expect("the untouched response still passes");
}

#[test]
fn signature_by_a_key_not_in_the_metadata_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    for sign in ["assertion", "response"] {
        let login = idp.login(&provider, &format!("&test_key=other&test_sign={sign}"));
        let result = complete(&provider, &login.xml, &login.pending);
        assert_eq!(
            result.map_err(|e| e.code()),
            Err("signature"),
            "signed on {sign}"
        );
    }
}

#[test]
fn nameid_changed_after_signing_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    let tampered = login.xml.replace(ALICE, "admin");
    let result = complete(&provider, &tampered, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("signature"));
}

#[test]
fn sha1_signatures_are_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_alg=sha1");
    assert!(login.xml.contains("xmldsig#rsa-sha1"));
    let result = complete(&provider, &login.xml, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("signature"));
}

#[test]
fn signature_wrapping_variants_are_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    let xml = login.xml.as_str();
    let signed = signed_assertion(xml);
    let evil = evil_assertion(xml);
    let sig = signature(signed);
    let unsigned_original = signed.replace(sig, "");
    let evil_with_signature = evil.replacen("</ns1:Issuer>", &format!("</ns1:Issuer>{sig}"), 1);
    let cases: Vec<(&str, String)> = vec![
        (
            "XSW3 evil assertion before the signed one",
            xml.replace(signed, &format!("{evil}{signed}")),
        ),
        (
            "XSW3 evil assertion after the signed one",
            xml.replace(signed, &format!("{signed}{evil}")),
        ),
        (
            "XSW4 evil assertion wrapping the signed one",
            xml.replace(
                signed,
                &evil.replace("</ns1:Assertion>", &format!("{signed}</ns1:Assertion>")),
            ),
        ),
        (
            "XSW5 signature moved to the evil assertion, original after it",
            xml.replace(signed, &format!("{evil_with_signature}{unsigned_original}")),
        ),
        (
            "XSW6 original inside the evil assertion's Signature/Object",
            xml.replace(
                signed,
                &evil_with_signature.replace(
                    "</ns2:Signature>",
                    &format!("<ns2:Object>{unsigned_original}</ns2:Object></ns2:Signature>"),
                ),
            ),
        ),
        (
            "XSW7 signed assertion hidden in Extensions",
            xml.replace(
                signed,
                &format!("<ns0:Extensions>{signed}</ns0:Extensions>{evil}"),
            ),
        ),
        (
            "XSW8 original without signature inside the moved Signature's Object",
            xml.replace(
                signed,
                &evil_with_signature.replace(
                    "</ns2:SignatureValue>",
                    &format!("</ns2:SignatureValue><ns2:Object>{unsigned_original}</ns2:Object>"),
                ),
            ),
        ),
        (
            "evil assertion alone, carrying the real signature",
            xml.replace(signed, &evil_with_signature),
        ),
    ];
    for (name, attack) in &cases {
        assert_ne!(attack, xml, "{name}: the attack changed nothing");
        let result = complete(&provider, attack, &login.pending);
        println!("{name}: {}", outcome(result.clone()));
        assert!(result.is_err(), "{name}: {}", outcome(result));
        // The second layer: samael alone (without our structural checks) must not
        // hand out the evil assertion either.
        let samael_alone =
            provider.verify_signed_assertion(attack, Some(&login.pending.request_id));
        println!(
            "{name}, samael alone: {:?}",
            samael_alone
                .as_ref()
                .map(|a| &a.id)
                .map_err(SamlError::code)
        );
        if let Ok(assertion) = samael_alone {
            let subject = assertion.subject.and_then(|s| s.name_id).map(|n| n.value);
            assert_eq!(
                subject.as_deref(),
                Some(ALICE),
                "{name}: samael read the evil assertion"
            );
        }
    }
    complete(&provider, xml, &login.pending).expect("the untouched response still passes");
}

#[test]
fn response_signed_wrapped_in_an_unsigned_evil_response_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_sign=response");
    let xml = login
        .xml
        .trim_start_matches("<?xml version=\"1.0\"?>")
        .trim();
    let evil = evil_assertion(xml);
    let response_start = element(xml, "<ns0:Response ", ">");
    let attack = format!(
        "{}<ns0:Extensions>{xml}</ns0:Extensions><ns0:Status><ns0:StatusCode Value=\"{STATUS_SUCCESS}\"/></ns0:Status>{evil}</ns0:Response>",
        response_start.replacen(" ID=\"", " ID=\"_wrapper", 1)
    );
    let result = complete(&provider, &attack, &login.pending);
    assert!(result.is_err(), "{}", outcome(result));
}

#[test]
fn comment_injected_into_a_signed_nameid_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_nameid=admin@example.com.evil.test");
    // Exclusive c14n drops comments, so the signature still verifies.
    let attack = login.xml.replace(
        "admin@example.com.evil.test",
        "admin@example.com<!---->.evil.test",
    );
    let result = complete(&provider, &attack, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("malformed"));
    let samael_alone = provider.verify_signed_assertion(&attack, Some(&login.pending.request_id));
    let subject = samael_alone
        .ok()
        .and_then(|a| a.subject)
        .and_then(|s| s.name_id)
        .map(|n| n.value);
    println!("samael alone reads the commented NameID as {subject:?}");
    assert_ne!(
        subject.as_deref(),
        Some("admin@example.com"),
        "samael truncated the NameID"
    );
    let whole = complete(&provider, &login.xml, &login.pending).expect("the untouched response");
    assert_eq!(whole.subject, "admin@example.com.evil.test");
}

#[test]
fn nameid_with_escaped_characters_is_read_whole() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_nameid=a%26b%3Cc");
    assert!(login.xml.contains("a&amp;b&lt;c"), "{}", login.xml);
    let identity = complete(&provider, &login.xml, &login.pending).expect("login");
    assert_eq!(identity.subject, "a&b<c");
}

#[test]
fn cdata_split_nameid_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_nameid=admin@example.com.evil.test");
    let attack = login.xml.replace(
        "admin@example.com.evil.test",
        "admin@example.com<![CDATA[]]>.evil.test",
    );
    let result = complete(&provider, &attack, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("malformed"));
}

#[test]
fn wrong_destination_on_an_unsigned_envelope_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    let attack = login.xml.replacen(
        &format!("Destination=\"{ACS}\""),
        "Destination=\"https://elsewhere.example/acs\"",
        1,
    );
    assert_ne!(attack, login.xml);
    let result = complete(&provider, &attack, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("destination"));
}

#[test]
fn signed_recipient_and_destination_for_another_sp_are_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    for sign in ["assertion", "response"] {
        let login = idp.login(
            &provider,
            &format!("&test_sign={sign}&test_recipient=https://other-sp.example/acs"),
        );
        let result = complete(&provider, &login.xml, &login.pending);
        let code = result.map_err(|e| e.code());
        assert!(
            code == Err("destination") || code == Err("recipient"),
            "{sign}: {code:?}"
        );
    }
}

#[test]
fn audience_of_another_sp_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(
        &provider,
        "&test_audience=https://other-sp.example/metadata",
    );
    let result = complete(&provider, &login.xml, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("audience"));
}

#[test]
fn assertion_without_audience_restriction_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_audience=none");
    assert!(!login.xml.contains("AudienceRestriction"), "{}", login.xml);
    let result = complete(&provider, &login.xml, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("audience_missing"));
}

#[test]
fn response_from_an_idp_clock_an_hour_behind_is_rejected_as_expired() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_shift_secs=-3600");
    let result = complete(&provider, &login.xml, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("expired"));
}

#[test]
fn response_from_an_idp_clock_an_hour_ahead_is_rejected_as_not_yet_valid() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_shift_secs=3600");
    let result = complete(&provider, &login.xml, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("not_yet_valid"));
}

#[test]
fn idp_clock_skew_within_the_allowance_is_accepted() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "&test_shift_secs=30");
    complete(&provider, &login.xml, &login.pending).expect("30 s ahead with 60 s skew");
}

#[test]
fn validity_is_judged_by_the_callers_clock() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    // A response with a short lifetime, completed (by our clock) after it ended.
    let login = idp.login(&provider, "&test_lifetime_secs=20");
    let later = now() + Duration::seconds(20 + 61);
    let result = provider.complete(&b64(&login.xml), Some(&login.pending), later);
    assert_eq!(result.map_err(|e| e.code()), Err("expired"));
    // Completed (by our clock) before it was issued.
    let earlier = now() - Duration::seconds(120);
    let pending = PendingSaml {
        created: earlier - Duration::seconds(1),
        ..login.pending.clone()
    };
    let result = provider.complete(&b64(&login.xml), Some(&pending), earlier);
    assert_eq!(result.map_err(|e| e.code()), Err("not_yet_valid"));
    complete(&provider, &login.xml, &login.pending).expect("now it passes");
}

#[test]
fn replayed_assertion_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    complete(&provider, &login.xml, &login.pending).expect("first use");
    let result = complete(&provider, &login.xml, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("replay"));
}

#[test]
fn response_to_another_request_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    let (_, other) = provider.begin("").expect("begin");
    let result = complete(&provider, &login.xml, &other);
    assert_eq!(result.map_err(|e| e.code()), Err("in_response_to"));
}

#[test]
fn response_without_a_pending_login_is_rejected_unless_idp_initiated_is_allowed() {
    let Some(idp) = Idp::start() else { return };
    let strict = idp.provider(&settings());
    let login = idp.login(&strict, "");
    let result = strict.complete(&b64(&login.xml), None, now());
    assert_eq!(result.map_err(|e| e.code()), Err("unsolicited"));
    let unsolicited = idp.unsolicited("");
    let result = strict.complete(&b64(&unsolicited), None, now());
    assert_eq!(result.map_err(|e| e.code()), Err("unsolicited"));

    let lenient = idp.provider(&SamlSettings {
        allow_idp_initiated: true,
        ..settings()
    });
    // A response that answers some request still needs that request's pending login.
    let result = lenient.complete(&b64(&login.xml), None, now());
    assert_eq!(result.map_err(|e| e.code()), Err("in_response_to"));
    let identity = lenient
        .complete(&b64(&unsolicited), None, now())
        .expect("IdP-initiated login when allowed");
    assert_eq!(identity.subject, ALICE);
}

#[test]
fn pending_login_of_another_provider_or_too_old_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    let other_provider = PendingSaml {
        provider: "other".to_string(),
        ..login.pending.clone()
    };
    let result = complete(&provider, &login.xml, &other_provider);
    assert_eq!(result.map_err(|e| e.code()), Err("pending_invalid"));
    let stale = PendingSaml {
        created: now() - Duration::minutes(11),
        ..login.pending.clone()
    };
    let result = complete(&provider, &login.xml, &stale);
    assert_eq!(result.map_err(|e| e.code()), Err("pending_invalid"));
}

#[test]
fn non_success_status_is_rejected_even_with_a_valid_assertion() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let login = idp.login(&provider, "");
    let attack = login.xml.replace(
        STATUS_SUCCESS,
        "urn:oasis:names:tc:SAML:2.0:status:Requester",
    );
    let result = complete(&provider, &attack, &login.pending);
    let error = result.expect_err("non-success status");
    assert_eq!(error.code(), "status");
    assert_eq!(
        error.to_string(),
        "the IdP answered with status `urn:oasis:names:tc:SAML:2.0:status:Requester`"
    );
}

#[test]
fn metadata_without_a_signing_certificate_is_refused() {
    let Some(idp) = Idp::start() else { return };
    let metadata = idp.metadata();
    let key = element(&metadata, "<ns0:KeyDescriptor", "</ns0:KeyDescriptor>");
    let unsigned = metadata.replace(key, "");
    let result = SamlProvider::new(&settings(), &unsigned, BASE);
    assert_eq!(
        result.map_err(|e| e.code()).err(),
        Some("metadata_unsigned")
    );
    let encryption_only =
        metadata.replace(key, &key.replace("use=\"signing\"", "use=\"encryption\""));
    let result = SamlProvider::new(&settings(), &encryption_only, BASE);
    assert_eq!(
        result.map_err(|e| e.code()).err(),
        Some("metadata_unsigned")
    );
}

const IDP_METADATA_NO_KEY: &str = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp.example.test/metadata">
  <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
    <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp.example.test/sso"/>
  </md:IDPSSODescriptor>
</md:EntityDescriptor>"#;

#[test]
fn metadata_without_any_key_is_refused_without_a_peer() {
    let result = SamlProvider::new(&settings(), IDP_METADATA_NO_KEY, BASE);
    let error = result.expect_err("refused");
    assert_eq!(error.code(), "metadata_unsigned");
}

#[test]
fn oversize_and_non_base64_responses_are_rejected_before_parsing() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let (_, pending) = provider.begin("").expect("begin");
    let huge = "A".repeat(MAX_RESPONSE_BASE64_BYTES + 4);
    let result = provider.complete(&huge, Some(&pending), now());
    assert_eq!(result.map_err(|e| e.code()), Err("too_large"));
    let result = provider.complete("%%%not base64", Some(&pending), now());
    assert_eq!(result.map_err(|e| e.code()), Err("encoding"));
}

#[test]
fn authn_request_uses_the_redirect_binding_and_a_256_bit_request_id() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let (url, pending) = provider.begin("opaque-handle").expect("begin");
    assert!(
        url.starts_with(&format!("{}/sso?SAMLRequest=", idp.base)),
        "{url}"
    );
    assert!(url.ends_with("&RelayState=opaque-handle"), "{url}");
    assert_eq!(pending.provider, "corp");
    let hex = pending.request_id.strip_prefix('_').expect("starts with _");
    assert!(
        crate::crypto::random::is_lower_hex(hex, 64),
        "{}",
        pending.request_id
    );
    let (_, second) = provider.begin("").expect("begin");
    assert_ne!(second.request_id, pending.request_id);
    let long = "x".repeat(81);
    assert_eq!(
        provider.begin(&long).map_err(|e| e.code()).err(),
        Some("relay_state_too_long")
    );
}

#[test]
fn sp_metadata_names_the_acs_and_entity_and_prefers_persistent_nameids() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    assert_eq!(provider.acs_url(), ACS);
    assert_eq!(provider.metadata_url(), SP_ENTITY);
    assert_eq!(provider.sp_entity_id(), SP_ENTITY);
    let metadata = provider.metadata_xml().expect("metadata");
    assert!(
        metadata.contains(&format!("entityID=\"{SP_ENTITY}\"")),
        "{metadata}"
    );
    assert!(
        metadata.contains(&format!("Location=\"{ACS}\"")),
        "{metadata}"
    );
    assert!(metadata.contains(NAMEID_PERSISTENT), "{metadata}");
    assert!(!metadata.contains("SingleLogoutService"), "{metadata}");
    assert!(!metadata.contains("validUntil"), "{metadata}");
}

fn check_settings(toml_text: &str, expected: Expect) {
    let actual = match toml::from_str::<SamlSettings>(toml_text) {
        Ok(settings) => match settings.validate() {
            Ok(()) => format!("ok: {settings:?}"),
            Err(message) => format!("invalid: {message}"),
        },
        Err(error) => format!("parse: {}", error.message()),
    };
    expected.assert_eq(&actual);
}

#[test]
fn settings_defaults_and_validation_messages() {
    check_settings(
        r#"id = "corp"
idp_metadata_file = "/etc/portcullis/corp-idp.xml""#,
        expect![[
            r#"ok: SamlSettings { id: "corp", idp_metadata_file: Some("/etc/portcullis/corp-idp.xml"), idp_metadata_url: None, sp_entity_id: None, allow_idp_initiated: false, max_clock_skew_secs: 60, email_attribute: None, name_attribute: None, groups_attribute: None, trusted_mfa_contexts: [], allowed_algorithms: [RsaSha256, EcdsaSha256], display_name: None }"#
        ]],
    );
    check_settings(
        r#"id = "Corp"
idp_metadata_file = "x.xml""#,
        expect!["invalid: sso.saml id `Corp` must be 1 to 32 characters of a-z, 0-9 and `-`"],
    );
    check_settings(
        r#"id = "corp"
idp_metadata_file = "x.xml"
max_clock_skew_secs = 600"#,
        expect!["invalid: sso.saml `corp`: max_clock_skew_secs is 600, at most 180 is allowed"],
    );
    check_settings(
        r#"id = "corp"
idp_metadata_file = "x.xml"
allowed_algorithms = ["rsa-sha1"]"#,
        expect![
            "parse: unknown variant `rsa-sha1`, expected one of `rsa-sha256`, `rsa-sha384`, `rsa-sha512`, `ecdsa-sha256`, `ecdsa-sha384`, `ecdsa-sha512`"
        ],
    );
    check_settings(
        r#"id = "corp"
idp_metadata_file = "x.xml"
allowed_algorithms = []"#,
        expect![
            "invalid: sso.saml `corp`: allowed_algorithms is empty, so no response could be accepted"
        ],
    );
    check_settings(
        r#"id = "corp"
idp_metadata_file = "x.xml"
email_attribute = " ""#,
        expect![
            "invalid: sso.saml `corp`: email_attribute is empty (leave it out for the defaults)"
        ],
    );
    check_settings(
        r#"id = "corp""#,
        expect![
            "invalid: sso.saml `corp`: give exactly one of idp_metadata_file and idp_metadata_url"
        ],
    );
    check_settings(
        r#"id = "corp"
idp_metadata_file = "x.xml"
idp_metadata_url = "https://idp.example/metadata""#,
        expect![
            "invalid: sso.saml `corp`: give exactly one of idp_metadata_file and idp_metadata_url"
        ],
    );
    check_settings(
        r#"id = "corp"
idp_metadata_url = "http://idp.example/metadata""#,
        expect![
            "invalid: sso.saml `corp`: idp_metadata_url `http://idp.example/metadata` must be an https URL (http only on loopback)"
        ],
    );
    check_settings(
        r#"id = "corp"
idp_metadata_file = "x.xml"
metadata_url = "https://idp.example/metadata""#,
        expect![
            "parse: unknown field `metadata_url`, expected one of `id`, `idp_metadata_file`, `idp_metadata_url`, `sp_entity_id`, `allow_idp_initiated`, `max_clock_skew_secs`, `email_attribute`, `name_attribute`, `groups_attribute`, `trusted_mfa_contexts`, `allowed_algorithms`, `display_name`"
        ],
    );
}

#[test]
fn replay_cache_forgets_entries_once_they_can_no_longer_be_accepted() {
    let mut cache = ReplayCache::default();
    let t0 = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    cache
        .remember("_a", t0 + Duration::seconds(60), t0)
        .expect("first");
    let again = cache.remember("_a", t0 + Duration::seconds(60), t0 + Duration::seconds(59));
    assert_eq!(again.map_err(|e| e.code()), Err("replay"));
    cache
        .remember(
            "_b",
            t0 + Duration::seconds(200),
            t0 + Duration::seconds(61),
        )
        .expect("other id");
    assert_eq!(cache.seen.len(), 1, "the expired entry was dropped");
}

#[test]
fn assertion_from_an_issuer_other_than_the_metadata_entity_is_rejected() {
    let Some(idp) = Idp::start() else { return };
    let provider = idp.provider(&settings());
    let metadata = idp.metadata().replace(
        &format!("entityID=\"{}/metadata\"", idp.base),
        "entityID=\"https://another-idp.example/metadata\"",
    );
    let impostor_trusting = SamlProvider::new(&settings(), &metadata, BASE).expect("provider");
    let login = idp.login(&provider, "");
    let result = complete(&impostor_trusting, &login.xml, &login.pending);
    assert_eq!(result.map_err(|e| e.code()), Err("issuer"));
}

const P: &str = r#"xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#;

fn check_raw(xml: &str, expected: Expect) {
    let actual = match raw::inspect(xml) {
        Ok(raw) => format!(
            "ok: destination={:?} in_response_to={:?} status={:?} name_id={:?}",
            raw.destination, raw.in_response_to, raw.status_code, raw.name_id
        ),
        Err(error) => format!("{}: {error}", error.code()),
    };
    expected.assert_eq(&actual);
}

#[test]
fn raw_response_shape_checks() {
    let ok = format!(
        r#"<?xml version="1.0"?><samlp:Response {P} Destination="https://a/acs" InResponseTo="_r"><samlp:Status><samlp:StatusCode Value="s"/></samlp:Status><saml:Assertion><saml:Subject><saml:NameID>a&amp;b&#x40;c</saml:NameID></saml:Subject></saml:Assertion></samlp:Response>"#
    );
    check_raw(
        &ok,
        expect![[
            r#"ok: destination=Some("https://a/acs") in_response_to=Some("_r") status=Some("s") name_id=Some("a&b@c")"#
        ]],
    );
    check_raw(
        &ok.replace("a&amp;b", "a<!-- x -->b"),
        expect!["malformed: SAMLResponse refused: XML comment"],
    );
    check_raw(
        &ok.replace("a&amp;b", "a<![CDATA[x]]>b"),
        expect!["malformed: SAMLResponse refused: CDATA section"],
    );
    check_raw(
        &ok.replace(
            "<?xml version=\"1.0\"?>",
            "<?xml version=\"1.0\"?><!DOCTYPE r [<!ENTITY x \"y\">]>",
        ),
        expect!["malformed: SAMLResponse refused: document type declaration"],
    );
    check_raw(
        &ok.replace("<samlp:Status>", "<?pi x?><samlp:Status>"),
        expect!["malformed: SAMLResponse refused: processing instruction"],
    );
    check_raw(
        &ok.replace("a&amp;b", "a&x;b"),
        expect!["malformed: SAMLResponse refused: undefined entity reference"],
    );
    check_raw(
        &format!("{ok}<samlp:Response {P}/>"),
        expect!["malformed: SAMLResponse refused: more than one root element"],
    );
    check_raw(
        &ok.replace("samlp:Response", "saml:Response"),
        expect!["malformed: SAMLResponse refused: the root element is not a samlp:Response"],
    );
    check_raw(
        &ok.replace("saml:Assertion>", "saml:EncryptedAssertion>")
            .replace("<saml:Assertion", "<saml:EncryptedAssertion"),
        expect!["malformed: SAMLResponse refused: encrypted assertions are not supported"],
    );
    check_raw(
        &ok.replace("<saml:Assertion>", "<x:Assertion xmlns:x=\"urn:evil\">")
            .replace("</saml:Assertion>", "</x:Assertion>"),
        expect!["malformed: SAMLResponse refused: an assertion outside its place in the response"],
    );
    check_raw(
        &ok.replace("<saml:Assertion>", "")
            .replace("</saml:Assertion>", ""),
        expect!["malformed: SAMLResponse refused: a response must carry exactly one assertion"],
    );
    check_raw(
        &ok.replace(
            "</saml:NameID>",
            "</saml:NameID><saml:NameID>x</saml:NameID>",
        ),
        expect!["name_id: NameID refused: more than one NameID"],
    );
    check_raw(
        &ok.replace("a&amp;b", "a<b/>"),
        expect!["name_id: NameID refused: NameID has child elements"],
    );
    check_raw(
        &ok.replace(
            "</samlp:Status>",
            &format!("{}{}</samlp:Status>", "<x>".repeat(40), "</x>".repeat(40)),
        ),
        expect!["malformed: SAMLResponse refused: elements nested too deeply"],
    );
    check_raw(
        &ok.replace("</saml:Subject>", ""),
        expect!["malformed: SAMLResponse refused: not well-formed XML"],
    );
}
