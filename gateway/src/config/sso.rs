//! `[sso]`: single sign-on providers. Each `[[sso.oidc]]` / `[[sso.saml]]` table holds
//! the protocol module's own settings plus what the login flow does with a verified
//! identity: `provision` (create unknown people on first sign-in), `link_by_email`
//! (adopt an existing account whose address the provider vouches for) and `roles`
//! (group → role bindings, re-synced at each sign-in).

use serde::Deserialize;

use super::{ConfigError, Ctx};
use crate::sso::oidc::OidcSettings;
use crate::sso::saml::SamlSettings;

/// `[sso]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSso {
    pub(crate) public_url: Option<String>,
    #[serde(default)]
    pub(crate) oidc: Vec<toml::Table>,
    #[serde(default)]
    pub(crate) saml: Vec<toml::Table>,
}

/// One `roles` entry: members of `group` hold `role` on `scope`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleMapping {
    /// The group (or role) name as the provider sends it.
    pub group: String,
    /// The role name, as the policies spell it.
    pub role: String,
    /// The scope, a Cedar entity such as `App::"wiki"`.
    pub scope: String,
}

/// The protocol of a provider and its module's settings.
#[derive(Debug)]
pub enum SsoProtocol {
    /// OpenID Connect.
    Oidc(Box<OidcSettings>),
    /// SAML 2.0.
    Saml(Box<SamlSettings>),
}

/// One configured provider.
#[derive(Debug)]
pub struct SsoProvider {
    /// The protocol settings.
    pub protocol: SsoProtocol,
    /// Create an account for an unknown person (needs an email address).
    pub provision: bool,
    /// Link an unlinked existing account with the same (provider-verified) address.
    pub link_by_email: bool,
    /// Group → role mappings.
    pub roles: Vec<RoleMapping>,
}

impl SsoProvider {
    /// The provider's id (unique across protocols).
    pub fn id(&self) -> &str {
        match &self.protocol {
            SsoProtocol::Oidc(settings) => &settings.id,
            SsoProtocol::Saml(settings) => &settings.id,
        }
    }
}

/// `[sso]`, validated.
#[derive(Debug)]
pub struct SsoConfig {
    /// `https://host[:port]` as browsers reach this gateway: redirect and ACS URLs.
    pub public_url: String,
    /// The providers, in file order (the login page lists them so).
    pub providers: Vec<SsoProvider>,
}

/// The integration keys, taken out of a provider table before the protocol module
/// reads the rest (it refuses unknown keys).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Integration {
    #[serde(default)]
    provision: bool,
    #[serde(default)]
    link_by_email: bool,
    #[serde(default)]
    roles: Vec<RoleMapping>,
}

fn split(table: &mut toml::Table) -> toml::Table {
    let mut integration = toml::Table::new();
    for key in ["provision", "link_by_email", "roles"] {
        if let Some(value) = table.remove(key) {
            integration.insert(key.to_owned(), value);
        }
    }
    integration
}

/// Compiles `[sso]`; `None` when no provider is configured.
pub(super) fn compile(ctx: &Ctx, raw: RawSso) -> Result<Option<SsoConfig>, ConfigError> {
    if raw.oidc.is_empty() && raw.saml.is_empty() {
        return Ok(None);
    }
    let public_url = raw
        .public_url
        .ok_or_else(|| ctx.missing("sso.public_url"))?
        .trim_end_matches('/')
        .to_owned();
    let parsed = http::Uri::try_from(public_url.as_str()).ok();
    let scheme_ok = crate::net::is_https_or_loopback(&public_url);
    let bare = parsed
        .as_ref()
        .is_some_and(|uri| matches!(uri.path(), "" | "/") && uri.query().is_none());
    if !scheme_ok || !bare {
        return Err(ctx.invalid(
            "sso.public_url",
            format!("`{public_url}` must be `https://host[:port]` (http only for loopback)"),
        ));
    }
    let mut providers = Vec::new();
    for (i, mut table) in raw.oidc.into_iter().enumerate() {
        let key = format!("sso.oidc[{i}]");
        let integration = integration(ctx, &key, split(&mut table))?;
        let settings = OidcSettings::deserialize(toml::Value::Table(table))
            .map_err(|err| ctx.invalid(&key, with_hint(err.message())))?;
        settings
            .validate()
            .map_err(|problem| ctx.invalid(&key, problem))?;
        providers.push(provider(SsoProtocol::Oidc(Box::new(settings)), integration));
    }
    for (i, mut table) in raw.saml.into_iter().enumerate() {
        let key = format!("sso.saml[{i}]");
        let integration = integration(ctx, &key, split(&mut table))?;
        let mut settings = SamlSettings::deserialize(toml::Value::Table(table))
            .map_err(|err| ctx.invalid(&key, with_hint(err.message())))?;
        settings.idp_metadata_file = settings
            .idp_metadata_file
            .map(|file| ctx.resolve(&file.to_string_lossy()));
        settings
            .validate()
            .map_err(|problem| ctx.invalid(&key, problem))?;
        providers.push(provider(SsoProtocol::Saml(Box::new(settings)), integration));
    }
    for (i, provider) in providers.iter().enumerate() {
        if providers
            .iter()
            .skip(i + 1)
            .any(|other| other.id() == provider.id())
        {
            return Err(ctx.invalid(
                "sso",
                format!("provider id `{}` is used twice", provider.id()),
            ));
        }
    }
    Ok(Some(SsoConfig {
        public_url,
        providers,
    }))
}

/// A protocol module's message, plus the sign-in keys it does not know about.
fn with_hint(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("{message}, or one of `provision`, `link_by_email`, `roles`")
    } else {
        message.to_owned()
    }
}

fn integration(ctx: &Ctx, key: &str, table: toml::Table) -> Result<Integration, ConfigError> {
    let integration = Integration::deserialize(toml::Value::Table(table))
        .map_err(|err| ctx.invalid(key, err.message().to_owned()))?;
    for (j, mapping) in integration.roles.iter().enumerate() {
        if crate::authz::parse_entity(&mapping.scope).is_none() {
            return Err(ctx.invalid(
                &format!("{key}.roles[{j}].scope"),
                format!("`{}` is not a scope such as `App::\"wiki\"`", mapping.scope),
            ));
        }
    }
    Ok(integration)
}

fn provider(protocol: SsoProtocol, integration: Integration) -> SsoProvider {
    SsoProvider {
        protocol,
        provision: integration.provision,
        link_by_email: integration.link_by_email,
        roles: integration.roles,
    }
}
