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
pub mod route;
pub mod upstream;

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;

/// Every response body the gateway sends: streamed from the upstream, or a small
/// body the gateway wrote itself.
pub type Body = BoxBody<Bytes, upstream::BodyError>;

/// A body the gateway wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A client's request body: none (every request the gateway's own HTTP/1.1 server
/// serves, see `net::http1`), or the body hyper read for a request it served.
#[derive(Debug)]
pub enum RequestBody {
    /// No body.
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
