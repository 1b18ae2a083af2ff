//! Logging setup: `PORTCULLIS_LOG` is an `EnvFilter` directive (default `info`) and
//! `PORTCULLIS_LOG_FORMAT` is `plain` (default) or `json`.

use tracing_subscriber::EnvFilter;

/// The log filter variable.
pub const ENV_LOG: &str = "PORTCULLIS_LOG";
/// The log format variable.
pub const ENV_LOG_FORMAT: &str = "PORTCULLIS_LOG_FORMAT";

/// Installs the global subscriber. `lookup` reads environment variables (a map in tests).
pub fn init(lookup: &dyn Fn(&str) -> Option<String>) {
    let filter = EnvFilter::try_new(lookup(ENV_LOG).unwrap_or_else(|| "info".into()))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let result = match lookup(ENV_LOG_FORMAT).as_deref() {
        Some("json") => builder.json().flatten_event(true).try_init(),
        _ => builder.try_init(),
    };
    if result.is_err() {
        tracing::debug!("a tracing subscriber was already installed");
    }
}
