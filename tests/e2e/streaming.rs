//! Bodies stream in both directions, HTTP/2 clients reach HTTP/1.1 upstreams, and
//! WebSockets pass through.

use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Request, Version};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

use crate::support::{EchoUpstream, Gateway, Setup, TestBody, client, route};

fn channel_body() -> (mpsc::Sender<Bytes>, TestBody) {
    let (sender, receiver) = mpsc::channel::<Bytes>(4);
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver
            .recv()
            .await
            .map(|bytes| (Ok::<_, hyper::Error>(Frame::data(bytes)), receiver))
    });
    (sender, BodyExt::boxed(StreamBody::new(stream)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_stream_both_ways_without_buffering() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    // Full duplex: each chunk comes back through gateway and upstream before the next
    // is sent. A proxy that buffered the request (or the response) would deadlock here.
    let (sender, request_body) = channel_body();
    let request = Request::post(format!("http://{}/stream", gateway.addr))
        .header("host", "app.test")
        .body(request_body)
        .unwrap();
    sender.send(Bytes::from_static(b"chunk-0")).await.unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), client().request(request))
        .await
        .expect("response head while the request body is still open")
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut response_body = response.into_body();
    for i in 0..5 {
        if i > 0 {
            sender
                .send(Bytes::from(format!("chunk-{i}")))
                .await
                .unwrap();
        }
        let frame = tokio::time::timeout(Duration::from_secs(10), response_body.frame())
            .await
            .expect("echo of a chunk before the next one is sent")
            .unwrap()
            .unwrap();
        assert_eq!(
            frame.into_data().unwrap(),
            Bytes::from(format!("chunk-{i}"))
        );
    }
    drop(sender);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_upload_passes_through_in_constant_memory() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    const CHUNK: usize = 1 << 20;
    const CHUNKS: usize = 256;
    // Measured as growth over what the gateway held before the upload, so the figure
    // does not depend on how large the (debug) binary starts.
    let before = memory_kib(gateway.pid(), "VmRSS:");
    let (sender, request_body) = channel_body();
    let producer = tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'x'; CHUNK]);
        for _ in 0..CHUNKS {
            if sender.send(chunk.clone()).await.is_err() {
                return;
            }
        }
    });
    let request = Request::post(format!("http://{}/count", gateway.addr))
        .header("host", "app.test")
        .body(request_body)
        .unwrap();
    let response = client().request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, (CHUNK * CHUNKS).to_string());
    producer.await.unwrap();
    // 256 MiB went through; the gateway's resident memory grew far less than that.
    let peak = memory_kib(gateway.pid(), "VmHWM:");
    let grown = peak.saturating_sub(before);
    assert!(
        grown < 32 * 1024,
        "peak RSS {peak} KiB, {grown} KiB over the {before} KiB before the upload, suggests the body was buffered"
    );
}

/// A memory figure (`VmRSS:`, `VmHWM:`) of process `pid`, in KiB.
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_client_reaches_http1_upstream() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    let stream = TcpStream::connect(gateway.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = Request::post(format!("http://app.test:{}/stream", gateway.addr.port()))
        .body(crate::support::body("over h2"))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.version(), Version::HTTP_2);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "over h2");
    let seen = upstream.seen();
    assert_eq!(seen[0].method, http::Method::POST);
    assert_eq!(seen[0].version, Version::HTTP_11);
    assert_eq!(
        seen[0].headers["host"],
        format!("app.test:{}", gateway.addr.port())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_echo_through_the_gateway() {
    let upstream = EchoUpstream::start().await;
    let routes = format!(
        "{}{}",
        route("ws", "*", "/ws", &upstream.url(), "websocket = true"),
        route("plain", "*", "/", &upstream.url(), ""),
    );
    let gateway = Gateway::start(Setup {
        routes,
        ..Setup::default()
    })
    .await;
    let (mut socket, response) = tokio_tungstenite::client_async(
        format!("ws://app.test:{}/ws", gateway.addr.port()),
        TcpStream::connect(gateway.addr).await.unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 101);
    for text in ["hello", "through", "portcullis"] {
        socket.send(Message::text(text)).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(10), socket.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(echoed, Message::text(text));
    }
    socket.close(None).await.unwrap();
    let seen = upstream.seen();
    assert_eq!(seen[0].headers["upgrade"], "websocket");
    assert!(seen[0].headers.get("x-forwarded-for").is_some());

    // A route without `websocket = true` never forwards the upgrade.
    let refused = tokio_tungstenite::client_async(
        format!("ws://app.test:{}/other", gateway.addr.port()),
        TcpStream::connect(gateway.addr).await.unwrap(),
    )
    .await;
    assert!(
        refused.is_err(),
        "upgrade succeeded on a route without websocket = true"
    );
    let seen = upstream.seen();
    assert!(seen[1].headers.get("upgrade").is_none());
}
