//! Forward-auth: `GET /.portcullis/auth` answers "may this request through?" for a
//! proxy that stays in front (nginx `auth_request`, Traefik `forwardAuth`, Envoy
//! `ext_authz` in HTTP mode), with the same route, allowlist, authentication and Cedar
//! decision the gateway applies to the traffic it proxies itself.
//!
//! Only a trusted proxy (`network.trusted_proxies`) may ask: the original request is
//! described by headers it sets, which nobody else may. The original method comes from
//! `X-Forwarded-Method` (Traefik) or `X-Original-Method` (nginx), the original target
//! from `X-Forwarded-Uri` or `X-Original-URI`, the host from `X-Forwarded-Host` or
//! `Host`, the client from `X-Forwarded-For`; credentials (the session cookie or an API
//! token) arrive as the proxy passes them on.
//!
//! Answers: 200 with the identity headers to copy upstream (`X-Portcullis-User`, `-Email`,
//! `-Roles`, `-Workspace`, `-Auth-Method`, `-Assertion`); 401 when nobody is signed in
//! (or, with `?redirect=true` for a proxy that relays the answer to browsers, a 303 to
//! the sign-in page); 403 when an allowlist or the policy says no; 400 for a malformed
//! description. nginx treats anything but 2xx, 401 and 403 as an error, hence no
//! redirect by default.

use http::{HeaderValue, Method, Response, StatusCode, header};

use super::{
    ConnInfo, Gateway, Reject, RequestMeta, check_access, client_ip, clock, full,
    set_identity_headers,
};
use crate::config::Access;
use crate::login::LOGIN_PATH;
use crate::proxy::Body;
use crate::proxy::headers::is_header_text;
use crate::proxy::path::{CanonicalPath, PathError};
use crate::proxy::request::{ClientRequest, Known, RequestHeaders};

/// The endpoint's path.
pub const FORWARD_AUTH_PATH: &str = "/.portcullis/auth";

const X_FORWARDED_METHOD: &str = "x-forwarded-method";
const X_ORIGINAL_METHOD: &str = "x-original-method";
const X_FORWARDED_URI: &str = "x-forwarded-uri";
const X_ORIGINAL_URI: &str = "x-original-uri";

/// The one value of the first of `names` that is present; several values are refused.
fn one_of<'h>(headers: &'h RequestHeaders, names: &[&'h str]) -> Result<Option<&'h str>, Reject> {
    for name in names {
        let mut values = headers.get_all_named(name);
        if let Some(value) = values.next() {
            if values.next().is_some() {
                return Err(Reject::BadForwardAuth("a header appears twice"));
            }
            return std::str::from_utf8(value)
                .ok()
                .filter(|text| is_header_text(text))
                .map(Some)
                .ok_or(Reject::BadForwardAuth("a header is not text"));
        }
    }
    Ok(None)
}

/// Answers a forward-auth question.
pub(super) async fn check(
    gateway: &Gateway,
    conn: &ConnInfo,
    meta: &RequestMeta<'_>,
    request: &ClientRequest,
) -> Result<Response<Body>, Reject> {
    if !gateway.trusted.contains(conn.peer.ip().to_canonical()) {
        return Err(Reject::UntrustedForwardAuth);
    }
    let headers = &request.headers;
    let method = match one_of(headers, &[X_FORWARDED_METHOD, X_ORIGINAL_METHOD])? {
        Some(text) => Method::from_bytes(text.trim().as_bytes())
            .map_err(|_| Reject::BadForwardAuth("the original method is not a method"))?,
        None => Method::GET,
    };
    let target = one_of(headers, &[X_FORWARDED_URI, X_ORIGINAL_URI])?.ok_or(
        Reject::BadForwardAuth("no X-Forwarded-Uri or X-Original-URI"),
    )?;
    if target.len() > gateway.max_uri_bytes {
        return Err(Reject::UriTooLong {
            limit: gateway.max_uri_bytes,
        });
    }
    let (raw_path, _query) = target.split_once('?').unwrap_or((target, ""));
    let path =
        CanonicalPath::parse(raw_path, gateway.reject_path_parameters).map_err(
            |err| match err {
                PathError::NotOriginForm => {
                    Reject::BadForwardAuth("the original target is not a path")
                }
                other => Reject::AmbiguousPath(other),
            },
        )?;
    if path.as_str() == "/.portcullis" || path.as_str().starts_with(super::RESERVED_PREFIX) {
        return Err(Reject::BadForwardAuth(
            "the gateway's own paths are not forwarded",
        ));
    }
    let host = if headers.contains(Known::XForwardedHost) {
        conn.last_host
            .request_host(None, headers.get_all(Known::XForwardedHost))?
    } else {
        conn.last_host
            .request_host(request.uri.authority(), headers.get_all(Known::Host))?
    };
    let client = client_ip(conn.peer.ip(), headers, &gateway.trusted)?;
    let route = gateway.routes.lookup(host.name(), &path)?;
    crate::proxy::allowlist::check_allowlists(client, route.allowlist.as_ref())?;
    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if route.access == Access::Public {
        return Ok(response);
    }
    let now = clock::system_now();
    let authorized = match check_access(gateway, conn, route, headers, &method, client, now).await {
        Ok(authorized) => authorized,
        Err(Reject::Unauthenticated { .. })
            if wants_redirect(request)
                && meta.wants_html
                && matches!(method, Method::GET | Method::HEAD)
                && gateway.login.is_some() =>
        {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("rd", target)
                .finish();
            return Err(Reject::SignInRequired {
                location: format!("{LOGIN_PATH}?{query}"),
            });
        }
        Err(reject) => return Err(reject),
    };
    let identity = gateway
        .assertions
        .for_request(authorized.principal(), &route.id, now)
        .await;
    set_identity_headers(response.headers_mut(), &authorized, &identity);
    Ok(response)
}

fn wants_redirect(request: &ClientRequest) -> bool {
    request.uri.query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes())
            .any(|(key, value)| key == "redirect" && value == "true")
    })
}
