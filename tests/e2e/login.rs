//! Browser sign-in end to end: redirect to the form, CSRF, generic failures,
//! throttling, session cookie, identity to the upstream, sign-out, fixation and open
//! redirects. Cookies are handled by hand so every attribute is visible.

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::support::{
    EchoUpstream, Gateway, KeptAlive, RawResponse, Setup, admin_cli, header_values, raw_exchange,
    raw_get, route, wait_for_status,
};

pub(crate) const PASSWORD: &str = "tangerine orbit under glass";

pub(crate) fn set_cookies(response: &RawResponse) -> Vec<String> {
    response
        .head
        .lines()
        .filter_map(|line| line.strip_prefix("set-cookie: "))
        .map(str::to_owned)
        .collect()
}

pub(crate) fn cookie_value(response: &RawResponse, name: &str) -> Option<String> {
    set_cookies(response).iter().find_map(|cookie| {
        let pair = cookie.split(';').next()?;
        let (key, value) = pair.split_once('=')?;
        (key == name).then(|| value.to_owned())
    })
}

pub(crate) fn location(response: &RawResponse) -> Option<String> {
    response
        .head
        .lines()
        .find_map(|line| line.strip_prefix("location: "))
        .map(str::to_owned)
}

pub(crate) fn hidden_field(body: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker).unwrap() + marker.len();
    body[start..].split('"').next().unwrap().to_owned()
}

