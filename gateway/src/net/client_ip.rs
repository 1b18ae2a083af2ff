//! The client address every network rule uses.
//!
//! It is the TCP peer, unless the peer is a configured trusted proxy: then it is the
//! right-most address in `X-Forwarded-For` that is not itself a trusted proxy. With no
//! trusted proxies configured, `X-Forwarded-For` is never read. IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`, what a dual-stack listener reports) become IPv4 first,
//! so IPv4 allowlist entries match them.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnetwork::IpNetwork;

use crate::proxy::reject::Reject;
use crate::proxy::request::{Known, RequestHeaders};

/// The client address, normalised. Only [`client_ip`] makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    /// The address.
    pub fn addr(self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The proxies whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNetwork>);

impl TrustedProxies {
    /// From the configured CIDRs.
    pub fn new(networks: Vec<IpNetwork>) -> TrustedProxies {
        TrustedProxies(networks)
    }

    /// Whether `addr` (already canonical) is a trusted proxy.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(addr))
    }
}

/// The client address for a request from `peer` carrying the given `X-Forwarded-For`
/// header lines. A trusted peer that sends an unreadable entry before any untrusted
/// address is refused rather than guessed around.
pub fn client_ip(
    peer: IpAddr,
    headers: &RequestHeaders,
    trusted: &TrustedProxies,
) -> Result<ClientIp, Reject> {
    let peer = peer.to_canonical();
    if !trusted.contains(peer) {
        // `X-Forwarded-For` is not even looked up: only a trusted peer's counts.
        return Ok(ClientIp(peer));
    }
    let mut leftmost = peer;
    for line in headers.get_all(Known::XForwardedFor).rev() {
        let text = std::str::from_utf8(line).map_err(|_| Reject::BadForwardedFor)?;
        for entry in text.rsplit(',') {
            let addr = parse_entry(entry.trim()).ok_or(Reject::BadForwardedFor)?;
            if !trusted.contains(addr) {
                return Ok(ClientIp(addr));
            }
            leftmost = addr;
        }
    }
    // Every hop was a trusted proxy: the furthest one is the best we know.
    Ok(ClientIp(leftmost))
}

/// `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]`, and the `:port` forms some proxies write.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    if let Ok(addr) = entry.parse::<IpAddr>() {
        return Some(addr.to_canonical());
    }
    if let Some(inner) = entry.strip_prefix('[').and_then(|e| e.strip_suffix(']')) {
        return inner.parse::<IpAddr>().ok().map(|addr| addr.to_canonical());
    }
    entry
        .parse::<SocketAddr>()
        .ok()
        .map(|addr| addr.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue};

    use super::{TrustedProxies, client_ip};
    use crate::proxy::headers::X_FORWARDED_FOR;
    use crate::proxy::request::RequestHeaders;

    fn check(peer: &str, xff: &[&str], trusted: &[&str]) -> String {
        let trusted = TrustedProxies::new(trusted.iter().filter_map(|t| t.parse().ok()).collect());
        let mut headers = HeaderMap::new();
        for value in xff {
            if let Ok(value) = HeaderValue::from_str(value) {
                headers.append(X_FORWARDED_FOR, value);
            }
        }
        let Ok(peer) = peer.parse() else {
            return "bad peer".into();
        };
        match client_ip(peer, &RequestHeaders::from_map(&headers), &trusted) {
            Ok(ip) => ip.to_string(),
            Err(err) => format!("reject: {}", err.code()),
        }
    }

    #[test]
    fn untrusted_peer_ignores_forwarded_for() {
        assert_eq!(check("203.0.113.9", &["10.0.0.1"], &[]), "203.0.113.9");
        assert_eq!(
            check("203.0.113.9", &["10.0.0.1"], &["10.0.0.0/8"]),
            "203.0.113.9"
        );
        assert_eq!(
            check("203.0.113.9", &["garbage"], &["10.0.0.0/8"]),
            "203.0.113.9"
        );
    }

    #[test]
    fn trusted_peer_gives_rightmost_untrusted() {
        let trusted = &["10.0.0.0/8"];
        assert_eq!(
            check("10.0.0.2", &["198.51.100.7"], trusted),
            "198.51.100.7"
        );
        // A client-supplied left part cannot win over the address our proxy saw.
        assert_eq!(
            check("10.0.0.2", &["1.1.1.1, 198.51.100.7"], trusted),
            "198.51.100.7"
        );
        assert_eq!(
            check("10.0.0.2", &["1.1.1.1, 198.51.100.7, 10.0.0.5"], trusted),
            "198.51.100.7"
        );
        assert_eq!(
            check("10.0.0.2", &["1.1.1.1", "198.51.100.7"], trusted),
            "198.51.100.7"
        );
        assert_eq!(check("10.0.0.2", &[], trusted), "10.0.0.2");
        assert_eq!(
            check("10.0.0.2", &["10.0.0.9, 10.0.0.8"], trusted),
            "10.0.0.9"
        );
    }

    #[test]
    fn entry_forms() {
        let trusted = &["10.0.0.0/8"];
        assert_eq!(
            check("10.0.0.2", &["[2001:db8::1]"], trusted),
            "2001:db8::1"
        );
        assert_eq!(
            check("10.0.0.2", &["198.51.100.7:4711"], trusted),
            "198.51.100.7"
        );
        assert_eq!(
            check("10.0.0.2", &["[2001:db8::1]:443"], trusted),
            "2001:db8::1"
        );
        assert_eq!(
            check("10.0.0.2", &["::ffff:198.51.100.7"], trusted),
            "198.51.100.7"
        );
    }

    #[test]
    fn unreadable_entry_from_trusted_peer_is_refused() {
        let trusted = &["10.0.0.0/8"];
        assert_eq!(
            check("10.0.0.2", &["unknown"], trusted),
            "reject: bad_forwarded_for"
        );
        assert_eq!(
            check("10.0.0.2", &["1.2.3.4, nope"], trusted),
            "reject: bad_forwarded_for"
        );
        // Garbage left of the first untrusted address is never read.
        assert_eq!(
            check("10.0.0.2", &["nope, 198.51.100.7"], trusted),
            "198.51.100.7"
        );
    }

    #[test]
    fn mapped_ipv4_peer_is_normalised() {
        assert_eq!(
            check("::ffff:10.0.0.2", &["198.51.100.7"], &["10.0.0.0/8"]),
            "198.51.100.7"
        );
        assert_eq!(check("::ffff:192.0.2.1", &[], &[]), "192.0.2.1");
    }
}
