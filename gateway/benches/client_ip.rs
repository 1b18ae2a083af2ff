//! Client IP and IP allowlist: who is calling (through a trusted proxy's
//! `X-Forwarded-For`, and directly) and whether the route's CIDR list admits them.
//!
//!     cargo bench -p portcullis-gateway --bench client_ip

#![expect(
    clippy::expect_used,
    reason = "benchmark setup fails loudly rather than measuring nothing"
)]
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue};
use portcullis_gateway::net::client_ip::{TrustedProxies, client_ip};
use portcullis_gateway::proxy::allowlist::{Allowlist, check_allowlists};
use portcullis_gateway::proxy::request::RequestHeaders;

fn client_ip_and_allowlist(c: &mut Criterion) {
    let networks = |cidrs: &[&str]| -> Vec<ipnetwork::IpNetwork> {
        cidrs
            .iter()
            .map(|cidr| cidr.parse().expect("cidr"))
            .collect()
    };
    let trusted = TrustedProxies::new(networks(&["10.0.0.0/8", "fd00::/8"]));
    let route_list = Allowlist::new(
        "route:app".into(),
        networks(&[
            "192.0.2.0/24",
            "198.51.100.0/24",
            "127.0.0.0/8",
            "2001:db8::/32",
        ]),
    );
    let direct: IpAddr = "127.0.0.1".parse().expect("ip");
    let proxy: IpAddr = "10.1.2.3".parse().expect("ip");
    let mut chain = HeaderMap::new();
    chain.insert(
        "x-forwarded-for",
        HeaderValue::from_static("203.0.113.9, 198.51.100.7, 10.9.9.9"),
    );
    let chain = RequestHeaders::from_map(&chain);
    let none = RequestHeaders::default();
    let mut group = c.benchmark_group("client ip + allowlist");
    group.bench_function("direct peer", |b| {
        b.iter(|| {
            let ip = client_ip(black_box(direct), &none, &trusted).expect("direct peer");
            check_allowlists(ip, [&route_list]).expect("allowed")
        });
    });
    group.bench_function("via trusted proxy (X-Forwarded-For)", |b| {
        b.iter(|| {
            let ip = client_ip(black_box(proxy), &chain, &trusted).expect("chain");
            check_allowlists(ip, [&route_list]).expect("allowed")
        });
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = client_ip_and_allowlist
}
criterion_main!(benches);
