//! The upstream side: a pool of kept-alive connections per route ([`pool`]),
//! streaming in both directions.
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
use http::{HeaderValue, Request, Response, Uri, Version, header};
use hyper::body::Incoming;
use hyper_rustls::ConfigBuilderExt;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::RootCertStore;
use rustls::version::{TLS12, TLS13};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use self::pool::Pool;
use super::path::CanonicalPath;
use super::reject::Reject;
use crate::config::RouteConfig;

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
    pool: Pool,
    response_timeout: Duration,
}

impl Upstream {
    /// Builds the client for a configured route.
    pub fn build(route: &RouteConfig) -> Result<Upstream, UpstreamError> {
        let bad = |problem: &'static str| UpstreamError::Address {
            route: route.id.clone(),
            upstream: route.upstream.to_string(),
            problem,
        };
        let scheme = route.upstream.scheme().cloned().unwrap_or(Scheme::HTTP);
        let authority = route
            .upstream
            .authority()
            .cloned()
            .ok_or_else(|| bad("it has no host"))?;
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
        let host = host_header(&scheme, &authority)
            .ok_or_else(|| bad("its host is not a valid Host header"))?;
        let target = Uri::builder()
            .scheme(scheme)
            .authority(authority)
            .path_and_query("/")
            .build()
            .map_err(|_| bad("it is not a valid URI"))?;
        Ok(Upstream {
            host,
            pool: Pool::new(connector, target),
            response_timeout: route.response_timeout,
        })
    }

    /// The request target the upstream gets (origin-form: the canonical path and the
    /// client's raw query).
    pub fn uri_for(&self, path: &CanonicalPath, query: Option<&str>) -> Result<Uri, Reject> {
        let path_and_query = match query {
            Some(query) => PathAndQuery::try_from(format!("{}?{query}", path.as_str())),
            None => PathAndQuery::try_from(path.as_str()),
        }
        .map_err(|_| Reject::Internal("forwarded path is not a valid URI"))?;
        Ok(Uri::from(path_and_query))
    }

    /// Sends the request (already re-targeted and sanitised) and waits for the response
    /// head, bounded by the route's response timeout (connecting included). Bodies
    /// stream. A request without a `Host` gets the upstream's.
    pub async fn send(&self, mut request: Request<Incoming>) -> Result<Response<Incoming>, Reject> {
        *request.version_mut() = Version::HTTP_11;
        if !request.headers().contains_key(header::HOST) {
            request
                .headers_mut()
                .insert(header::HOST, self.host.clone());
        }
        match tokio::time::timeout(self.response_timeout, self.pool.send(request)).await {
            Err(_) => Err(Reject::UpstreamTimeout),
            Ok(Err(failure)) => Err(Reject::UpstreamUnavailable(failure)),
            Ok(Ok(response)) => Ok(response),
        }
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
