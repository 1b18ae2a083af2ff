//! The network edge: accepting connections ([`listener`]), TLS ([`tls`]), idle
//! detection ([`idle`]), a second reading of HTTP/1.1 framing ([`framing`]) and the client address rules ([`client_ip`]).

pub mod client_ip;
pub mod framing;
pub mod idle;
pub mod listener;
pub mod tls;
