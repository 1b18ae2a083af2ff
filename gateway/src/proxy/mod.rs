//! The hot path, one file per step, in the order a request meets them:
//! [`pipeline`] runs them; [`path`] and [`route`] find the route on a canonical path;
//! [`allowlist`] applies the CIDR lists; [`authn`] and [`authz`] decide who may pass; [`headers`] cleans and sets headers;
//! [`upstream`] streams to the app; [`reject`] turns every "no" into a response.

pub mod allowlist;
pub mod authn;
pub mod authz;
pub mod headers;
pub mod path;
pub mod pipeline;
pub mod reject;
pub mod request;
pub mod route;
pub mod upstream;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

/// Every response body the gateway sends: streamed from the upstream (which also
/// carries the upstream's headers in wire form, see [`Body::upstream_headers`]), or a
/// body the gateway wrote itself.
pub enum Body {
    /// The upstream's body, read straight from its connection.
    Upstream(upstream::UpstreamBody),
    /// Anything else: pages, errors, JSON, tests' bodies.
    Boxed(BoxBody<Bytes, upstream::BodyError>),
}

impl Body {
    /// Boxes any body with the upstream's error type.
    pub fn boxed<B>(body: B) -> Body
    where
        B: http_body::Body<Data = Bytes, Error = upstream::BodyError> + Send + Sync + 'static,
    {
        Body::Boxed(BodyExt::boxed(body))
    }

    /// The upstream's headers that are not in the response's `HeaderMap` yet (the
    /// first call takes them): a server that writes its own heads writes these lines
    /// as they are; any other puts them in the map first ([`with_all_headers`]).
    pub fn upstream_headers(&mut self) -> Option<upstream::codec::UpstreamHeaders> {
        match self {
            Body::Upstream(body) => body.take_headers(),
            Body::Boxed(_) => None,
        }
    }
}

/// `response` with every header in its `HeaderMap`: the upstream's wire-form lines
/// are moved in (for hyper, and anything that reads headers from the map).
pub fn with_all_headers(mut response: http::Response<Body>) -> http::Response<Body> {
    if let Some(upstream) = response.body_mut().upstream_headers() {
        let headers = response.headers_mut();
        // A map's own iteration names each header once, before its first value.
        let mut current = None;
        for (name, value) in upstream.to_map() {
            if name.is_some() {
                current = name;
            }
            if let Some(name) = &current {
                headers.append(name, value);
            }
        }
    }
    response
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Body::Upstream(_) => "Body::Upstream",
            Body::Boxed(_) => "Body::Boxed",
        })
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = upstream::BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, upstream::BodyError>>> {
        match self.get_mut() {
            Body::Upstream(body) => Pin::new(body).poll_frame(cx),
            Body::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Upstream(body) => body.is_end_stream(),
            Body::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Upstream(body) => body.size_hint(),
            Body::Boxed(body) => body.size_hint(),
        }
    }
}

/// A body the gateway wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Body::boxed(Full::new(bytes.into()).map_err(|never| match never {}))
}

/// A client's request body: none (every request the gateway's own HTTP/1.1 server
/// serves, see `net::http1`), or the body hyper read for a request it served.
#[derive(Debug)]
pub enum RequestBody {
    /// No body: a head the gateway's own HTTP/1.1 server accepted, which already
    /// refused every framing the pipeline's framing check refuses.
    Empty,
    /// A body read by hyper's server.
    Hyper(Incoming),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Hyper(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Hyper(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Hyper(body) => body.size_hint(),
        }
    }
}
