//! Routing checks: host handling and longest-prefix matching on segment boundaries.

use std::path::Path;
use std::sync::Arc;

use http::{HeaderValue, StatusCode};

use super::{LastHost, RouteTable, request_host};
use crate::config::Config;
use crate::proxy::path::CanonicalPath;

fn table() -> RouteTable {
    let text = r#"
version = 1
[[listener]]
bind = "127.0.0.1:8080"
[store]
url = "sqlite://p.db"
[policy]
dir = "."
[keys]
main_key = "env:KEY"
[[route]]
id = "root"
host = "app.example.com"
path = "/"
upstream = "http://127.0.0.1:1"
access = "public"
[[route]]
id = "api"
host = "app.example.com"
path = "/api"
upstream = "http://127.0.0.1:1"
access = "public"
[[route]]
id = "admin"
host = "app.example.com"
path = "/admin"
upstream = "http://127.0.0.1:1"
access = "public"
case_insensitive = true
[[route]]
id = "docs"
host = "app.example.com"
path = "/docs/"
upstream = "http://127.0.0.1:1"
access = "public"
[[route]]
id = "fallback"
host = "*"
path = "/public"
upstream = "http://127.0.0.1:1"
access = "public"
"#;
    let config = Config::from_toml(Path::new("t.toml"), text).unwrap_or_else(|err| panic!("{err}"));
    RouteTable::build(&config.routes, StatusCode::MISDIRECTED_REQUEST, 1)
        .unwrap_or_else(|err| panic!("{err}"))
}

fn route_for(table: &RouteTable, host: &str, path: &str) -> String {
    let path = match CanonicalPath::parse(path, true) {
        Ok(path) => path,
        Err(err) => return format!("reject: {err}"),
    };
    match table.lookup(host, &path) {
        Ok(route) => route.id.clone(),
        Err(reject) => format!("{} {}", reject.status().as_u16(), reject.code()),
    }
}

#[test]
fn longest_prefix_on_segment_boundaries() {
    let table = table();
    assert_eq!(route_for(&table, "app.example.com", "/"), "root");
    assert_eq!(route_for(&table, "app.example.com", "/api"), "api");
    assert_eq!(route_for(&table, "app.example.com", "/api/v1"), "api");
    assert_eq!(route_for(&table, "app.example.com", "/apix"), "root");
    assert_eq!(route_for(&table, "app.example.com", "/docs/"), "docs");
    assert_eq!(route_for(&table, "app.example.com", "/docs/x"), "docs");
    assert_eq!(route_for(&table, "app.example.com", "/docs"), "root");
}

#[test]
fn routing_sees_the_canonical_path() {
    let table = table();
    assert_eq!(
        route_for(&table, "app.example.com", "/public/../api/x"),
        "api"
    );
    assert_eq!(route_for(&table, "app.example.com", "/%61pi"), "api");
}

#[test]
fn case_insensitive_route_catches_case_variants() {
    let table = table();
    assert_eq!(
        route_for(&table, "app.example.com", "/ADMIN/users"),
        "admin"
    );
    assert_eq!(route_for(&table, "app.example.com", "/Admin"), "admin");
    // Case-sensitive routes see other cases as other paths, exactly as a
    // case-sensitive upstream would.
    assert_eq!(route_for(&table, "app.example.com", "/API"), "root");
}

#[test]
fn unknown_hosts() {
    let table = table();
    assert_eq!(
        route_for(&table, "other.example.com", "/public/x"),
        "fallback"
    );
    assert_eq!(
        route_for(&table, "other.example.com", "/private"),
        "404 no_route"
    );
    let strict = {
        let text = "version = 1\n[[listener]]\nbind = \"127.0.0.1:1\"\n[store]\nurl = \"sqlite://p\"\n[policy]\ndir = \".\"\n[keys]\nmain_key = \"env:K\"\n[[route]]\nid = \"a\"\nhost = \"a.example\"\npath = \"/\"\nupstream = \"http://127.0.0.1:1\"\naccess = \"public\"\n";
        let config =
            Config::from_toml(Path::new("t.toml"), text).unwrap_or_else(|err| panic!("{err}"));
        RouteTable::build(&config.routes, StatusCode::MISDIRECTED_REQUEST, 1)
            .unwrap_or_else(|err| panic!("{err}"))
    };
    assert_eq!(route_for(&strict, "b.example", "/"), "421 unknown_host");
}

