use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Method, Response, StatusCode, Version, header};
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::io::AsyncReadExt;

use super::{ConnState, Exchange, Parsed, Replay, parse_head, write_response};
use crate::proxy::pipeline::check_framing;
use crate::proxy::request::Known;
use crate::proxy::upstream::BodyError;
use crate::proxy::{Body, full};

fn parse(bytes: &[u8]) -> (Parsed, BytesMut) {
    let mut buf = BytesMut::from(bytes);
    let parsed = parse_head(&mut buf, 20, 4096);
    (parsed, buf)
}

#[test]
fn a_plain_get_is_served_and_what_follows_stays_buffered() {
    let (parsed, rest) = parse(
        b"GET /a/b?c=d HTTP/1.1\r\nHost: app.test\r\nAccept: */*\r\nX-Two: 1\r\nx-two: 2\r\n\r\nGET /next",
    );
    let Parsed::Serve {
        request,
        keep_alive,
    } = parsed
    else {
        panic!("not served: {parsed:?}");
    };
    assert!(keep_alive);
    assert_eq!(request.method, Method::GET);
    assert_eq!(request.version, Version::HTTP_11);
    assert_eq!(request.uri.path(), "/a/b");
    assert_eq!(request.uri.query(), Some("c=d"));
    assert_eq!(request.headers.get(Known::Host), Some(&b"app.test"[..]));
    let twos: Vec<_> = request.headers.get_all_named("x-two").collect();
    assert_eq!(twos, [b"1", b"2"]);
    // The lines as they came, names in the client's case.
    let mut lines = BytesMut::new();
    request.headers.write_to(&mut lines);
    assert_eq!(
        &lines[..],
        b"Host: app.test\r\nAccept: */*\r\nX-Two: 1\r\nx-two: 2\r\n"
    );
    assert_eq!(&rest[..], b"GET /next");
}

#[test]
fn keep_alive_follows_the_version_and_connection_tokens() {
    for (head, expected) in [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, CLOSE\r\n\r\n",
            false,
        ),
        ("GET / HTTP/1.0\r\nHost: a\r\n\r\n", false),
        (
            "GET / HTTP/1.0\r\nHost: a\r\nConnection: Keep-Alive\r\n\r\n",
            true,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
            true,
        ),
    ] {
        match parse(head.as_bytes()).0 {
            Parsed::Serve { keep_alive, .. } => assert_eq!(keep_alive, expected, "{head:?}"),
            other => panic!("{head:?}: {other:?}"),
        }
    }
}

#[test]
fn an_incomplete_head_leaves_the_buffer_alone() {
    let head = b"GET / HTTP/1.1\r\nHost: app.test\r\n";
    let (parsed, rest) = parse(head);
    assert!(matches!(parsed, Parsed::Partial), "{parsed:?}");
    assert_eq!(&rest[..], head);
}

/// Every head with a body, an upgrade, unusual framing or syntax goes to hyper with
/// the buffer exactly as it was: this server never guesses at framing.
#[test]
fn anything_but_a_plain_bodyless_head_goes_to_hyper_untouched() {
    let many: String = (0..21).map(|i| format!("X-H{i}: v\r\n")).collect();
    let too_many = format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n");
    // Complete in one read, but longer than the head limit.
    let too_long = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "b".repeat(4096)
    );
    let cases: Vec<&[u8]> = vec![
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nTRANSFER-ENCODING: identity\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: +0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0, 0\r\n\r\n",
        b"GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n\r\n",
        b"PUT / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n",
        b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET / HTTP/1.2\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost : a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\x01b\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nX: a\0b\r\n\r\n",
        b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\nHo\"st: a\r\n\r\n",
        b"\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n\x00",
        too_many.as_bytes(),
        too_long.as_bytes(),
    ];
    for case in cases {
        let (parsed, rest) = parse(case);
        if let Parsed::Serve { request, .. } = &parsed {
            // A blank line before the request line is allowed (RFC 9112 §2.2); that
            // case is only here for the byte after it.
            assert!(
                case.starts_with(b"\r\n"),
                "{:?} served: {request:?}",
                String::from_utf8_lossy(case)
            );
            continue;
        }
        assert!(
            matches!(parsed, Parsed::HandOff),
            "{:?}: {parsed:?}",
            String::from_utf8_lossy(case)
        );
        assert_eq!(
            &rest[..],
            case,
            "buffer changed for {:?}",
            String::from_utf8_lossy(case)
        );
    }
}

fn exchange(version: Version, head_request: bool, keep_alive: bool) -> Exchange {
    Exchange {
        version,
        head_request,
        keep_alive,
    }
}

