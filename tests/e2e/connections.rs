//! Client connections as the gateway's own HTTP/1.1 server and hyper share them:
//! keep-alive, pipelining, the hand-off to hyper in the middle of a connection,
//! HTTP/1.0, HEAD, and the timeouts, seen on raw sockets.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{EchoUpstream, Gateway, Setup, route};

async fn gateway(upstream: &EchoUpstream, extra: &str) -> Gateway {
    Gateway::start(Setup {
        extra: extra.into(),
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await
}

/// An echo upstream, a gateway in front of it, and a connection to the gateway.
async fn connected() -> (EchoUpstream, Gateway, TcpStream) {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway(&upstream, "").await;
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    (upstream, gateway, stream)
}

/// One response read off a kept connection (bodies framed by `Content-Length`).
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Reads `count` responses from `stream`; `heads` marks those answering HEAD (no body).
async fn answers(stream: &mut TcpStream, heads: &[bool]) -> Vec<Answer> {
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for &head_request in heads {
        loop {
            if let Some(end) = buf.windows(4).position(|window| window == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                let length: usize = head
                    .lines()
                    .find_map(|line| {
                        line.to_ascii_lowercase()
                            .strip_prefix("content-length: ")
                            .map(|value| value.trim().parse().unwrap())
                    })
                    .unwrap_or(0);
                let length = if head_request { 0 } else { length };
                if buf.len() >= end + 4 + length {
                    let body =
                        String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
                    buf.drain(..end + 4 + length);
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    answers.push(Answer { status, head, body });
                    break;
                }
            }
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, stream.read(&mut chunk))
                .await
                .expect("no answer in time")
                .unwrap();
            assert!(
                read > 0,
                "closed after {} answers: {answers:?}",
                answers.len()
            );
            buf.extend_from_slice(&chunk[..read]);
        }
    }
    assert!(
        buf.is_empty(),
        "bytes past the answers: {:?}",
        String::from_utf8_lossy(&buf)
    );
    answers
}

/// Whether the server closes `stream` within `within` (reading and dropping anything
/// it still sends).
async fn closes(stream: &mut TcpStream, within: Duration) -> bool {
    let mut sink = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut sink)).await {
            Err(_) => return false,
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_order_across_the_hand_off() {
    let (upstream, _gateway, mut stream) = connected().await;
    // Two bodiless heads (served by the gateway itself), an upload (hyper from here on),
    // and a last GET, in one write.
    stream
        .write_all(
            b"GET /a HTTP/1.1\r\nHost: app.test\r\n\r\n\
              GET /b?x=1 HTTP/1.1\r\nHost: app.test\r\nContent-Length: 0\r\n\r\n\
              POST /count HTTP/1.1\r\nHost: app.test\r\nContent-Length: 5\r\n\r\nhello\
              GET /c HTTP/1.1\r\nHost: app.test\r\n\r\n",
        )
        .await
        .unwrap();
    let got = answers(&mut stream, &[false; 4]).await;
    let bodies: Vec<(u16, &str)> = got.iter().map(|a| (a.status, a.body.as_str())).collect();
    assert_eq!(
        bodies,
        [(200, "echo"), (200, "echo"), (200, "5"), (200, "echo")]
    );
    let targets: Vec<String> = upstream
        .seen()
        .into_iter()
        .map(|seen| seen.target)
        .collect();
    assert_eq!(targets, ["/a", "/b?x=1", "/count", "/c"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_connection_carries_gets_and_uploads_in_turn() {
    let (upstream, _gateway, mut stream) = connected().await;
    for (request, expected) in [
        (&b"GET /one HTTP/1.1\r\nHost: app.test\r\n\r\n"[..], "echo"),
        (
            b"PUT /count HTTP/1.1\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
            "3",
        ),
        (b"GET /two HTTP/1.1\r\nHost: app.test\r\n\r\n", "echo"),
    ] {
        stream.write_all(request).await.unwrap();
        let got = answers(&mut stream, &[false]).await;
        assert_eq!((got[0].status, got[0].body.as_str()), (200, expected), "{got:?}");
    }
    assert_eq!(upstream.count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http10_clients_get_the_connection_handling_they_ask_for() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway(&upstream, "").await;

    // Without keep-alive: answered, then closed.
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    let got = answers(&mut stream, &[false]).await;
    assert_eq!((got[0].status, got[0].body.as_str()), (200, "echo"));
    assert!(
        got[0]
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "{got:?}"
    );
    assert!(closes(&mut stream, Duration::from_secs(5)).await);

    // With keep-alive: confirmed, and the connection takes a second request.
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    for _ in 0..2 {
        stream
            .write_all(b"GET / HTTP/1.0\r\nHost: app.test\r\nConnection: keep-alive\r\n\r\n")
            .await
            .unwrap();
        let got = answers(&mut stream, &[false]).await;
        assert_eq!(got[0].body, "echo");
        assert!(
            got[0]
                .head
                .to_ascii_lowercase()
                .contains("connection: keep-alive"),
            "{got:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_answers_carry_the_length_and_no_body() {
    let (_upstream, _gateway, mut stream) = connected().await;
    stream
        .write_all(
            b"HEAD / HTTP/1.1\r\nHost: app.test\r\n\r\nGET / HTTP/1.1\r\nHost: app.test\r\n\r\n",
        )
        .await
        .unwrap();
    // Were a body sent after the HEAD answer, the second answer would not parse and
    // `answers` would see stray bytes.
    let got = answers(&mut stream, &[true, false]).await;
    assert!(
        got[0]
            .head
            .to_ascii_lowercase()
            .contains("content-length: 4"),
        "{got:?}"
    );
    assert_eq!((got[1].status, got[1].body.as_str()), (200, "echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_that_never_completes_is_dropped_after_the_header_timeout() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway(
        &upstream,
        "[limits]\nheader_read_timeout = \"300ms\"\nidle_timeout = \"60s\"\n",
    )
    .await;
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app")
        .await
        .unwrap();
    assert!(
        closes(&mut stream, Duration::from_secs(5)).await,
        "a stalled head kept its connection"
    );

    // The same after a first request on the connection was served.
    let mut stream = TcpStream::connect(gateway.addr).await.unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\nGET / HTTP/1.1\r\n")
        .await
        .unwrap();
    assert_eq!(answers(&mut stream, &[false]).await[0].body, "echo");
    assert!(closes(&mut stream, Duration::from_secs(5)).await);
    assert_eq!(upstream.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_closes_kept_connections_between_requests() {
    let (_upstream, mut gateway, mut stream) = connected().await;
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(answers(&mut stream, &[false]).await[0].body, "echo");
    gateway.signal("TERM");
    assert!(
        closes(&mut stream, Duration::from_secs(5)).await,
        "an idle kept connection held up shutdown"
    );
    assert!(gateway.wait_exit().await, "gateway exited with failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_head_over_the_limit_is_refused_however_it_arrives() {
    let upstream = EchoUpstream::start().await;
    let gateway = gateway(&upstream, "").await;
    // The default limit is 16 KiB; this head is just over it, sent in one write so it
    // may well be read whole.
    let head = format!(
        "GET / HTTP/1.1\r\nHost: app.test\r\nX-Big: {}\r\n\r\n",
        "b".repeat(16 * 1024)
    );
    let response = crate::support::raw_exchange(gateway.addr, head.as_bytes()).await;
    assert_eq!(response.status, 431, "{response:?}");
    assert_eq!(upstream.count(), 0);
}
