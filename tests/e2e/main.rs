//! End-to-end tests: the real `portcullis` binary, real sockets, real peers.
//!
//! One test binary (modules per area) so the binary is built once and every test
//! starts its own gateway process on its own ports.
#![allow(missing_docs)]
// A test harness reports failure by panicking.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod access;
mod accounts;
mod cli;
mod connections;
mod email_code;
mod forward_auth;
mod hygiene;
mod lifecycle;
mod login;
mod peers;
mod routing;
mod sso;
mod streaming;
mod support;
mod tls;
mod upstream;
