//! Table-driven configuration checks: every refusal has an exact message naming the
//! file, the key and the problem.

use std::path::Path;

use expect_test::{Expect, expect};

use super::{Access, Config, KeySource, StoreUrl};

const BASE: &str = r#"
version = 1
[[listener]]
bind = "127.0.0.1:8080"
[store]
url = "sqlite://data/p.db"
[policy]
dir = "."
[keys]
main_key = "file:keys/main.key"
"#;

const ROUTE: &str = r#"
[[route]]
id = "app"
host = "app.example.com"
path = "/"
upstream = "http://127.0.0.1:3000"
access = "public"
"#;

fn load(text: &str) -> Result<Config, String> {
    Config::from_toml(Path::new("portcullis.toml"), text).map_err(|err| err.to_string())
}

fn check(text: &str, expected: Expect) {
    let actual = match load(text) {
        Ok(_) => "ok".to_owned(),
        Err(message) => message,
    };
    expected.assert_eq(&actual);
}

fn with_route(extra: &str) -> String {
    format!("{BASE}{ROUTE}{extra}")
}

#[test]
fn minimal_config_loads() {
    let config = load(&with_route("")).unwrap_or_else(|err| panic!("{err}"));
    assert_eq!(config.listeners().len(), 1);
    assert_eq!(config.routes()[0].access, Access::Public);
    assert_eq!(config.store(), &StoreUrl::Sqlite("data/p.db".into()));
    assert_eq!(config.main_key(), &KeySource::File("keys/main.key".into()));
}

#[test]
fn shipped_example_config_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let text = std::fs::read_to_string(dir.join("portcullis.example.toml")).unwrap_or_default();
    // The example names a policy folder relative to itself; point it at one that exists.
    let text = text.replace("dir = \"policies\"", "dir = \".\"");
    let config = Config::from_toml(&dir.join("portcullis.example.toml"), &text);
    assert!(config.is_ok(), "{:?}", config.err());
}

#[test]
fn syntax_errors_name_line_and_column() {
    check(
        "version = 1\nlisten = \"x\"\n",
        expect![
            "portcullis.toml: line 2, column 1: unknown field `listen`, expected one of `version`, `listener`, `internal`, `network`, `limits`, `runtime`, `identity`, `store`, `policy`, `keys`, `login`, `email`, `sso`, `passwords`, `sessions`, `route`"
        ],
    );
    check(
        "version = \n",
        expect![
            "portcullis.toml: line 1, column 11: string values must be quoted, expected literal string"
        ],
    );
    check(
        &format!("{BASE}{ROUTE}timeout = \"5s\"\n"),
        expect![
            "portcullis.toml: line 18, column 1: unknown field `timeout`, expected one of `id`, `host`, `path`, `upstream`, `upstream_ca`, `resource`, `access`, `allow`, `websocket`, `case_insensitive`, `preserve_host`, `connect_timeout`, `response_timeout`, `action`, `actions`"
        ],
    );
}

#[test]
fn top_level_errors() {
    check(
        &with_route("").replace("version = 1", ""),
        expect!["portcullis.toml: `version`: is required"],
    );
    check(
        &with_route("").replace("version = 1", "version = 2"),
        expect!["portcullis.toml: `version`: unsupported version 2; this build reads version 1"],
    );
    check(
        BASE,
        expect!["portcullis.toml: `route`: at least one `[[route]]` is required"],
    );
    check(
        &with_route("").replace("[[listener]]\nbind = \"127.0.0.1:8080\"", ""),
        expect!["portcullis.toml: `listener`: at least one `[[listener]]` is required"],
    );
    check(
        &with_route("").replace("127.0.0.1:8080", "localhost:80"),
        expect![
            "portcullis.toml: `listener[0].bind`: `localhost:80` is not an address:port such as `0.0.0.0:8443` or `[::]:8443`"
        ],
    );
    check(
        &with_route("[network]\ntrusted_proxies = [\"10.1.2.3/8\"]\n"),
        expect![
            "portcullis.toml: `network.trusted_proxies[0]`: `10.1.2.3/8` has host bits set; did you mean `10.0.0.0/8`?"
        ],
    );
    check(
        &with_route("[network]\nunknown_host_status = 500\n"),
        expect!["portcullis.toml: `network.unknown_host_status`: must be 421 or 404, got 500"],
    );
    check(
        &with_route("[limits]\nidle_timeout = \"5 minutes\"\n"),
        expect![
            "portcullis.toml: `limits.idle_timeout`: `5 minutes` is not a duration such as `250ms`, `10s`, `5m` or `1h`"
        ],
    );
    check(
        &with_route("[limits]\nmax_header_bytes = 1024\n"),
        expect![
            "portcullis.toml: `limits.max_header_bytes`: must be between 8192 and 1048576, got 1024"
        ],
    );
    check(
        &with_route("[runtime]\nworkers = 0\n"),
        expect!["portcullis.toml: `runtime.workers`: must be between 1 and 1024, got 0"],
    );
    check(
        &with_route("[identity]\nstrip_headers = [\"Bad Header\"]\n"),
        expect!["portcullis.toml: `identity.strip_headers[0]`: `Bad Header` is not a header name"],
    );
}

