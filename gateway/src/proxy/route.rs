//! Routing: (host, canonical path) → the route that serves it.
//!
//! Hosts match exactly (lower-cased, port removed); a `*` host catches hosts no other
//! route names. Within a host the longest matching prefix wins, and prefixes match on
//! segment boundaries (`/api` matches `/api` and `/api/x`, never `/apix`). Matching is
//! case-sensitive unless the route says its upstream is case-insensitive.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use portcullis_policy::EntityRef;

use super::allowlist::Allowlist;
use super::path::CanonicalPath;
use super::reject::Reject;
use super::upstream::{Upstream, UpstreamError};
use crate::authz::parse_entity;
use crate::config::{Access, RouteActions, RouteConfig};
use crate::ops::metrics::RouteMetrics;

/// A compiled route.
pub struct Route {
    pub(crate) id: String,
    prefix: String,
    case_insensitive: bool,
    pub(crate) access: Access,
    pub(crate) resource: Option<String>,
    /// `resource` as a policy entity, parsed once.
    pub(crate) resource_entity: Option<Arc<EntityRef>>,
    pub(crate) allowlist: Option<Allowlist>,
    pub(crate) websocket: bool,
    pub(crate) preserve_host: bool,
    pub(crate) actions: RouteActions,
    pub(crate) upstream: Upstream,
    pub(crate) metrics: RouteMetrics,
}

/// Every route, indexed by host.
pub struct RouteTable {
    by_host: HashMap<String, Vec<Arc<Route>>, foldhash::fast::RandomState>,
    any_host: Vec<Arc<Route>>,
    unknown_host_status: http::StatusCode,
}

impl RouteTable {
    /// Compiles the configured routes, building one pooled upstream client per route
    /// with connections kept for `threads` serving threads.
    pub fn build(
        routes: &[RouteConfig],
        unknown_host_status: http::StatusCode,
        threads: usize,
    ) -> Result<RouteTable, UpstreamError> {
        let mut by_host: HashMap<String, Vec<Arc<Route>>, foldhash::fast::RandomState> =
            HashMap::default();
        let mut any_host = Vec::new();
        for config in routes {
            let route = Arc::new(Route {
                id: config.id.clone(),
                prefix: config.path.clone(),
                case_insensitive: config.case_insensitive,
                access: config.access,
                resource: config.resource.clone(),
                resource_entity: config
                    .resource
                    .as_deref()
                    .and_then(parse_entity)
                    .map(Arc::new),
                allowlist: (!config.allow.is_empty())
                    .then(|| Allowlist::new(format!("route:{}", config.id), config.allow.clone())),
                websocket: config.websocket,
                preserve_host: config.preserve_host,
                actions: config.actions.clone(),
                upstream: Upstream::build(config, threads)?,
                metrics: RouteMetrics::new(&config.id),
            });
            if config.host == "*" {
                any_host.push(route);
            } else {
                by_host.entry(config.host.clone()).or_default().push(route);
            }
        }
        for list in by_host.values_mut().chain(std::iter::once(&mut any_host)) {
            list.sort_by_key(|route| std::cmp::Reverse(route.prefix.len()));
        }
        Ok(RouteTable {
            by_host,
            any_host,
            unknown_host_status,
        })
    }

    /// The route for a request to `host` (lower-case, no port) at `path`.
    pub fn lookup(&self, host: &str, path: &CanonicalPath) -> Result<&Arc<Route>, Reject> {
        let candidates = match self.by_host.get(host) {
            Some(list) => list,
            None if !self.any_host.is_empty() => &self.any_host,
            None => {
                return Err(Reject::UnknownHost {
                    host: host.to_owned(),
                    status: self.unknown_host_status,
                });
            }
        };
        candidates
            .iter()
            .find(|route| route.matches(path.as_str()))
            .ok_or_else(|| Reject::NoRoute {
                host: host.to_owned(),
            })
    }
}

impl Route {
    fn matches(&self, path: &str) -> bool {
        let prefix = self.prefix.as_str();
        if prefix == "/" {
            return true;
        }
        let Some(head) = path.get(..prefix.len()) else {
            return false;
        };
        let head_matches = if self.case_insensitive {
            head.eq_ignore_ascii_case(prefix)
        } else {
            head == prefix
        };
        head_matches
            && (prefix.ends_with('/')
                || matches!(path.as_bytes().get(prefix.len()), None | Some(b'/')))
    }
}

