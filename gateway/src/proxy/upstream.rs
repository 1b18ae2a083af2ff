//! The upstream side: kept-alive HTTP/1.1 connections per route ([`pool`]), on which
//! the client's request task itself writes the request and reads the response
//! ([`exchange`], framed by [`codec`]), streaming in both directions.
//!
//! Bodies are never collected: the client's body is sent as it arrives and the
//! upstream's is handed to the client side as it is read, so memory stays flat
//! whatever the size. Upstreams speak HTTP/1.1 (an HTTP/2 client is re-framed), which
//! also keeps WebSocket upgrades possible. `https://` upstreams are verified against the
//! system roots or the route's own CA file.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use http::{HeaderValue, Method, Response};
use hyper_rustls::ConfigBuilderExt;
use rustls::RootCertStore;
use rustls::version::{TLS12, TLS13};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::time::{Instant, Sleep};

use self::conn::Connector;
pub use self::exchange::{BodyError, Tunnel, UpstreamBody};
use self::exchange::{Outgoing, exchange, is_idempotent, request_framing, response};
use self::pool::Pool;
use super::RequestBody;
use super::headers::HeaderLines;
use super::path::CanonicalPath;
use super::reject::Reject;
use super::request::RequestHeaders;
use crate::config::RouteConfig;

pub mod codec;
mod conn;
mod exchange;
mod pool;

/// Why an upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The upstream URL cannot be connected to as written (no host, or a host that
    /// cannot be a `Host` header).
    #[error("route `{route}`: upstream `{upstream}`: {problem}")]
    Address {
        /// The route id.
        route: String,
        /// The upstream URL.
        upstream: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The route's CA file could not be read or holds no certificate.
    #[error("route `{route}`: upstream CA `{path}`: {problem}")]
    Ca {
        /// The route id.
        route: String,
        /// The CA file.
        path: String,
        /// What went wrong.
        problem: String,
    },
    /// No system trust roots were found for an `https://` upstream.
    #[error("route `{route}`: no system CA certificates found ({problem}); set `upstream_ca`")]
    NativeRoots {
        /// The route id.
        route: String,
        /// What the loader said.
        problem: String,
    },
    /// rustls refused the client configuration.
    #[error("route `{route}`: TLS client configuration: {source}")]
    Tls {
        /// The route id.
        route: String,
        /// The rustls error.
        source: rustls::Error,
    },
}

/// Where a route's traffic goes, and the connections that take it there.
pub struct Upstream {
    /// The `Host` a request gets when the route does not pass the client's on.
    host: HeaderValue,
    pool: Arc<Pool>,
    response_timeout: Duration,
}

impl Upstream {
    /// Builds the client for a configured route, keeping connections for `threads`
    /// serving threads.
    pub fn build(route: &RouteConfig, threads: usize) -> Result<Upstream, UpstreamError> {
        let bad = |problem: &'static str| UpstreamError::Address {
            route: route.id.clone(),
            upstream: route.upstream.to_string(),
            problem,
        };
        let scheme = route.upstream.scheme().cloned().unwrap_or(Scheme::HTTP);
        let https = scheme == Scheme::HTTPS;
        let authority = route
            .upstream
            .authority()
            .cloned()
            .ok_or_else(|| bad("it has no host"))?;
        let tls = if https {
            Some(tls_client_config(route)?)
        } else {
            None
        };
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let connector = Connector::new(authority.host(), port, tls, route.connect_timeout)
            .ok_or_else(|| bad("its host is not a valid TLS server name"))?;
        let host = host_header(&scheme, &authority)
            .ok_or_else(|| bad("its host is not a valid Host header"))?;
        Ok(Upstream {
            host,
            pool: Arc::new(Pool::new(connector, threads)),
            response_timeout: route.response_timeout,
        })
    }

    /// The `Host` a request gets when the route does not pass the client's on.
    pub fn host(&self) -> &HeaderValue {
        &self.host
    }

    /// Sends the request (its `headers` already sanitised, the gateway's `added` lines
    /// beside them, one of the two carrying `Host`) to `path` and the client's raw
    /// `query`, and waits for the response head, bounded by the route's response
    /// timeout (connecting included), kept with `timer`. Bodies stream.
    #[expect(
        clippy::too_many_arguments,
        reason = "the request's parts, borrowed where they lie rather than gathered"
    )]
    pub async fn send(
        &self,
        method: &Method,
        query: Option<&str>,
        headers: &RequestHeaders,
        added: &HeaderLines,
        body: RequestBody,
        path: &CanonicalPath,
        timer: &ResponseTimer,
    ) -> Result<Response<UpstreamBody>, Reject> {
        let framing = request_framing(headers, &body);
        let head =
            codec::encode_request_head(method, path.as_str(), query, headers, added, framing)
                .map_err(|_| Reject::Internal("forwarded path is not a valid request target"))?;
        let outgoing = Outgoing::new(head.clone(), body, framing);
        let sending = self.exchange(method, head, outgoing);
        let deadline = tokio::time::Instant::now() + self.response_timeout;
        match timer.run(deadline, sending).await {
            None => Err(Reject::UpstreamTimeout),
            Some(Err(failure)) => Err(Reject::UpstreamUnavailable(failure)),
            Some(Ok(response)) => Ok(response),
        }
    }

    /// Runs the exchange on a kept connection, or a new one; an idempotent request
    /// whose kept connection turned out closed goes once more on a new one.
    async fn exchange(
        &self,
        method: &Method,
        head: bytes::Bytes,
        mut outgoing: Outgoing,
    ) -> Result<Response<UpstreamBody>, String> {
        let head_request = *method == Method::HEAD;
        if let Some(mut conn) = self.pool.checkout() {
            match exchange(&mut conn, &mut outgoing, head_request).await {
                Ok(response_head) => {
                    return Ok(response(response_head, conn, outgoing, &self.pool));
                }
                Err(failed) => {
                    let again = (failed.retryable && is_idempotent(method))
                        .then(|| outgoing.again(head))
                        .flatten();
                    match again {
                        Some(again) => outgoing = again,
                        None => return Err(failed.reason),
                    }
                }
            }
        }
        // Boxed: connecting (a DNS lookup, TLS) is rare and its future is large.
        let mut conn = Box::pin(self.pool.connect()).await?;
        match exchange(&mut conn, &mut outgoing, head_request).await {
            Ok(response_head) => Ok(response(response_head, conn, outgoing, &self.pool)),
            Err(failed) => Err(failed.reason),
        }
    }
}

