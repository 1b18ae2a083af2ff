//! The internal listener: `/metrics` (Prometheus text), `/health` and `/ready`, for
//! operators and orchestrators only. Bind it to a private address. A gateway started
//! with `serve --unsafe-test-clock` also answers `POST /test/clock/advance?seconds=N`.

use std::convert::Infallible;
use std::sync::Arc;

use http::{HeaderValue, Method, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::metrics;
use crate::proxy::pipeline::{Gateway, health_body};
use crate::proxy::{Body, full};

/// Serves the internal endpoints until shutdown.
pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let gateway = Arc::clone(&gateway);
                tokio::spawn(async move {
                    let service = service_fn(move |request: hyper::Request<Incoming>| {
                        let gateway = Arc::clone(&gateway);
                        async move { Ok::<_, Infallible>(respond(&gateway, request.method(), request.uri().path(), request.uri().query())) }
                    });
                    if let Err(err) = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(error = %err, "internal connection ended with error");
                    }
                });
            }
            _ = shutdown.changed() => return,
        }
    }
}

fn respond(gateway: &Gateway, method: &Method, path: &str, query: Option<&str>) -> Response<Body> {
    let (status, content_type, body) = match (method, path) {
        // Only with `serve --unsafe-test-clock`: end-to-end tests move time forward.
        (&Method::POST, "/test/clock/advance") => {
            let seconds = query
                .and_then(|q| q.strip_prefix("seconds="))
                .and_then(|n| n.parse::<u32>().ok());
            match seconds.map(crate::clock::advance_test_clock) {
                Some(Some(offset)) => (
                    StatusCode::OK,
                    "application/json",
                    format!("{{\"offset_seconds\":{offset}}}\n"),
                ),
                Some(None) => (
                    StatusCode::NOT_FOUND,
                    "application/json",
                    "{\"error\":\"not_found\"}\n".into(),
                ),
                None => (
                    StatusCode::BAD_REQUEST,
                    "application/json",
                    "{\"error\":\"seconds\"}\n".into(),
                ),
            }
        }
        (&Method::GET, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4",
            metrics::render(),
        ),
        (&Method::GET, "/health") => (
            StatusCode::OK,
            "application/json",
            health_body(gateway, "ok"),
        ),
        (&Method::GET, "/ready") if gateway.is_draining() => (
            StatusCode::SERVICE_UNAVAILABLE,
            "application/json",
            health_body(gateway, "draining"),
        ),
        (&Method::GET, "/ready") => (
            StatusCode::OK,
            "application/json",
            health_body(gateway, "ready"),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "application/json",
            "{\"error\":\"not_found\"}\n".into(),
        ),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}
