//! The framing tracker never panics, and how the bytes are split across reads never
//! changes its verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_gateway::net::framing::{FramingFlag, FramingTracker};

fuzz_target!(|data: &[u8]| {
    let Some((&step, stream)) = data.split_first() else { return };
    let whole = FramingFlag::default();
    FramingTracker::new(8192, whole.clone()).feed(stream);
    let pieces = FramingFlag::default();
    let mut tracker = FramingTracker::new(8192, pieces.clone());
    for piece in stream.chunks(usize::from(step.max(1))) {
        tracker.feed(piece);
    }
    assert_eq!(whole.is_ambiguous(), pieces.is_ambiguous());
});