/// The request's host: lower-cased, port removed, checked to be a host name or an IP
/// literal. `authority` is the request target's authority (HTTP/2 `:authority`, or an
/// absolute-form HTTP/1.1 target); `host_headers` are the `Host` header lines. Several
/// `Host` lines, or a `Host` that disagrees with the authority, are refused.
pub fn request_host<'a>(
    authority: Option<&http::uri::Authority>,
    mut host_headers: impl Iterator<Item = &'a [u8]>,
) -> Result<RequestHost, Reject> {
    let first = host_headers.next();
    if host_headers.next().is_some() {
        return Err(Reject::BadHost);
    }
    let header_host = match first {
        Some(value) => Some(std::str::from_utf8(value).map_err(|_| Reject::BadHost)?),
        None => None,
    };
    let raw = match (authority, header_host) {
        (Some(authority), Some(header)) if !authority.as_str().eq_ignore_ascii_case(header) => {
            return Err(Reject::BadHost);
        }
        (Some(authority), _) => authority.as_str(),
        (None, Some(header)) => header,
        (None, None) => return Err(Reject::BadHost),
    };
    let host = host_part(raw).ok_or(Reject::BadHost)?;
    Ok(RequestHost {
        name_len: host.len(),
        lowered: host
            .bytes()
            .any(|byte| byte.is_ascii_uppercase())
            .then(|| host.to_ascii_lowercase()),
        raw: raw.to_owned(),
    })
}

/// The `Host` a connection's last request named and the host it was checked to be.
///
/// A client names the same host on every request of a connection, so the check and the
/// copy are done once per connection rather than per request: a request whose one
/// `Host` line is byte for byte the last one's gets the same [`RequestHost`]. Anything
/// else (another host, no or several `Host` lines, an absolute-form target) goes
/// through [`request_host`] in full, and only a host it accepted is remembered.
#[derive(Debug, Default)]
pub struct LastHost(Mutex<Option<HeldHost>>);

#[derive(Debug)]
struct HeldHost {
    /// The `Host` line's value as it came.
    line: Box<[u8]>,
    host: Arc<RequestHost>,
}

impl LastHost {
    /// [`request_host`], answered from the connection's last `Host` when it is the same.
    pub fn request_host<'a>(
        &self,
        authority: Option<&http::uri::Authority>,
        mut host_headers: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Arc<RequestHost>, Reject> {
        let (first, second) = (host_headers.next(), host_headers.next());
        let (None, Some(value), None) = (authority, first, second) else {
            // Rare (absolute-form targets, missing or repeated `Host`): checked in full.
            let all = first.into_iter().chain(second).chain(host_headers);
            return request_host(authority, all).map(Arc::new);
        };
        if let Ok(held) = self.0.lock()
            && let Some(held) = held.as_ref()
            && *held.line == *value
        {
            return Ok(Arc::clone(&held.host));
        }
        let host = Arc::new(request_host(None, std::iter::once(value))?);
        if let Ok(mut held) = self.0.lock() {
            *held = Some(HeldHost {
                line: Box::from(value),
                host: Arc::clone(&host),
            });
        }
        Ok(host)
    }
}

/// The host of `host[:port]`, if both parts are plain: a name or IPv4 address of
/// letters, digits, `-` and `.`, or a bracketed IPv6 literal; a port of digits up to
/// 65535. Anything else (user info, percent-encoding, a zone, an unbracketed colon)
/// is refused, so routing never sees a host that could be read two ways.
fn host_part(raw: &str) -> Option<&str> {
    let (host, port) = match raw.strip_prefix('[') {
        Some(rest) => {
            let literal_len = rest.find(']')?;
            let literal = rest.get(..literal_len)?;
            if literal.is_empty()
                || !literal
                    .bytes()
                    .all(|byte| byte.is_ascii_hexdigit() || matches!(byte, b':' | b'.'))
            {
                return None;
            }
            let (host, after) = raw.split_at(literal_len + 2);
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (host, port)
        }
        None => {
            let (host, port) = match raw.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (raw, None),
            };
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.'))
            {
                return None;
            }
            (host, port)
        }
    };
    let port_ok = port.is_none_or(|port| {
        port.is_empty()
            || (port.bytes().all(|byte| byte.is_ascii_digit()) && port.parse::<u16>().is_ok())
    });
    port_ok.then_some(host)
}

/// The host a request is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHost {
    /// As the client wrote it (with port, if any).
    raw: String,
    /// How long the host part at the start of `raw` is.
    name_len: usize,
    /// The host part lower-cased, when that changes it (most clients send it so).
    lowered: Option<String>,
}

impl RequestHost {
    /// Lower-cased, without port: what routes match on.
    pub fn name(&self) -> &str {
        match &self.lowered {
            Some(lowered) => lowered,
            None => self.raw.get(..self.name_len).unwrap_or_default(),
        }
    }

    /// As the client wrote it (with port, if any): what the upstream is told.
    pub fn raw(&self) -> &str {
        &self.raw
    }
}

#[cfg(test)]
mod tests;
