//! The upstream response parsers never panic, and how the bytes are split across
//! reads never changes what they make of them: the head (status, headers, framing,
//! whether the connection may be kept) and the decoded chunked body. Every header line
//! kept is one `http` accepts.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portcullis_gateway::proxy::upstream::codec::{
    ChunkedDecoder, Decoded, Parsed, parse_response_head,
};

/// What a stream of bytes read `step` at a time comes to.
fn read(stream: &[u8], step: usize, head_request: bool) -> String {
    let mut buf = BytesMut::new();
    let mut pieces = stream.chunks(step);
    let head = loop {
        match parse_response_head(&mut buf, head_request) {
            Ok(Parsed::Head(head)) => break head,
            Ok(Parsed::Interim) => continue,
            Ok(Parsed::Partial) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => return "partial head".into(),
            },
            Err(err) => return format!("head error: {err}"),
        }
    };
    // Every kept line is a header `http` accepts: none is lost turning them into a map.
    let lines = head
        .headers
        .lines()
        .split(|&byte| byte == b'\n')
        .filter(|line| !line.is_empty())
        .count();
    let declared = usize::from(head.headers.content_length().is_some());
    assert_eq!(head.headers.to_map().len(), lines + declared, "a kept header line was refused");
    let mut outcome = format!(
        "{} {:?} {:?} {} {:?};",
        head.status, head.version, head.framing, head.reusable, head.headers
    );
    let mut decoder = ChunkedDecoder::default();
    let mut body = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Decoded::Data(data)) => body.extend_from_slice(&data),
            Ok(Decoded::End) => {
                outcome.push_str(&format!("end {body:?}"));
                return outcome;
            }
            Ok(Decoded::More) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => {
                    outcome.push_str(&format!("unfinished {body:?}"));
                    return outcome;
                }
            },
            Err(err) => {
                outcome.push_str(&format!("chunk error: {err}"));
                return outcome;
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, stream)) = data.split_first() else { return };
    let head_request = control & 0x80 != 0;
    let step = usize::from(control & 0x7f).max(1);
    assert_eq!(
        read(stream, stream.len().max(1), head_request),
        read(stream, step, head_request)
    );
});
