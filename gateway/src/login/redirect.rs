//! Where a browser goes after login: only a same-origin path, checked by the same
//! canonicaliser that routes requests, so every open-redirect spelling (`//evil`,
//! `/\evil`, `https:evil`, `/%2f%2fevil`, `/%5cevil`, tabs and CR/LF) is refused and
//! the user lands on `/` instead.

use crate::proxy::path::CanonicalPath;
use crate::proxy::pipeline::RESERVED_PREFIX;

/// The safe post-login target for a requested one, or `/`.
pub fn return_target(requested: Option<&str>) -> String {
    requested
        .and_then(same_origin_path)
        .unwrap_or_else(|| "/".to_owned())
}

fn same_origin_path(requested: &str) -> Option<String> {
    let (path, query) = match requested.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (requested, None),
    };
    if !path.starts_with('/') || path.starts_with("//") {
        return None;
    }
    let canonical = CanonicalPath::parse(path, true).ok()?;
    if canonical.as_str().starts_with(RESERVED_PREFIX) {
        return None;
    }
    match query {
        None => Some(canonical.as_str().to_owned()),
        Some(query)
            if query
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'\\' && b != b'#') =>
        {
            Some(format!("{}?{query}", canonical.as_str()))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::return_target;

    #[test]
    fn same_origin_paths_pass() {
        assert_eq!(
            return_target(Some("/app/reports?x=1&y=%2F")),
            "/app/reports?x=1&y=%2F"
        );
        assert_eq!(return_target(Some("/")), "/");
        assert_eq!(return_target(None), "/");
    }

    #[test]
    fn open_redirect_spellings_land_on_root() {
        for attack in [
            "//evil.example",
            "///evil.example",
            "/\\evil.example",
            "\\\\evil.example",
            "https:evil.example",
            "https://evil.example/",
            "http:/evil.example",
            "javascript:alert(1)",
            "/%2f%2fevil.example",
            "/%5cevil.example",
            "/%2F/evil.example",
            "/\t/evil.example",
            "/x\r\nSet-Cookie: a=b",
            "evil.example",
            "/a?next=\\evil",
            "/.portcullis/login",
            "/%2e%2e/%2e%2e/evil",
            "",
        ] {
            assert_eq!(return_target(Some(attack)), "/", "{attack:?}");
        }
    }
}
