//! The upstream side against a scripted HTTP/1.1 server: every response framing, and
//! the responses a pooled connection must not survive (ambiguous framing, bytes past
//! the end, a malformed chunk), so one user's exchange can never leak into another's.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::{Method, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    Gateway, Setup, body, empty, header_values, raw_exchange, raw_get, route, scripted_upstream,
    send,
};

fn script(target: &str) -> &'static str {
    match target {
        "/both" => {
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"
        }
        "/two-lengths" => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
        "/extra" => {
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nhacked"
        }
        "/bad-chunk" => "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nokX",
        "/chunked" => {
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n3;ext=1\r\ndef\r\n0\r\nx-trailer: t\r\n\r\n"
        }
        "/until-close" => "HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nuntil the end",
        "/interim" => {
            "HTTP/1.1 103 Early Hints\r\nlink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal"
        }
        "/not-modified" => "HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n",
        "/switch" => {
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        }
        "/early" => {
            "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 7\r\nconnection: close\r\n\r\ntoo big"
        }
        "/headers" => {
            "HTTP/1.1 200 OK\r\nX-App: a\r\nSet-Cookie: s=1\r\nSet-Cookie: t=2\r\nDate: Thu, 01 Jan 2026 00:00:00 GMT\r\nConnection: keep-alive, X-Hop\r\nX-Hop: secret\r\nKeep-Alive: timeout=5\r\nContent-Length: 2\r\n\r\nok"
        }
        // `/head` is asked with HEAD: the length is the GET's, and no body follows.
        "/head" => "HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n",
        _ => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
    }
}

/// A gateway with one serving thread, so that every client connection draws on the
/// same upstream connections and the tests can count them.
async fn gateway_for(upstream: SocketAddr) -> Gateway {
    Gateway::start(Setup {
        routes: route("app", "*", "/", &format!("http://{upstream}"), ""),
        extra: "[runtime]\nworkers = 1\n".into(),
        ..Setup::default()
    })
    .await
}