fn streamed(pieces: &[&'static str]) -> Body {
    let frames: Vec<Result<Frame<Bytes>, BodyError>> = pieces
        .iter()
        .map(|piece| Ok(Frame::data(Bytes::from_static(piece.as_bytes()))))
        .collect();
    Body::boxed(StreamBody::new(futures_util::stream::iter(frames)))
}

async fn written(response: Response<Body>, exchange: &Exchange) -> (String, bool) {
    written_with(response, exchange, &ConnState::default()).await
}

async fn written_with(
    response: Response<Body>,
    exchange: &Exchange,
    state: &ConnState,
) -> (String, bool) {
    let mut wire = Vec::new();
    let mut out = Vec::new();
    let reusable = write_response(&mut wire, &mut out, response, exchange, state)
        .await
        .unwrap();
    (String::from_utf8(wire).unwrap(), reusable)
}

fn header_lines(wire: &str) -> Vec<&str> {
    let head = wire.split_once("\r\n\r\n").map_or(wire, |(head, _)| head);
    head.split("\r\n").skip(1).collect()
}

#[tokio::test]
async fn a_known_length_is_sent_as_content_length() {
    let mut response = Response::new(full("hello"));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    let (wire, reusable) = written(response, &exchange(Version::HTTP_11, false, true)).await;
    assert!(reusable);
    assert!(wire.starts_with("HTTP/1.1 200 OK\r\n"), "{wire}");
    let lines = header_lines(&wire);
    assert!(lines.contains(&"content-type: text/plain"), "{wire}");
    assert!(lines.contains(&"content-length: 5"), "{wire}");
    assert!(
        lines.iter().any(|line| line.starts_with("date: ")),
        "{wire}"
    );
    assert!(
        !lines.iter().any(|line| line.starts_with("connection")),
        "{wire}"
    );
    assert!(wire.ends_with("\r\n\r\nhello"), "{wire}");
}

#[tokio::test]
async fn an_unknown_length_is_chunked_for_http11_and_closes_for_http10() {
    let (wire, reusable) = written(
        Response::new(streamed(&["abc", "", "defgh"])),
        &exchange(Version::HTTP_11, false, true),
    )
    .await;
    assert!(reusable);
    assert!(
        header_lines(&wire).contains(&"transfer-encoding: chunked"),
        "{wire}"
    );
    assert!(
        wire.ends_with("\r\n\r\n3\r\nabc\r\n5\r\ndefgh\r\n0\r\n\r\n"),
        "{wire}"
    );

    let (wire, reusable) = written(
        Response::new(streamed(&["abc", "def"])),
        &exchange(Version::HTTP_10, false, true),
    )
    .await;
    assert!(!reusable);
    let lines = header_lines(&wire);
    assert!(lines.contains(&"connection: close"), "{wire}");
    assert!(
        !lines
            .iter()
            .any(|line| line.starts_with("transfer-encoding")),
        "{wire}"
    );
    assert!(wire.ends_with("\r\n\r\nabcdef"), "{wire}");
}

#[tokio::test]
async fn http10_keep_alive_is_confirmed() {
    let (wire, reusable) = written(
        Response::new(full("x")),
        &exchange(Version::HTTP_10, false, true),
    )
    .await;
    assert!(reusable);
    assert!(
        header_lines(&wire).contains(&"connection: keep-alive"),
        "{wire}"
    );
}

#[tokio::test]
async fn head_304_and_204_send_no_body() {
    let mut response = Response::new(streamed(&["ignored"]));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("7"));
    let (wire, reusable) = written(response, &exchange(Version::HTTP_11, true, true)).await;
    assert!(reusable);
    assert!(header_lines(&wire).contains(&"content-length: 7"), "{wire}");
    assert!(wire.ends_with("\r\n\r\n"), "{wire}");

    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    let (wire, _) = written(response, &exchange(Version::HTTP_11, false, true)).await;
    assert!(wire.starts_with("HTTP/1.1 304 Not Modified\r\n"), "{wire}");
    assert!(wire.ends_with("\r\n\r\n"), "{wire}");

    let mut response = Response::new(full(""));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    let (wire, reusable) = written(response, &exchange(Version::HTTP_11, false, true)).await;
    assert!(reusable);
    assert!(!wire.contains("content-length"), "{wire}");
    assert!(wire.ends_with("\r\n\r\n"), "{wire}");
}

#[tokio::test]
async fn a_body_that_disagrees_with_its_length_closes_the_connection() {
    // Shorter: the client sees a truncated body and the connection ends.
    let mut response = Response::new(streamed(&["abc"]));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
    let (wire, reusable) = written(response, &exchange(Version::HTTP_11, false, true)).await;
    assert!(!reusable);
    assert!(wire.ends_with("\r\n\r\nabc"), "{wire}");

    // Longer: no byte past the declared length is sent.
    let mut response = Response::new(streamed(&["abc", "defgh"]));
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("4"));
    let (wire, reusable) = written(response, &exchange(Version::HTTP_11, false, true)).await;
    assert!(!reusable);
    assert!(wire.ends_with("\r\n\r\nabcd"), "{wire}");
}

