//! The canonical request path: one decoding, done once, that routing, policy and the
//! upstream all see.
//!
//! Anything a server could reasonably read two ways is refused rather than "fixed":
//! encoded `/` and `\`, encoded dot segments, double encoding, NUL and control bytes,
//! raw backslashes, empty segments (`//`), `..` above the root, invalid or overlong
//! UTF-8, and (by default) `;` path parameters. Plain `.` and `..` segments are
//! resolved as RFC 3986 says, escapes of unreserved characters are decoded, and every
//! other escape is kept with upper-case hex. The result is what gets forwarded.

use std::fmt;

/// A request path in canonical form: starts with `/`, no dot segments, no empty
/// segments, escapes normalised. Only [`CanonicalPath::parse`] makes one.
#[derive(Clone, PartialEq, Eq)]
pub struct CanonicalPath(String);

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path does not start with `/`.
    #[error("path does not start with `/`")]
    NotOriginForm,
    /// `%` not followed by two hex digits.
    #[error("malformed percent-escape")]
    BadEscape,
    /// `%2F`: an encoded segment separator.
    #[error("encoded `/`")]
    EncodedSlash,
    /// `%5C`: an encoded backslash.
    #[error("encoded `\\`")]
    EncodedBackslash,
    /// A raw backslash, which some servers treat as `/`.
    #[error("backslash in path")]
    Backslash,
    /// NUL, another control byte, or a space.
    #[error("control byte in path")]
    ControlByte,
    /// `%25` followed by hex digits: decoding twice would give another path.
    #[error("double percent-encoding")]
    DoubleEncoding,
    /// `;` path parameters (`/a;x=1`, `/..;/`).
    #[error("`;` path parameter")]
    PathParameter,
    /// A byte outside ASCII sent without escaping.
    #[error("unescaped non-ASCII byte")]
    NonAscii,
    /// Escapes that decode to invalid or overlong UTF-8.
    #[error("escapes decode to invalid UTF-8")]
    InvalidUtf8,
    /// A `.` or `..` segment written with escapes.
    #[error("encoded dot segment")]
    EncodedDotSegment,
    /// `//`: an empty segment.
    #[error("empty path segment")]
    EmptySegment,
    /// `..` that would climb above `/`.
    #[error("`..` above the root")]
    EscapesRoot,
}

impl CanonicalPath {
    /// Canonicalises a raw path (no query, no fragment). `reject_parameters` refuses
    /// `;` anywhere in the path, raw or escaped.
    pub fn parse(raw: &str, reject_parameters: bool) -> Result<CanonicalPath, PathError> {
        if is_canonical(raw, reject_parameters) {
            return Ok(CanonicalPath(raw.to_owned()));
        }
        CanonicalPath::decode(raw, reject_parameters)
    }

    /// The full reading: segment by segment, escapes decoded and re-spelled, dot
    /// segments resolved. [`CanonicalPath::parse`] comes here for every path that is
    /// not already canonical.
    fn decode(raw: &str, reject_parameters: bool) -> Result<CanonicalPath, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotOriginForm)?;
        let mut segments: Vec<String> = Vec::new();
        let mut decoded_all: Vec<u8> = Vec::with_capacity(raw.len());
        let mut trailing_slash = false;
        let mut pieces = rest.split('/').peekable();
        while let Some(piece) = pieces.next() {
            let is_last = pieces.peek().is_none();
            let segment = decode_segment(piece, reject_parameters, &mut decoded_all)?;
            trailing_slash = false;
            match segment.text.as_str() {
                "" if is_last => trailing_slash = true,
                "" => return Err(PathError::EmptySegment),
                "." | ".." if segment.had_escape => return Err(PathError::EncodedDotSegment),
                "." => trailing_slash = is_last,
                ".." => {
                    if segments.pop().is_none() {
                        return Err(PathError::EscapesRoot);
                    }
                    trailing_slash = is_last;
                }
                _ => segments.push(segment.text),
            }
        }
        if std::str::from_utf8(&decoded_all).is_err() {
            return Err(PathError::InvalidUtf8);
        }
        let mut out = String::with_capacity(raw.len());
        for segment in &segments {
            out.push('/');
            out.push_str(segment);
        }
        if trailing_slash || segments.is_empty() {
            out.push('/');
        }
        Ok(CanonicalPath(out))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for CanonicalPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `raw` is already its own canonical form, which the full reading would only
