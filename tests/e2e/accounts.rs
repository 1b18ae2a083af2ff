//! A person's own account end to end: session timeouts on a moved clock, the
//! "my sessions" page, password change (and what it ends), the compliance password
//! profile (expiry and history), the "2FA required" setting, and first-run setup with a
//! one-time token.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::login::{
    PASSWORD, cookie_value, hidden_field, location, password_sign_in, post_form,
    signed_in_setup_with,
};
use crate::support::{Gateway, RawResponse, Setup, admin_cli, raw_get, route, wait_for_status};

/// A fresh CSRF token for this browser: (cookie header part, token).
async fn csrf(gateway: &Gateway) -> (String, String) {
    let form = raw_get(gateway.addr, "app.test", "/.portcullis/login", &[]).await;
    let token = cookie_value(&form, "__Host-portcullis-csrf").unwrap();
    (format!("__Host-portcullis-csrf={token}"), token)
}

/// Signs Olga in with `password`; returns the session cookie (`name=value`).
async fn sign_in_with(gateway: &Gateway, password: &str) -> Option<String> {
    let (csrf_cookie, token) = csrf(gateway).await;
    let response = post_form(
        gateway,
        "/.portcullis/login",
        &csrf_cookie,
        &[],
        &[
            ("email", "olga@acme.test"),
            ("password", password),
            ("csrf", &token),
            ("rd", "/after"),
        ],
    )
    .await;
    cookie_value(&response, "__Host-portcullis").map(|value| format!("__Host-portcullis={value}"))
}

async fn sign_in(gateway: &Gateway) -> String {
    let (csrf_cookie, token) = csrf(gateway).await;
    let response = password_sign_in(gateway, &csrf_cookie, &token).await;
    assert_eq!(response.status, 303, "{}", response.head);
    format!(
        "__Host-portcullis={}",
        cookie_value(&response, "__Host-portcullis").unwrap()
    )
}

/// A browser request for the protected app with this session cookie.
async fn app(gateway: &Gateway, session: &str) -> RawResponse {
    raw_get(
        gateway.addr,
        "app.test",
        "/reports",
        &[&format!("Cookie: {session}"), "Accept: text/html"],
    )
    .await
}

async fn page(gateway: &Gateway, path: &str, cookies: &str) -> RawResponse {
    raw_get(
        gateway.addr,
        "app.test",
        path,
        &[&format!("Cookie: {cookies}")],
    )
    .await
}

fn is_login_redirect(response: &RawResponse) -> bool {
    response.status == 303
        && location(response).is_some_and(|to| to.starts_with("/.portcullis/login"))
}

