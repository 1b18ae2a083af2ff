//! The network edge: accepting connections ([`listener`]) and serving them on one
//! thread per core ([`workers`]), TLS ([`tls`]), idle detection ([`idle`]), a second
//! reading of HTTP/1.1 framing ([`framing`]), the client address rules
//! ([`client_ip`]) and polling a connection apart from its watchers ([`watched`]).

pub mod client_ip;
pub mod framing;
pub mod http1;
pub mod idle;
pub mod listener;
pub mod tls;
pub mod watched;
pub mod workers;

/// Whether `host` (a name, an IPv4 literal, or an IPv6 literal with or without
/// brackets) is this machine: `localhost` or a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` may be used for secrets in transit: `https` with a host, or plain
/// `http` to this machine only.
pub fn is_https_or_loopback(url: &str) -> bool {
    let Ok(uri) = http::Uri::try_from(url) else {
        return false;
    };
    let host = uri.host().unwrap_or_default();
    match uri.scheme_str() {
        Some("https") => !host.is_empty(),
        Some("http") => is_loopback_host(host),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::{is_https_or_loopback, is_loopback_host};

    #[test]
    fn loopback_and_https_rules() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "[::1]",
        ] {
            assert!(is_loopback_host(host), "{host}");
        }
        for host in [
            "example.com",
            "10.0.0.1",
            "localhost.example.com",
            "[::2]",
            "",
        ] {
            assert!(!is_loopback_host(host), "{host}");
        }
        assert!(is_https_or_loopback("https://id.example.com"));
        assert!(is_https_or_loopback("http://127.0.0.1:8080/x"));
        assert!(is_https_or_loopback("http://[::1]:8080"));
        assert!(!is_https_or_loopback("http://id.example.com"));
        assert!(!is_https_or_loopback("ftp://127.0.0.1"));
        assert!(!is_https_or_loopback("https:///path"));
        assert!(!is_https_or_loopback("not a url"));
    }
}