/// copy: it starts with `/`, every byte is one the reading keeps as it is (visible
/// ASCII but `%`, `\` and, when refused, `;`), and no segment is empty (but a last
/// one, the trailing slash) or a dot segment. Nearly every request's path is.
fn is_canonical(raw: &str, reject_parameters: bool) -> bool {
    let Some(rest) = raw.strip_prefix('/') else {
        return false;
    };
    let is_dot_segment = |len: usize, dots: usize| len > 0 && len == dots && dots <= 2;
    let (mut len, mut dots) = (0_usize, 0_usize);
    for &byte in rest.as_bytes() {
        match byte {
            b'/' => {
                if len == 0 || is_dot_segment(len, dots) {
                    return false;
                }
                (len, dots) = (0, 0);
            }
            b'%' | b'\\' => return false,
            b';' if reject_parameters => return false,
            0x21..=0x7e => {
                len += 1;
                dots += usize::from(byte == b'.');
            }
            _ => return false,
        }
    }
    !is_dot_segment(len, dots)
}

struct Segment {
    text: String,
    had_escape: bool,
}

fn decode_segment(
    piece: &str,
    reject_parameters: bool,
    decoded_all: &mut Vec<u8>,
) -> Result<Segment, PathError> {
    let bytes = piece.as_bytes();
    let mut text = String::with_capacity(piece.len());
    let mut had_escape = false;
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        if byte == b'%' {
            let value = hex_pair(bytes.get(i + 1..i + 3)).ok_or(PathError::BadEscape)?;
            had_escape = true;
            match value {
                b'/' => return Err(PathError::EncodedSlash),
                b'\\' => return Err(PathError::EncodedBackslash),
                0..=0x20 | 0x7f => return Err(PathError::ControlByte),
                b';' if reject_parameters => return Err(PathError::PathParameter),
                _ => {}
            }
            decoded_all.push(value);
            if is_unreserved(value) {
                text.push(char::from(value));
            } else {
                text.push('%');
                text.push(hex_upper(value >> 4));
                text.push(hex_upper(value & 0x0f));
            }
            i += 3;
            continue;
        }
        match byte {
            b'\\' => return Err(PathError::Backslash),
            0..=0x20 | 0x7f => return Err(PathError::ControlByte),
            0x80.. => return Err(PathError::NonAscii),
            b';' if reject_parameters => return Err(PathError::PathParameter),
            _ => {}
        }
        decoded_all.push(byte);
        text.push(char::from(byte));
        i += 1;
    }
    // Decoding `%42` after a `%25` can spell a new escape (`%25%42c` is `%25Bc`): an
    // upstream that decodes twice would read another byte. Check the result, not the
    // input, so the canonical form is a fixed point.
    if has_escaped_percent_before_hex(&text) {
        return Err(PathError::DoubleEncoding);
    }
    Ok(Segment { text, had_escape })
}

/// Whether `text` holds `%25` followed by two hex digits.
fn has_escaped_percent_before_hex(text: &str) -> bool {
    text.as_bytes()
        .windows(5)
        .any(|window| matches!(window, [b'%', b'2', b'5', high, low] if high.is_ascii_hexdigit() && low.is_ascii_hexdigit()))
}

/// The upper-case hex digit for a nibble (`0..=15`).
fn hex_upper(nibble: u8) -> char {
    char::from_digit(u32::from(nibble), 16).map_or('0', |digit| digit.to_ascii_uppercase())
}

