//! Typed ids (UUIDv7) and the hashes that stand in for secrets in the store.

use std::fmt;

use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::{NoContext, Timestamp, Uuid};

/// A UUIDv7 whose time part is `now` (time is a parameter, never read here).
fn new_v7(now: OffsetDateTime) -> Uuid {
    let seconds = u64::try_from(now.unix_timestamp()).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(NoContext, seconds, now.nanosecond()))
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh id created at `now`.
            pub(crate) fn generate(now: OffsetDateTime) -> Self {
                Self(new_v7(now))
            }

            /// The id as a UUID (for associated data, logs and wire formats).
            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// The hyphenated lower-case form (what `Display` prints), written without
            /// the formatting machinery: the hot path names users this way.
            pub fn to_text(&self) -> String {
                let mut buffer = Uuid::encode_buffer();
                self.0.hyphenated().encode_lower(&mut buffer).to_owned()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;

            /// Reads an id an operator typed (CLI arguments).
            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(text).map(Self)
            }
        }

        impl $name {
            /// Reads the simple form [`Self::simple`] writes (exactly 32 lower-case hex
            /// digits), as tokens and cookies carry it.
            pub fn from_simple(text: &[u8]) -> Option<Self> {
                crate::crypto::random::lower_hex_u128(text).map(|value| Self(Uuid::from_u128(value)))
            }

            /// The id as 32 lower-case hex digits (no dashes), for compact tokens.
            pub fn simple(&self) -> String {
                self.0.simple().to_string()
            }
        }
    };
}

uuid_id!(
    /// An organization: the top-level tenant that owns users and workspaces.
    OrganizationId
);
uuid_id!(
    /// A workspace: an isolated environment (dev, test or prod) of one organization.
    WorkspaceId
);
uuid_id!(
    /// A user of one organization.
    UserId
);
uuid_id!(
    /// An API token's public id (used to list and revoke it; not the secret).
    ApiTokenId
);

macro_rules! secret_hash {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, sqlx::Type)]
        #[sqlx(transparent)]
        pub struct $name(Vec<u8>);

        impl $name {
            /// The SHA-256 of the secret. The secret must carry enough entropy on its
            /// own (random, at least 80 bits): the hash is unsalted so it can be looked up.
            pub fn of(secret: &[u8]) -> Self {
                Self(Sha256::digest(secret).to_vec())
            }

            /// The hash bytes, as stored.
            pub fn as_bytes(&self) -> &[u8] {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // Not the secret, but no reason to spread it through logs either.
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }
    };
}

secret_hash!(
    /// The stored form of a session id: the raw id lives only in the user's cookie.
    SessionHash
);
secret_hash!(
    /// The stored form of an API token: the token is shown once, at creation.
    TokenHash
);
secret_hash!(
    /// The stored form of a recovery code.
    RecoveryCodeHash
);
secret_hash!(
    /// The stored form of a first-run setup token: the token is printed once.
    SetupTokenHash
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_their_creation_time_and_print_as_uuids() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let id = UserId::generate(now);
        assert_eq!(id.as_uuid().get_version_num(), 7);
        let (seconds, _) = id.as_uuid().get_timestamp().unwrap().to_unix();
        assert_eq!(seconds, 1_800_000_000);
        assert_eq!(Uuid::parse_str(&id.to_string()).unwrap(), id.as_uuid());
        assert_eq!(id.to_text(), id.to_string());
        assert_eq!(UserId::from_simple(id.simple().as_bytes()), Some(id));
        assert_eq!(UserId::from_simple(id.to_string().as_bytes()), None);
        assert_ne!(
            UserId::generate(now),
            id,
            "ids made in the same instant differ"
        );
    }

    #[test]
    fn hashes_are_sha256_and_never_print_their_bytes() {
        let hash = SessionHash::of(b"abc");
        assert_eq!(
            hash.as_bytes()[..4],
            [0xba, 0x78, 0x16, 0xbf],
            "SHA-256 of `abc` starts ba7816bf"
        );
        assert_eq!(hash.as_bytes().len(), 32);
        assert_eq!(format!("{hash:?}"), "SessionHash(..)");
        assert_eq!(format!("{:?}", TokenHash::of(b"abc")), "TokenHash(..)");
        assert_eq!(
            format!("{:?}", RecoveryCodeHash::of(b"abc")),
            "RecoveryCodeHash(..)"
        );
    }
}