async fn get(gateway: &Gateway, method: Method, path: &str) -> (u16, String) {
    let request = Request::builder()
        .method(method)
        .uri(format!("http://{}{path}", gateway.addr))
        .header("host", "app.test")
        .body(empty())
        .unwrap();
    let (status, _, body) = send(request).await;
    (status.as_u16(), body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_framing_passes_through() {
    let (upstream, connections) = scripted_upstream(script).await;
    let gateway = gateway_for(upstream).await;
    assert_eq!(
        get(&gateway, Method::GET, "/chunked").await,
        (200, "abcdef".into())
    );
    assert_eq!(
        get(&gateway, Method::GET, "/interim").await,
        (200, "final".into())
    );
    assert_eq!(
        get(&gateway, Method::GET, "/not-modified").await,
        (304, String::new())
    );
    let head = raw_exchange(
        gateway.addr,
        b"HEAD /head HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(head.status, 200);
    assert!(head.head.contains("content-length: 1024"), "{}", head.head);
    assert_eq!(head.body, "");
    assert_eq!(get(&gateway, Method::GET, "/").await, (200, "ok".into()));
    // All of the above ended where their framing said: one connection carried them.
    assert_eq!(connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        get(&gateway, Method::GET, "/until-close").await,
        (200, "until the end".into())
    );
    assert_eq!(get(&gateway, Method::GET, "/").await, (200, "ok".into()));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_upstream_framing_is_a_502_and_the_connection_is_dropped() {
    let (upstream, connections) = scripted_upstream(script).await;
    let gateway = gateway_for(upstream).await;
    for (n, path) in ["/both", "/two-lengths"].into_iter().enumerate() {
        let response = raw_get(gateway.addr, "app.test", path, &[]).await;
        assert_eq!(response.status, 502, "{path}");
        assert!(
            response.body.contains("upstream_unavailable"),
            "{}",
            response.body
        );
        assert_eq!(get(&gateway, Method::GET, "/").await, (200, "ok".into()));
        // The refused response's connection was not kept: the request after it
        // opened a new one.
        assert_eq!(connections.load(Ordering::SeqCst), n + 2, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_past_a_response_never_reach_the_next_request() {
    let (upstream, connections) = scripted_upstream(script).await;
    let gateway = gateway_for(upstream).await;
    assert_eq!(
        get(&gateway, Method::GET, "/extra").await,
        (200, "ok".into())
    );
    assert_eq!(get(&gateway, Method::GET, "/").await, (200, "ok".into()));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_chunk_cuts_the_response_off_and_drops_the_connection() {
    let (upstream, connections) = scripted_upstream(script).await;
    let gateway = gateway_for(upstream).await;
    let mut client = TcpStream::connect(gateway.addr).await.unwrap();
    client
        .write_all(b"GET /bad-chunk HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), client.read_to_end(&mut seen)).await;
    // The gateway closes the client's connection without ending the body, so the
    // client cannot take the cut-off response for a whole one.
    assert!(read.is_ok(), "the connection was left open");
    let seen = String::from_utf8_lossy(&seen);
    assert!(!seen.contains("0\r\n\r\n"), "{seen:?}");
    assert_eq!(get(&gateway, Method::GET, "/").await, (200, "ok".into()));
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unasked_protocol_switch_is_a_502() {
    let (upstream, _) = scripted_upstream(script).await;
    let gateway = gateway_for(upstream).await;
    let response = raw_get(gateway.addr, "app.test", "/switch", &[]).await;
    assert_eq!(response.status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_answering_an_upload_early_is_heard() {
    let (upstream, _) = scripted_upstream(script).await;
    let gateway = gateway_for(upstream).await;
    let body = "x".repeat(64 * 1024);
    let request = format!(
        "POST /early HTTP/1.1\r\nHost: app.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let response = raw_exchange(gateway.addr, request.as_bytes()).await;
    assert_eq!((response.status, response.body.as_str()), (413, "too big"));
}

/// A kept connection the upstream closes as the next request arrives: a GET goes
/// once more on a new connection and succeeds; a POST is never sent twice, so the
/// client gets a 502 (the upstream may have acted on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_idempotent_requests_are_retried_on_a_fresh_connection() {
    let (upstream, connections) = scripted_upstream(script).await;
    let gateway = gateway_for(upstream).await;
    assert_eq!(
        get(&gateway, Method::GET, "/once").await,
        (200, "ok".into())
    );
    assert_eq!(
        get(&gateway, Method::GET, "/once").await,
        (200, "ok".into())
    );
    assert_eq!(connections.load(Ordering::SeqCst), 2);
    let (status, _) = get(&gateway, Method::POST, "/once").await;
    assert_eq!(status, 502);
    assert_eq!(
        connections.load(Ordering::SeqCst),
        2,
        "the POST was not sent again"
    );
}

/// The upstream's end-to-end headers reach the client as they were sent (repeated
/// ones in order, its own `Date`), its hop-by-hop ones never do (nor a header its
/// `Connection` names), whichever server side answers: the gateway's own (a GET) or
/// hyper (a request with a body).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_response_headers_pass_and_hop_by_hop_ones_stop() {
    let (upstream, _) = scripted_upstream(script).await;
    let gateway = gateway_for(upstream).await;
    let raw = raw_exchange(
        gateway.addr,
        b"GET /headers HTTP/1.1\r\nHost: app.test\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((raw.status, raw.body.as_str()), (200, "ok"));
    let lines: Vec<String> = raw.head.lines().skip(1).map(str::to_lowercase).collect();
    let named = |name: &str| -> Vec<&str> {
        lines
            .iter()
            .filter_map(|line| line.strip_prefix(&format!("{name}: ")))
            .collect()
    };
    assert_eq!(named("x-app"), ["a"], "{lines:?}");
    assert_eq!(named("set-cookie"), ["s=1", "t=2"], "{lines:?}");
    assert_eq!(
        named("date"),
        ["thu, 01 jan 2026 00:00:00 gmt"],
        "{lines:?}"
    );
    assert_eq!(named("content-length"), ["2"], "{lines:?}");
    assert_eq!(named("connection"), ["close"], "{lines:?}");
    assert!(
        named("x-hop").is_empty() && named("keep-alive").is_empty(),
        "{lines:?}"
    );

    let request = Request::builder()
        .method(Method::POST)
        .uri(format!("http://{}/headers", gateway.addr))
        .header("host", "app.test")
        .body(body("x"))
        .unwrap();
    let (status, headers, text) = send(request).await;
    assert_eq!((status.as_u16(), text.as_str()), (200, "ok"));
    assert_eq!(header_values(&headers, "x-app"), ["a"]);
    assert_eq!(header_values(&headers, "set-cookie"), ["s=1", "t=2"]);
    assert_eq!(
        header_values(&headers, "date"),
        ["Thu, 01 Jan 2026 00:00:00 GMT"]
    );
    assert!(header_values(&headers, "x-hop").is_empty(), "{headers:?}");
    assert!(
        header_values(&headers, "keep-alive").is_empty(),
        "{headers:?}"
    );
}
