//! Whatever headers a client sends, none in the gateway's namespace and no hop-by-hop
//! header survives the filter.
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use portcullis_gateway::proxy::headers::{is_reserved, sanitize_request};

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
    sanitize_request(&mut headers, &extra);
    for name in headers.keys() {
        assert!(!is_reserved(name.as_str(), &extra), "{name} survived");
        assert!(!HOP_BY_HOP.contains(&name.as_str()), "{name} survived");
    }
});
