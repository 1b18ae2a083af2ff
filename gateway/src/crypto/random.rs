//! Random secrets as text: the one place session ids, API tokens, CSRF tokens and
//! pending sign-in ids get their bytes and their lower-case hex spelling.

/// Appends `bytes` as lower-case hex to `out`.
pub fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        for nibble in [byte >> 4, byte & 0x0f] {
            if let Some(&digit) = DIGITS.get(usize::from(nibble)) {
                out.push(char::from(digit));
            }
        }
    }
}

/// 256 random bits as 64 lower-case hex digits.
pub fn random_hex256() -> String {
    let bytes: [u8; 32] = rand::random();
    let mut out = String::with_capacity(64);
    push_hex(&mut out, &bytes);
    out
}

/// Whether `text` is exactly `len` lower-case hex digits.
pub fn is_lower_hex(text: impl AsRef<[u8]>, len: usize) -> bool {
    let text = text.as_ref();
    text.len() == len && text.iter().all(|&byte| lower_hex_digit(byte).is_some())
}

/// Exactly 32 lower-case hex digits read as one 128-bit number (a UUID's simple
/// form), checked and decoded in one pass.
pub fn lower_hex_u128(text: &[u8]) -> Option<u128> {
    if text.len() != 32 {
        return None;
    }
    text.iter().try_fold(0_u128, |value, &byte| {
        Some(value << 4 | u128::from(lower_hex_digit(byte)?))
    })
}

/// The value of a lower-case hex digit; `None` for every other byte.
fn lower_hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{is_lower_hex, lower_hex_u128, push_hex, random_hex256};

    #[test]
    fn hex_spelling() {
        let mut out = String::new();
        push_hex(&mut out, &[0x00, 0x0f, 0xa5, 0xff]);
        assert_eq!(out, "000fa5ff");
        let token = random_hex256();
        assert!(is_lower_hex(&token, 64));
        assert_ne!(token, random_hex256());
        assert!(!is_lower_hex("ABCD", 4));
        assert!(!is_lower_hex("abc", 4));
        assert!(!is_lower_hex("abcg", 4));
    }

    #[test]
    fn hex_numbers_are_exactly_32_lower_case_digits() {
        assert_eq!(
            lower_hex_u128(b"000000000000000000000000000000ff"),
            Some(0xff)
        );
        assert_eq!(
            lower_hex_u128(b"0192f3c4000070008000000000000001"),
            Some(0x0192_f3c4_0000_7000_8000_0000_0000_0001)
        );
        assert_eq!(lower_hex_u128(&[b'f'; 32]), Some(u128::MAX));
        for bad in [
            &b"000000000000000000000000000000FF"[..],
            b"00000000000000000000000000000ff",
            b"000000000000000000000000000000fff",
            b"0000000000000000000000000000000g",
            b"0000000000000000-000000000000000",
            b"",
        ] {
            assert_eq!(lower_hex_u128(bad), None, "{bad:?}");
        }
    }
}
