//! Portcullis: an authentication gateway and security-policy reverse proxy.
//!
//! Start reading at [`proxy::pipeline`] for the hot path, [`config`] for what a
//! deployment can say, and [`ops::server`] for how the process runs.

pub mod api_token;
pub mod assertion;
pub mod authz;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crypto;
pub mod login;
pub mod net;
pub mod ops;
pub mod proxy;
pub mod session;
pub mod sso;
pub mod store;
