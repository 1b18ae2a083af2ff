//! Whatever headers a client sends, none in the gateway's namespace and no hop-by-hop
//! header survives the filter.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis_gateway::proxy::headers::{HeaderLines, is_reserved, sanitize_request};
use portcullis_gateway::proxy::request::RequestHeaders;

const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

fuzz_target!(|data: &[u8]| {
    // Lines of `name:value`; the fuzzer finds the interesting names.
    let mut headers = HeaderMap::new();
    for line in data.split(|&b| b == b'\n') {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = line.split_at(colon);
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(&value[1..])) else {
            continue;
        };
        headers.append(name, value);
    }
    let extra = [HeaderName::from_static("remote-user")];
    let mut headers = RequestHeaders::from_map(&headers);
    let mut added = HeaderLines::default();
    sanitize_request(&mut headers, &extra, &mut added);
    for name in headers.to_map().keys() {
        assert!(!is_reserved(name.as_str().as_bytes(), &extra), "{name} survived");
        assert!(!HOP_BY_HOP.contains(&name.as_str()), "{name} survived");
    }
    // Only filtered `Cookie` lines are added.
    for line in added.as_bytes().split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
        assert!(line.starts_with(b"cookie: "), "{line:?} added");
        assert!(!line.windows(17).any(|w| w == b"__Host-portcullis"), "a gateway cookie survived");
    }
});
