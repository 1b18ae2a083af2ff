//! Single sign-on: what an identity provider told us about a person, once its answer
//! has been verified.
//!
//! Each protocol module (OIDC, SAML) turns a provider's response into an
//! [`ExternalIdentity`] and nothing else: it never touches the store or sessions.
//! The login flow decides what the identity means (which user, which roles, whether a
//! second factor is still owed).

mod http;
pub mod oidc;
pub mod saml;

use time::OffsetDateTime;

pub use http::HttpError;

/// Fetches SAML IdP metadata from `url` with the restricted single sign-on client.
pub async fn fetch_idp_metadata(url: &str) -> Result<String, HttpError> {
    let body = http::fetch_document(url).await?;
    String::from_utf8(body).map_err(|_| HttpError::Transport("metadata is not UTF-8".into()))
}

/// A verified statement by a configured identity provider about who signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalIdentity {
    /// The configured provider's id (from the gateway configuration, not the IdP).
    pub provider: String,
    /// The provider's stable identifier for the person: OIDC `sub`, SAML persistent
    /// NameID. Users are linked by (provider, subject), never by email alone.
    pub subject: String,
    /// The email address, if the provider gave one.
    pub email: Option<String>,
    /// Whether the provider says it verified that address.
    pub email_verified: bool,
    /// A display name, if the provider gave one.
    pub display_name: Option<String>,
    /// Group or role names from the configured claim or attribute.
    pub groups: Vec<String>,
    /// Whether the provider asserted a multi-factor authentication that this
    /// provider's configuration trusts (`amr` or `AuthnContextClassRef`).
    pub mfa: bool,
    /// When the person last authenticated at the provider, if it said.
    pub auth_time: Option<OffsetDateTime>,
}
