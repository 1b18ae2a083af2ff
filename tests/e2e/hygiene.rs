//! Header hygiene, client IP and allowlists, as an upstream sees them.

use http::Request;

use crate::support::{EchoUpstream, Gateway, Setup, empty, header_values, raw_get, route, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_identity_headers_never_reach_the_upstream() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        extra: "[identity]\nstrip_headers = [\"Remote-User\"]\n".into(),
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    let response = raw_get(
        gateway.addr,
        "app.test",
        "/",
        &[
            "X-Portcullis-User: admin",
            "X-Portcullis-Email: ceo@acme.test",
            "X_Portcullis_User: admin",
            "x-portcullis-roles: Admin",
            "X-Forwarded-For: 10.0.0.1",
            "X-Forwarded-Host: evil.test",
            "X-Forwarded-Proto: https",
            "Forwarded: for=10.0.0.1",
            "X-Real-IP: 10.0.0.1",
            "Remote-User: admin",
            "Remote_User: admin",
        ],
    )
    .await;
    assert_eq!(response.status, 200, "{response:?}");
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    let headers = &seen[0].headers;
    for name in headers.keys() {
        let name = name.as_str();
        assert!(
            !name.starts_with("x-portcullis-") || name == "x-portcullis-request-id",
            "client header {name} reached the upstream"
        );
        assert!(
            !name.contains('_'),
            "underscore variant {name} reached the upstream"
        );
        assert_ne!(name, "remote-user");
        assert_ne!(name, "x-real-ip");
    }
    assert_eq!(header_values(headers, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_values(headers, "x-forwarded-host"), ["app.test"]);
    assert_eq!(header_values(headers, "x-forwarded-proto"), ["http"]);
    assert_eq!(
        header_values(headers, "forwarded"),
        ["for=127.0.0.1;host=\"app.test\";proto=http"]
    );
    assert_eq!(header_values(headers, "x-portcullis-request-id").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_header_cannot_strip_or_inject_identity() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    let response = raw_get(
        gateway.addr,
        "app.test",
        "/",
        &[
            "Connection: close, X-Portcullis-User, X-Forwarded-For, Forwarded, X-Custom",
            "X-Portcullis-User: admin",
            "X-Custom: hop",
            "Upgrade: h2c",
            "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            "Keep-Alive: timeout=5",
        ],
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = upstream.seen();
    let headers = &seen[0].headers;
    assert!(headers.get("x-portcullis-user").is_none());
    assert!(
        headers.get("x-custom").is_none(),
        "Connection-named header forwarded"
    );
    assert!(headers.get("connection").is_none());
    assert!(headers.get("upgrade").is_none(), "h2c upgrade forwarded");
    assert!(headers.get("keep-alive").is_none());
    // The gateway's own forwarding headers survive the client naming them.
    assert_eq!(header_values(headers, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header_values(headers, "forwarded").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spoofed_forwarded_for_cannot_satisfy_an_allowlist() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        routes: route(
            "office",
            "*",
            "/",
            &upstream.url(),
            "allow = [\"10.9.9.9/32\"]",
        ),
        ..Setup::default()
    })
    .await;
    for spoof in [
        "X-Forwarded-For: 10.9.9.9",
        "X-Real-IP: 10.9.9.9",
        "Forwarded: for=10.9.9.9",
    ] {
        let response = raw_get(gateway.addr, "app.test", "/", &[spoof]).await;
        assert_eq!(response.status, 403, "{spoof}: {response:?}");
        assert!(
            response.body.contains("\"error\":\"ip_not_allowed\""),
            "{}",
            response.body
        );
    }
    assert_eq!(
        upstream.count(),
        0,
        "a refused request reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxy_forwarded_for_is_believed_right_to_left() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        extra: "[network]\ntrusted_proxies = [\"127.0.0.1/32\"]\n".into(),
        routes: route(
            "office",
            "*",
            "/",
            &upstream.url(),
            "allow = [\"10.9.9.9/32\"]",
        ),
        ..Setup::default()
    })
    .await;
    let allowed = raw_get(
        gateway.addr,
        "app.test",
        "/",
        &["X-Forwarded-For: 10.9.9.9"],
    )
    .await;
    assert_eq!(allowed.status, 200, "{allowed:?}");
    // A client that prepends the allowed address to its own gains nothing.
    let spoofed = raw_get(
        gateway.addr,
        "app.test",
        "/",
        &["X-Forwarded-For: 10.9.9.9, 203.0.113.5"],
    )
    .await;
    assert_eq!(spoofed.status, 403);
    let garbage = raw_get(
        gateway.addr,
        "app.test",
        "/",
        &["X-Forwarded-For: 10.9.9.9, not-an-ip"],
    )
    .await;
    assert_eq!(garbage.status, 400);
    assert_eq!(upstream.count(), 1);
    let seen = upstream.seen();
    assert_eq!(
        header_values(&seen[0].headers, "x-forwarded-for"),
        ["10.9.9.9, 127.0.0.1"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejections_are_generic_with_a_request_id() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        routes: route(
            "app",
            "app.test",
            "/",
            &upstream.url(),
            "allow = [\"10.0.0.0/8\"]",
        ),
        ..Setup::default()
    })
    .await;
    let request = Request::get(format!("http://{}/", gateway.addr))
        .header("host", "app.test")
        .header("accept", "text/html,application/xhtml+xml")
        .body(empty())
        .unwrap();
    let (status, headers, body) = send(request).await;
    assert_eq!(status, 403);
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(body.contains(&request_id));
    assert!(body.contains("ip_not_allowed"));
    assert!(
        !body.contains("127.0.0.1"),
        "the page must not echo details: {body}"
    );

    let request = Request::get(format!("http://{}/", gateway.addr))
        .header("host", "app.test")
        .body(empty())
        .unwrap();
    let (status, headers, body) = send(request).await;
    assert_eq!(status, 403);
    assert_eq!(headers["content-type"], "application/json");
    let request_id = headers["x-request-id"].to_str().unwrap();
    assert_eq!(
        body,
        format!("{{\"error\":\"ip_not_allowed\",\"request_id\":\"{request_id}\"}}\n")
    );
    assert_eq!(upstream.count(), 0);
}
