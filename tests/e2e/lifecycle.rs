//! Process lifecycle: graceful drain on SIGTERM, idle connections, metrics.

use std::time::Duration;

use http::Request;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

use crate::support::{EchoUpstream, Gateway, Setup, empty, free_port, raw_get, route, send};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests() {
    let upstream = EchoUpstream::start().await;
    let mut gateway = Gateway::start(Setup {
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    let addr = gateway.addr;
    let in_flight = tokio::spawn(async move { raw_get(addr, "app.test", "/slow", &[]).await });
    for _ in 0..200 {
        if upstream.count() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(upstream.count(), 1, "request never reached the upstream");
    gateway.signal("TERM");
    let response = in_flight.await.unwrap();
    assert_eq!((response.status, response.body.as_str()), (200, "slow"));
    assert!(gateway.wait_exit().await, "gateway exited with failure");
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "still accepting after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed() {
    let upstream = EchoUpstream::start().await;
    let gateway = Gateway::start(Setup {
        extra: "[limits]\nidle_timeout = \"300ms\"\n".into(),
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    let mut idle = TcpStream::connect(gateway.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(10), idle.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection was not closed: {read:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_outcome() {
    let upstream = EchoUpstream::start().await;
    let internal = free_port();
    let gateway = Gateway::start(Setup {
        internal_port: Some(internal),
        routes: route(
            "app",
            "*",
            "/",
            &upstream.url(),
            "allow = [\"127.0.0.0/8\"]",
        ),
        ..Setup::default()
    })
    .await;
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/", &[]).await.status,
        200
    );
    assert_eq!(
        raw_get(gateway.addr, "app.test", "/%2e%2e/", &[])
            .await
            .status,
        400
    );
    let request = Request::get(format!("http://127.0.0.1:{internal}/metrics"))
        .body(empty())
        .unwrap();
    let (status, _, text) = send(request).await;
    assert_eq!(status, 200);
    assert!(
        text.contains("portcullis_requests_total{route=\"app\",outcome=\"proxied\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("portcullis_requests_total{route=\"-\",outcome=\"ambiguous_path\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "portcullis_request_duration_seconds_bucket{route=\"app\",outcome=\"proxied\""
        ),
        "{text}"
    );
    let request = Request::get(format!("http://127.0.0.1:{internal}/ready"))
        .body(empty())
        .unwrap();
    assert_eq!(send(request).await.0, 200);
}

async fn policy_revision(gateway: &Gateway) -> String {
    let health = raw_get(gateway.addr, "app.test", "/.portcullis/health", &[]).await;
    let body: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    body["policy_revision"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_folder_changes_reload_and_bad_bundles_are_refused() {
    let upstream = EchoUpstream::start().await;
    let internal = free_port();
    let gateway = Gateway::start(Setup {
        internal_port: Some(internal),
        routes: route("app", "*", "/", &upstream.url(), ""),
        ..Setup::default()
    })
    .await;
    let policies = gateway.dir.path().join("policies");
    let first = policy_revision(&gateway).await;

    // A broken policy is refused: the last good bundle keeps serving.
    std::fs::write(
        policies.join("roles/broken.cedar"),
        "@id(\"broken\")\npermit (principal, action, resource) when { context.nope };\n",
    )
    .unwrap();
    let metrics_url = format!("http://127.0.0.1:{internal}/metrics");
    let mut refused = false;
    for _ in 0..200 {
        let (_, _, text) = send(Request::get(&metrics_url).body(empty()).unwrap()).await;
        if text.contains("portcullis_policy_reloads_total{result=\"failed\"}") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(refused, "a broken bundle was never tried");
    assert_eq!(policy_revision(&gateway).await, first);

    // A valid change becomes the new revision without a restart.
    std::fs::remove_file(policies.join("roles/broken.cedar")).unwrap();
    let admin = policies.join("roles/admin.cedar");
    let text = std::fs::read_to_string(&admin).unwrap();
    std::fs::write(&admin, format!("// Reviewed.\n{text}")).unwrap();
    let mut current = first.clone();
    for _ in 0..200 {
        current = policy_revision(&gateway).await;
        if current != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(current, first, "the changed bundle never became active");
    let (_, _, text) = send(Request::get(&metrics_url).body(empty()).unwrap()).await;
    assert!(
        text.contains(&format!(
            "portcullis_policy_revision_info{{revision=\"{current}\"}} 1"
        )),
        "{text}"
    );
}
