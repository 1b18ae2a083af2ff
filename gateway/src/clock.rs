//! The only place that reads the clocks. Everything else takes time as a parameter or
//! asks here, so tests can reason about time and `clippy.toml` can ban the rest.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// Seconds added to the wall clock: zero unless the end-to-end tests moved it.
static TEST_OFFSET: AtomicI64 = AtomicI64::new(0);
/// Whether the wall clock may be moved (`serve --unsafe-test-clock`).
static TEST_CLOCK: AtomicBool = AtomicBool::new(false);

/// Lets [`advance_test_clock`] move the wall clock. Only `serve --unsafe-test-clock`
/// calls this, so end-to-end tests can expire sessions without sleeping; it must never
/// be used in production.
pub fn enable_test_clock() {
    TEST_CLOCK.store(true, Ordering::SeqCst);
}

/// Moves the wall clock forward by `seconds` if the test clock is enabled; returns the
/// total offset, or `None` when the clock is the real one.
pub fn advance_test_clock(seconds: u32) -> Option<i64> {
    if !TEST_CLOCK.load(Ordering::SeqCst) {
        return None;
    }
    Some(TEST_OFFSET.fetch_add(i64::from(seconds), Ordering::SeqCst) + i64::from(seconds))
}

/// The monotonic clock, for measuring durations.
#[expect(
    clippy::disallowed_methods,
    reason = "clock.rs is the one reader of the clock"
)]
pub fn monotonic_now() -> Instant {
    Instant::now()
}

/// The wall clock, for timestamps and policy context.
#[expect(
    clippy::disallowed_methods,
    reason = "clock.rs is the one reader of the clock"
)]
pub fn system_now() -> SystemTime {
    let now = SystemTime::now();
    match u64::try_from(TEST_OFFSET.load(Ordering::Relaxed)) {
        Ok(0) | Err(_) => now,
        Ok(offset) => now + Duration::from_secs(offset),
    }
}

/// The wall clock as a UTC timestamp, for the store.
pub fn now_utc() -> time::OffsetDateTime {
    time::OffsetDateTime::from(system_now())
}
