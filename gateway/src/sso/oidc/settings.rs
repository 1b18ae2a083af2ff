//! What a `[[sso.oidc]]` entry in the gateway configuration says, and the checks that
//! run before any network traffic.
//!
//! Issuers must use `https`, except on loopback hosts (`127.0.0.1`, `::1`, `localhost`):
//! a provider on the same machine is reached without crossing a network, which is what
//! tests and single-host deployments with a local IdP need, and nothing else is.

use std::fmt;

use openidconnect::core::CoreJwsSigningAlgorithm;
use openidconnect::url::Url;
use serde::{Deserialize, Deserializer};
use zeroize::Zeroizing;

/// One OpenID Provider the gateway trusts for sign-in, as the configuration file says it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcSettings {
    /// The provider's id in this gateway: `[a-z0-9-]{1,32}`. Users are linked by
    /// (`id`, `sub`), so changing it unlinks every account.
    pub id: String,
    /// Which kind of provider this is; presets derive the issuer.
    #[serde(default)]
    pub preset: OidcPreset,
    /// The Microsoft Entra ID directory (tenant) id, a GUID; only for `microsoft`.
    pub tenant: Option<String>,
    /// The issuer identifier; required for `generic`, derived for presets.
    pub issuer: Option<String>,
    /// The client id registered at the provider.
    pub client_id: String,
    /// The client secret itself. Prefer `client_secret_env`.
    pub client_secret: Option<SecretString>,
    /// The name of an environment variable holding the client secret, resolved by
    /// [`OidcSettings::resolve_client_secret`].
    pub client_secret_env: Option<String>,
    /// The scopes to ask for; `openid` is always sent.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim holding group or role names (a string or an array of strings).
    pub groups_claim: Option<String>,
    /// `amr` values that count as multi-factor authentication at this provider. Empty
    /// (the default) means the provider's MFA is never trusted.
    #[serde(default)]
    pub trusted_mfa_amr: Vec<String>,
    /// JWS algorithms accepted on ID tokens. `none` is never accepted; `HS*` only when
    /// listed here (the client secret is then the key).
    #[serde(default = "default_algs")]
    pub allowed_algs: Vec<String>,
    /// The button label on the login page; defaults to the id.
    pub display_name: Option<String>,
}

/// The kind of provider, which fixes the issuer for well-known ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OidcPreset {
    /// Any OpenID Provider with discovery; `issuer` is required.
    #[default]
    Generic,
    /// Google accounts: `https://accounts.google.com`.
    Google,
    /// Microsoft Entra ID: `https://login.microsoftonline.com/{tenant}/v2.0`.
    Microsoft,
}

/// A secret string: zeroed on drop, `***` in `Debug`.
#[derive(Clone)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: String) -> SecretString {
        SecretString(Zeroizing::new(value))
    }

    /// The secret value; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(SecretString::new)
    }
}

/// Google's hosts besides the issuer's that discovery points at: the token endpoint
/// (`oauth2.googleapis.com`) and the JWKS (`www.googleapis.com`).
pub(super) const GOOGLE_EXTRA_HOSTS: &[&str] = &["oauth2.googleapis.com", "www.googleapis.com"];

/// Microsoft's tenant names that stand for many tenants: their discovery document's
/// issuer is a template (`{tenantid}`), so no ID token could be checked against it.
const MICROSOFT_MULTI_TENANT: &[&str] = &["common", "organizations", "consumers"];