#[test]
fn login_password_and_session_errors() {
    check(
        &with_route("[login]\norganization = \"x\"\nworkspace = \"y\"\n"),
        expect!["portcullis.toml: `login.organization`: `x` is not an id (a UUID)"],
    );
    check(
        &with_route("[login]\norganization = \"0192f3c4-0000-7000-8000-000000000001\"\n"),
        expect!["portcullis.toml: `login.workspace`: is required"],
    );
    check(
        &with_route("[passwords]\niterations = 0\n"),
        expect![
            "portcullis.toml: `passwords`: memory_kib must be 8..=4194304, iterations and parallelism 1..=16"
        ],
    );
    check(
        &with_route("[passwords]\nthreads = 0\n"),
        expect!["portcullis.toml: `passwords.threads`: must be 1..=256"],
    );
    check(
        &with_route("[passwords]\nthreads = 1000\n"),
        expect!["portcullis.toml: `passwords.threads`: must be 1..=256"],
    );
    check(
        &with_route("[sessions]\nidle_timeout = \"forever\"\n"),
        expect![
            "portcullis.toml: `sessions.idle_timeout`: `forever` is not a duration such as `250ms`, `10s`, `5m` or `1h`"
        ],
    );
}

#[test]
fn store_policy_and_key_errors() {
    check(
        &with_route("").replace("sqlite://data/p.db", "mysql://u:secret@db/p"),
        expect!["portcullis.toml: `store.url`: must start with `sqlite://` or `postgres://`"],
    );
    check(
        &with_route("").replace("dir = \".\"", "dir = \"no-such-folder\""),
        expect!["portcullis.toml: `policy.dir`: `no-such-folder` is not a directory"],
    );
    check(
        &with_route("").replace("file:keys/main.key", "0123456789abcdef"),
        expect![
            "portcullis.toml: `keys.main_key`: must be `file:PATH` or `env:NAME`; the key itself never goes in this file"
        ],
    );
    check(
        &with_route("").replace("file:keys/main.key", "env:main-key"),
        expect![
            "portcullis.toml: `keys.main_key`: `main-key` is not an environment variable name (A-Z, 0-9, _)"
        ],
    );
    assert!(
        load(&with_route("").replace("sqlite://data/p.db", "postgres://portcullis@db/portcullis"))
            .is_ok()
    );
}

