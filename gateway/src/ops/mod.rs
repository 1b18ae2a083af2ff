//! Operations: metrics, telemetry, the internal listener and the serve loop with
//! reload and graceful shutdown.

pub mod internal;
pub mod metrics;
pub mod server;
pub mod telemetry;
