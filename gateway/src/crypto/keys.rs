//! The 256-bit main key: loaded from a key file or an environment variable as 64
//! hexadecimal characters, held so that it is wiped on drop and cannot be printed or
//! serialized.

use zeroize::Zeroizing;

use super::CryptoError;
use crate::config::KeySource;

/// Length of the main key in bytes (AES-256).
pub const MAIN_KEY_LEN: usize = 32;

/// The main key. It deliberately implements neither `Debug`, `Display`, `Clone` nor
/// `Serialize`, and its bytes are zeroed when it is dropped.
pub struct MainKey(Zeroizing<[u8; MAIN_KEY_LEN]>);

impl MainKey {
    /// The key bytes, for the cipher only.
    pub(super) fn bytes(&self) -> &[u8; MAIN_KEY_LEN] {
        &self.0
    }
}

/// Loads the main key from `source`. `env` looks up an environment variable (the
/// process environment in `main`, a closure in tests); surrounding whitespace, such as
/// a file's final newline, is ignored.
pub fn load_main_key(
    source: &KeySource,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<MainKey, CryptoError> {
    let (text, origin) = match source {
        KeySource::File(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| CryptoError::KeyFileUnreadable {
                    path: path.clone(),
                    source,
                })?;
            (Zeroizing::new(text), format!("file `{}`", path.display()))
        }
        KeySource::Env(name) => {
            let text =
                env(name).ok_or_else(|| CryptoError::KeyEnvMissing { name: name.clone() })?;
            (
                Zeroizing::new(text),
                format!("environment variable `{name}`"),
            )
        }
    };
    parse_hex_key(text.trim(), origin)
}

fn parse_hex_key(text: &str, origin: String) -> Result<MainKey, CryptoError> {
    let found = text.chars().count();
    if found != 2 * MAIN_KEY_LEN {
        return Err(CryptoError::KeyLength { origin, found });
    }
    if !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return Err(CryptoError::KeyNotHex { origin });
    }
    // Now 64 ASCII hex digits: two per key byte.
    let mut key = Zeroizing::new([0u8; MAIN_KEY_LEN]);
    for (byte, pair) in key.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let (Some(high), Some(low)) = (
            pair.first().copied().and_then(hex_value),
            pair.get(1).copied().and_then(hex_value),
        ) else {
            return Err(CryptoError::KeyNotHex { origin });
        };
        *byte = (high << 4) | low;
    }
    Ok(MainKey(key))
}

fn hex_value(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    const KEY_HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1F";

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn load_env(value: &str) -> Result<MainKey, CryptoError> {
        let value = value.to_owned();
        let env = move |name: &str| (name == "PORTCULLIS_MAIN_KEY").then(|| value.clone());
        load_main_key(&KeySource::Env("PORTCULLIS_MAIN_KEY".into()), &env)
    }

    fn error_text(result: Result<MainKey, CryptoError>) -> String {
        match result {
            Ok(_) => panic!("expected an error"),
            Err(error) => error.to_string(),
        }
    }

    struct TempFile(PathBuf);

    impl TempFile {
        fn with(contents: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!(
                "portcullis-key-test-{}-{}",
                std::process::id(),
                rand::random::<u64>()
            ));
            std::fs::write(&path, contents).unwrap();
            TempFile(path)
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn loads_hex_from_env_and_file() {
        let key = load_env(KEY_HEX).unwrap();
        let expected: Vec<u8> = (0..32).collect();
        assert_eq!(key.bytes().as_slice(), expected.as_slice());

        let file = TempFile::with(&format!("{KEY_HEX}\n"));
        let key = load_main_key(&KeySource::File(file.0.clone()), &no_env).unwrap();
        assert_eq!(key.bytes().as_slice(), expected.as_slice());
    }

    #[test]
    fn short_key_is_refused() {
        assert_eq!(
            error_text(load_env("abcd")),
            "the main key from environment variable `PORTCULLIS_MAIN_KEY` must be 64 \
             hexadecimal characters (256 bits), found 4"
        );
        assert_eq!(
            error_text(load_env(&format!("{KEY_HEX}00"))),
            "the main key from environment variable `PORTCULLIS_MAIN_KEY` must be 64 \
             hexadecimal characters (256 bits), found 66"
        );
    }

    #[test]
    fn non_hex_key_is_refused() {
        let expected = "the main key from environment variable `PORTCULLIS_MAIN_KEY` must be \
                        hexadecimal (0-9, a-f, A-F)";
        let mut bad = KEY_HEX.to_owned();
        bad.replace_range(10..11, "g");
        assert_eq!(error_text(load_env(&bad)), expected);
        // 63 ASCII characters and one two-byte character: 64 characters, 65 bytes.
        let mut bad = KEY_HEX[..63].to_owned();
        bad.push('é');
        assert_eq!(error_text(load_env(&bad)), expected);
        let file = TempFile::with(&format!("{}+", &KEY_HEX[..63]));
        let error = error_text(load_main_key(&KeySource::File(file.0.clone()), &no_env));
        assert_eq!(
            error,
            format!(
                "the main key from file `{}` must be hexadecimal (0-9, a-f, A-F)",
                file.0.display()
            )
        );
    }

    #[test]
    fn missing_file_is_refused() {
        let path = std::env::temp_dir().join("portcullis-key-test-does-not-exist");
        let result = load_main_key(&KeySource::File(path.clone()), &no_env);
        let Err(CryptoError::KeyFileUnreadable { source, .. }) = &result else {
            panic!("expected KeyFileUnreadable");
        };
        assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
        assert_eq!(
            error_text(result),
            format!("cannot read the main key file `{}`", path.display())
        );
    }

    #[test]
    fn missing_env_is_refused() {
        assert_eq!(
            error_text(load_main_key(
                &KeySource::Env("PORTCULLIS_NO_SUCH_KEY".into()),
                &no_env
            )),
            "environment variable `PORTCULLIS_NO_SUCH_KEY` holding the main key is not set"
        );
    }
}