#[test]
fn route_errors() {
    let cases: [(&str, &str, Expect); 11] = [
        (
            "id = \"app\"",
            "id = \"App\"",
            expect![
                "portcullis.toml: `route[0].id`: `App` must be lowercase letters, digits, `-` or `_`"
            ],
        ),
        (
            "host = \"app.example.com\"",
            "host = \"app.example.com:8443\"",
            expect![
                "portcullis.toml: `route[0].host`: `app.example.com:8443` is not a host name (no port, no scheme; `*` matches any host)"
            ],
        ),
        (
            "path = \"/\"",
            "path = \"admin\"",
            expect![
                "portcullis.toml: `route[0].path`: `admin` is not a plain path: path does not start with `/`"
            ],
        ),
        (
            "path = \"/\"",
            "path = \"/a/../b\"",
            expect![
                "portcullis.toml: `route[0].path`: `/a/../b` is not in canonical form; write `/b`"
            ],
        ),
        (
            "path = \"/\"",
            "path = \"/a%2fb\"",
            expect!["portcullis.toml: `route[0].path`: `/a%2fb` is not a plain path: encoded `/`"],
        ),
        (
            "upstream = \"http://127.0.0.1:3000\"",
            "upstream = \"ftp://127.0.0.1\"",
            expect![
                "portcullis.toml: `route[0].upstream`: `ftp://127.0.0.1` must start with `http://` or `https://`"
            ],
        ),
        (
            "upstream = \"http://127.0.0.1:3000\"",
            "upstream = \"http://127.0.0.1:3000/app\"",
            expect![
                "portcullis.toml: `route[0].upstream`: `http://127.0.0.1:3000/app` must be scheme://host[:port] only; requests keep their own path"
            ],
        ),
        (
            "upstream = \"http://127.0.0.1:3000\"",
            "upstream = \"http://user:pw@127.0.0.1\"",
            expect![
                "portcullis.toml: `route[0].upstream`: `http://user:pw@127.0.0.1` must not carry credentials"
            ],
        ),
        (
            "access = \"public\"",
            "access = \"open\"",
            expect![
                "portcullis.toml: `route[0].access`: must be `public` or `protected`, got `open`"
            ],
        ),
        (
            "access = \"public\"",
            "access = \"protected\"",
            expect![
                "portcullis.toml: `route[0].resource`: is required when access = \"protected\""
            ],
        ),
        (
            "access = \"public\"",
            "access = \"public\"\nallow = []",
            expect![
                "portcullis.toml: `route[0].allow`: an empty allowlist would refuse everyone; remove the key to allow any address"
            ],
        ),
    ];
    for (from, to, expected) in cases {
        check(&with_route("").replace(from, to), expected);
    }
    check(
        &with_route("").replace(
            "access = \"public\"",
            "access = \"protected\"\nresource = \"wiki\"",
        ),
        expect![[
            r#"portcullis.toml: `route[0].resource`: `wiki` is not a Cedar entity id such as `App::"wiki"`"#
        ]],
    );
    check(
        &with_route("").replace(
            "access = \"public\"",
            "access = \"public\"\nallow = [\"300.1.1.1\"]",
        ),
        expect!["portcullis.toml: `route[0].allow[0]`: `300.1.1.1` is not an IP address or CIDR"],
    );
    check(
        &with_route("").replace(
            "access = \"public\"",
            "access = \"public\"\nupstream_ca = \"ca.pem\"",
        ),
        expect!["portcullis.toml: `route[0].upstream_ca`: only applies to an `https://` upstream"],
    );
    check(
        &with_route(ROUTE),
        expect!["portcullis.toml: `route[1].id`: `app` is used by another route"],
    );
    check(
        &with_route(&ROUTE.replace("id = \"app\"", "id = \"other\"")),
        expect![
            "portcullis.toml: `route[1].path`: host `app.example.com` already has a route for `/`"
        ],
    );
}

#[test]
fn durations() {
    use std::time::Duration;

    use super::parse_duration;
    assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
    assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
    assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
    assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
    for bad in [
        "",
        "0s",
        "s",
        "10",
        "1.5s",
        "-1s",
        "10 s",
        "99999999999999999999h",
    ] {
        assert_eq!(parse_duration(bad), None, "{bad}");
    }
}

#[test]
fn debug_never_prints_database_credentials() {
    let config = load(&with_route("").replace("sqlite://data/p.db", "postgres://u:hunter2@db/p"))
        .unwrap_or_else(|err| panic!("{err}"));
    let printed = format!("{config:?}");
    assert!(!printed.contains("hunter2"), "{printed}");
}