fn host(authority: Option<&str>, headers: &[&str]) -> String {
    let authority = authority.and_then(|a| a.parse().ok());
    let values: Vec<HeaderValue> = headers
        .iter()
        .filter_map(|h| HeaderValue::from_str(h).ok())
        .collect();
    match request_host(authority.as_ref(), values.iter().map(HeaderValue::as_bytes)) {
        Ok(host) => format!("{} ({})", host.name(), host.raw()),
        Err(reject) => reject.code().to_owned(),
    }
}

#[test]
fn host_rules() {
    assert_eq!(
        host(None, &["App.Example.com:8443"]),
        "app.example.com (App.Example.com:8443)"
    );
    assert_eq!(
        host(Some("app.example.com"), &[]),
        "app.example.com (app.example.com)"
    );
    assert_eq!(
        host(Some("app.example.com"), &["app.example.com"]),
        "app.example.com (app.example.com)"
    );
    assert_eq!(
        host(Some("app.example.com"), &["evil.example.com"]),
        "bad_host"
    );
    assert_eq!(host(None, &["a.example", "b.example"]), "bad_host");
    assert_eq!(host(None, &[]), "bad_host");
    assert_eq!(host(None, &["user@app.example.com"]), "bad_host");
    assert_eq!(host(None, &["app_example.com"]), "bad_host");
    assert_eq!(host(None, &["[::1]:8080"]), "[::1] ([::1]:8080)");
    assert_eq!(
        host(None, &["[2001:DB8::1]"]),
        "[2001:db8::1] ([2001:DB8::1])"
    );
    assert_eq!(
        host(None, &["127.0.0.1:8080"]),
        "127.0.0.1 (127.0.0.1:8080)"
    );
    assert_eq!(host(None, &["app.example:"]), "app.example (app.example:)");
    // Nothing that could be read two ways reaches routing.
    for bad in [
        "",
        ":8080",
        "app.example:8080:1",
        "app.example:65536",
        "app.example:+80",
        "app.example:80a",
        "app%2eexample",
        "app example",
        "::1",
        "[::1",
        "[]",
        "[::1]x",
        "[::1]:x",
        "[fe80::1%25eth0]",
        "[v1.fe80::1]",
        "user@[::1]",
        "app.example/x",
        "app.example?x",
        "app.example#x",
    ] {
        assert_eq!(host(None, &[bad]), "bad_host", "{bad:?}");
    }
}

/// What a connection remembers of its last `Host` never changes an answer: in any
/// order, every request gets what checking it afresh gives, and a host is reused only
/// for the very same single `Host` line.
#[test]
fn a_connections_last_host_answers_as_a_fresh_check_would() {
    let cases: &[(Option<&str>, &[&str])] = &[
        (None, &["app.example.com"]),
        (None, &["app.example.com"]),
        (None, &["App.Example.com:8443"]),
        (None, &["app.example.com", "app.example.com"]),
        (None, &["app.example.com", "evil.example.com"]),
        (None, &[]),
        (None, &["app.example.com:65536"]),
        (Some("evil.example.com"), &["app.example.com"]),
        (Some("other.example.com"), &[]),
        (None, &["app.example.com"]),
        (None, &["app.example.com."]),
        (None, &["[::1]:8080"]),
        (None, &["[::1]:8080x"]),
    ];
    let fresh = |authority: Option<&str>, headers: &[&str]| host(authority, headers);
    let remembered = |last: &LastHost, authority: Option<&str>, headers: &[&str]| {
        let authority = authority.and_then(|a| a.parse::<http::uri::Authority>().ok());
        let values: Vec<HeaderValue> = headers
            .iter()
            .filter_map(|h| HeaderValue::from_str(h).ok())
            .collect();
        match last.request_host(authority.as_ref(), values.iter().map(HeaderValue::as_bytes)) {
            Ok(host) => format!("{} ({})", host.name(), host.raw()),
            Err(reject) => reject.code().to_owned(),
        }
    };
    let last = LastHost::default();
    // Every case after every other one.
    for (before_authority, before_headers) in cases {
        for (authority, headers) in cases {
            let _ = remembered(&last, *before_authority, before_headers);
            assert_eq!(
                remembered(&last, *authority, headers),
                fresh(*authority, headers),
                "{authority:?} {headers:?} after {before_authority:?} {before_headers:?}"
            );
        }
    }
    // The same line again is answered from what was remembered.
    let line = [b"app.example.com".as_slice()];
    let first = last.request_host(None, line.into_iter());
    let again = last.request_host(None, line.into_iter());
    assert!(matches!((first, again), (Ok(a), Ok(b)) if Arc::ptr_eq(&a, &b)));
}
