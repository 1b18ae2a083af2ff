//! Forward-auth (`GET /.portcullis/auth`) for a proxy that stays in front: the same
//! route, allowlist, session/token and Cedar decision as proxied traffic, answered with
//! identity headers, and only to a trusted proxy.

use crate::login::{cookie_value, password_sign_in, signed_in_setup_extra};
use crate::support::{Gateway, RawResponse, raw_get};

async fn ask(gateway: &Gateway, query: &str, headers: &[&str]) -> RawResponse {
    raw_get(
        gateway.addr,
        "auth.internal",
        &format!("/.portcullis/auth{query}"),
        headers,
    )
    .await
}

fn response_header(response: &RawResponse, name: &str) -> Vec<String> {
    response
        .head
        .lines()
        .filter_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name)
                .then(|| value.trim().to_owned())
        })
        .collect()
}

async fn session(gateway: &Gateway) -> String {
    let form = raw_get(gateway.addr, "app.test", "/.portcullis/login", &[]).await;
    let csrf = cookie_value(&form, "__Host-portcullis-csrf").unwrap();
    let signed_in =
        password_sign_in(gateway, &format!("__Host-portcullis-csrf={csrf}"), &csrf).await;
    format!(
        "Cookie: __Host-portcullis={}",
        cookie_value(&signed_in, "__Host-portcullis").unwrap()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_a_trusted_proxy_with_the_same_decision_and_identity() {
    let (upstream, gateway, user, workspace, _) =
        signed_in_setup_extra(false, "[network]\ntrusted_proxies = [\"127.0.0.1/32\"]\n").await;
    let cookie = session(&gateway).await;
    let original = [
        "X-Forwarded-Host: app.test",
        "X-Forwarded-Uri: /reports?q=1",
        "X-Forwarded-Method: GET",
        "X-Forwarded-For: 198.51.100.7",
    ];

    let mut signed_in: Vec<&str> = original.to_vec();
    signed_in.push(&cookie);
    let allowed = ask(&gateway, "", &signed_in).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(
        response_header(&allowed, "x-portcullis-user"),
        [user.as_str()]
    );
    assert_eq!(
        response_header(&allowed, "x-portcullis-email"),
        ["olga@acme.test"]
    );
    assert_eq!(
        response_header(&allowed, "x-portcullis-roles"),
        ["operator"]
    );
    assert_eq!(
        response_header(&allowed, "x-portcullis-workspace"),
        [workspace.as_str()]
    );
    assert_eq!(response_header(&allowed, "x-portcullis-assertion").len(), 1);
    assert_eq!(upstream.count(), 0, "forward-auth never calls the upstream");

    // nginx's header names work too.
    let nginx = raw_get(
        gateway.addr,
        "app.test",
        "/.portcullis/auth",
        &[
            "X-Original-URI: /reports",
            "X-Original-Method: GET",
            &cookie,
        ],
    )
    .await;
    assert_eq!(nginx.status, 200);

    // Nobody signed in: 401 for nginx; a redirect only when asked (Traefik, browsers).
    let anonymous = ask(&gateway, "", &original).await;
    assert_eq!(anonymous.status, 401);
    let mut browser: Vec<&str> = original.to_vec();
    browser.push("Accept: text/html");
    let redirect = ask(&gateway, "?redirect=true", &browser).await;
    assert_eq!(redirect.status, 303);
    assert_eq!(
        response_header(&redirect, "location"),
        ["/.portcullis/login?rd=%2Freports%3Fq%3D1"]
    );

    // The policy still decides: no role permits a method the schema does not know.
    let mut delete: Vec<&str> = vec![
        "X-Forwarded-Host: app.test",
        "X-Forwarded-Uri: /reports",
        "X-Forwarded-Method: PROPFIND",
    ];
    delete.push(&cookie);
    let denied = ask(&gateway, "", &delete).await;
    assert_eq!(denied.status, 403, "{}", denied.body);

    // Malformed or ambiguous descriptions are refused, never guessed.
    for bad in [
        vec!["X-Forwarded-Host: app.test"],
        vec![
            "X-Forwarded-Host: app.test",
            "X-Forwarded-Uri: /a/%2e%2e/admin",
        ],
        vec![
            "X-Forwarded-Host: app.test",
            "X-Forwarded-Uri: /x",
            "X-Forwarded-Uri: /y",
        ],
        vec![
            "X-Forwarded-Host: app.test",
            "X-Forwarded-Uri: /.portcullis/login",
        ],
        vec![
            "X-Forwarded-Host: app.test",
            "X-Forwarded-Uri: /x",
            "X-Forwarded-Method: G E T",
        ],
    ] {
        let mut headers = bad.clone();
        headers.push(&cookie);
        assert_eq!(ask(&gateway, "", &headers).await.status, 400, "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuses_a_peer_that_is_not_a_trusted_proxy() {
    let (_upstream, gateway, ..) = signed_in_setup_extra(false, "").await;
    let cookie = session(&gateway).await;
    let response = ask(
        &gateway,
        "",
        &[
            "X-Forwarded-Host: app.test",
            "X-Forwarded-Uri: /reports",
            &cookie,
        ],
    )
    .await;
    assert_eq!(response.status, 403);
    assert!(response_header(&response, "x-portcullis-user").is_empty());
}
