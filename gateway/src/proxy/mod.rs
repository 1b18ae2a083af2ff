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

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};

/// Every response body the gateway sends: streamed from the upstream, or a small
/// body the gateway wrote itself.
pub type Body = BoxBody<Bytes, upstream::BodyError>;

/// A body the gateway wrote itself.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}