/// A client connection's response deadline, kept from one request to the next.
///
/// A timer registered and removed for every request costs more than the rest of the
/// upstream exchange's bookkeeping (callgrind: ~1.5k instructions). Requests on one
/// connection mostly follow each other, so each takes the connection's timer, moves
/// its deadline (a later deadline only updates the registered entry) and puts it back;
/// a request that finds it taken (concurrent HTTP/2 streams) uses a timer of its own.
#[derive(Debug, Default)]
pub struct ResponseTimer(Mutex<Option<Pin<Box<Sleep>>>>);

impl ResponseTimer {
    /// Runs `future` until it completes (`Some`) or `deadline` passes (`None`).
    async fn run<F: Future>(&self, deadline: Instant, future: F) -> Option<F::Output> {
        let kept = self.0.lock().ok().and_then(|mut slot| slot.take());
        let mut sleep = match kept {
            Some(mut sleep) => {
                sleep.as_mut().reset(deadline);
                sleep
            }
            None => Box::pin(tokio::time::sleep_until(deadline)),
        };
        let mut future = std::pin::pin!(future);
        let output = std::future::poll_fn(|cx| {
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Some(output));
            }
            sleep.as_mut().poll(cx).map(|()| None)
        })
        .await;
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(sleep);
        }
        output
    }
}

/// The `Host` for `authority`: its host, and its port unless the scheme's default.
fn host_header(scheme: &Scheme, authority: &Authority) -> Option<HeaderValue> {
    let default_port = if *scheme == Scheme::HTTPS { 443 } else { 80 };
    let value = match authority.port_u16() {
        Some(port) if port != default_port => format!("{}:{port}", authority.host()),
        _ => authority.host().to_owned(),
    };
    HeaderValue::from_str(&value).ok()
}

fn tls_client_config(route: &RouteConfig) -> Result<rustls::ClientConfig, UpstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|source| UpstreamError::Tls {
            route: route.id.clone(),
            source,
        })?;
    let config = match &route.upstream_ca {
        Some(ca) => builder
            .with_root_certificates(load_ca(&route.id, ca)?)
            .with_no_client_auth(),
        None => builder
            .with_native_roots()
            .map_err(|err| UpstreamError::NativeRoots {
                route: route.id.clone(),
                problem: err.to_string(),
            })?
            .with_no_client_auth(),
    };
    Ok(config)
}

fn load_ca(route: &str, path: &Path) -> Result<RootCertStore, UpstreamError> {
    let fail = |problem: String| UpstreamError::Ca {
        route: route.to_owned(),
        path: path.display().to_string(),
        problem,
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path).map_err(|err| fail(err.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|err| fail(err.to_string()))?;
        roots.add(cert).map_err(|err| fail(err.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in file".into()));
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use http::uri::{Authority, Scheme};

    use super::host_header;

    #[test]
    fn host_header_omits_only_the_default_port() {
        let host = |scheme: Scheme, authority: &'static str| {
            host_header(&scheme, &Authority::from_static(authority))
                .map(|value| value.to_str().unwrap_or_default().to_owned())
        };
        assert_eq!(host(Scheme::HTTP, "app:80").as_deref(), Some("app"));
        assert_eq!(host(Scheme::HTTP, "app").as_deref(), Some("app"));
        assert_eq!(host(Scheme::HTTP, "app:8080").as_deref(), Some("app:8080"));
        assert_eq!(host(Scheme::HTTPS, "app:443").as_deref(), Some("app"));
        assert_eq!(host(Scheme::HTTPS, "app:80").as_deref(), Some("app:80"));
        assert_eq!(
            host(Scheme::HTTP, "[::1]:8080").as_deref(),
            Some("[::1]:8080")
        );
    }
}