fn settings(gateway: &Gateway, group: &str, id_flag: &str, id: &str, flags: &[&str]) -> String {
    let mut args = vec![group, "settings", id_flag, id];
    args.extend_from_slice(flags);
    admin_cli(&gateway.config, &args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_absolute_timeouts_on_a_moved_clock() {
    let (_upstream, gateway, _user, workspace, organization) = signed_in_setup_with(true).await;
    let shown = settings(
        &gateway,
        "org",
        "--organization",
        &organization,
        &["--idle-timeout", "10m", "--absolute-lifetime", "1h"],
    );
    assert!(shown.contains("idle_timeout\t600s"), "{shown}");
    assert!(shown.contains("absolute_lifetime\t3600s"), "{shown}");

    // Idle: each request within 10 minutes keeps the session; 10 quiet minutes end it.
    let session = sign_in(&gateway).await;
    assert_eq!(app(&gateway, &session).await.status, 200);
    gateway.advance_clock(9 * 60).await;
    assert_eq!(app(&gateway, &session).await.status, 200, "9 idle minutes");
    gateway.advance_clock(9 * 60).await;
    assert_eq!(
        app(&gateway, &session).await.status,
        200,
        "activity reset the idle timer"
    );
    gateway.advance_clock(10 * 60).await;
    assert!(
        is_login_redirect(&app(&gateway, &session).await),
        "idle timeout"
    );

    // Absolute: activity every 9 minutes does not stretch the hour.
    let session = sign_in(&gateway).await;
    for step in 0..6 {
        gateway.advance_clock(9 * 60).await;
        assert_eq!(app(&gateway, &session).await.status, 200, "step {step}");
    }
    gateway.advance_clock(7 * 60).await;
    assert!(
        is_login_redirect(&app(&gateway, &session).await),
        "absolute lifetime"
    );

    // A workspace may be stricter than its organization.
    settings(
        &gateway,
        "workspace",
        "--workspace",
        &workspace,
        &["--idle-timeout", "2m"],
    );
    let session = sign_in(&gateway).await;
    gateway.advance_clock(3 * 60).await;
    assert!(
        is_login_redirect(&app(&gateway, &session).await),
        "workspace idle timeout"
    );

    // A user may choose shorter (from the next sign-in), never longer.
    settings(
        &gateway,
        "workspace",
        "--workspace",
        &workspace,
        &["--clear"],
    );
    let session = sign_in(&gateway).await;
    let (csrf_cookie, token) = csrf(&gateway).await;
    let cookies = format!("{csrf_cookie}; {session}");
    let longer = post_form(
        &gateway,
        "/.portcullis/account",
        &cookies,
        &[],
        &[
            ("csrf", &token),
            ("action", "timeouts"),
            ("idle_minutes", "600"),
        ],
    )
    .await;
    assert_eq!(longer.status, 200);
    let session = sign_in(&gateway).await;
    gateway.advance_clock(11 * 60).await;
    assert!(
        is_login_redirect(&app(&gateway, &session).await),
        "600 idle minutes asked for, the organization's 10 still apply"
    );
    let session = sign_in(&gateway).await;
    let cookies = format!("{csrf_cookie}; {session}");
    let bad = post_form(
        &gateway,
        "/.portcullis/account",
        &cookies,
        &[],
        &[
            ("csrf", &token),
            ("action", "timeouts"),
            ("idle_minutes", "-1"),
        ],
    )
    .await;
    assert!(bad.body.contains("whole numbers"), "{}", bad.body);
    let shorter = post_form(
        &gateway,
        "/.portcullis/account",
        &cookies,
        &[],
        &[
            ("csrf", &token),
            ("action", "timeouts"),
            ("idle_minutes", "3"),
        ],
    )
    .await;
    assert!(
        shorter.body.contains("from your next sign-in"),
        "{}",
        shorter.body
    );
    assert!(shorter.body.contains("value=\"3\""));
    let session = sign_in(&gateway).await;
    gateway.advance_clock(2 * 60).await;
    assert_eq!(app(&gateway, &session).await.status, 200);
    gateway.advance_clock(4 * 60).await;
    assert!(
        is_login_redirect(&app(&gateway, &session).await),
        "the user's 3 minutes"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn my_sessions_page_lists_and_ends_my_sessions() {
    let (_upstream, gateway, ..) = signed_in_setup_with(false).await;
    let laptop = sign_in(&gateway).await;
    let phone = sign_in(&gateway).await;
    let tablet = sign_in(&gateway).await;
    let (csrf_cookie, token) = csrf(&gateway).await;
    let cookies = format!("{csrf_cookie}; {laptop}");

    assert!(is_login_redirect(
        &page(&gateway, "/.portcullis/account", "").await
    ));
    let account = page(&gateway, "/.portcullis/account", &cookies).await;
    assert_eq!(account.status, 200);
    assert!(account.body.contains("olga@acme.test"));
    assert_eq!(
        account.body.matches("<tr><td>").count(),
        3,
        "{}",
        account.body
    );
    assert_eq!(account.body.matches("This session").count(), 1);
    assert_eq!(account.body.matches("name=\"session\"").count(), 2);
    assert!(
        !account
            .body
            .contains(laptop.split('=').nth(1).unwrap().split('.').nth(1).unwrap())
    );

    // The page never offers the session's own secret; revoke one by its handle.
    let handle = hidden_field(&account.body, "session");
    let no_csrf = post_form(
        &gateway,
        "/.portcullis/account",
        &laptop,
        &[],
        &[("csrf", &token), ("action", "revoke"), ("session", &handle)],
    )
    .await;
    assert_eq!(no_csrf.status, 403, "CSRF applies");
    let revoked = post_form(
        &gateway,
        "/.portcullis/account",
        &cookies,
        &[],
        &[("csrf", &token), ("action", "revoke"), ("session", &handle)],
    )
    .await;
    assert!(revoked.body.contains("Signed out."), "{}", revoked.body);
    let statuses = [
        app(&gateway, &phone).await.status,
        app(&gateway, &tablet).await.status,
    ];
    assert_eq!(
        statuses.iter().filter(|status| **status == 303).count(),
        1,
        "exactly one other session ended: {statuses:?}"
    );
    assert_eq!(app(&gateway, &laptop).await.status, 200);

    // Someone else's handle (or garbage) ends nothing.
    let nothing = post_form(
        &gateway,
        "/.portcullis/account",
        &cookies,
        &[],
        &[
            ("csrf", &token),
            ("action", "revoke"),
            ("session", "00000000000000000000000000000000"),
        ],
    )
    .await;
    assert!(nothing.body.contains("No session was signed out."));

    let others = post_form(
        &gateway,
        "/.portcullis/account",
        &cookies,
        &[],
        &[("csrf", &token), ("action", "revoke-others")],
    )
    .await;
    assert!(others.body.contains("Signed out."));
    assert!(is_login_redirect(&app(&gateway, &phone).await));
    assert!(is_login_redirect(&app(&gateway, &tablet).await));
    assert_eq!(
        app(&gateway, &laptop).await.status,
        200,
        "this session stays"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_change_checks_the_policy_and_ends_every_other_session() {
    let (_upstream, gateway, ..) = signed_in_setup_with(false).await;
    let laptop = sign_in(&gateway).await;
    let phone = sign_in(&gateway).await;
    let (csrf_cookie, token) = csrf(&gateway).await;
    let cookies = format!("{csrf_cookie}; {laptop}");

    assert!(is_login_redirect(
        &page(&gateway, "/.portcullis/password", "").await
    ));
    let form = page(&gateway, "/.portcullis/password", &cookies).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"current\""));

    let change = |current: &'static str, new: &'static str, confirm: &'static str| {
        let cookies = cookies.clone();
        let token = token.clone();
        let gateway = &gateway;
        async move {
            post_form(
                gateway,
                "/.portcullis/password",
                &cookies,
                &[],
                &[
                    ("csrf", &token),
                    ("current", current),
                    ("new", new),
                    ("confirm", confirm),
                ],
            )
            .await
        }
    };
    const NEW: &str = "violet harbour seven kites";
    let wrong = change("not my password at all", NEW, NEW).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("The current password is wrong."));
    let differ = change(PASSWORD, NEW, "violet harbour seven kitez").await;
    assert_eq!(differ.status, 422);
    assert!(differ.body.contains("The two new passwords differ."));
    let short = change(PASSWORD, "too short", "too short").await;
    assert!(
        short.body.contains("use at least 15 characters"),
        "{}",
        short.body
    );
    let common = change(PASSWORD, "my password is long", "my password is long").await;
    assert!(common.body.contains("commonly used password"));
    let same = change(PASSWORD, PASSWORD, PASSWORD).await;
    assert!(same.body.contains("do not reuse"), "{}", same.body);
    assert_eq!(
        app(&gateway, &laptop).await.status,
        200,
        "refusals changed nothing"
    );
    assert_eq!(app(&gateway, &phone).await.status, 200);

    let done = change(PASSWORD, NEW, NEW).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(location(&done).as_deref(), Some("/.portcullis/account"));
    let fresh = format!(
        "__Host-portcullis={}",
        cookie_value(&done, "__Host-portcullis").unwrap()
    );
    assert_ne!(fresh, laptop, "a new session id after a password change");
    assert!(
        is_login_redirect(&app(&gateway, &laptop).await),
        "old id ended"
    );
    assert!(
        is_login_redirect(&app(&gateway, &phone).await),
        "other devices ended"
    );
    assert_eq!(app(&gateway, &fresh).await.status, 200);
    assert_eq!(
        sign_in_with(&gateway, PASSWORD).await,
        None,
        "old password gone"
    );
    assert!(sign_in_with(&gateway, NEW).await.is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compliance_profile_expires_passwords_and_refuses_recent_ones() {
    let (_upstream, gateway, _user, _workspace, organization) = signed_in_setup_with(true).await;
    settings(
        &gateway,
        "org",
        "--organization",
        &organization,
        &["--password-profile", "compliance"],
    );
    // Before expiry the (older, NIST-conforming) password still signs in.
    assert!(sign_in_with(&gateway, PASSWORD).await.is_some());

    gateway.advance_clock(91 * 24 * 3600).await;
    let (csrf_cookie, token) = csrf(&gateway).await;
    let expired = password_sign_in(&gateway, &csrf_cookie, &token).await;
    assert_eq!(expired.status, 303);
    assert_eq!(location(&expired).as_deref(), Some("/.portcullis/password"));
    assert!(
        cookie_value(&expired, "__Host-portcullis").is_none(),
        "no session yet"
    );
    let pending = format!(
        "__Host-portcullis-pending={}",
        cookie_value(&expired, "__Host-portcullis-pending").unwrap()
    );
    assert!(
        is_login_redirect(&app(&gateway, &pending).await),
        "a pending change is not a session"
    );
    let cookies = format!("{csrf_cookie}; {pending}");
    let form = page(&gateway, "/.portcullis/password", &cookies).await;
    assert!(form.body.contains("Your password has expired"));
    assert!(!form.body.contains("name=\"current\""));

    let submit = |new: &'static str| {
        let cookies = cookies.clone();
        let token = token.clone();
        let gateway = &gateway;
        async move {
            post_form(
                gateway,
                "/.portcullis/password",
                &cookies,
                &[],
                &[("csrf", &token), ("new", new), ("confirm", new)],
            )
            .await
        }
    };
    let plain = submit("violet harbour seven kites").await;
    assert!(
        plain.body.contains("use at least three of"),
        "{}",
        plain.body
    );
    let reused = submit(PASSWORD).await;
    assert!(
        reused.body.contains("use at least three of") || reused.body.contains("do not reuse"),
        "{}",
        reused.body
    );
    let done = submit("Violet harbour 7 kites!").await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert_eq!(location(&done).as_deref(), Some("/after"));
    let session = format!(
        "__Host-portcullis={}",
        cookie_value(&done, "__Host-portcullis").unwrap()
    );
    assert_eq!(app(&gateway, &session).await.status, 200);

    // History: the last passwords cannot come back, even through the CLI.
    let mut passwd = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["user", "--config"])
        .arg(&gateway.config)
        .args(["passwd", "--organization", &organization, "olga@acme.test"])
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(passwd.stdin.take().unwrap(), "Violet harbour 7 kites!").unwrap();
    let output = passwd.wait_with_output().unwrap();
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr)
            .contains("do not reuse one of your last 4 passwords")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_second_factor_forces_enrolment_at_sign_in() {
    let (_upstream, gateway, _user, _workspace, organization) = signed_in_setup_with(false).await;
    settings(
        &gateway,
        "org",
        "--organization",
        &organization,
        &["--require-2fa", "true"],
    );
    let (csrf_cookie, token) = csrf(&gateway).await;
    let response = password_sign_in(&gateway, &csrf_cookie, &token).await;
    assert_eq!(response.status, 303);
    assert_eq!(location(&response).as_deref(), Some("/.portcullis/2fa"));
    assert!(cookie_value(&response, "__Host-portcullis").is_none());
    let pending = cookie_value(&response, "__Host-portcullis-pending").unwrap();
    let enrol = page(
        &gateway,
        "/.portcullis/2fa",
        &format!("{csrf_cookie}; __Host-portcullis-pending={pending}"),
    )
    .await;
    assert_eq!(enrol.status, 200);
    assert!(enrol.body.contains("otpauth://totp/"), "{}", enrol.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_the_first_admin_with_a_one_time_setup_token() {
    let upstream = crate::support::EchoUpstream::start().await;
    let prepared = Gateway::prepare(Setup {
        extra: "[passwords]\nmemory_kib = 64\niterations = 1\n".into(),
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    });
    let init = |email: &str| {
        Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(["init", "--config"])
            .arg(&prepared.config)
            .args(["--organization-name", "Acme", "--email", email])
            .env("PORTCULLIS_LOG", "warn")
            .output()
            .unwrap()
    };
    let output = init("Admin@Acme.test");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout).unwrap().trim().to_owned();
    assert_eq!(token.len(), 64, "only the token goes to stdout");
    let stderr = String::from_utf8(output.stderr).unwrap();
    let snippet = &stderr[stderr.find("[login]").unwrap()..];
    let snippet: String = snippet.lines().take(3).collect::<Vec<_>>().join("\n");
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&prepared.config)
        .unwrap();
    writeln!(config, "\n{snippet}").unwrap();
    drop(config);
    let second = init("other@acme.test");
    assert!(!second.status.success(), "init runs once");
    assert!(String::from_utf8_lossy(&second.stderr).contains("already has users"));

    let gateway = prepared.start().await;
    let (csrf_cookie, csrf_token) = csrf(&gateway).await;
    let form = page(&gateway, "/.portcullis/setup", &csrf_cookie).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("name=\"token\""));
    let setup = |token: String, new: &'static str| {
        let csrf_cookie = csrf_cookie.clone();
        let csrf_token = csrf_token.clone();
        let gateway = &gateway;
        async move {
            post_form(
                gateway,
                "/.portcullis/setup",
                &csrf_cookie,
                &[],
                &[
                    ("csrf", &csrf_token),
                    ("token", &token),
                    ("new", new),
                    ("confirm", new),
                ],
            )
            .await
        }
    };
    const CHOSEN: &str = "granite meadow lantern hum";
    let wrong = setup("0".repeat(64), CHOSEN).await;
    assert_eq!(wrong.status, 401);
    let weak = setup(token.clone(), "short").await;
    assert_eq!(weak.status, 422, "the policy applies");
    let done = setup(token.clone(), CHOSEN).await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(done.body.contains("Password set"));
    let again = setup(token.clone(), "another meadow lantern hum").await;
    assert_eq!(again.status, 401, "the token works once");

    let (csrf_cookie, csrf_token) = csrf(&gateway).await;
    let signed_in = post_form(
        &gateway,
        "/.portcullis/login",
        &csrf_cookie,
        &[],
        &[
            ("email", "admin@acme.test"),
            ("password", CHOSEN),
            ("csrf", &csrf_token),
            ("rd", "/"),
        ],
    )
    .await;
    assert_eq!(signed_in.status, 303);
    assert!(cookie_value(&signed_in, "__Host-portcullis").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_administrator_ends_one_session_from_the_command_line() {
    let (_upstream, gateway, user, workspace, _) = signed_in_setup_with(false).await;
    let laptop = sign_in(&gateway).await;
    let phone = sign_in(&gateway).await;
    let list = || {
        admin_cli(
            &gateway.config,
            &[
                "session",
                "list",
                "--workspace",
                &workspace,
                "--user",
                &user,
            ],
        )
    };
    let listed = list();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    // The account page marks which handle is the laptop's own.
    let (csrf_cookie, _) = csrf(&gateway).await;
    let account = page(
        &gateway,
        "/.portcullis/account",
        &format!("{csrf_cookie}; {laptop}"),
    )
    .await;
    let phone_handle = hidden_field(&account.body, "session");
    assert!(
        listed.contains(&phone_handle),
        "CLI and page show the same handles"
    );
    admin_cli(
        &gateway.config,
        &[
            "session",
            "revoke",
            "--workspace",
            &workspace,
            "--user",
            &user,
            &phone_handle,
        ],
    );
    assert_eq!(list().lines().count(), 1);
    // Another process changed the store: this gateway notices within its 5 s cache.
    let status = wait_for_status(gateway.addr, "/reports", &format!("Cookie: {phone}"), 401).await;
    assert_eq!(status, 401);
    assert_eq!(app(&gateway, &laptop).await.status, 200);
}