#[tokio::test]
async fn framing_and_connection_headers_are_this_hops_own() {
    let mut response = Response::new(full("hi"));
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    headers.insert(
        header::TRANSFER_ENCODING,
        HeaderValue::from_static("chunked"),
    );
    headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("2"));
    headers.append(header::CONTENT_LENGTH, HeaderValue::from_static("9"));
    let (wire, reusable) = written(response, &exchange(Version::HTTP_11, false, true)).await;
    assert!(!reusable, "the response asked to close");
    let lines = header_lines(&wire);
    assert_eq!(
        lines
            .iter()
            .filter(|line| line.starts_with("connection"))
            .count(),
        1,
        "{wire}"
    );
    assert!(lines.contains(&"connection: close"), "{wire}");
    assert!(lines.contains(&"content-length: 2"), "{wire}");
    assert!(!wire.contains("chunked") && !wire.contains(": 9"), "{wire}");
    assert!(wire.ends_with("\r\n\r\nhi"), "{wire}");
}

#[tokio::test]
async fn a_closing_connection_says_so_and_a_failing_body_is_an_error() {
    let state = ConnState::default();
    state.close_after_response();
    let (wire, reusable) = written_with(
        Response::new(full("x")),
        &exchange(Version::HTTP_11, false, true),
        &state,
    )
    .await;
    assert!(!reusable);
    assert!(header_lines(&wire).contains(&"connection: close"), "{wire}");

    let frames: Vec<Result<Frame<Bytes>, BodyError>> = vec![
        Ok(Frame::data(Bytes::from_static(b"part"))),
        Err(BodyError::Truncated),
    ];
    let body = Body::boxed(StreamBody::new(futures_util::stream::iter(frames)));
    let mut wire = Vec::new();
    let result = write_response(
        &mut wire,
        &mut Vec::new(),
        Response::new(body),
        &exchange(Version::HTTP_11, false, true),
        &ConnState::default(),
    )
    .await;
    assert!(result.is_err());
    let wire = String::from_utf8(wire).unwrap();
    assert!(
        wire.ends_with("4\r\npart\r\n"),
        "no terminating chunk: {wire}"
    );
}

#[tokio::test]
async fn a_replay_reads_the_prefix_first() {
    let inner: &[u8] = b" world";
    let mut replay = Replay::new(Bytes::from_static(b"hello"), inner);
    let mut read = String::new();
    replay.read_to_string(&mut read).await.unwrap();
    assert_eq!(read, "hello world");
}

/// The fuzz target's invariants (`fuzz/fuzz_targets/request_head.rs`) over every
/// one-byte change of a few real heads: a served head never carries framing this
/// server would have to interpret, and anything not served leaves the buffer as it was.
#[test]
fn one_byte_changes_to_real_heads_keep_the_invariants() {
    let seeds: [&[u8]; 4] = [
        b"GET /a?b=c HTTP/1.1\r\nHost: app.test\r\nCookie: x=1\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nUpgrade: x\r\n\r\n",
    ];
    let replacements = [
        None,
        Some(0u8),
        Some(b'\t'),
        Some(b'\n'),
        Some(b'\r'),
        Some(b' '),
        Some(b','),
        Some(b':'),
        Some(b'0'),
        Some(b'1'),
        Some(b'A'),
        Some(0x7f),
        Some(0xff),
    ];
    let mut cases = 0;
    for seed in seeds {
        for position in 0..seed.len() {
            for replacement in replacements {
                let mut input = seed.to_vec();
                match replacement {
                    None => {
                        input.remove(position);
                    }
                    Some(byte) => input[position] = byte,
                }
                let (parsed, rest) = parse(&input);
                match parsed {
                    Parsed::Serve { request, .. } => {
                        let headers = &request.headers;
                        // Every line is one `HeaderName` and `HeaderValue` accept, so it
                        // goes to the upstream as it is (`proxy::request`).
                        let map = headers.to_map();
                        assert_eq!(map.len(), headers.iter().count(), "{input:?}");
                        assert!(!map.contains_key(header::TRANSFER_ENCODING), "{input:?}");
                        assert!(!map.contains_key(header::UPGRADE), "{input:?}");
                        assert!(!map.contains_key(header::EXPECT), "{input:?}");
                        for length in map.get_all(header::CONTENT_LENGTH) {
                            assert_eq!(length, "0", "{input:?}");
                        }
                        assert!(map.get_all(header::CONTENT_LENGTH).iter().count() <= 1);
                        // The pipeline skips its own framing check for these heads.
                        assert!(check_framing(request.version, headers).is_ok(), "{input:?}");
                        assert!(request.uri.path().starts_with('/'), "{input:?}");
                        assert!(input.ends_with(&rest), "{input:?}");
                    }
                    Parsed::HandOff | Parsed::Partial => assert_eq!(&rest[..], &input[..]),
                }
                cases += 1;
            }
        }
    }
    assert!(cases > 2000, "{cases}");
}