pub(crate) async fn post_form(
    gateway: &Gateway,
    path: &str,
    cookies: &str,
    extra: &[&str],
    fields: &[(&str, &str)],
) -> RawResponse {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !cookies.is_empty() {
        request.push_str(&format!("Cookie: {cookies}\r\n"));
    }
    for line in extra {
        request.push_str(line);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    request.push_str(&body);
    raw_exchange(gateway.addr, request.as_bytes()).await
}

/// A gateway with sign-in for one user (Olga, operator on the protected app).
async fn signed_in_setup() -> (EchoUpstream, Gateway, String, String, String) {
    signed_in_setup_with(false).await
}

/// [`signed_in_setup`], optionally with a movable clock (and the internal listener).
pub(crate) async fn signed_in_setup_with(
    test_clock: bool,
) -> (EchoUpstream, Gateway, String, String, String) {
    signed_in_setup_extra(test_clock, "").await
}

/// [`signed_in_setup_with`] plus extra configuration tables.
pub(crate) async fn signed_in_setup_extra(
    test_clock: bool,
    extra: &str,
) -> (EchoUpstream, Gateway, String, String, String) {
    signed_in_setup_then(test_clock, extra, |_| String::new()).await
}

/// [`signed_in_setup_extra`], and `late` appends configuration once the gateway's
/// address is known (it gets `http://127.0.0.1:PORT`), just before it starts.
pub(crate) async fn signed_in_setup_then(
    test_clock: bool,
    extra: &str,
    late: impl FnOnce(&str) -> String,
) -> (EchoUpstream, Gateway, String, String, String) {
    let upstream = EchoUpstream::start().await;
    let prepared = Gateway::prepare(Setup {
        test_clock,
        internal_port: test_clock.then(crate::support::free_port),
        policy: "bindings = \"bindings.json\"\nenvironment = \"dev\"".into(),
        // Cheap hashing for tests only; production keeps the OWASP default.
        extra: format!("[passwords]\nmemory_kib = 64\niterations = 1\n{extra}"),
        routes: route("app", "*", "/", &upstream.url(), "websocket = true").replace(
            "access = \"public\"",
            "access = \"protected\"\nresource = 'App::\"app\"'",
        ),
        ..Setup::default()
    });
    let organization = prepared.cli(&["org", "create", "acme"]);
    let workspace = prepared.cli(&[
        "workspace",
        "create",
        "--organization",
        &organization,
        "web",
        "--environment",
        "dev",
    ]);
    let user = prepared.cli(&[
        "user",
        "add",
        "--organization",
        &organization,
        "Olga@Acme.test",
    ]);
    let mut passwd = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["user", "--config"])
        .arg(&prepared.config)
        .args(["passwd", "--organization", &organization, "olga@acme.test"])
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(passwd.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    assert!(passwd.wait().unwrap().success());
    std::fs::write(
        prepared.dir.path().join("bindings.json"),
        format!(
            "{{\"entities\": [{{\"type\": \"App\", \"id\": \"app\"}}], \"bindings\": [\
             {{\"user\": \"{user}\", \"role\": \"operator\", \"scope\": {{\"type\": \"App\", \"id\": \"app\"}}}}]}}"
        ),
    )
    .unwrap();
    let mut config = std::fs::OpenOptions::new()
        .append(true)
        .open(&prepared.config)
        .unwrap();
    writeln!(
        config,
        "\n[login]\norganization = \"{organization}\"\nworkspace = \"{workspace}\"\n{}",
        late(&prepared.base_url())
    )
    .unwrap();
    let gateway = prepared.start().await;
    (upstream, gateway, user, workspace, organization)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_sign_in_and_out() {
    let (upstream, gateway, user, workspace, _) = signed_in_setup().await;

    // A browser without a session goes to the form and will come back; an API client
    // gets 401.
    let page = raw_get(
        gateway.addr,
        "app.test",
        "/reports?q=1",
        &["Accept: text/html"],
    )
    .await;
    assert_eq!(page.status, 303);
    assert_eq!(
        location(&page).as_deref(),
        Some("/.portcullis/login?rd=%2Freports%3Fq%3D1")
    );
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/reports", &[])
            .await
            .status,
        401
    );

    let form = raw_get(
        gateway.addr,
        "app.test",
        "/.portcullis/login?rd=%2Freports%3Fq%3D1",
        &[],
    )
    .await;
    assert_eq!(form.status, 200);
    let csrf = cookie_value(&form, "__Host-portcullis-csrf").unwrap();
    assert_eq!(hidden_field(&form.body, "csrf"), csrf);
    assert_eq!(hidden_field(&form.body, "rd"), "/reports?q=1");
    assert!(set_cookies(&form)[0].contains("Secure; HttpOnly; SameSite=Strict"));
    let csrf_cookie = format!("__Host-portcullis-csrf={csrf}");
    let fields = |password: &'static str, rd: &'static str| {
        vec![
            ("email", "olga@acme.test"),
            ("password", password),
            ("csrf", ""),
            ("rd", rd),
        ]
    };
    let with_csrf = |mut fields: Vec<(&'static str, &'static str)>, csrf: &'static str| {
        fields[2] = ("csrf", csrf);
        fields
    };
    let csrf_static: &'static str = Box::leak(csrf.clone().into_boxed_str());

    // CSRF: no cookie, a wrong token, a foreign Origin — all refused before any check.
    let no_cookie = post_form(
        &gateway,
        "/.portcullis/login",
        "",
        &[],
        &with_csrf(fields(PASSWORD, "/"), csrf_static),
    )
    .await;
    assert_eq!(no_cookie.status, 403);
    let wrong = post_form(
        &gateway,
        "/.portcullis/login",
        &csrf_cookie,
        &[],
        &with_csrf(fields(PASSWORD, "/"), "f00"),
    )
    .await;
    assert_eq!(wrong.status, 403);
    let foreign = post_form(
        &gateway,
        "/.portcullis/login",
        &csrf_cookie,
        &["Origin: https://evil.test"],
        &with_csrf(fields(PASSWORD, "/"), csrf_static),
    )
    .await;
    assert_eq!(foreign.status, 403);
    // An untrusted client cannot claim the https origin through X-Forwarded-Proto.
    let spoofed = post_form(
        &gateway,
        "/.portcullis/login",
        &csrf_cookie,
        &["Origin: https://app.test", "X-Forwarded-Proto: https"],
        &with_csrf(fields(PASSWORD, "/"), csrf_static),
    )
    .await;
    assert_eq!(spoofed.status, 403);

    // Wrong password and unknown user: the same generic answer, no session.
    let bad = post_form(
        &gateway,
        "/.portcullis/login",
        &csrf_cookie,
        &[],
        &with_csrf(fields("not the password at all", "/"), csrf_static),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert!(bad.body.contains("Invalid email or password."));
    assert!(cookie_value(&bad, "__Host-portcullis").is_none());
    let unknown_fields = vec![
        ("email", "nobody@acme.test"),
        ("password", PASSWORD),
        ("csrf", csrf_static),
        ("rd", "/"),
    ];
    let unknown = post_form(
        &gateway,
        "/.portcullis/login",
        &csrf_cookie,
        &[],
        &unknown_fields,
    )
    .await;
    assert_eq!(unknown.status, 401);
    assert!(unknown.body.contains("Invalid email or password."));

    // The right password, with a session id planted beforehand (fixation attempt) and an
    // open-redirect target: a fresh id is issued and the user lands on `/`.
    let planted = format!(
        "__Host-portcullis={}.{}",
        workspace.replace('-', ""),
        "a".repeat(64)
    );
    let cookies = format!("{csrf_cookie}; {planted}");
    let signed_in = post_form(
        &gateway,
        "/.portcullis/login",
        &cookies,
        &["Origin: http://app.test"],
        &with_csrf(fields(PASSWORD, "//evil.test/x"), csrf_static),
    )
    .await;
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    assert_eq!(location(&signed_in).as_deref(), Some("/"));
    let session = cookie_value(&signed_in, "__Host-portcullis").unwrap();
    assert_ne!(format!("__Host-portcullis={session}"), planted);
    let attributes = set_cookies(&signed_in).join("\n");
    assert!(
        attributes.contains("Path=/; Secure; HttpOnly; SameSite=Lax"),
        "{attributes}"
    );

    // Signed in: the upstream learns who, and never sees the gateway's cookies.
    let session_cookie = format!("__Host-portcullis={session}; theme=dark; {csrf_cookie}");
    let cookie_header = format!("Cookie: {session_cookie}");
    let ok = raw_get(gateway.addr, "app.test", "/reports", &[&cookie_header]).await;
    assert_eq!(ok.status, 200, "{ok:?}");
    let seen = upstream.seen();
    let headers = &seen.last().unwrap().headers;
    assert_eq!(header_values(headers, "x-portcullis-user"), [user.as_str()]);
    assert_eq!(
        header_values(headers, "x-portcullis-email"),
        ["olga@acme.test"]
    );
    assert_eq!(
        header_values(headers, "x-portcullis-auth-method"),
        ["password"]
    );
    assert_eq!(header_values(headers, "cookie"), ["theme=dark"]);

    // Sign-out is a POST with the CSRF token; afterwards the session is dead.
    let confirm = raw_get(
        gateway.addr,
        "app.test",
        "/.portcullis/logout",
        &[&cookie_header],
    )
    .await;
    assert_eq!(confirm.status, 200);
    let out = post_form(
        &gateway,
        "/.portcullis/logout",
        &session_cookie,
        &[],
        &[("csrf", csrf_static)],
    )
    .await;
    assert_eq!(out.status, 303);
    assert!(
        set_cookies(&out)
            .iter()
            .any(|c| c.starts_with("__Host-portcullis=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/reports", &[&cookie_header])
            .await
            .status,
        401
    );

    // Throttling: after five failures from this address for this account, even the
    // right password waits.
    for _ in 0..5 {
        let failed = post_form(
            &gateway,
            "/.portcullis/login",
            &csrf_cookie,
            &[],
            &with_csrf(fields("not the password at all", "/"), csrf_static),
        )
        .await;
        assert_eq!(failed.status, 401);
    }
    let throttled = post_form(
        &gateway,
        "/.portcullis/login",
        &csrf_cookie,
        &[],
        &with_csrf(fields(PASSWORD, "/"), csrf_static),
    )
    .await;
    assert_eq!(throttled.status, 429);
    assert!(cookie_value(&throttled, "__Host-portcullis").is_none());
}

/// Signs Olga in with her password; returns the response (a redirect).
pub(crate) async fn password_sign_in(
    gateway: &Gateway,
    csrf_cookie: &str,
    csrf: &str,
) -> RawResponse {
    post_form(
        gateway,
        "/.portcullis/login",
        csrf_cookie,
        &[],
        &[
            ("email", "olga@acme.test"),
            ("password", PASSWORD),
            ("csrf", csrf),
            ("rd", "/after"),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn totp_enrolment_second_factor_replay_and_recovery_codes() {
    let (upstream, gateway, user, _, organization) = signed_in_setup().await;
    let form = raw_get(gateway.addr, "app.test", "/.portcullis/login", &[]).await;
    let csrf = cookie_value(&form, "__Host-portcullis-csrf").unwrap();
    let csrf_cookie = format!("__Host-portcullis-csrf={csrf}");

    // Without a second factor enrolled, the password alone signs in.
    let first = password_sign_in(&gateway, &csrf_cookie, &csrf).await;
    assert_eq!(location(&first).as_deref(), Some("/after"));
    let session = cookie_value(&first, "__Host-portcullis").unwrap();

    // Enrolment from the signed-in session: a pending step, then the QR page.
    let start = raw_get(
        gateway.addr,
        "app.test",
        "/.portcullis/2fa",
        &[&format!(
            "Cookie: {csrf_cookie}; __Host-portcullis={session}"
        )],
    )
    .await;
    assert_eq!(start.status, 303);
    let pending = cookie_value(&start, "__Host-portcullis-pending").unwrap();
    let pending_cookie = format!("{csrf_cookie}; __Host-portcullis-pending={pending}");
    let enrol = raw_get(
        gateway.addr,
        "app.test",
        "/.portcullis/2fa",
        &[&format!("Cookie: {pending_cookie}")],
    )
    .await;
    assert_eq!(enrol.status, 200);
    assert!(enrol.body.contains("data:image/png;base64,"), "no QR code");
    let uri_start = enrol.body.find("otpauth://totp/").unwrap();
    let uri = &enrol.body[uri_start..enrol.body[uri_start..].find('<').unwrap() + uri_start];
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .with_skew(1)
        .build()
        .unwrap();
    // The gateway reads the real clock, so the authenticator app does too.
    let now = portcullis_gateway::clock::system_now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let code = totp.generate(now).to_string();
    let wrong = post_form(
        &gateway,
        "/.portcullis/2fa",
        &pending_cookie,
        &[],
        &[("csrf", &csrf), ("code", "000000")],
    )
    .await;
    assert_eq!(
        wrong.status, 200,
        "a wrong first code re-shows the enrolment page"
    );
    // The wrong attempt rotated the secret on the page: read the new one.
    let uri_start = wrong.body.find("otpauth://totp/").unwrap();
    let uri = &wrong.body[uri_start..wrong.body[uri_start..].find('<').unwrap() + uri_start];
    let secret = uri
        .split("secret=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap()
        .to_owned();
    let totp = totp_rs::Builder::new()
        .with_secret(totp_rs::Secret::try_from_base32(&secret).unwrap())
        .with_skew(1)
        .build()
        .unwrap();
    let code = if totp.generate(now).to_string() == code {
        code
    } else {
        totp.generate(now).to_string()
    };
    let enrolled = post_form(
        &gateway,
        "/.portcullis/2fa",
        &pending_cookie,
        &[],
        &[("csrf", &csrf), ("code", &code)],
    )
    .await;
    assert_eq!(enrolled.status, 200, "{enrolled:?}");
    let recovery: Vec<String> = enrolled
        .body
        .split("<li><code>")
        .skip(1)
        .filter_map(|rest| rest.split('<').next().map(str::to_owned))
        .collect();
    assert_eq!(recovery.len(), 10);
    let upgraded = cookie_value(&enrolled, "__Host-portcullis").unwrap();
    assert_ne!(upgraded, session, "enrolment issues a new session id");
    // The old session was retired; the new one works.
    assert_eq!(
        raw_get(
            gateway.addr,
            "app.test",
            "/x",
            &[&format!("Cookie: __Host-portcullis={session}")]
        )
        .await
        .status,
        401
    );
    assert_eq!(
        raw_get(
            gateway.addr,
            "app.test",
            "/x",
            &[&format!("Cookie: __Host-portcullis={upgraded}")]
        )
        .await
        .status,
        200
    );

    // Next sign-in: the password leads to the second factor, not a session.
    let second = password_sign_in(&gateway, &csrf_cookie, &csrf).await;
    assert_eq!(location(&second).as_deref(), Some("/.portcullis/2fa"));
    assert!(cookie_value(&second, "__Host-portcullis").is_none());
    let pending = cookie_value(&second, "__Host-portcullis-pending").unwrap();
    let pending_cookie = format!("{csrf_cookie}; __Host-portcullis-pending={pending}");
    // The code already used at enrolment is refused (replay), as is a guess.
    let replay = post_form(
        &gateway,
        "/.portcullis/2fa",
        &pending_cookie,
        &[],
        &[("csrf", &csrf), ("code", &code)],
    )
    .await;
    assert_eq!(replay.status, 401);
    // A recovery code works once.
    let recovered = post_form(
        &gateway,
        "/.portcullis/2fa",
        &pending_cookie,
        &[],
        &[("csrf", &csrf), ("code", &recovery[0].to_uppercase())],
    )
    .await;
    assert_eq!(recovered.status, 303, "{recovered:?}");
    assert_eq!(location(&recovered).as_deref(), Some("/after"));
    let mfa_session = cookie_value(&recovered, "__Host-portcullis").unwrap();
    let ok = raw_get(
        gateway.addr,
        "app.test",
        "/x",
        &[&format!("Cookie: __Host-portcullis={mfa_session}")],
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        header_values(
            &upstream.seen().last().unwrap().headers,
            "x-portcullis-user"
        ),
        [user.as_str()]
    );

    let third = password_sign_in(&gateway, &csrf_cookie, &csrf).await;
    let pending = cookie_value(&third, "__Host-portcullis-pending").unwrap();
    let pending_cookie = format!("{csrf_cookie}; __Host-portcullis-pending={pending}");
    let reused = post_form(
        &gateway,
        "/.portcullis/2fa",
        &pending_cookie,
        &[],
        &[("csrf", &csrf), ("code", &recovery[0])],
    )
    .await;
    assert_eq!(reused.status, 401, "a recovery code works only once");
    // Attempts per pending sign-in are bounded.
    for _ in 0..4 {
        post_form(
            &gateway,
            "/.portcullis/2fa",
            &pending_cookie,
            &[],
            &[("csrf", &csrf), ("code", "123456")],
        )
        .await;
    }
    let exhausted = post_form(
        &gateway,
        "/.portcullis/2fa",
        &pending_cookie,
        &[],
        &[("csrf", &csrf), ("code", &recovery[1])],
    )
    .await;
    assert_eq!(exhausted.status, 429);

    // An admin reset: the user signs out everywhere, and the password alone signs in
    // again until they enrol anew.
    crate::support::admin_cli(
        &gateway.config,
        &[
            "user",
            "totp-reset",
            "--organization",
            &organization,
            "olga@acme.test",
        ],
    );
    // Sessions ended by another process stop working within the session cache's life.
    let session_cookie = format!("Cookie: __Host-portcullis={mfa_session}");
    let status = crate::support::wait_for_status(gateway.addr, "/x", &session_cookie, 401).await;
    assert_eq!(status, 401, "the reset did not end the session");
    let after_reset = password_sign_in(&gateway, &csrf_cookie, &csrf).await;
    assert_eq!(location(&after_reset).as_deref(), Some("/after"));
    assert!(cookie_value(&after_reset, "__Host-portcullis").is_some());
}

/// Signs Olga in through the form; returns her session cookie's value and the CSRF
/// token (its cookie is `__Host-portcullis-csrf=<token>`) that signs her out.
async fn sign_in_with_csrf(gateway: &Gateway) -> (String, String) {
    let form = raw_get(gateway.addr, "app.test", "/.portcullis/login", &[]).await;
    let csrf = cookie_value(&form, "__Host-portcullis-csrf").unwrap();
    let csrf_cookie = format!("__Host-portcullis-csrf={csrf}");
    let signed_in = password_sign_in(gateway, &csrf_cookie, &csrf).await;
    let session = cookie_value(&signed_in, "__Host-portcullis").unwrap();
    (session, csrf)
}

/// Signs the session out with its CSRF token.
async fn sign_out(gateway: &Gateway, session: &str, csrf: &str) {
    let cookies = format!("__Host-portcullis={session}; __Host-portcullis-csrf={csrf}");
    let out = post_form(
        gateway,
        "/.portcullis/logout",
        &cookies,
        &[],
        &[("csrf", csrf)],
    )
    .await;
    assert_eq!(out.status, 303);
}

/// A kept-alive connection remembers the session it presented (`session::Remembered`);
/// two users' requests on one connection (a front proxy's pool) each get their own,
/// and a sign-out ends the remembered session for the connection's next request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_keeps_no_session_past_its_sign_out() {
    let (upstream, gateway, user, _, _) = signed_in_setup().await;
    let (session, csrf) = sign_in_with_csrf(&gateway).await;
    let stranger = "0192f3c4000070008000000000000001.".to_owned() + &"ab".repeat(32);

    let mut connection = KeptAlive::open(gateway.addr).await;
    let cookie = |value: &str| format!("__Host-portcullis={value}");
    for _ in 0..3 {
        assert_eq!(
            connection
                .get("/reports", "cookie", &cookie(&session))
                .await,
            200
        );
        assert_eq!(
            connection
                .get("/reports", "cookie", &cookie(&stranger))
                .await,
            401
        );
    }
    assert_eq!(
        connection
            .get("/reports", "cookie", &cookie(&session))
            .await,
        200
    );
    let seen = upstream.seen();
    let last = seen.last().unwrap();
    assert_eq!(header_values(&last.headers, "x-portcullis-user"), [user]);

    sign_out(&gateway, &session, &csrf).await;
    assert_eq!(
        connection
            .get("/reports", "cookie", &cookie(&session))
            .await,
        401,
        "the connection kept a signed-out session"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_closes_when_its_session_ends() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let (_upstream, gateway, _, _, _) = signed_in_setup().await;
    let (session, csrf) = sign_in_with_csrf(&gateway).await;

    let mut request = format!("ws://app.test:{}/ws", gateway.addr.port())
        .into_client_request()
        .unwrap();
    request.headers_mut().insert(
        "cookie",
        format!("__Host-portcullis={session}").parse().unwrap(),
    );
    let (mut socket, response) = tokio_tungstenite::client_async(
        request,
        tokio::net::TcpStream::connect(gateway.addr).await.unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    socket.send(Message::text("still here")).await.unwrap();
    let echoed = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(echoed, Message::text("still here"));

    sign_out(&gateway, &session, &csrf).await;
    // The tunnel notices within its re-check interval and closes.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        loop {
            match socket.next().await {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the websocket outlived its session");
}

/// Signs Olga in with her password and returns the session cookie's value.
async fn sign_in(gateway: &Gateway) -> String {
    let form = raw_get(gateway.addr, "app.test", "/.portcullis/login", &[]).await;
    let csrf = cookie_value(&form, "__Host-portcullis-csrf").unwrap();
    let signed_in = post_form(
        gateway,
        "/.portcullis/login",
        &format!("__Host-portcullis-csrf={csrf}"),
        &["Origin: http://app.test"],
        &[
            ("email", "olga@acme.test"),
            ("password", PASSWORD),
            ("csrf", &csrf),
            ("rd", "/"),
        ],
    )
    .await;
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    cookie_value(&signed_in, "__Host-portcullis").unwrap()
}

/// A signed-in session's requests reuse what they computed (its role bindings among
/// it) only while the session's cached record lives: a role granted or revoked in the
/// store reaches the session within that time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_role_changes_reach_a_signed_in_session() {
    let (_upstream, gateway, user, workspace, _) = signed_in_setup().await;
    let cookie = format!("Cookie: __Host-portcullis={}", sign_in(&gateway).await);
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/", &[&cookie])
            .await
            .status,
        200
    );
    // Without her binding in the file, only a role in the store lets Olga in.
    std::fs::write(
        gateway.dir.path().join("bindings.json"),
        "{\"entities\": [{\"type\": \"App\", \"id\": \"app\"}], \"bindings\": []}",
    )
    .unwrap();
    gateway.signal("HUP");
    assert_eq!(
        wait_for_status(gateway.addr, "/", &cookie, 403).await,
        403,
        "the file binding never went"
    );
    let role = |action: &str| {
        admin_cli(
            &gateway.config,
            &[
                "role",
                action,
                "--workspace",
                &workspace,
                "--user",
                &user,
                "--role",
                "analyst",
                "--scope",
                "App::\"app\"",
            ],
        )
    };
    role("grant");
    assert_eq!(
        wait_for_status(gateway.addr, "/", &cookie, 200).await,
        200,
        "a role granted in the store never reached the session"
    );
    role("revoke");
    assert_eq!(
        wait_for_status(gateway.addr, "/", &cookie, 403).await,
        403,
        "a role revoked in the store kept working for the session"
    );
}