#[test]
fn email_settings() {
    let email = |table: &str| with_route(&format!("[email]\n{table}\n"));
    let config = load(&email(
        "host = \"smtp.example.com\"\nfrom = \"Portcullis <no-reply@example.com>\"\nusername = \"gw\"\npassword = \"env:SMTP_PASSWORD\"",
    ))
    .unwrap_or_else(|err| panic!("{err}"));
    let smtp = config.email.as_ref().unwrap();
    assert_eq!(
        (smtp.port, smtp.security),
        (587, super::SmtpSecurity::StartTls)
    );
    assert_eq!(
        smtp.credentials,
        Some(("gw".to_owned(), KeySource::Env("SMTP_PASSWORD".into())))
    );
    check(
        &email("host = \"smtp.example.com\"\nsecurity = \"none\"\nfrom = \"a@example.com\""),
        expect![[
            r#"portcullis.toml: `email.security`: `none` sends codes in clear text: it is only allowed for a relay on loopback"#
        ]],
    );
    check(
        &email("host = \"127.0.0.1\"\nsecurity = \"plain\"\nfrom = \"a@example.com\""),
        expect![[
            r#"portcullis.toml: `email.security`: `plain` is not one of `starttls`, `tls`, `none`"#
        ]],
    );
    check(
        &email(
            "host = \"smtp.example.com\"\nfrom = \"a@example.com\"\nusername = \"gw\"\npassword = \"hunter2\"",
        ),
        expect![[
            r#"portcullis.toml: `email.password`: must be `file:PATH` or `env:NAME`; the key itself never goes in this file"#
        ]],
    );
    check(
        &email("host = \"smtp.example.com\"\nfrom = \"not an address\""),
        expect![[
            r#"portcullis.toml: `email.from`: `not an address` is not an address such as `Portcullis <no-reply@example.com>`"#
        ]],
    );
    check(
        &email("host = \"smtp.example.com\"\nfrom = \"a@example.com\"\nusername = \"gw\""),
        expect![[r#"portcullis.toml: `email.password`: is required"#]],
    );
}

#[test]
fn sso_settings() {
    let sso = |tables: &str| {
        with_route(&format!(
            "[sso]\npublic_url = \"https://gw.example.com\"\n{tables}"
        ))
    };
    let oidc = "[[sso.oidc]]\nid = \"corp\"\nissuer = \"https://id.example.com\"\nclient_id = \"gw\"\nclient_secret_env = \"OIDC_SECRET\"\n";
    let config = load(&sso(&format!(
        "{oidc}provision = true\nroles = [{{ group = \"eng\", role = \"operator\", scope = 'App::\"wiki\"' }}]\n"
    )))
    .unwrap_or_else(|err| panic!("{err}"));
    let sso_config = config.sso.as_ref().unwrap();
    assert_eq!(sso_config.providers.len(), 1);
    assert!(sso_config.providers[0].provision);
    assert_eq!(sso_config.providers[0].roles[0].role, "operator");
    check(
        &with_route(&format!("[sso]\n{oidc}")),
        expect![[r#"portcullis.toml: `sso.public_url`: is required"#]],
    );
    check(
        &with_route(&format!(
            "[sso]\npublic_url = \"http://gw.example.com\"\n{oidc}"
        )),
        expect![[
            r#"portcullis.toml: `sso.public_url`: `http://gw.example.com` must be `https://host[:port]` (http only for loopback)"#
        ]],
    );
    check(
        &sso(&format!(
            "{oidc}roles = [{{ group = \"eng\", role = \"operator\", scope = \"wiki\" }}]\n"
        )),
        expect![[
            r#"portcullis.toml: `sso.oidc[0].roles[0].scope`: `wiki` is not a scope such as `App::"wiki"`"#
        ]],
    );
    check(
        &sso(&format!("{oidc}provison = true\n")),
        expect![
            "portcullis.toml: `sso.oidc[0]`: unknown field `provison`, expected one of `id`, `preset`, `tenant`, `issuer`, `client_id`, `client_secret`, `client_secret_env`, `scopes`, `groups_claim`, `trusted_mfa_amr`, `allowed_algs`, `display_name`, or one of `provision`, `link_by_email`, `roles`"
        ],
    );
    check(
        &sso(&format!("{oidc}{oidc}")),
        expect![[r#"portcullis.toml: `sso`: provider id `corp` is used twice"#]],
    );
    check(
        &sso(&oidc.replace("https://id", "http://id")),
        expect![
            "portcullis.toml: `sso.oidc[0]`: oidc provider `corp`: issuer `http://id.example.com` must use https (http only on loopback)"
        ],
    );
}
