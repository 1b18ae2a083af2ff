//! API tokens for machine clients: `pcl_<workspace>_<secret>`.
//!
//! The workspace id (32 hex digits) is part of the token so the gateway can look it up
//! with a workspace-scoped query; the secret is 256 random bits as 64 hex digits. Only
//! the SHA-256 of the whole token is stored. A token is shown once, when it is made.

use crate::crypto::random::{is_lower_hex, random_hex256};
use crate::store::{TokenHash, WorkspaceId};

const PREFIX: &str = "pcl_";

/// A freshly minted token: the text to hand out once, and the hash to store.
pub struct MintedToken {
    /// The token text. Shown once; never logged.
    pub text: String,
    /// What the store keeps.
    pub hash: TokenHash,
}

/// Makes a new token for `workspace`.
pub fn mint(workspace: WorkspaceId) -> MintedToken {
    let text = format!("{PREFIX}{}_{}", workspace.simple(), random_hex256());
    let hash = TokenHash::of(text.as_bytes());
    MintedToken { text, hash }
}

/// Reads a presented token: its workspace and the hash to look up. Anything that is
/// not exactly the minted shape is `None`.
pub fn parse(text: &str) -> Option<(WorkspaceId, TokenHash)> {
    let rest = text.strip_prefix(PREFIX)?;
    let (workspace, secret) = rest.split_once('_')?;
    let workspace = WorkspaceId::from_simple(workspace.as_bytes())?;
    if !is_lower_hex(secret, 64) {
        return None;
    }
    Some((workspace, TokenHash::of(text.as_bytes())))
}

/// Whether an `Authorization` value carries a Portcullis token (so it must not be
/// forwarded upstream).
pub fn is_portcullis_bearer(value: &[u8]) -> bool {
    value
        .get(..7)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case(b"bearer "))
        && value
            .get(7..)
            .is_some_and(|rest| rest.trim_ascii_start().starts_with(PREFIX.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::{is_portcullis_bearer, mint, parse};

    #[test]
    fn minted_tokens_parse_back_to_their_workspace_and_hash() {
        let workspace = "0192f3c4-0000-7000-8000-000000000001".parse().unwrap();
        let token = mint(workspace);
        assert!(
            token
                .text
                .starts_with("pcl_0192f3c4000070008000000000000001_")
        );
        assert_eq!(token.text.len(), 4 + 32 + 1 + 64);
        let (parsed_workspace, hash) = parse(&token.text).unwrap();
        assert_eq!(parsed_workspace, workspace);
        assert_eq!(hash, token.hash);
        assert_ne!(mint(workspace).text, token.text);
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let workspace = "0192f3c4-0000-7000-8000-000000000001".parse().unwrap();
        let good = mint(workspace).text;
        for bad in [
            "",
            "pcl_",
            &good.to_uppercase(),
            &good[..good.len() - 1],
            &format!("{good}0"),
            &good.replace("pcl_", "pat_"),
            &good.replacen('_', "-", 2),
            "pcl_0192f3c4000070008000000000000001_zz",
        ] {
            assert!(parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn bearer_detection() {
        assert!(is_portcullis_bearer(b"Bearer pcl_abc"));
        assert!(is_portcullis_bearer(b"bearer  pcl_abc"));
        assert!(!is_portcullis_bearer(b"Bearer eyJhbGciOi"));
        assert!(!is_portcullis_bearer(b"Basic cGNsXw=="));
    }
}
