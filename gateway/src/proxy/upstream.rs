//! The upstream side: a pooled hyper client per route, streaming in both directions.
//!
//! Bodies are never collected: the client's `Incoming` body is handed to the upstream
//! request and the upstream's `Incoming` body is handed back, so memory stays flat
//! whatever the size. Upstreams speak HTTP/1.1 (an HTTP/2 client is re-framed), which
//! also keeps WebSocket upgrades possible. `https://` upstreams are verified against the
//! system roots or the route's own CA file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::version::{TLS12, TLS13};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use super::path::CanonicalPath;
use super::reject::Reject;
use crate::config::RouteConfig;

type PooledClient = Client<HttpsConnector<HttpConnector>, Incoming>;

/// Why an upstream client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
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

/// Where a route's traffic goes, and the pooled client that takes it there.
pub struct Upstream {
    scheme: Scheme,
    authority: Authority,
    client: PooledClient,
    response_timeout: Duration,
}

impl Upstream {
    /// Builds the client for a configured route.
    pub fn build(route: &RouteConfig) -> Result<Upstream, UpstreamError> {
        let scheme = route.upstream.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = route
            .upstream
            .authority()
            .cloned()
            .ok_or_else(|| UpstreamError::Ca {
                route: route.id.clone(),
                path: String::new(),
                problem: "upstream has no host".into(),
            })?;
        let tls = tls_client_config(route, scheme == Scheme::HTTPS)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(route.connect_timeout));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .build(connector);
        Ok(Upstream {
            scheme,
            authority,
            client,
            response_timeout: route.response_timeout,
        })
    }

    /// The upstream URI for a canonical path and the client's raw query.
    pub fn uri_for(&self, path: &CanonicalPath, query: Option<&str>) -> Result<Uri, Reject> {
        let path_and_query = match query {
            Some(query) => format!("{}?{query}", path.as_str()),
            None => path.as_str().to_owned(),
        };
        let path_and_query = PathAndQuery::try_from(path_and_query)
            .map_err(|_| Reject::Internal("forwarded path is not a valid URI"))?;
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| Reject::Internal("forwarded URI could not be built"))
    }

    /// Sends the request (already re-targeted and sanitised) and waits for the response
    /// head, bounded by the route's response timeout. Bodies stream.
    pub async fn send(&self, mut request: Request<Incoming>) -> Result<Response<Incoming>, Reject> {
        *request.version_mut() = Version::HTTP_11;
        match tokio::time::timeout(self.response_timeout, self.client.request(request)).await {
            Err(_) => Err(Reject::UpstreamTimeout),
            Ok(Err(err)) => Err(Reject::UpstreamUnavailable(describe(&err))),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

fn describe(err: &hyper_util::client::legacy::Error) -> String {
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

fn tls_client_config(
    route: &RouteConfig,
    https: bool,
) -> Result<rustls::ClientConfig, UpstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&TLS13, &TLS12])
        .map_err(|source| UpstreamError::Tls {
            route: route.id.clone(),
            source,
        })?;
    let config = match (&route.upstream_ca, https) {
        (Some(ca), _) => builder
            .with_root_certificates(load_ca(&route.id, ca)?)
            .with_no_client_auth(),
        (None, true) => builder
            .with_native_roots()
            .map_err(|err| UpstreamError::NativeRoots {
                route: route.id.clone(),
                problem: err.to_string(),
            })?
            .with_no_client_auth(),
        // Plain http: the connector never starts TLS, so no roots are needed.
        (None, false) => builder
            .with_root_certificates(RootCertStore::empty())
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
