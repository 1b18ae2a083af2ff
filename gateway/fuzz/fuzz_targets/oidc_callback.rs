//! The OpenID Connect callback query and the ID token's compact form never panic; a
//! parsed callback survives a round trip through form encoding, never shows its code
//! or state in `Debug`, and no ID token is accepted without a key to verify it.
//!
//! The first byte picks what the rest is: a callback query (even) or an ID token (odd).
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_gateway::sso::oidc::{CallbackParams, fuzz_id_token};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if selector % 2 == 0 {
        callback(text);
    } else {
        let outcome = fuzz_id_token(text);
        assert!(outcome.is_err(), "an ID token was accepted without any key");
    }
});

fn callback(query: &str) {
    let Ok(params) = CallbackParams::from_query(query) else {
        return;
    };

    let fields = [
        ("code", &params.code),
        ("state", &params.state),
        ("iss", &params.iss),
        ("error", &params.error),
        ("error_description", &params.error_description),
    ];
    let mut encoded = form_urlencoded::Serializer::new(String::new());
    for (name, value) in fields {
        if let Some(value) = value {
            encoded.append_pair(name, value);
        }
    }
    let encoded = encoded.finish();
    if encoded.len() <= 16 * 1024 {
        let again = CallbackParams::from_query(&encoded).expect("re-encoded callback parses");
        assert_eq!(again.code, params.code);
        assert_eq!(again.state, params.state);
        assert_eq!(again.iss, params.iss);
        assert_eq!(again.error, params.error);
        assert_eq!(again.error_description, params.error_description);
    }

    // The secrets never reach Debug output. Compared on a copy holding only them, so a
    // value that merely repeats the scaffolding or another field is not a finding.
    let secrets = CallbackParams {
        code: params.code.clone(),
        state: params.state.clone(),
        ..CallbackParams::default()
    };
    let debug = format!("{secrets:?}");
    let scaffold = format!(
        "{:?}",
        CallbackParams {
            code: Some(String::new()),
            state: Some(String::new()),
            ..CallbackParams::default()
        }
    );
    for secret in [&params.code, &params.state].into_iter().flatten() {
        assert!(
            secret.is_empty()
                || scaffold.contains(secret.as_str())
                || !debug.contains(secret.as_str()),
            "a secret shows in {debug}"
        );
    }
}
