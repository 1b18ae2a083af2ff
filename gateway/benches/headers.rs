//! Header rewrite and assertion: header hygiene on a typical browser request, the
//! forwarding headers, the signed identity assertion (cached per principal and route)
//! and the identity headers — everything `proxy::headers` and `assertion` do per
//! request. A second case measures signing a fresh assertion (the cache-miss cost).
//!
//!     cargo bench -p portcullis-gateway --bench headers

#![expect(
    clippy::expect_used,
    reason = "benchmark setup fails loudly rather than measuring nothing"
)]
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderName, HeaderValue};
use portcullis_gateway::assertion::Assertions;
use portcullis_gateway::net::client_ip::{TrustedProxies, client_ip};
use portcullis_gateway::proxy::authn::Principal;
use portcullis_gateway::proxy::authz::{LastDecision, RequestFacts, authorize};
use portcullis_gateway::proxy::headers::{
    ForwardedPeer, HeaderLines, UpstreamChain, sanitize_request, set_forwarding, set_identity,
};
use portcullis_gateway::proxy::request::RequestHeaders;

/// A browser's request as it reaches the gateway.
fn browser_headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("host", "bench.test"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0",
        ),
        (
            "accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
        ),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br, zstd"),
        ("connection", "keep-alive"),
        ("cookie", "theme=dark; __Host-portcullis=0123.4567; lang=en"),
        ("upgrade-insecure-requests", "1"),
        ("sec-fetch-dest", "document"),
        ("sec-fetch-mode", "navigate"),
        ("sec-fetch-site", "same-origin"),
        ("priority", "u=0, i"),
    ] {
        headers.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    headers
}

fn header_rewrite(c: &mut Criterion) {
    let fixture = common::fixture();
    let route = fixture.route();
    let principal = Principal::new(fixture.user.to_string(), "password", false, fixture.now);
    let peer = "127.0.0.1".parse().expect("ip");
    let client = client_ip(
        peer,
        &RequestHeaders::default(),
        &TrustedProxies::new(Vec::new()),
    )
    .expect("client");
    let forwarded_peer = ForwardedPeer::new(peer);
    let method = http::Method::GET;
    let facts = RequestFacts {
        method: &method,
        client,
        environment: portcullis_policy::Environment::Dev,
        now: fixture.now,
    };
    let authorized = authorize(
        &fixture.snapshot,
        None,
        principal.clone(),
        route,
        facts,
        &LastDecision::default(),
    )
    .expect("allowed");
    let assertions = Assertions::new(fixture.signing());
    let strip: Vec<HeaderName> = Vec::new();
    let mut group = c.benchmark_group("header rewrite + assertion");
    group.bench_function("warm assertion", |b| {
        b.iter_batched(
            || RequestHeaders::from_map(&browser_headers()),
            |mut headers| {
                let mut added = HeaderLines::with_capacity(1024);
                sanitize_request(&mut headers, &strip, &mut added);
                set_forwarding(
                    &mut added,
                    UpstreamChain::default(),
                    &forwarded_peer,
                    "https",
                    "bench.test",
                );
                let identity = fixture.runtime.block_on(assertions.for_request(
                    authorized.principal(),
                    "app",
                    fixture.now,
                ));
                set_identity(&mut added, &mut headers, &authorized, &identity);
                (headers, added)
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("signing a fresh assertion", |b| {
        // By reference, so dropping each fresh cache is not measured.
        b.iter_batched_ref(
            || Assertions::new(fixture.signing()),
            |fresh| {
                fixture.runtime.block_on(fresh.for_request(
                    black_box(authorized.principal()),
                    "app",
                    fixture.now,
                ))
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = header_rewrite
}
criterion_main!(benches);