impl OidcSettings {
    /// Checks everything that can be checked without the network.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.id;
        let id_ok = !id.is_empty()
            && id.len() <= 32
            && id
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        if !id_ok {
            return Err(format!(
                "oidc provider id `{id}` must be 1 to 32 characters from a-z, 0-9 and `-`"
            ));
        }
        let issuer = self.issuer_url()?;
        check_issuer_url(id, &issuer)?;
        if self.client_id.is_empty() {
            return Err(format!("oidc provider `{id}`: `client_id` is empty"));
        }
        match (&self.client_secret, &self.client_secret_env) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "oidc provider `{id}`: set `client_secret` or `client_secret_env`, not both"
                ));
            }
            (None, None) => {
                return Err(format!(
                    "oidc provider `{id}`: `client_secret_env` (or `client_secret`) is required"
                ));
            }
            (Some(secret), None) if secret.expose().is_empty() => {
                return Err(format!("oidc provider `{id}`: `client_secret` is empty"));
            }
            _ => {}
        }
        if let Some(scope) = self.scopes.iter().find(|scope| !is_scope_token(scope)) {
            return Err(format!(
                "oidc provider `{id}`: scope `{scope}` is not a valid scope token"
            ));
        }
        if self.groups_claim.as_deref() == Some("") {
            return Err(format!("oidc provider `{id}`: `groups_claim` is empty"));
        }
        if self.allowed_algs.is_empty() {
            return Err(format!("oidc provider `{id}`: `allowed_algs` is empty"));
        }
        self.signing_algs()?;
        Ok(())
    }

    /// Fills `client_secret` from the environment variable named by `client_secret_env`,
    /// read through `lookup` (so tests pass a map).
    pub fn resolve_client_secret(
        &mut self,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        let Some(name) = &self.client_secret_env else {
            return Ok(());
        };
        match lookup(name) {
            Some(value) if !value.is_empty() => {
                self.client_secret = Some(SecretString::new(value));
                self.client_secret_env = None;
                Ok(())
            }
            _ => Err(format!(
                "oidc provider `{}`: environment variable `{name}` (client_secret_env) is not set",
                self.id
            )),
        }
    }

    /// The issuer identifier: configured for `generic`, derived for presets.
    pub fn issuer_url(&self) -> Result<String, String> {
        let id = &self.id;
        match self.preset {
            OidcPreset::Generic => {
                if self.tenant.is_some() {
                    return Err(format!(
                        "oidc provider `{id}`: `tenant` is only for `preset = \"microsoft\"`"
                    ));
                }
                self.issuer
                    .clone()
                    .ok_or_else(|| format!("oidc provider `{id}`: `issuer` is required"))
            }
            OidcPreset::Google => {
                if self.issuer.is_some() || self.tenant.is_some() {
                    return Err(format!(
                        "oidc provider `{id}`: the google preset sets the issuer; remove `issuer` and `tenant`"
                    ));
                }
                Ok("https://accounts.google.com".to_owned())
            }
            OidcPreset::Microsoft => {
                if self.issuer.is_some() {
                    return Err(format!(
                        "oidc provider `{id}`: the microsoft preset derives the issuer from `tenant`; remove `issuer`"
                    ));
                }
                let Some(tenant) = &self.tenant else {
                    return Err(format!(
                        "oidc provider `{id}`: the microsoft preset needs `tenant`"
                    ));
                };
                if MICROSOFT_MULTI_TENANT.contains(&tenant.to_ascii_lowercase().as_str()) {
                    return Err(format!(
                        "oidc provider `{id}`: tenant `{tenant}` accepts many tenants, whose ID tokens cannot be tied to one issuer; use your directory (tenant) id"
                    ));
                }
                if !is_guid(tenant) {
                    return Err(format!(
                        "oidc provider `{id}`: tenant `{tenant}` must be the directory (tenant) id, a GUID: Entra ID names its issuer by id, not by domain"
                    ));
                }
                Ok(format!("https://login.microsoftonline.com/{tenant}/v2.0"))
            }
        }
    }

    /// The allowed ID token algorithms, parsed.
    pub(super) fn signing_algs(&self) -> Result<Vec<CoreJwsSigningAlgorithm>, String> {
        self.allowed_algs
            .iter()
            .map(|name| {
                signing_alg(name).ok_or_else(|| {
                    format!(
                        "oidc provider `{}`: algorithm `{name}` is not allowed (use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA, HS256, HS384 or HS512)",
                        self.id
                    )
                })
            })
            .collect()
    }
}

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_algs() -> Vec<String> {
    vec!["RS256".into(), "ES256".into(), "EdDSA".into()]
}

fn signing_alg(name: &str) -> Option<CoreJwsSigningAlgorithm> {
    use CoreJwsSigningAlgorithm as Alg;
    Some(match name {
        "RS256" => Alg::RsaSsaPkcs1V15Sha256,
        "RS384" => Alg::RsaSsaPkcs1V15Sha384,
        "RS512" => Alg::RsaSsaPkcs1V15Sha512,
        "PS256" => Alg::RsaSsaPssSha256,
        "PS384" => Alg::RsaSsaPssSha384,
        "PS512" => Alg::RsaSsaPssSha512,
        "ES256" => Alg::EcdsaP256Sha256,
        "ES384" => Alg::EcdsaP384Sha384,
        "EdDSA" => Alg::EdDsa,
        "HS256" => Alg::HmacSha256,
        "HS384" => Alg::HmacSha384,
        "HS512" => Alg::HmacSha512,
        _ => return None,
    })
}

/// `8-4-4-4-12` hexadecimal digits.
fn is_guid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// RFC 6749 §3.3: `scope-token = 1*( %x21 / %x23-5B / %x5D-7E )`.
fn is_scope_token(scope: &str) -> bool {
    !scope.is_empty()
        && scope
            .bytes()
            .all(|byte| matches!(byte, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// Whether a URL's host is this machine's loopback.
pub(super) fn is_loopback(url: &Url) -> bool {
    url.host_str().is_some_and(crate::net::is_loopback_host)
}

fn check_issuer_url(id: &str, issuer: &str) -> Result<(), String> {
    let url = Url::parse(issuer)
        .map_err(|err| format!("oidc provider `{id}`: issuer `{issuer}` is not a URL: {err}"))?;
    let scheme_ok = url.scheme() == "https" || (url.scheme() == "http" && is_loopback(&url));
    if !scheme_ok {
        return Err(format!(
            "oidc provider `{id}`: issuer `{issuer}` must use https (http only on loopback)"
        ));
    }
    if url.host().is_none() || !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "oidc provider `{id}`: issuer `{issuer}` needs a host and no user info"
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "oidc provider `{id}`: issuer `{issuer}` must not have a query or fragment"
        ));
    }
    Ok(())
}
