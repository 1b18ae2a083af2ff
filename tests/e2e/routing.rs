//! Canonical paths, hosts, framing and limits, seen from both ends: what the client
//! gets back and what (if anything) reached the upstream.

use crate::support::{
    EchoUpstream, Gateway, Setup, free_port, raw_exchange, raw_get, route, scripted_upstream,
};

async fn gateway_with_admin(upstream: &EchoUpstream) -> Gateway {
    let routes = format!(
        "{}{}{}",
        route("site", "app.test", "/", &upstream.url(), ""),
        route(
            "admin",
            "app.test",
            "/admin",
            &upstream.url(),
            "case_insensitive = true"
        )
        .replace(
            "access = \"public\"",
            "access = \"protected\"\nresource = 'App::\"admin\"'"
        ),
        route("files", "app.test", "/files", &upstream.url(), ""),
    );
    Gateway::start(Setup {
        routes,
        ..Setup::default()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_paths_are_rejected_before_the_upstream() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_with_admin(&upstream).await;
    for path in [
        "/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/admin%2fx",
        "/files%2f..%2fadmin",
        "/a/..;/admin",
        "/files;x=1/../admin",
        "//admin",
        "/files//admin",
        "/files%5cadmin",
        "/%252e%252e/admin",
        "/%c0%ae%c0%ae/admin",
        "/files%00",
        "/../admin",
    ] {
        let response = raw_get(gateway.addr, "app.test", path, &[]).await;
        assert_eq!(response.status, 400, "{path}: {response:?}");
    }
    // A raw backslash never gets past the request parser or the canonicaliser.
    let response = raw_get(gateway.addr, "app.test", "/files\\..\\admin", &[]).await;
    assert_eq!(response.status, 400);
    assert_eq!(
        upstream.count(),
        0,
        "an ambiguous path reached the upstream: {:?}",
        upstream.seen()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_and_upstream_see_the_same_canonical_path() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_with_admin(&upstream).await;
    // Plain dot segments resolve the way the upstream would resolve them, and the
    // route decision is made on that result: /files/../admin is the protected route.
    let response = raw_get(gateway.addr, "app.test", "/files/../admin", &[]).await;
    assert_eq!(response.status, 401, "{response:?}");
    // Case variants of a case-insensitive protected prefix are the protected route.
    for path in ["/ADMIN", "/Admin/users", "/aDmIn"] {
        let response = raw_get(gateway.addr, "app.test", path, &[]).await;
        assert_eq!(response.status, 401, "{path}");
    }
    assert_eq!(upstream.count(), 0);
    // What is forwarded is exactly the canonical form the route matched.
    let response = raw_get(
        gateway.addr,
        "app.test",
        "/files/./a/../%62.txt?q=%2e%2e",
        &[],
    )
    .await;
    assert_eq!(response.status, 200);
    let seen = upstream.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].target, "/files/b.txt?q=%2e%2e");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_route_exactly() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_with_admin(&upstream).await;
    let unknown = raw_get(gateway.addr, "other.test", "/", &[]).await;
    assert_eq!(unknown.status, 421);
    assert_eq!(
        raw_get(gateway.addr, "APP.test:8443", "/", &[])
            .await
            .status,
        200
    );
    // An absolute-form target that disagrees with Host is refused, not guessed at.
    let response = raw_exchange(
        gateway.addr,
        b"GET http://other.test/ HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(response.status, 400);
    let double_host = raw_exchange(
        gateway.addr,
        b"GET / HTTP/1.1\r\nHost: app.test\r\nHost: other.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(double_host.status, 400);
    assert_eq!(upstream.count(), 1);
    assert_eq!(upstream.seen()[0].headers["host"], "APP.test:8443");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_framing_is_refused() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_with_admin(&upstream).await;
    let cases: [&[u8]; 4] = [
        b"POST /files HTTP/1.1\r\nHost: app.test\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX",
        b"POST /files HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\nX",
        b"POST /files HTTP/1.1\r\nHost: app.test\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nXY",
        b"POST /files HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
    ];
    for request in cases {
        let response = raw_exchange(gateway.addr, request).await;
        assert_eq!(
            response.status,
            400,
            "{}: {response:?}",
            String::from_utf8_lossy(request)
        );
        // RFC 9112 §6.1: after refusing ambiguous framing the connection must close.
        assert!(
            response
                .head
                .to_ascii_lowercase()
                .contains("connection: close"),
            "{}",
            response.head
        );
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        extra: "[limits]\nmax_header_bytes = 8192\nmax_headers = 20\nmax_uri_bytes = 1024\n".into(),
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    let big = format!("X-Big: {}", "a".repeat(10_000));
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/", &[&big]).await.status,
        431
    );
    let many: Vec<String> = (0..40).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/", &many).await.status,
        431
    );
    let long_path = format!("/{}", "a".repeat(2000));
    assert_eq!(
        raw_get(gateway.addr, "app.test", &long_path, &[])
            .await
            .status,
        414
    );
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_endpoints_answer_on_every_host() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway_with_admin(&upstream).await;
    for host in ["app.test", "unknown.test"] {
        let health = raw_get(gateway.addr, host, "/.portcullis/health", &[]).await;
        assert_eq!(health.status, 200);
        let body: serde_json::Value = serde_json::from_str(&health.body).unwrap();
        assert_eq!(body["status"], "ok");
        assert!(
            body["policy_revision"]
                .as_str()
                .unwrap()
                .starts_with("sha256:"),
            "{body}"
        );
        let ready = raw_get(gateway.addr, host, "/.portcullis/ready", &[]).await;
        assert_eq!(ready.status, 200);
    }
    // Nothing under the reserved prefix is ever forwarded, however it is spelled.
    for path in [
        "/.portcullis/secret",
        "/%2eportcullis/secret",
        "/files/../.portcullis/x",
    ] {
        assert_eq!(
            raw_get(gateway.addr, "app.test", path, &[]).await.status,
            404,
            "{path}"
        );
    }
    assert_eq!(upstream.count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_are_502_and_504() {
    let upstream = EchoUpstream::start().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let routes = format!(
        "{}{}",
        route("dead", "*", "/dead", &dead, ""),
        route(
            "slow",
            "*",
            "/",
            &upstream.url(),
            "response_timeout = \"300ms\""
        ),
    );
    let gateway = Gateway::start(Setup {
        routes,
        ..Setup::default()
    })
    .await;
    let response = raw_get(gateway.addr, "app.test", "/dead", &[]).await;
    assert_eq!(response.status, 502);
    assert!(
        response
            .body
            .starts_with("{\"error\":\"upstream_unavailable\",\"request_id\":\""),
        "{}",
        response.body
    );
    assert!(
        !response.body.contains("127.0.0.1"),
        "upstream details leaked: {}",
        response.body
    );
    let response = raw_get(gateway.addr, "app.test", "/very-slow", &[]).await;
    assert_eq!(response.status, 504);
    assert!(response.body.contains("upstream_timeout"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_connections_are_reused_and_closed_ones_replaced() {
    use std::sync::atomic::Ordering;

    let ok = |_: &str| "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (keeping, kept) = scripted_upstream(ok).await;
    let (closing, closed) = scripted_upstream(ok).await;
    let routes = format!(
        "{}{}",
        route("keeps", "*", "/keeps", &format!("http://{keeping}"), ""),
        route("closes", "*", "/closes", &format!("http://{closing}"), ""),
    );
    // One serving thread: every client connection shares its upstream connections.
    let gateway = Gateway::start(Setup {
        routes,
        extra: "[runtime]\nworkers = 1\n".into(),
        ..Setup::default()
    })
    .await;
    for _ in 0..5 {
        let response = raw_get(gateway.addr, "app.test", "/keeps", &[]).await;
        assert_eq!((response.status, response.body.as_str()), (200, "ok"));
    }
    assert_eq!(kept.load(Ordering::SeqCst), 1, "one kept-alive connection");
    // Each connection is closed by the upstream after its response: the gateway
    // notices before the next request and opens a new one, and no request fails.
    for _ in 0..5 {
        let response = raw_get(gateway.addr, "app.test", "/closes", &[]).await;
        assert_eq!((response.status, response.body.as_str()), (200, "ok"));
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(closed.load(Ordering::SeqCst), 5);
}

/// With two serving threads, client connections are spread evenly over them, and each
/// thread keeps upstream connections of its own: four client connections open at
/// once, used one after the other, make exactly two upstream connections.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_serving_thread_keeps_its_own_upstream_connections() {
    use std::sync::atomic::Ordering;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let ok = |_: &str| "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (upstream, accepted) = scripted_upstream(ok).await;
    let gateway = Gateway::start(Setup {
        routes: route("app", "*", "/", &format!("http://{upstream}"), ""),
        extra: "[runtime]\nworkers = 2\n".into(),
        ..Setup::default()
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(tokio::net::TcpStream::connect(gateway.addr).await.unwrap());
    }
    for _ in 0..2 {
        for client in &mut clients {
            client
                .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
                .await
                .unwrap();
            let mut response = Vec::new();
            while !response.ends_with(b"\r\n\r\nok") {
                let mut chunk = [0_u8; 1024];
                let n = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    client.read(&mut chunk),
                )
                .await
                .unwrap()
                .unwrap();
                assert!(
                    n > 0,
                    "closed early: {}",
                    String::from_utf8_lossy(&response)
                );
                response.extend_from_slice(&chunk[..n]);
            }
            assert!(response.starts_with(b"HTTP/1.1 200 "));
        }
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "one per serving thread");
}

/// More requests in flight at once than the pool keeps connections: each gets its own
/// connection, the ones beyond the pool's size close after their exchange, and every
/// request is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_concurrent_requests_than_kept_connections_all_complete() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    let addr = gateway.addr;
    let requests: Vec<_> = (0..80)
        .map(|_| tokio::spawn(async move { raw_get(addr, "app.test", "/slow", &[]).await }))
        .collect();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!((response.status, response.body.as_str()), (200, "slow"));
    }
    assert_eq!(upstream.count(), 80);
    // And the kept connections still work afterwards.
    let response = raw_get(addr, "app.test", "/", &[]).await;
    assert_eq!((response.status, response.body.as_str()), (200, "echo"));
}
