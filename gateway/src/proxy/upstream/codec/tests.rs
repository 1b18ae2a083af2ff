use bytes::BytesMut;
use expect_test::{Expect, expect};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};

use crate::proxy::headers::HeaderLines;
use crate::proxy::request::RequestHeaders;

use super::{
    ChunkError, ChunkedDecoder, Decoded, Parsed, RequestFraming, encode_request_head,
    parse_response_head,
};

/// Parses `input` as the response to a GET (or a HEAD) and describes the outcome, and
/// what of the input was left for the body.
fn check_head(input: &str, head_request: bool, expect: Expect) {
    let mut buf = BytesMut::from(input.as_bytes());
    let actual = match parse_response_head(&mut buf, head_request) {
        Ok(Parsed::Partial) => format!("partial, left {}", buf.len()),
        Ok(Parsed::Interim) => format!("interim, left {:?}", String::from_utf8_lossy(&buf)),
        Ok(Parsed::Head(head)) => {
            let headers: Vec<String> = head
                .headers
                .to_map()
                .iter()
                .map(|(name, value)| {
                    format!("{name}={}", String::from_utf8_lossy(value.as_bytes()))
                })
                .collect();
            format!(
                "{} {:?} {:?} reusable={} [{}] left {:?}",
                head.status.as_u16(),
                head.version,
                head.framing,
                head.reusable,
                headers.join(" "),
                String::from_utf8_lossy(&buf)
            )
        }
        Err(err) => format!("error: {err}"),
    };
    expect.assert_eq(&actual);
}

