//! Cookie → session lookup on a warm cache: parse the `__Host-portcullis` cookie, hash
//! the id, find the cached session, check its timeouts and build the principal — what
//! `proxy::authn` does for every request on a session route.
//!
//!     cargo bench -p portcullis-gateway --bench session

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
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use portcullis_gateway::proxy::authn::{Authenticator, ConnCredentials};
use portcullis_gateway::proxy::request::RequestHeaders;
use portcullis_gateway::session::{COOKIE, Sessions, Timeouts};
use portcullis_gateway::store::AuthMethod;

fn session_lookup(c: &mut Criterion) {
    let fixture = common::fixture();
    let sessions = Arc::new(Sessions::new(fixture.store.clone()));
    let now = time::OffsetDateTime::from(fixture.now);
    let timeouts = Timeouts {
        idle: time::Duration::hours(1),
        absolute: time::Duration::hours(12),
    };
    let cookie = fixture
        .runtime
        .block_on(sessions.create(
            fixture.workspace,
            fixture.user,
            timeouts,
            AuthMethod::Password,
            false,
            now,
        ))
        .expect("session");
    let authenticator = Authenticator::new(fixture.store.clone(), Some(Arc::clone(&sessions)));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("theme=dark; {COOKIE}={cookie}")).expect("cookie"),
    );
    let headers = RequestHeaders::from_map(&headers);
    let route = fixture.route();
    // Warm the cache (and prove the lookup succeeds) before measuring.
    let connection = ConnCredentials::default();
    fixture
        .runtime
        .block_on(authenticator.authenticate(&headers, &connection, route, fixture.now))
        .expect("the session authenticates");
    c.bench_function(
        "cookie → session (warm cache, each request on a new connection)",
        |b| {
            b.iter(|| {
                fixture.runtime.block_on(authenticator.authenticate(
                    black_box(&headers),
                    &ConnCredentials::default(),
                    route,
                    fixture.now,
                ))
            });
        },
    );
    c.bench_function("cookie → session (the connection's last session)", |b| {
        b.iter(|| {
            fixture.runtime.block_on(authenticator.authenticate(
                black_box(&headers),
                &connection,
                route,
                fixture.now,
            ))
        });
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = session_lookup
}
criterion_main!(benches);
