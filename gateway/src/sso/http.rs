//! The only HTTP client single sign-on uses: OIDC discovery, JWKS and token requests,
//! and SAML IdP metadata fetched from a URL.
//!
//! It follows no redirects (a 3xx is an error), gives each exchange a deadline, reads
//! at most [`MAX_BODY`] bytes, and refuses any URL whose origin is not on the
//! provider's list: the issuer's own origin, plus a preset's known hosts. Discovery
//! documents are attacker-influenced input; without this list a provider (or whoever
//! answers for it) could point the gateway at internal services.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper_rustls::{ConfigBuilderExt, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use openidconnect::url::Url;
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use rustls::RootCertStore;
use rustls::version::{TLS12, TLS13};

/// The largest response body read from a provider.
pub(super) const MAX_BODY: usize = 256 * 1024;

/// The deadline for one exchange (connect, send, read the whole response).
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why one exchange with the provider failed. Messages name hosts and statuses only.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL's origin is not one this provider may use.
    #[error("refused to contact `{origin}`: not the issuer's host")]
    HostNotAllowed {
        /// The refused origin (scheme, host, port).
        origin: String,
    },
    /// The URL could not be parsed or has no host.
    #[error("refused a malformed URL")]
    BadUrl,
    /// The provider answered with a redirect, which is never followed.
    #[error("provider answered with redirect status {status}; redirects are not followed")]
    Redirect {
        /// The HTTP status.
        status: u16,
    },
    /// The response body was larger than the limit.
    #[error("provider response larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The exchange did not finish in time.
    #[error("provider did not answer within {seconds} s")]
    Timeout {
        /// The deadline in seconds.
        seconds: u64,
    },
    /// The connection or the HTTP exchange failed.
    #[error("could not reach the provider: {0}")]
    Transport(String),
}

/// A scheme, host and port that the client may talk to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// The origin of a URL, if it has a host and a known port.
    pub(super) fn of(url: &Url) -> Option<Origin> {
        Some(Origin {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_ascii_lowercase(),
            port: url.port_or_known_default()?,
        })
    }

    /// An `https` origin on the default port.
    pub(super) fn https(host: &str) -> Origin {
        Origin {
            scheme: "https".into(),
            host: host.to_owned(),
            port: 443,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// The restricted client; see the module documentation.
pub(super) struct ProviderHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    allowed: Vec<Origin>,
}

impl ProviderHttp {
    /// A client that talks only to `allowed`. TLS uses the system roots (ring provider).
    pub(super) fn new(allowed: Vec<Origin>) -> Result<ProviderHttp, String> {
        let needs_tls = allowed.iter().any(|origin| origin.scheme == "https");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&TLS13, &TLS12])
            .map_err(|err| format!("TLS client configuration: {err}"))?;
        let tls = if needs_tls {
            builder
                .with_native_roots()
                .map_err(|err| format!("no system CA certificates found: {err}"))?
                .with_no_client_auth()
        } else {
            // Loopback http only: the connector never starts TLS.
            builder
                .with_root_certificates(RootCertStore::empty())
                .with_no_client_auth()
        };
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(4)
            .build(connector);
        Ok(ProviderHttp { client, allowed })
    }

    /// Whether the client may fetch this URL.
    pub(super) fn check_url(&self, url: &str) -> Result<(), HttpError> {
        let url = Url::parse(url).map_err(|_| HttpError::BadUrl)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(HttpError::BadUrl);
        }
        let origin = Origin::of(&url).ok_or(HttpError::BadUrl)?;
        if self.allowed.contains(&origin) {
            Ok(())
        } else {
            Err(HttpError::HostNotAllowed {
                origin: origin.to_string(),
            })
        }
    }

    async fn exchange(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        self.check_url(&request.uri().to_string())?;
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(Bytes::from(body)));
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|err| HttpError::Transport(describe(&err)))?;
            if response.status().is_redirection() {
                return Err(HttpError::Redirect {
                    status: response.status().as_u16(),
                });
            }
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_BODY)
                .collect()
                .await
                .map_err(|err| {
                    if err.downcast_ref::<LengthLimitError>().is_some() {
                        HttpError::TooLarge { limit: MAX_BODY }
                    } else {
                        HttpError::Transport(err.to_string())
                    }
                })?
                .to_bytes();
            Ok(http::Response::from_parts(parts, body.to_vec()))
        };
        match tokio::time::timeout(EXCHANGE_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(HttpError::Timeout {
                seconds: EXCHANGE_TIMEOUT.as_secs(),
            }),
        }
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.exchange(request))
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

/// Fetches one document (SAML IdP metadata) from `url` with the same restrictions:
/// only that URL's origin, no redirects, a deadline and a size cap; only a 200 counts.
pub(super) async fn fetch_document(url: &str) -> Result<Vec<u8>, HttpError> {
    let parsed = Url::parse(url).map_err(|_| HttpError::BadUrl)?;
    let origin = Origin::of(&parsed).ok_or(HttpError::BadUrl)?;
    let client = ProviderHttp::new(vec![origin]).map_err(HttpError::Transport)?;
    let request = http::Request::get(url)
        .body(Vec::new())
        .map_err(|_| HttpError::BadUrl)?;
    let response = client.exchange(request).await?;
    if response.status() != http::StatusCode::OK {
        return Err(HttpError::Transport(format!(
            "status {}",
            response.status().as_u16()
        )));
    }
    Ok(response.into_body())
}
