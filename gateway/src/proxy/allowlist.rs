//! IP allowlists: a route's list today; organization and workspace lists join it when
//! the store arrives. One function takes every applicable list, so no caller can forget one.

use ipnetwork::IpNetwork;

use super::reject::Reject;
use crate::net::client_ip::ClientIp;

/// One named CIDR list. An absent list allows everyone; a present list allows only its
/// members (configuration refuses an empty list, which would lock everybody out).
#[derive(Debug, Clone)]
pub struct Allowlist {
    name: String,
    networks: Vec<IpNetwork>,
}

impl Allowlist {
    /// A list called `name` (e.g. `route:wiki`) holding `networks`.
    pub fn new(name: String, networks: Vec<IpNetwork>) -> Allowlist {
        Allowlist { name, networks }
    }

    fn contains(&self, ip: ClientIp) -> bool {
        self.networks
            .iter()
            .any(|network| network.contains(ip.addr()))
    }
}

/// Passes only if `ip` is in every list given: each level (organization, workspace,
/// route) can only narrow access, never widen it.
pub fn check_allowlists<'a>(
    ip: ClientIp,
    lists: impl IntoIterator<Item = &'a Allowlist>,
) -> Result<(), Reject> {
    for list in lists {
        if !list.contains(ip) {
            return Err(Reject::IpNotAllowed {
                ip: ip.addr(),
                list: list.name.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::proxy::request::RequestHeaders;

    use super::{Allowlist, check_allowlists};
    use crate::net::client_ip::{TrustedProxies, client_ip};

    fn list(name: &str, cidrs: &[&str]) -> Allowlist {
        Allowlist::new(
            name.into(),
            cidrs.iter().filter_map(|c| c.parse().ok()).collect(),
        )
    }

    fn allowed(peer: &str, lists: &[Allowlist]) -> bool {
        let Ok(peer) = peer.parse() else { return false };
        let Ok(ip) = client_ip(peer, &RequestHeaders::default(), &TrustedProxies::default()) else {
            return false;
        };
        check_allowlists(ip, lists).is_ok()
    }

    #[test]
    fn v4_and_v6_membership() {
        let lists = [list("route:r", &["10.0.0.0/8", "2001:db8::/32"])];
        assert!(allowed("10.1.2.3", &lists));
        assert!(allowed("2001:db8::7", &lists));
        assert!(!allowed("11.0.0.1", &lists));
        assert!(!allowed("2001:db9::1", &lists));
    }

    #[test]
    fn mapped_v4_matches_v4_entries() {
        assert!(allowed(
            "::ffff:10.9.9.9",
            &[list("route:r", &["10.0.0.0/8"])]
        ));
    }

    #[test]
    fn every_level_must_allow() {
        let org = list("organization", &["10.0.0.0/8"]);
        let route = list("route:r", &["10.1.0.0/16"]);
        assert!(allowed("10.1.2.3", &[org.clone(), route.clone()]));
        assert!(!allowed("10.2.0.1", &[org, route]));
        assert!(allowed("192.0.2.1", &[]));
    }
}
