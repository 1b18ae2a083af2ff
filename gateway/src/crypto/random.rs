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
pub fn is_lower_hex(text: &str, len: usize) -> bool {
    text.len() == len
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::{is_lower_hex, push_hex, random_hex256};

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
}