fn hex_pair(pair: Option<&[u8]>) -> Option<u8> {
    let [high, low] = pair? else { return None };
    Some(hex_digit(*high)? << 4 | hex_digit(*low)?)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::CanonicalPath;

    fn check(raw: &str, expected: Expect) {
        let actual = match CanonicalPath::parse(raw, true) {
            Ok(path) => path.as_str().to_owned(),
            Err(err) => format!("reject: {err}"),
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn plain_paths_pass_unchanged() {
        check("/", expect!["/"]);
        check("/admin", expect!["/admin"]);
        check("/admin/", expect!["/admin/"]);
        check("/a/b.txt", expect!["/a/b.txt"]);
        check("/Admin/X", expect!["/Admin/X"]);
    }

    #[test]
    fn dot_segments_resolve() {
        check("/a/./b/../c", expect!["/a/c"]);
        check("/public/../admin", expect!["/admin"]);
        check("/a/b/..", expect!["/a/"]);
        check("/a/.", expect!["/a/"]);
        check("/..", expect!["reject: `..` above the root"]);
        check(
            "/a/../../etc/passwd",
            expect!["reject: `..` above the root"],
        );
    }

    #[test]
    fn rejects_encoded_dot_segments() {
        check("/%2e%2e/admin", expect!["reject: encoded dot segment"]);
        check("/user/%2E%2E/admin", expect!["reject: encoded dot segment"]);
        check("/a/.%2e/admin", expect!["reject: encoded dot segment"]);
        check("/a/%2e/b", expect!["reject: encoded dot segment"]);
    }

    #[test]
    fn rejects_encoded_separators() {
        check("/admin%2fx", expect!["reject: encoded `/`"]);
        check("/user/%2e%2e%2fadmin", expect!["reject: encoded `/`"]);
        check("/a%5cb", expect!["reject: encoded `\\`"]);
        check("/a\\b", expect!["reject: backslash in path"]);
    }

    #[test]
    fn rejects_path_parameters() {
        check("/a/..;/admin", expect!["reject: `;` path parameter"]);
        check("/a;jsessionid=1", expect!["reject: `;` path parameter"]);
        check("/a%3b/admin", expect!["reject: `;` path parameter"]);
        assert_eq!(
            CanonicalPath::parse("/a;v=1/b", false).map(|p| p.as_str().to_owned()),
            Ok("/a;v=1/b".to_owned())
        );
    }

    #[test]
    fn rejects_empty_segments() {
        check("//admin", expect!["reject: empty path segment"]);
        check("/a//b", expect!["reject: empty path segment"]);
    }

    #[test]
    fn rejects_control_and_double_encoding() {
        check("/a%00b", expect!["reject: control byte in path"]);
        check(
            "/a%0d%0aSet-Cookie:x",
            expect!["reject: control byte in path"],
        );
        check("/a%20b", expect!["reject: control byte in path"]);
        check(
            "/%252e%252e/admin",
            expect!["reject: double percent-encoding"],
        );
        check("/a%25zz", expect!["/a%25zz"]);
        check("/a%2", expect!["reject: malformed percent-escape"]);
        check("/a%zz", expect!["reject: malformed percent-escape"]);
    }

    #[test]
    fn utf8_must_be_valid_and_shortest() {
        check("/caf%C3%A9", expect!["/caf%C3%A9"]);
        check("/caf%c3%a9", expect!["/caf%C3%A9"]);
        check(
            "/%C0%AE%C0%AE/admin",
            expect!["reject: escapes decode to invalid UTF-8"],
        );
        check(
            "/%e0%80%af",
            expect!["reject: escapes decode to invalid UTF-8"],
        );
        check("/%ff", expect!["reject: escapes decode to invalid UTF-8"]);
    }

    #[test]
    fn unreserved_escapes_decode() {
        check("/%61dmin", expect!["/admin"]);
        check("/a%2eb", expect!["/a.b"]);
        check("/%7euser", expect!["/~user"]);
        check("/a%2ab", expect!["/a%2Ab"]);
    }

    #[test]
    fn not_origin_form() {
        check("admin", expect!["reject: path does not start with `/`"]);
        check("*", expect!["reject: path does not start with `/`"]);
    }

    #[test]
    fn canonical_form_is_a_fixed_point() {
        for raw in [
            "/a/./b/../c",
            "/%61dmin/",
            "/caf%c3%a9",
            "/a/b/..",
            "/x%2ay",
        ] {
            let Ok(once) = CanonicalPath::parse(raw, true) else {
                panic!("{raw} should parse");
            };
            assert_eq!(
                CanonicalPath::parse(once.as_str(), true),
                Ok(once.clone()),
                "{raw}"
            );
        }
    }

    /// The shortcut for paths already canonical must answer exactly what the full
    /// reading answers, for every input: checked over every path of up to four
    /// characters from an alphabet of the bytes that matter, and random longer ones.
    #[test]
    fn the_shortcut_agrees_with_the_full_reading() {
        const ALPHABET: &[u8] = b"/.a%2f;\\ \x7f~";
        let check = |raw: &str| {
            for reject in [true, false] {
                assert_eq!(
                    CanonicalPath::parse(raw, reject),
                    CanonicalPath::decode(raw, reject),
                    "{raw:?} (reject parameters: {reject})"
                );
            }
        };
        fn every_path(raw: &mut String, depth: usize, check: &dyn Fn(&str)) {
            check(raw);
            if depth == 0 {
                return;
            }
            for &byte in ALPHABET {
                raw.push(char::from(byte));
                every_path(raw, depth - 1, check);
                raw.pop();
            }
        }
        every_path(&mut String::new(), 4, &check);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            let mut path = String::from("/");
            for _ in 0..(state % 24) {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let index = usize::try_from(state % ALPHABET.len() as u64).unwrap_or(0);
                path.push(char::from(ALPHABET[index]));
            }
            check(&path);
        }
    }
}
