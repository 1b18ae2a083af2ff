//! Tests: settings and callback parsing here; the token-level attacks against an
//! in-test fake provider in `fake_op`; full sign-ins against a real, certified
//! OpenID Provider in `peer`.

mod fake_op;
mod peer;

use super::*;

fn settings(toml_text: &str) -> OidcSettings {
    toml::from_str(toml_text).unwrap()
}

fn validation_error(toml_text: &str) -> String {
    settings(toml_text).validate().unwrap_err()
}

#[test]
fn generic_settings_with_defaults_validate() {
    let settings = settings(
        r#"
        id = "corp-idp"
        issuer = "https://idp.example.com"
        client_id = "portcullis"
        client_secret_env = "CORP_IDP_SECRET"
        "#,
    );
    settings.validate().unwrap();
    assert_eq!(settings.scopes, ["openid", "email", "profile"]);
    assert_eq!(settings.allowed_algs, ["RS256", "ES256", "EdDSA"]);
    assert!(settings.trusted_mfa_amr.is_empty());
}

#[test]
fn presets_derive_their_issuers() {
    let google = settings(
        r#"
        id = "google"
        preset = "google"
        client_id = "x"
        client_secret = "y"
        "#,
    );
    assert_eq!(google.issuer_url().unwrap(), "https://accounts.google.com");
    let microsoft = settings(
        r#"
        id = "entra"
        preset = "microsoft"
        tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
        client_id = "x"
        client_secret = "y"
        "#,
    );
    assert_eq!(
        microsoft.issuer_url().unwrap(),
        "https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0"
    );
}

#[test]
fn settings_errors_are_clear() {
    let cases = [
        (
            r#"id = "Bad_Id"
               issuer = "https://idp.example.com"
               client_id = "x"
               client_secret = "y""#,
            "oidc provider id `Bad_Id` must be 1 to 32 characters from a-z, 0-9 and `-`",
        ),
        (
            r#"id = "a"
               issuer = "http://idp.example.com"
               client_id = "x"
               client_secret = "y""#,
            "oidc provider `a`: issuer `http://idp.example.com` must use https (http only on loopback)",
        ),
        (
            r#"id = "a"
               client_id = "x"
               client_secret = "y""#,
            "oidc provider `a`: `issuer` is required",
        ),
        (
            r#"id = "a"
               preset = "microsoft"
               tenant = "common"
               client_id = "x"
               client_secret = "y""#,
            "oidc provider `a`: tenant `common` accepts many tenants, whose ID tokens cannot be tied to one issuer; use your directory (tenant) id",
        ),
        (
            r#"id = "a"
               preset = "microsoft"
               tenant = "contoso.onmicrosoft.com"
               client_id = "x"
               client_secret = "y""#,
            "oidc provider `a`: tenant `contoso.onmicrosoft.com` must be the directory (tenant) id, a GUID: Entra ID names its issuer by id, not by domain",
        ),
        (
            r#"id = "a"
               preset = "google"
               issuer = "https://evil.example.com"
               client_id = "x"
               client_secret = "y""#,
            "oidc provider `a`: the google preset sets the issuer; remove `issuer` and `tenant`",
        ),
        (
            r#"id = "a"
               issuer = "https://idp.example.com"
               client_id = "x""#,
            "oidc provider `a`: `client_secret_env` (or `client_secret`) is required",
        ),
        (
            r#"id = "a"
               issuer = "https://idp.example.com"
               client_id = "x"
               client_secret = "y"
               allowed_algs = ["none"]"#,
            "oidc provider `a`: algorithm `none` is not allowed (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384 or HS512)",
        ),
    ];
    for (toml_text, expected) in cases {
        assert_eq!(validation_error(toml_text), expected);
    }
}

#[test]
fn loopback_http_issuers_are_allowed() {
    for issuer in [
        "http://127.0.0.1:8080",
        "http://[::1]:8080",
        "http://localhost",
    ] {
        let settings = settings(&format!(
            "id = \"local\"\nissuer = \"{issuer}\"\nclient_id = \"x\"\nclient_secret = \"y\""
        ));
        settings.validate().unwrap();
    }
}

#[test]
fn unknown_settings_keys_are_refused() {
    let result: Result<OidcSettings, _> = toml::from_str(
        r#"
        id = "a"
        issuer = "https://idp.example.com"
        client_id = "x"
        client_secret = "y"
        skip_signature_check = true
        "#,
    );
    assert!(result.is_err());
}

#[test]
fn client_secret_is_read_through_the_lookup_and_never_debug_printed() {
    let mut settings = settings(
        r#"
        id = "a"
        issuer = "https://idp.example.com"
        client_id = "x"
        client_secret_env = "IDP_SECRET"
        "#,
    );
    settings
        .resolve_client_secret(&|name| (name == "IDP_SECRET").then(|| "hunter2".to_owned()))
        .unwrap();
    assert_eq!(settings.client_secret.as_ref().unwrap().expose(), "hunter2");
    assert!(!format!("{settings:?}").contains("hunter2"));
    let mut missing = self::settings(
        r#"
        id = "a"
        issuer = "https://idp.example.com"
        client_id = "x"
        client_secret_env = "IDP_SECRET"
        "#,
    );
    assert_eq!(
        missing.resolve_client_secret(&|_| None).unwrap_err(),
        "oidc provider `a`: environment variable `IDP_SECRET` (client_secret_env) is not set"
    );
}

/// The integration runs `complete` inside hyper services and spawned tasks.
#[test]
fn sign_in_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Send + Sync>() {}
    assert_sync::<OidcProvider>();
    assert_sync::<PendingOidc>();
    if false {
        let settings = settings("id = \"a\"\nclient_id = \"x\"");
        assert_send(&discover(&settings, "https://gw/callback"));
        let provider: &OidcProvider = unreachable_provider();
        let (_, pending) = provider.begin(None);
        let callback = CallbackParams::default();
        assert_send(&provider.complete(&pending, &callback, crate::clock::now_utc()));
    }
}

fn unreachable_provider() -> &'static OidcProvider {
    unreachable!("only used for type checks")
}

#[test]
fn callback_query_is_parsed() {
    let params =
        CallbackParams::from_query("code=abc&state=s%2B1&iss=https%3A%2F%2Fidp&session_state=x")
            .unwrap();
    assert_eq!(params.code.as_deref(), Some("abc"));
    assert_eq!(params.state.as_deref(), Some("s+1"));
    assert_eq!(params.iss.as_deref(), Some("https://idp"));
    assert!(!format!("{params:?}").contains("abc"));
}

#[test]
fn callback_with_repeated_parameter_is_refused() {
    let err = CallbackParams::from_query("code=a&state=s&code=b").unwrap_err();
    assert_eq!(err.code(), "oidc_malformed_callback");
}

#[test]
fn provider_error_codes_cannot_forge_log_lines() {
    assert_eq!(
        safe_error_code("access_denied\nlevel=INFO msg=\"ok\""),
        "access_deniedlevel=INFOmsg=ok"
    );
}
