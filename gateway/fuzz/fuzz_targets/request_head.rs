//! The gateway's own HTTP/1.1 request-head parser never panics, never serves a head
//! whose framing it would have to interpret, and never changes the buffer unless it
//! serves the head; how the bytes arrive (all at once or a byte at a time) never
//! changes what it makes of them.
#![no_main]

use bytes::BytesMut;
use http::header;
use libfuzzer_sys::fuzz_target;
use portcullis_gateway::net::http1::{Parsed, parse_head};

/// The decision on `input` arriving `step` bytes at a time, and the bytes left over
/// (what is still buffered and what had not arrived yet).
fn decide(input: &[u8], step: usize) -> (String, Vec<u8>) {
    let mut buf = BytesMut::new();
    let mut pieces = input.chunks(step.max(1));
    loop {
        let before = buf.clone();
        match parse_head(&mut buf, 100, 8192) {
            Parsed::Serve {
                request,
                keep_alive,
            } => {
                // Every line the index holds is one `HeaderName` and `HeaderValue`
                // accept: it goes to the upstream as it came.
                let headers = request.headers.to_map();
                assert_eq!(headers.len(), request.headers.iter().count());
                assert!(!headers.contains_key(header::TRANSFER_ENCODING));
                assert!(!headers.contains_key(header::UPGRADE));
                assert!(!headers.contains_key(header::EXPECT));
                let lengths: Vec<_> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
                assert!(lengths.is_empty() || lengths == ["0"], "{lengths:?}");
                assert!(request.uri.path().starts_with('/'));
                assert!(request.uri.authority().is_none());
                assert_ne!(request.method, http::Method::CONNECT);
                assert!(before.ends_with(&buf), "served bytes are not a prefix");
                let decision = format!(
                    "serve {} {} {:?} {keep_alive} {headers:?}",
                    request.method,
                    request.uri,
                    request.version
                );
                let mut rest = buf.to_vec();
                rest.extend(pieces.flatten());
                return (decision, rest);
            }
            Parsed::HandOff => {
                assert_eq!(buf, before, "a hand-off changed the buffer");
                return ("hand off".into(), buf.to_vec());
            }
            Parsed::Partial => {
                assert_eq!(buf, before, "a partial head changed the buffer");
                match pieces.next() {
                    Some(piece) => buf.extend_from_slice(piece),
                    None => return ("partial".into(), buf.to_vec()),
                }
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let whole = decide(input, input.len());
    let bytewise = decide(input, 1);
    // A byte at a time a head may be decided before its end arrives (a hand-off on
    // the first bad byte), so only a served head must come out the same.
    if whole.0.starts_with("serve") {
        assert_eq!(whole, bytewise);
    }
});
