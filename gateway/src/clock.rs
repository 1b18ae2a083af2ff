//! The only place that reads the clocks. Everything else takes time as a parameter or
//! asks here, so tests can reason about time and `clippy.toml` can ban the rest.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime};

/// The monotonic clock, for measuring durations.
#[expect(
    clippy::disallowed_methods,
    reason = "clock.rs is the one reader of the clock"
)]
pub fn monotonic_now() -> Instant {
    Instant::now()
}

/// Milliseconds on the monotonic clock since the first call in this process: a compact
/// timestamp that fits an atomic.
pub fn monotonic_millis() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(monotonic_now);
    u64::try_from(monotonic_now().duration_since(base).as_millis()).unwrap_or(u64::MAX)
}

/// The wall clock, for timestamps and policy context.
#[expect(
    clippy::disallowed_methods,
    reason = "clock.rs is the one reader of the clock"
)]
pub fn system_now() -> SystemTime {
    SystemTime::now()
}

/// The wall clock as a UTC timestamp, for the store.
pub fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::from(system_now())
}
