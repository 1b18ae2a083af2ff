//! TOTP second factor (RFC 6238): SHA-1, 6 digits, 30-second steps, ±1 step of clock
//! skew — what Google and Microsoft Authenticator and Authy implement. A code is
//! accepted at most once: the store keeps the last accepted step and only a later one
//! passes (an atomic compare-and-set there). Recovery codes are single-use and stored
//! as hashes. Time is a parameter.

use totp_rs::{Algorithm, Builder, Totp};

/// Bytes of a new TOTP secret (160 bits, as RFC 4226 recommends).
pub const SECRET_LEN: usize = 20;
/// How many recovery codes a user gets.
pub const RECOVERY_CODES: usize = 10;

/// Why a TOTP could not be built.
#[derive(Debug, thiserror::Error)]
#[error("totp: {0}")]
pub struct TotpError(String);

/// A fresh random secret.
pub fn new_secret() -> [u8; SECRET_LEN] {
    rand::random()
}

fn totp(secret: &[u8], account: &str) -> Result<Totp, TotpError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_skew(1)
        .with_step_duration(30)
        .with_secret(secret)
        .with_account_name(account)
        .with_issuer(Some("Portcullis"))
        .build()
        .map_err(|err| TotpError(format!("{err:?}")))
}

/// The `otpauth://` URI and a QR code of it (base64 PNG) for authenticator apps.
pub fn enrolment(secret: &[u8], account: &str) -> Result<(String, String), TotpError> {
    let totp = totp(secret, account)?;
    let uri = totp.to_url().map_err(|err| TotpError(format!("{err:?}")))?;
    let qr = totp
        .to_qr_base64()
        .map_err(|err| TotpError(format!("{err:?}")))?;
    Ok((uri, qr))
}

/// The time step a code is valid for at `unix_seconds` (±1 step), if any. The caller
/// must still refuse steps not later than the last one accepted.
pub fn matching_step(secret: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, "check").ok()?.check(code, unix_seconds)
}

/// New recovery codes (`xxxxx-xxxxx`, 50 bits each).
pub fn new_recovery_codes() -> Vec<String> {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    (0..RECOVERY_CODES)
        .map(|_| {
            let bytes: [u8; 10] = rand::random();
            let mut code = String::with_capacity(11);
            for (i, byte) in bytes.iter().enumerate() {
                if i == 5 {
                    code.push('-');
                }
                let index = usize::from(*byte) % ALPHABET.len();
                code.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'a')));
            }
            code
        })
        .collect()
}

/// A recovery code as typed (any case, spaces, with or without the dash) in the form
/// it was hashed in, or `None` if it cannot be one.
pub fn normalise_recovery_code(typed: &str) -> Option<String> {
    let compact: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if compact.len() != 10 || !compact.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return None;
    }
    let (head, tail) = compact.split_at(5);
    Some(format!("{head}-{tail}"))
}

#[cfg(test)]
mod tests {
    use totp_rs::{Algorithm, Builder};

    use super::{matching_step, new_recovery_codes, normalise_recovery_code};

    /// RFC 6238 appendix B, SHA-1 rows (8 digits, secret "12345678901234567890").
    #[test]
    fn rfc6238_test_vectors() {
        let totp = Builder::new()
            .with_algorithm(Algorithm::SHA1)
            .with_digits(8)
            .with_step_duration(30)
            .with_secret(b"12345678901234567890".as_slice())
            .build_noncompliant();
        for (time, expected) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(totp.generate(time).to_string(), expected, "T={time}");
        }
    }

    #[test]
    fn six_digit_codes_match_their_step_with_one_step_of_skew() {
        let secret = b"12345678901234567890";
        // RFC 6238's 8-digit 94287082 at T=59 is 287082 in 6 digits (step 1).
        assert_eq!(matching_step(secret, "287082", 59), Some(1));
        assert_eq!(
            matching_step(secret, "287082", 89),
            Some(1),
            "one step late"
        );
        assert_eq!(
            matching_step(secret, "287082", 29),
            Some(1),
            "one step early"
        );
        assert_eq!(matching_step(secret, "287082", 150), None, "too late");
        assert_eq!(matching_step(secret, "28708", 59), None);
        assert_eq!(matching_step(secret, "28708a", 59), None);
    }

    #[test]
    fn recovery_codes() {
        let codes = new_recovery_codes();
        assert_eq!(codes.len(), 10);
        for code in &codes {
            assert_eq!(
                normalise_recovery_code(&code.to_uppercase().replace('-', " ")).as_deref(),
                Some(code.as_str())
            );
        }
        assert_eq!(normalise_recovery_code("abc"), None);
        assert_eq!(normalise_recovery_code("abcde-fghi!"), None);
    }
}
