//! Sign-in by a one-time code sent by email, through a real SMTP server (aiosmtpd)
//! on loopback: the code arrives by mail, works once, only in the browser that asked,
//! and asking looks the same whether or not the address has an account.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::login::{cookie_value, location, post_form, signed_in_setup_extra};
use crate::peers::{Peer, peer_dir, python};
use crate::support::{Gateway, RawResponse, TempDir, TestPki, free_port, header_values, raw_get};

/// The mails the SMTP server saved so far.
fn mails(folder: &Path) -> Vec<String> {
    let mut found: Vec<_> = std::fs::read_dir(folder)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|ext| ext == "eml"))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
        .iter()
        .map(|path| std::fs::read_to_string(path).unwrap())
        .collect()
}

/// Waits (bounded: 10 s) until `count` mails arrived.
async fn wait_for_mails(folder: &Path, count: usize) -> Vec<String> {
    for _ in 0..200 {
        let found = mails(folder);
        if found.len() >= count {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {count} mail(s), found {}", mails(folder).len());
}

fn code_in(mail: &str) -> String {
    let start = mail.find("code is ").unwrap() + "code is ".len();
    mail[start..start + 8].to_owned()
}

async fn csrf(gateway: &Gateway) -> (String, String) {
    let form = raw_get(gateway.addr, "app.test", "/.portcullis/login", &[]).await;
    let token = cookie_value(&form, "__Host-portcullis-csrf").unwrap();
    (format!("__Host-portcullis-csrf={token}"), token)
}

async fn ask(gateway: &Gateway, csrf: &(String, String), email: &str) -> RawResponse {
    post_form(
        gateway,
        "/.portcullis/email-code",
        &csrf.0,
        &[],
        &[("csrf", &csrf.1), ("email", email), ("rd", "/welcome")],
    )
    .await
}

async fn enter(
    gateway: &Gateway,
    csrf: &(String, String),
    pending: &str,
    code: &str,
) -> RawResponse {
    post_form(
        gateway,
        "/.portcullis/email-code",
        &format!("{}; __Host-portcullis-code={pending}", csrf.0),
        &[],
        &[("csrf", &csrf.1), ("code", code)],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailed_code_signs_in_once_in_the_browser_that_asked() {
    let Some(python) = python("smtp") else { return };
    let maildir = TempDir::new("mail");
    let port = free_port();
    let mut command = Command::new(python);
    command
        .arg(peer_dir("smtp").join("server.py"))
        .arg(port.to_string())
        .arg(maildir.path());
    let (_smtp, _) = Peer::start(command);
    let (upstream, gateway, user, ..) = signed_in_setup_extra(
        false,
        &format!(
            "[email]\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"Portcullis <no-reply@acme.test>\"\n"
        ),
    )
    .await;

    let page = raw_get(gateway.addr, "app.test", "/.portcullis/login", &[]).await;
    assert!(page.body.contains("Email me a sign-in code"));
    let csrf = csrf(&gateway).await;

    // An unknown address gets the same answer, and no mail.
    let unknown = ask(&gateway, &csrf, "nobody@acme.test").await;
    assert_eq!(unknown.status, 200);
    assert!(unknown.body.contains("Check your email"));
    let stranger = cookie_value(&unknown, "__Host-portcullis-code").unwrap();

    let asked = ask(&gateway, &csrf, "Olga@Acme.test").await;
    assert_eq!(asked.status, 200);
    assert_eq!(
        asked.body.replace(&csrf.1, ""),
        unknown.body.replace(&csrf.1, ""),
        "same page for known and unknown addresses"
    );
    let pending = cookie_value(&asked, "__Host-portcullis-code").unwrap();
    assert_ne!(pending, stranger);
    let mail = wait_for_mails(maildir.path(), 1).await;
    assert_eq!(mail.len(), 1, "nothing was sent to the unknown address");
    assert!(mail[0].contains("X-Rcpt-To: olga@acme.test"));
    let code = code_in(&mail[0]);
    assert!(code.bytes().all(|b| b.is_ascii_digit()), "{code}");

    // The code is bound to the browser that asked: another pending id refuses it.
    let elsewhere = enter(&gateway, &csrf, &stranger, &code).await;
    assert_eq!(elsewhere.status, 401);
    assert!(cookie_value(&elsewhere, "__Host-portcullis").is_none());
    let wrong_code = if code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    let wrong = enter(&gateway, &csrf, &pending, wrong_code).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("Invalid code."));
    let no_csrf = post_form(
        &gateway,
        "/.portcullis/email-code",
        &format!("__Host-portcullis-code={pending}"),
        &[],
        &[("code", code.as_str())],
    )
    .await;
    assert_eq!(no_csrf.status, 403);

    let spaced = format!("{} {}", &code[..4], &code[4..]);
    let signed_in = enter(&gateway, &csrf, &pending, &spaced).await;
    assert_eq!(signed_in.status, 303, "{}", signed_in.body);
    assert_eq!(location(&signed_in).as_deref(), Some("/welcome"));
    let session = cookie_value(&signed_in, "__Host-portcullis").unwrap();
    let ok = raw_get(
        gateway.addr,
        "app.test",
        "/reports",
        &[&format!("Cookie: __Host-portcullis={session}")],
    )
    .await;
    assert_eq!(ok.status, 200);
    let seen = upstream.seen();
    let headers = &seen.last().unwrap().headers;
    assert_eq!(header_values(headers, "x-portcullis-user"), [user.as_str()]);
    assert_eq!(
        header_values(headers, "x-portcullis-auth-method"),
        ["email_code"]
    );

    // Single use.
    let replay = enter(&gateway, &csrf, &pending, &code).await;
    assert_eq!(replay.status, 401);
    assert!(cookie_value(&replay, "__Host-portcullis").is_none());

    // Throttled per address: 5 codes per window (one already sent).
    for _ in 0..4 {
        assert_eq!(ask(&gateway, &csrf, "olga@acme.test").await.status, 200);
    }
    assert_eq!(ask(&gateway, &csrf, "olga@acme.test").await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_travel_over_starttls_to_a_server_with_a_private_ca() {
    let Some(python) = python("smtp") else { return };
    let maildir = TempDir::new("mail-tls");
    let pki = TestPki::new();
    let (cert, key) = pki.leaf("smtp");
    let files = TempDir::new("smtp-pki");
    for (name, pem) in [
        ("cert.pem", &cert),
        ("key.pem", &key),
        ("ca.pem", &pki.ca_pem),
    ] {
        std::fs::write(files.path().join(name), pem).unwrap();
    }
    let port = free_port();
    let mut command = Command::new(python);
    command
        .arg(peer_dir("smtp").join("server.py"))
        .arg(port.to_string())
        .arg(maildir.path())
        .arg(files.path().join("cert.pem"))
        .arg(files.path().join("key.pem"));
    let (_smtp, _) = Peer::start(command);
    // The server refuses mail before STARTTLS, and its certificate is trusted only
    // through the configured CA: a delivered mail proves both.
    let (_upstream, gateway, ..) = signed_in_setup_extra(
        false,
        &format!(
            "[email]\nhost = \"localhost\"\nport = {port}\nsecurity = \"starttls\"\nca = \"{}\"\nfrom = \"Portcullis <no-reply@acme.test>\"\n",
            files.path().join("ca.pem").display()
        ),
    )
    .await;
    let csrf = csrf(&gateway).await;
    assert_eq!(ask(&gateway, &csrf, "olga@acme.test").await.status, 200);
    let mail = wait_for_mails(maildir.path(), 1).await;
    assert!(mail[0].contains("X-Rcpt-To: olga@acme.test"));
    assert_eq!(code_in(&mail[0]).len(), 8);
}