#[test]
fn response_heads_and_their_framing() {
    check_head(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nX-App: a\r\n\r\nok",
        false,
        expect![[r#"200 HTTP/1.1 Length(2) reusable=true [x-app=a content-length=2] left "ok""#]],
    );
    check_head(
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
        false,
        expect![[r#"200 HTTP/1.1 Chunked reusable=true [] left "2\r\nok\r\n0\r\n\r\n""#]],
    );
    check_head(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: Chunked\r\n\r\n",
        false,
        expect![[r#"200 HTTP/1.1 Chunked reusable=true [] left """#]],
    );
    check_head(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end",
        false,
        expect![[
            r#"200 HTTP/1.1 UntilClose reusable=false [content-type=text/plain] left "until the end""#
        ]],
    );
    check_head(
        "HTTP/1.1 204 No Content\r\n\r\n",
        false,
        expect![[r#"204 HTTP/1.1 Empty reusable=true [] left """#]],
    );
    check_head(
        "HTTP/1.1 304 Not Modified\r\ncontent-length: 10\r\n\r\n",
        false,
        expect![[r#"304 HTTP/1.1 Empty reusable=true [content-length=10] left """#]],
    );
    // A HEAD response declares the length of the GET it stands for, and has no body.
    check_head(
        "HTTP/1.1 200 OK\r\ncontent-length: 1024\r\n\r\n",
        true,
        expect![[r#"200 HTTP/1.1 Empty reusable=true [content-length=1024] left """#]],
    );
    check_head(
        "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\nframe",
        false,
        expect![[r#"101 HTTP/1.1 Tunnel reusable=false [] left "frame""#]],
    );
    check_head(
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n",
        false,
        expect![[r#"interim, left "HTTP/1.1 200 OK\r\n""#]],
    );
    check_head(
        "HTTP/1.1 200 OK\r\ncontent-le",
        false,
        expect!["partial, left 27"],
    );
    check_head(
        "HTTP/1.1 200 OK\r\nx-empty:\r\ncontent-length: 0\r\n\r\n",
        false,
        expect![[r#"200 HTTP/1.1 Length(0) reusable=true [x-empty= content-length=0] left """#]],
    );
}

#[test]
fn connections_are_kept_only_when_the_response_allows() {
    check_head(
        "HTTP/1.1 200 OK\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n",
        false,
        expect![[r#"200 HTTP/1.1 Length(0) reusable=false [content-length=0] left """#]],
    );
    check_head(
        "HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n",
        false,
        expect![[r#"200 HTTP/1.0 Length(0) reusable=false [content-length=0] left """#]],
    );
}

/// Hop-by-hop headers, and every header a `Connection` line names (in any case, on
/// any line, however many tokens), describe the upstream connection and are never
/// handed on; everything else is.
#[test]
fn response_heads_lose_their_hop_by_hop_headers() {
    check_head(
        concat!(
            "HTTP/1.1 200 OK\r\nX-Secret: 1\r\nKeep-Alive: timeout=5\r\nConnection: X-SECRET\r\n",
            "Trailer: x\r\nTE: trailers\r\nProxy-Connection: x\r\nProxy-Authenticate: Basic\r\n",
            "Vary: accept\r\ncontent-length: 0\r\n\r\n",
        ),
        false,
        expect![[r#"200 HTTP/1.1 Length(0) reusable=true [vary=accept content-length=0] left """#]],
    );
    // More tokens than are kept aside: the lines are read again.
    check_head(
        concat!(
            "HTTP/1.1 200 OK\r\nconnection: a, b\r\nconnection: c, d, close\r\nconnection: e\r\n",
            "a: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\ne: 5\r\nf: 6\r\ncontent-length: 0\r\n\r\n",
        ),
        false,
        expect![[r#"200 HTTP/1.1 Length(0) reusable=false [f=6 content-length=0] left """#]],
    );
}

/// The kept lines go to the client as the upstream wrote them, names in their own
/// spelling (as nginx hands them on), with `Date` noticed in any spelling.
#[test]
fn kept_lines_keep_the_upstreams_spelling() {
    let mut buf = BytesMut::from(
        &b"HTTP/1.1 200 OK\r\nX-Request-ID: a\r\nDATE: Sat\r\nContent-Length: 0\r\n\r\n"[..],
    );
    let Ok(Parsed::Head(head)) = parse_response_head(&mut buf, false) else {
        panic!("a valid head");
    };
    assert_eq!(head.headers.lines(), b"X-Request-ID: a\r\nDATE: Sat\r\n");
    assert!(head.headers.has_date());
    assert_eq!(head.headers.content_length(), Some(0));
}

#[test]
fn ambiguous_or_malformed_responses_are_refused() {
    let refused = |input: &str, expect: Expect| check_head(input, false, expect);
    refused(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n",
        expect!["error: ambiguous response framing: both Content-Length and Transfer-Encoding"],
    );
    refused(
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n",
        expect!["error: ambiguous response framing: more than one Content-Length"],
    );
    refused(
        "HTTP/1.1 200 OK\r\ncontent-length: 2, 2\r\n\r\n",
        expect!["error: ambiguous response framing: Content-Length is not a single number"],
    );
    refused(
        "HTTP/1.1 200 OK\r\ncontent-length: +2\r\n\r\n",
        expect!["error: ambiguous response framing: Content-Length is not a single number"],
    );
    // Up to 18 digits always fit a u64; more are refused rather than risk an overflow.
    for value in [
        "99999999999999999999",
        "1000000000000000000",
        "",
        "1 2",
        "0x10",
        "-1",
    ] {
        refused(
            &format!("HTTP/1.1 200 OK\r\ncontent-length: {value}\r\n\r\n"),
            expect!["error: ambiguous response framing: Content-Length is not a single number"],
        );
    }
    check_head(
        "HTTP/1.1 200 OK\r\ncontent-length: 999999999999999999\r\n\r\n",
        false,
        expect![[
            r#"200 HTTP/1.1 Length(999999999999999999) reusable=true [content-length=999999999999999999] left """#
        ]],
    );
    refused(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n",
        expect![
            "error: ambiguous response framing: Transfer-Encoding other than exactly `chunked`"
        ],
    );
    refused(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntransfer-encoding: chunked\r\n\r\n",
        expect![
            "error: ambiguous response framing: Transfer-Encoding other than exactly `chunked`"
        ],
    );
    refused(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: identity\r\n\r\n",
        expect![
            "error: ambiguous response framing: Transfer-Encoding other than exactly `chunked`"
        ],
    );
    refused(
        "HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
        expect!["error: malformed response head: invalid header name"],
    );
    for value in ["b\rc", "b\0c", "b\x7fc", "b\x01"] {
        refused(
            &format!("HTTP/1.1 200 OK\r\nx-a: {value}\r\n\r\n"),
            expect!["error: malformed response head: invalid header value"],
        );
    }
    refused(
        "HTTP/1.1 200 OK\r\nx(a): b\r\n\r\n",
        expect!["error: malformed response head: invalid header name"],
    );
    refused(
        "HTTP/2 200 OK\r\n\r\n",
        expect!["error: malformed response head: invalid HTTP version"],
    );
    refused(
        "HTTP/1.1 20 OK\r\n\r\n",
        expect!["error: malformed response head: invalid response status"],
    );
    refused(
        "HTTP/1.1 099 Low\r\n\r\n",
        expect!["error: malformed response head: invalid response status"],
    );
    let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    refused(
        &format!("HTTP/1.1 200 OK\r\n{many}\r\n"),
        expect!["error: malformed response head: too many headers"],
    );
    let long = "x".repeat(super::MAX_HEAD_BYTES);
    refused(
        &format!("HTTP/1.1 200 OK\r\nx-long: {long}"),
        expect![[r#"error: response head larger than 65536 bytes"#]],
    );
}

/// Decodes `input` fed in pieces of `step` bytes; describes the data, how it ended and
/// what of the input the decoder left (the next message's bytes).
fn decode(input: &str, step: usize) -> String {
    let mut decoder = ChunkedDecoder::default();
    let mut buf = BytesMut::new();
    let mut data = Vec::new();
    let mut pieces = input.as_bytes().chunks(step);
    while let Some(piece) = pieces.next() {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Decoded::Data(bytes)) => data.extend_from_slice(&bytes),
                Ok(Decoded::More) => break,
                Ok(Decoded::End) => {
                    pieces.for_each(|rest| buf.extend_from_slice(rest));
                    return format!(
                        "{:?}, end, left {:?}",
                        String::from_utf8_lossy(&data),
                        String::from_utf8_lossy(&buf)
                    );
                }
                Err(err) => return format!("error: {err}"),
            }
        }
    }
    format!("{:?}, unfinished", String::from_utf8_lossy(&data))
}

#[test]
fn chunked_bodies_decode_whatever_the_pieces() {
    let body =
        "5\r\nhello\r\n1;name=value\r\n \r\nA\r\n0123456789\r\n0\r\nx-trailer: t\r\n\r\nnext";
    for step in [1, 2, 3, 7, body.len()] {
        assert_eq!(
            decode(body, step),
            r#""hello 0123456789", end, left "next""#,
            "step {step}"
        );
    }
    assert_eq!(decode("0\r\n\r\n", 1), r#""", end, left """#);
    assert_eq!(decode("5\r\nhel", 2), r#""hel", unfinished"#);
}

#[test]
fn malformed_chunks_are_refused() {
    let refused = |input: &str, expect: ChunkError| {
        assert_eq!(
            decode(input, input.len()),
            format!("error: {expect}"),
            "{input:?}"
        );
    };
    refused("\r\n", ChunkError::Size);
    refused("g\r\n", ChunkError::Size);
    refused("5 \r\nhello\r\n", ChunkError::Size);
    refused("-5\r\n", ChunkError::Size);
    refused("1000000000000000\r\n", ChunkError::Size);
    refused("5\nhello\r\n", ChunkError::Size);
    refused("5\r\nhelloX\r\n", ChunkError::LineEnd);
    refused("5\r\nhello\rX", ChunkError::LineEnd);
    refused("5;a\nb\r\n", ChunkError::LineEnd);
    refused("0\r\nx: y\n\r\n", ChunkError::LineEnd);
    let long = "x".repeat(16 * 1024 + 1);
    refused(&format!("1;{long}\r\n"), ChunkError::TooMuchMeta);
    refused(
        &format!("0\r\nx-t: {long}\r\n\r\n"),
        ChunkError::TooMuchMeta,
    );
}

#[test]
fn request_heads_are_written_in_order_with_the_framing_asked_for() {
    let mut headers = HeaderMap::new();
    headers.insert(header::HOST, HeaderValue::from_static("app.test"));
    headers.append("x-a", HeaderValue::from_static("1"));
    headers.append("x-a", HeaderValue::from_static("2"));
    let headers = RequestHeaders::from_map(&headers);
    let none = HeaderLines::default();
    let mut added = HeaderLines::default();
    added.push(
        &HeaderName::from_static("x-portcullis-user"),
        &HeaderValue::from_static("u-1"),
    );
    let head = encode_request_head(
        &Method::POST,
        "/p",
        Some("q=1"),
        &headers,
        &added,
        RequestFraming::Chunked,
    );
    assert_eq!(
        String::from_utf8_lossy(&head.unwrap()),
        "POST /p?q=1 HTTP/1.1\r\nhost: app.test\r\nx-a: 1\r\nx-a: 2\r\nx-portcullis-user: u-1\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    let head = encode_request_head(
        &Method::GET,
        "/",
        None,
        &headers,
        &none,
        RequestFraming::Empty,
    );
    assert_eq!(
        String::from_utf8_lossy(&head.unwrap()),
        "GET / HTTP/1.1\r\nhost: app.test\r\nx-a: 1\r\nx-a: 2\r\n\r\n"
    );
    // A target that could end the request line early is refused.
    for (path, query) in [
        ("/a b", None),
        ("/a", Some("q=1 HTTP/1.1\r\nx: y")),
        ("/\u{e9}", None),
    ] {
        assert_eq!(
            encode_request_head(
                &Method::GET,
                path,
                query,
                &headers,
                &none,
                RequestFraming::Empty
            ),
            Err(super::BadTarget),
            "{path:?} {query:?}"
        );
    }
}
