//! The network edge: accepting connections ([`listener`]), TLS ([`tls`]), idle
//! detection ([`idle`]) and the client address rules ([`client_ip`]).

pub mod client_ip;
pub mod idle;
pub mod listener;
pub mod tls;
