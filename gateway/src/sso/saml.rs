//! SAML 2.0 service provider: SP metadata, AuthnRequest by HTTP-Redirect, and the
//! assertion consumer (HTTP-POST) turning an IdP's signed response into an
//! [`ExternalIdentity`].
//!
//! samael (with `xmlsec`) verifies signatures and keeps only the signed content; this
//! module closes the gaps samael leaves open (see `shared/notes/crates.md`):
//! - IdP metadata without a signing certificate is refused (samael would skip
//!   signature checks);
//! - the signature algorithm allowlist is always set (samael's default accepts any;
//!   samael's list has no SHA-1 entry, so SHA-1 can never be enabled);
//! - the raw response is inspected first (`raw.rs`): exactly one assertion in its
//!   place, no comments, CDATA, DTDs or processing instructions, no encrypted
//!   assertions;
//! - AudienceRestriction is required and every one must name this SP;
//! - Destination, InResponseTo and status are checked even when the envelope is
//!   unsigned;
//! - every time check is made against the caller's `now` (samael also checks times,
//!   but against its own clock, `chrono::Utc::now`);
//! - assertion ids are remembered until the assertion can no longer be accepted
//!   (replay cache);
//! - request ids carry 256 random bits (samael's carry 32).
//!
//! Subjects: the NameID's whole text. Accepted formats are persistent (preferred and
//! advertised in the SP metadata), emailAddress and unspecified (or no Format);
//! transient and other formats are refused because they do not name a person stably.
//!
//! The module never touches the store, sessions or HTTP. `complete` is CPU-bound
//! (XML signature verification), so async callers should run it on a blocking thread.

mod raw;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use samael::crypto::{AllowedSignatureAlgorithm, ReduceMode};
use samael::metadata::{EntityDescriptor, HTTP_REDIRECT_BINDING};
use samael::schema::Assertion;
use samael::service_provider::{ServiceProvider, ServiceProviderBuilder};
use samael::traits::ToXml;
use serde::Deserialize;
use time::{Duration, OffsetDateTime};

use super::ExternalIdentity;

/// The largest SAMLResponse accepted, as base64 text.
pub const MAX_RESPONSE_BASE64_BYTES: usize = 256 * 1024;
/// How long a response may take from the IdP to us (plus the clock skew).
const MAX_RESPONSE_AGE: Duration = Duration::seconds(90);
/// How long a started login may wait for the IdP's answer.
const MAX_PENDING_AGE: Duration = Duration::minutes(10);
/// The largest clock skew a configuration may allow (security.md §2.7: ≤ 3 min).
const MAX_CLOCK_SKEW_SECS: u32 = 180;
/// SAML bindings §3.4.3: RelayState must not exceed 80 bytes.
const MAX_RELAY_STATE_BYTES: usize = 80;
/// Replay cache entries per provider; only fully verified assertions are entered.
const MAX_REPLAY_ENTRIES: usize = 100_000;
const MAX_NAME_ID_CHARS: usize = 256;
const MAX_ATTRIBUTE_VALUE_CHARS: usize = 256;
const MAX_GROUPS: usize = 256;

const NAMEID_PERSISTENT: &str = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent";
const NAMEID_EMAIL: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress";
const NAMEID_UNSPECIFIED: &str = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified";
const STATUS_SUCCESS: &str = "urn:oasis:names:tc:SAML:2.0:status:Success";
const STATUS_PREFIX: &str = "urn:oasis:names:tc:SAML:2.0:status:";
const BEARER: &str = "urn:oasis:names:tc:SAML:2.0:cm:bearer";

/// Attribute names tried for the email address when none is configured: the
/// `mail` OID (Shibboleth, pysaml2, Keycloak's SAML mappers), Microsoft's claim URI
/// (Entra ID, ADFS), PKCS#9 emailAddress, and the bare names Okta and Google use.
const DEFAULT_EMAIL_ATTRIBUTES: &[&str] = &[
    "urn:oid:0.9.2342.19200300.100.1.3",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress",
    "urn:oid:1.2.840.113549.1.9.1",
    "email",
    "mail",
];
/// Attribute names tried for the display name when none is configured.
const DEFAULT_NAME_ATTRIBUTES: &[&str] = &[
    "urn:oid:2.16.840.1.113730.3.1.241",
    "http://schemas.microsoft.com/identity/claims/displayname",
    "displayName",
    "name",
];
/// Attribute names tried for groups when none is configured: eduPerson isMemberOf,
/// Microsoft's groups claim, and the bare names common elsewhere.
const DEFAULT_GROUPS_ATTRIBUTES: &[&str] = &[
    "urn:oid:1.3.6.1.4.1.5923.1.5.1.1",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups",
    "groups",
    "memberOf",
];

/// One `[[sso.saml]]` entry of the configuration: a SAML identity provider this
/// gateway accepts logins from.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamlSettings {
    /// This provider's id in URLs and user links: `[a-z0-9-]{1,32}`.
    pub id: String,
    /// The IdP's metadata (an `EntityDescriptor` with a signing certificate), from a
    /// file...
    #[serde(default)]
    pub idp_metadata_file: Option<PathBuf>,
    /// ...or fetched from this URL (https, or http on loopback) on first use, with the
    /// single sign-on HTTP client (no redirects, deadline, size cap).
    #[serde(default)]
    pub idp_metadata_url: Option<String>,
    /// Our entity id as the IdP knows it; defaults to the SP metadata URL.
    #[serde(default)]
    pub sp_entity_id: Option<String>,
    /// Accept responses the IdP sends without a request from us. Off by default:
    /// unsolicited responses cannot be bound to the browser that receives them.
    #[serde(default)]
    pub allow_idp_initiated: bool,
    /// Tolerated clock difference with the IdP, in seconds (at most 180).
    #[serde(default = "default_max_clock_skew_secs")]
    pub max_clock_skew_secs: u32,
    /// Attribute `Name` holding the email address; by default a list of common names.
    #[serde(default)]
    pub email_attribute: Option<String>,
    /// Attribute `Name` holding the display name; by default a list of common names.
    #[serde(default)]
    pub name_attribute: Option<String>,
    /// Attribute `Name` holding group names; by default a list of common names.
    #[serde(default)]
    pub groups_attribute: Option<String>,
    /// `AuthnContextClassRef` values that count as multi-factor authentication.
    #[serde(default)]
    pub trusted_mfa_contexts: Vec<String>,
    /// Signature algorithms accepted (each implies its digest); RSA-SHA256 and
    /// ECDSA-SHA256 by default. SHA-1 is not available.
    #[serde(default = "default_allowed_algorithms")]
    pub allowed_algorithms: Vec<SignatureAlgorithm>,
    /// The label of this provider's button on the login page; defaults to `id`.
    #[serde(default)]
    pub display_name: Option<String>,
}

/// A signature algorithm (with the digest of the same strength) that the IdP may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureAlgorithm {
    /// `rsa-sha256` with a SHA-256 digest.
    RsaSha256,
    /// `rsa-sha384` with a SHA-384 digest.
    RsaSha384,
    /// `rsa-sha512` with a SHA-512 digest.
    RsaSha512,
    /// `ecdsa-sha256` with a SHA-256 digest.
    EcdsaSha256,
    /// `ecdsa-sha384` with a SHA-384 digest.
    EcdsaSha384,
    /// `ecdsa-sha512` with a SHA-512 digest.
    EcdsaSha512,
}

fn default_max_clock_skew_secs() -> u32 {
    60
}

fn default_allowed_algorithms() -> Vec<SignatureAlgorithm> {
    vec![
        SignatureAlgorithm::RsaSha256,
        SignatureAlgorithm::EcdsaSha256,
    ]
}

impl SignatureAlgorithm {
    fn to_samael(self) -> AllowedSignatureAlgorithm {
        match self {
            Self::RsaSha256 => AllowedSignatureAlgorithm::RsaSha256,
            Self::RsaSha384 => AllowedSignatureAlgorithm::RsaSha384,
            Self::RsaSha512 => AllowedSignatureAlgorithm::RsaSha512,
            Self::EcdsaSha256 => AllowedSignatureAlgorithm::EcdsaSha256,
            Self::EcdsaSha384 => AllowedSignatureAlgorithm::EcdsaSha384,
            Self::EcdsaSha512 => AllowedSignatureAlgorithm::EcdsaSha512,
        }
    }
}

impl SamlSettings {
    /// Checks what serde cannot; the message names the offending key.
    pub fn validate(&self) -> Result<(), String> {
        let id_ok = (1..=32).contains(&self.id.len())
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(format!(
                "sso.saml id `{}` must be 1 to 32 characters of a-z, 0-9 and `-`",
                self.id.escape_debug()
            ));
        }
        let at = format!("sso.saml `{}`", self.id);
        match (&self.idp_metadata_file, &self.idp_metadata_url) {
            (Some(file), None) if !file.as_os_str().is_empty() => {}
            (Some(_), None) => return Err(format!("{at}: idp_metadata_file is empty")),
            (None, Some(url)) => {
                let scheme_ok = crate::net::is_https_or_loopback(url);
                if !scheme_ok {
                    return Err(format!(
                        "{at}: idp_metadata_url `{url}` must be an https URL (http only on loopback)"
                    ));
                }
            }
            _ => {
                return Err(format!(
                    "{at}: give exactly one of idp_metadata_file and idp_metadata_url"
                ));
            }
        }
        if let Some(entity_id) = &self.sp_entity_id
            && (entity_id.trim().is_empty() || entity_id.len() > 1024)
        {
            return Err(format!(
                "{at}: sp_entity_id must be 1 to 1024 characters (or left out)"
            ));
        }
        if self.max_clock_skew_secs > MAX_CLOCK_SKEW_SECS {
            return Err(format!(
                "{at}: max_clock_skew_secs is {}, at most {MAX_CLOCK_SKEW_SECS} is allowed",
                self.max_clock_skew_secs
            ));
        }
        for (key, value) in [
            ("email_attribute", &self.email_attribute),
            ("name_attribute", &self.name_attribute),
            ("groups_attribute", &self.groups_attribute),
        ] {
            if value.as_deref().is_some_and(|name| name.trim().is_empty()) {
                return Err(format!(
                    "{at}: {key} is empty (leave it out for the defaults)"
                ));
            }
        }
        if self
            .trusted_mfa_contexts
            .iter()
            .any(|c| c.trim().is_empty())
        {
            return Err(format!("{at}: trusted_mfa_contexts has an empty entry"));
        }
        if self.allowed_algorithms.is_empty() {
            return Err(format!(
                "{at}: allowed_algorithms is empty, so no response could be accepted"
            ));
        }
        if let Some(name) = &self.display_name
            && (name.trim().is_empty() || name.chars().count() > 64)
        {
            return Err(format!("{at}: display_name must be 1 to 64 characters"));
        }
        Ok(())
    }
}

/// A login this gateway started at the IdP. The integration layer keeps it on the
/// server, bound to the browser that started it, and hands it back to
/// [`SamlProvider::complete`] when that browser returns with the IdP's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSaml {
    /// The configured provider's id.
    pub provider: String,
    /// The AuthnRequest's ID, which the response must answer (`InResponseTo`).
    pub request_id: String,
    /// When the request was made.
    pub created: OffsetDateTime,
}

/// Why a SAML operation failed. Messages carry no assertion content beyond ids and
/// standard status codes, so they may be logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SamlError {
    /// The settings are invalid.
    #[error("SAML settings: {0}")]
    Settings(String),
    /// The IdP metadata cannot be used.
    #[error("IdP metadata: {0}")]
    Metadata(String),
    /// The IdP metadata has no signing certificate.
    #[error(
        "IdP metadata has no signing certificate; refusing it, since responses could not be verified"
    )]
    NoSigningCertificate,
    /// samael failed to build a request or our metadata.
    #[error("could not build the SAML {0}")]
    Build(&'static str),
    /// The RelayState is too long for the HTTP-Redirect binding.
    #[error("RelayState is longer than {MAX_RELAY_STATE_BYTES} bytes")]
    RelayStateTooLong,
    /// The SAMLResponse is larger than [`MAX_RESPONSE_BASE64_BYTES`].
    #[error("SAMLResponse is larger than {MAX_RESPONSE_BASE64_BYTES} bytes")]
    TooLarge,
    /// The SAMLResponse is not base64 of UTF-8 text.
    #[error("SAMLResponse is not base64-encoded UTF-8")]
    Encoding,
    /// The response's XML is malformed, has a forbidden construct or the wrong shape.
    #[error("SAMLResponse refused: {0}")]
    Malformed(&'static str),
    /// No valid signature by the IdP's key with an allowed algorithm covers the assertion.
    #[error(
        "signature missing, invalid, by a key not in the IdP metadata, or with a disallowed algorithm"
    )]
    Signature,
    /// The IdP reported a failure.
    #[error("the IdP answered with status `{0}`")]
    Status(String),
    /// The response is addressed to another endpoint.
    #[error("Destination is not this provider's ACS URL")]
    Destination,
    /// No bearer confirmation names our ACS URL.
    #[error("no bearer SubjectConfirmation with this provider's ACS URL as Recipient")]
    Recipient,
    /// The assertion has no bearer confirmation data usable here.
    #[error("no usable bearer SubjectConfirmation")]
    SubjectConfirmation,
    /// The assertion is meant for another service provider.
    #[error("AudienceRestriction does not name this service provider")]
    Audience,
    /// The assertion does not say whom it is for.
    #[error("the assertion has no AudienceRestriction")]
    AudienceMissing,
    /// The assertion was issued by someone else.
    #[error("Issuer is not the IdP of the metadata")]
    Issuer,
    /// The assertion or response is not valid yet, even allowing for clock skew.
    #[error("not valid yet (beyond the allowed clock skew)")]
    NotYetValid,
    /// The assertion or response is no longer valid.
    #[error("expired")]
    Expired,
    /// The response answers another request.
    #[error("InResponseTo does not match the login this browser started")]
    InResponseTo,
    /// The response answers no request and IdP-initiated login is off.
    #[error("unsolicited response (no login was started here), and IdP-initiated login is off")]
    Unsolicited,
    /// The pending login belongs to another provider or is too old.
    #[error("the pending login is for another provider or has expired")]
    PendingInvalid,
    /// The NameID is missing, of an unsupported format, or unusable.
    #[error("NameID refused: {0}")]
    NameId(&'static str),
    /// This assertion was already used.
    #[error("assertion `{assertion_id}` was already used (replay)")]
    Replay {
        /// The replayed assertion's ID.
        assertion_id: String,
    },
    /// The replay cache is full, so the assertion cannot be remembered.
    #[error("replay cache is full; refusing to accept assertions it cannot remember")]
    ReplayCacheFull,
    /// samael refused the response for another reason.
    #[error("response refused by the SAML library")]
    Rejected,
}

impl SamlError {
    /// A stable machine code, for audit events and metrics labels.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Settings(_) => "settings",
            Self::Metadata(_) => "metadata",
            Self::NoSigningCertificate => "metadata_unsigned",
            Self::Build(_) => "build",
            Self::RelayStateTooLong => "relay_state_too_long",
            Self::TooLarge => "too_large",
            Self::Encoding => "encoding",
            Self::Malformed(_) => "malformed",
            Self::Signature => "signature",
            Self::Status(_) => "status",
            Self::Destination => "destination",
            Self::Recipient => "recipient",
            Self::SubjectConfirmation => "subject_confirmation",
            Self::Audience => "audience",
            Self::AudienceMissing => "audience_missing",
            Self::Issuer => "issuer",
            Self::NotYetValid => "not_yet_valid",
            Self::Expired => "expired",
            Self::InResponseTo => "in_response_to",
            Self::Unsolicited => "unsolicited",
            Self::PendingInvalid => "pending_invalid",
            Self::NameId(_) => "name_id",
            Self::Replay { .. } => "replay",
            Self::ReplayCacheFull => "replay_cache_full",
            Self::Rejected => "rejected",
        }
    }
}

/// A configured SAML identity provider, ready to start logins and check answers.
pub struct SamlProvider {
    id: String,
    sp_entity_id: String,
    acs_url: String,
    metadata_url: String,
    idp_entity_id: String,
    idp_sso_url: String,
    /// Checks `InResponseTo` against the pending request.
    solicited: ServiceProvider,
    /// Accepts responses without a request; present only if the settings allow it.
    unsolicited: Option<ServiceProvider>,
    skew: Duration,
    email_attributes: Vec<String>,
    name_attributes: Vec<String>,
    groups_attributes: Vec<String>,
    trusted_mfa_contexts: Vec<String>,
    replay: Mutex<ReplayCache>,
}

impl std::fmt::Debug for SamlProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SamlProvider")
            .field("id", &self.id)
            .field("sp_entity_id", &self.sp_entity_id)
            .field("idp_entity_id", &self.idp_entity_id)
            .finish_non_exhaustive()
    }
}

impl SamlProvider {
    /// Builds the provider from its settings, the IdP's metadata (XML text) and the
    /// gateway's public base URL (`https://host[:port]`, no trailing path).
    pub fn new(
        settings: &SamlSettings,
        idp_metadata_xml: &str,
        public_base_url: &str,
    ) -> Result<SamlProvider, SamlError> {
        settings.validate().map_err(SamlError::Settings)?;
        let base = public_base_url.trim_end_matches('/');
        let base_ok = (base.starts_with("https://") || base.starts_with("http://"))
            && !base.contains(['?', '#'])
            && !base.chars().any(char::is_whitespace);
        if !base_ok {
            return Err(SamlError::Settings(format!(
                "public base URL `{}` must be an http(s) URL without query or fragment",
                public_base_url.escape_debug()
            )));
        }
        let prefix = format!("{base}/.portcullis/sso/saml/{}", settings.id);
        let acs_url = format!("{prefix}/acs");
        let metadata_url = format!("{prefix}/metadata");
        let sp_entity_id = settings
            .sp_entity_id
            .clone()
            .unwrap_or_else(|| metadata_url.clone());

        let idp_metadata: EntityDescriptor = idp_metadata_xml.parse().map_err(|_| {
            SamlError::Metadata("not a SAML EntityDescriptor (aggregates are not supported)".into())
        })?;
        let idp_entity_id = idp_metadata
            .entity_id
            .clone()
            .filter(|entity_id| !entity_id.is_empty())
            .ok_or_else(|| SamlError::Metadata("the EntityDescriptor has no entityID".into()))?;
        if idp_metadata
            .idp_sso_descriptors
            .as_ref()
            .is_none_or(Vec::is_empty)
        {
            return Err(SamlError::Metadata("no IDPSSODescriptor".into()));
        }

        let skew = Duration::seconds(i64::from(settings.max_clock_skew_secs));
        let skew_chrono = chrono::Duration::seconds(i64::from(settings.max_clock_skew_secs));
        let max_issue_delay =
            chrono::Duration::seconds(MAX_RESPONSE_AGE.whole_seconds()) + skew_chrono;
        let algorithms: Vec<AllowedSignatureAlgorithm> = settings
            .allowed_algorithms
            .iter()
            .map(|algorithm| algorithm.to_samael())
            .collect();
        let build = |allow_idp_initiated: bool| {
            ServiceProviderBuilder::default()
                .entity_id(sp_entity_id.clone())
                .acs_url(acs_url.clone())
                .metadata_url(metadata_url.clone())
                // samael writes metadata only with an SLO URL; `metadata_xml` removes
                // the endpoint again, as single logout is not implemented.
                .slo_url(acs_url.clone())
                .idp_metadata(idp_metadata.clone())
                .allow_idp_initiated(allow_idp_initiated)
                .max_issue_delay(max_issue_delay)
                .max_clock_skew(skew_chrono)
                .allowed_signature_algorithms(algorithms.clone())
                .build()
                .map_err(|_| SamlError::Build("service provider"))
        };
        let solicited = build(false)?;
        // samael verifies signatures only when it finds a signing certificate: without
        // one it would accept unsigned, forged responses.
        match solicited.idp_signing_certs() {
            Ok(Some(certs)) if !certs.is_empty() => {}
            Ok(_) => return Err(SamlError::NoSigningCertificate),
            Err(_) => {
                return Err(SamlError::Metadata(
                    "a signing certificate is not valid base64 DER".into(),
                ));
            }
        }
        let idp_sso_url = solicited
            .sso_binding_location(HTTP_REDIRECT_BINDING)
            .ok_or_else(|| {
                SamlError::Metadata("no SingleSignOnService with the HTTP-Redirect binding".into())
            })?;
        let unsolicited = if settings.allow_idp_initiated {
            Some(build(true)?)
        } else {
            None
        };

        let names = |configured: &Option<String>, defaults: &[&str]| match configured {
            Some(name) => vec![name.clone()],
            None => defaults.iter().map(|name| (*name).to_string()).collect(),
        };
        Ok(SamlProvider {
            id: settings.id.clone(),
            sp_entity_id,
            acs_url,
            metadata_url,
            idp_entity_id,
            idp_sso_url,
            solicited,
            unsolicited,
            skew,
            email_attributes: names(&settings.email_attribute, DEFAULT_EMAIL_ATTRIBUTES),
            name_attributes: names(&settings.name_attribute, DEFAULT_NAME_ATTRIBUTES),
            groups_attributes: names(&settings.groups_attribute, DEFAULT_GROUPS_ATTRIBUTES),
            trusted_mfa_contexts: settings.trusted_mfa_contexts.clone(),
            replay: Mutex::new(ReplayCache::default()),
        })
    }

    /// The configured provider's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Our entity id.
    pub fn sp_entity_id(&self) -> &str {
        &self.sp_entity_id
    }

    /// Where the IdP posts its responses (HTTP-POST binding).
    pub fn acs_url(&self) -> &str {
        &self.acs_url
    }

    /// Where our SP metadata is served.
    pub fn metadata_url(&self) -> &str {
        &self.metadata_url
    }

    /// Our SP metadata: entity id, the ACS endpoint (HTTP-POST), persistent NameIDs
    /// preferred, assertions wanted signed, no single logout, no expiry.
    pub fn metadata_xml(&self) -> Result<String, SamlError> {
        let mut descriptor = self
            .solicited
            .metadata()
            .map_err(|_| SamlError::Build("SP metadata"))?;
        // samael stamps a validUntil 48 hours ahead; IdPs that honour it would stop
        // trusting a copy uploaded once. Our metadata does not expire by itself.
        descriptor.valid_until = None;
        for sp in descriptor.sp_sso_descriptors.iter_mut().flatten() {
            sp.valid_until = None;
            sp.single_logout_services = None;
            sp.name_id_formats = Some(vec![NAMEID_PERSISTENT.to_string()]);
        }
        descriptor
            .to_string()
            .map_err(|_| SamlError::Build("SP metadata"))
    }

    /// Starts a login: the URL to redirect the browser to (HTTP-Redirect binding)
    /// and the pending login to keep, bound to this browser, until the IdP answers.
    /// `relay_state` is sent back by the IdP untouched (at most 80 bytes; send an
    /// opaque handle, never a URL to trust).
    pub fn begin(&self, relay_state: &str) -> Result<(String, PendingSaml), SamlError> {
        if relay_state.len() > MAX_RELAY_STATE_BYTES {
            return Err(SamlError::RelayStateTooLong);
        }
        let mut request = self
            .solicited
            .make_authentication_request(&self.idp_sso_url)
            .map_err(|_| SamlError::Build("AuthnRequest"))?;
        // samael's ids carry 32 random bits; an ID must start with a letter or `_`.
        request.id = format!("_{}", crate::crypto::random::random_hex256());
        let url = request
            .redirect(relay_state)
            .map_err(|_| SamlError::Build("AuthnRequest redirect"))?
            .ok_or(SamlError::Build("AuthnRequest redirect"))?;
        let pending = PendingSaml {
            provider: self.id.clone(),
            request_id: request.id,
            created: crate::clock::now_utc(),
        };
        Ok((url.to_string(), pending))
    }

    /// Checks the IdP's answer posted to the ACS URL (`SAMLResponse`, base64) and
    /// returns who signed in. `pending` is the login this browser started, if any;
    /// without one the response is refused unless IdP-initiated login is allowed.
    pub fn complete(
        &self,
        saml_response_b64: &str,
        pending: Option<&PendingSaml>,
        now: OffsetDateTime,
    ) -> Result<ExternalIdentity, SamlError> {
        let xml = decode_response(saml_response_b64)?;
        let raw = raw::inspect(&xml)?;
        let expected_request = self.expected_request(pending, now)?;
        check_envelope(&raw, &self.acs_url, expected_request)?;
        let assertion = self.verify_signed_assertion(&xml, expected_request)?;
        let checked = self.check_assertion(&assertion, expected_request, now)?;
        let subject = subject_of(&assertion, raw.name_id.as_deref())?;
        let identity = self.identity(&assertion, subject)?;
        self.replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remember(&assertion.id, checked.remember_until, now)?;
        Ok(identity)
    }

    /// The request id the response must answer, or `None` for an allowed
    /// IdP-initiated login.
    fn expected_request<'p>(
        &self,
        pending: Option<&'p PendingSaml>,
        now: OffsetDateTime,
    ) -> Result<Option<&'p str>, SamlError> {
        match pending {
            Some(pending) => {
                let fresh =
                    pending.created <= now + self.skew && now - pending.created <= MAX_PENDING_AGE;
                if pending.provider != self.id || !fresh {
                    return Err(SamlError::PendingInvalid);
                }
                Ok(Some(pending.request_id.as_str()))
            }
            None if self.unsolicited.is_some() => Ok(None),
            None => Err(SamlError::Unsolicited),
        }
    }

    /// samael: signature verification (only verified content is kept), then its own
    /// checks of issuer, times (its clock), audience, recipient and InResponseTo.
    fn verify_signed_assertion(
        &self,
        xml: &str,
        expected_request: Option<&str>,
    ) -> Result<Assertion, SamlError> {
        let (service_provider, request_ids) = match (expected_request, &self.unsolicited) {
            (Some(request_id), _) => (&self.solicited, Some(vec![request_id])),
            (None, Some(unsolicited)) => (unsolicited, None),
            (None, None) => return Err(SamlError::Unsolicited),
        };
        service_provider
            .parse_xml_response_with_mode(
                xml,
                request_ids.as_deref(),
                ReduceMode::ValidateAndMarkNoAncestors,
            )
            .map_err(samael_error)
    }

    /// Our own checks of the verified assertion, with the caller's clock.
    fn check_assertion(
        &self,
        assertion: &Assertion,
        expected_request: Option<&str>,
        now: OffsetDateTime,
    ) -> Result<Checked, SamlError> {
        if assertion.issuer.value.as_deref() != Some(self.idp_entity_id.as_str()) {
            return Err(SamlError::Issuer);
        }
        if assertion.id.is_empty() {
            return Err(SamlError::Malformed("the assertion has no ID"));
        }
        let issued = to_offset(assertion.issue_instant)?;
        if issued > now + self.skew {
            return Err(SamlError::NotYetValid);
        }
        let accept_until = issued + MAX_RESPONSE_AGE + self.skew;
        if now > accept_until {
            return Err(SamlError::Expired);
        }
        let mut remember_until = accept_until;

        let conditions = assertion
            .conditions
            .as_ref()
            .ok_or(SamlError::AudienceMissing)?;
        if let Some(not_before) = conditions.not_before
            && now + self.skew < to_offset(not_before)?
        {
            return Err(SamlError::NotYetValid);
        }
        if let Some(not_on_or_after) = conditions.not_on_or_after {
            let until = to_offset(not_on_or_after)? + self.skew;
            if now >= until {
                return Err(SamlError::Expired);
            }
            remember_until = remember_until.min(until);
        }
        // Every AudienceRestriction must be met (SAML core §2.5.1.4), and one must exist.
        let restrictions = conditions
            .audience_restrictions
            .as_deref()
            .unwrap_or_default();
        if restrictions.is_empty() {
            return Err(SamlError::AudienceMissing);
        }
        if !restrictions
            .iter()
            .all(|restriction| restriction.audience.contains(&self.sp_entity_id))
        {
            return Err(SamlError::Audience);
        }

        // One bearer confirmation must fit: our ACS, in time, answering our request.
        let confirmations = assertion
            .subject
            .as_ref()
            .and_then(|subject| subject.subject_confirmations.as_deref())
            .unwrap_or_default();
        let mut error = SamlError::SubjectConfirmation;
        let mut confirmed_until = None;
        for data in confirmations
            .iter()
            .filter(|confirmation| confirmation.method.as_deref() == Some(BEARER))
            .filter_map(|confirmation| confirmation.subject_confirmation_data.as_ref())
        {
            if data.recipient.as_deref() != Some(self.acs_url.as_str()) {
                error = SamlError::Recipient;
                continue;
            }
            if let Some(not_before) = data.not_before
                && now + self.skew < to_offset(not_before)?
            {
                error = SamlError::NotYetValid;
                continue;
            }
            let Some(not_on_or_after) = data.not_on_or_after else {
                continue;
            };
            let until = to_offset(not_on_or_after)? + self.skew;
            if now >= until {
                error = SamlError::Expired;
                continue;
            }
            if data.in_response_to.as_deref() != expected_request {
                error = SamlError::InResponseTo;
                continue;
            }
            confirmed_until = Some(until);
            break;
        }
        let confirmed_until = confirmed_until.ok_or(error)?;
        remember_until = remember_until.min(confirmed_until);
        Ok(Checked { remember_until })
    }

    /// Maps the verified assertion to the identity the login flow consumes.
    fn identity(
        &self,
        assertion: &Assertion,
        subject: String,
    ) -> Result<ExternalIdentity, SamlError> {
        let attributes: Vec<&samael::attribute::Attribute> = assertion
            .attribute_statements
            .iter()
            .flatten()
            .flat_map(|statement| statement.attributes.iter())
            .collect();
        let values = |names: &[String]| -> Vec<String> {
            names
                .iter()
                .find_map(|name| {
                    let found: Vec<String> = attributes
                        .iter()
                        .filter(|attribute| attribute.name.as_deref() == Some(name.as_str()))
                        .flat_map(|attribute| attribute.values.iter())
                        .filter_map(|value| value.value.as_deref())
                        .map(str::trim)
                        .filter(|value| {
                            !value.is_empty()
                                && value.chars().count() <= MAX_ATTRIBUTE_VALUE_CHARS
                                && !value.chars().any(char::is_control)
                        })
                        .map(str::to_string)
                        .collect();
                    (!found.is_empty()).then_some(found)
                })
                .unwrap_or_default()
        };
        let email = values(&self.email_attributes)
            .into_iter()
            .find(|email| email.contains('@'));
        let display_name = values(&self.name_attributes).into_iter().next();
        let mut groups: Vec<String> = Vec::new();
        for group in values(&self.groups_attributes) {
            if !groups.contains(&group) && groups.len() < MAX_GROUPS {
                groups.push(group);
            }
        }
        let statements = assertion.authn_statements.as_deref().unwrap_or_default();
        let mfa = statements.iter().any(|statement| {
            statement
                .authn_context
                .as_ref()
                .and_then(|context| context.value.as_ref())
                .and_then(|class_ref| class_ref.value.as_deref())
                .is_some_and(|class_ref| {
                    self.trusted_mfa_contexts
                        .iter()
                        .any(|trusted| trusted == class_ref.trim())
                })
        });
        let auth_time = statements
            .iter()
            .find_map(|statement| statement.authn_instant)
            .map(to_offset)
            .transpose()?;
        Ok(ExternalIdentity {
            provider: self.id.clone(),
            subject,
            email,
            // SAML has no standard "verified" flag; the login flow decides whether
            // this IdP's addresses are trusted.
            email_verified: false,
            display_name,
            groups,
            mfa,
            auth_time,
        })
    }
}

/// What the checks of an assertion established.
struct Checked {
    /// The last instant at which this assertion could still be accepted.
    remember_until: OffsetDateTime,
}

/// Assertion ids seen, each kept until its assertion could no longer be accepted.
#[derive(Debug, Default)]
struct ReplayCache {
    seen: HashMap<String, OffsetDateTime>,
    by_expiry: BTreeSet<(OffsetDateTime, String)>,
}

impl ReplayCache {
    /// Records `assertion_id`, or refuses it if it was seen before.
    fn remember(
        &mut self,
        assertion_id: &str,
        until: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<(), SamlError> {
        while let Some(first) = self.by_expiry.first() {
            if first.0 >= now {
                break;
            }
            if let Some((_, id)) = self.by_expiry.pop_first() {
                self.seen.remove(&id);
            }
        }
        if self.seen.contains_key(assertion_id) {
            return Err(SamlError::Replay {
                assertion_id: assertion_id.chars().take(128).collect(),
            });
        }
        if self.seen.len() >= MAX_REPLAY_ENTRIES {
            return Err(SamlError::ReplayCacheFull);
        }
        self.seen.insert(assertion_id.to_string(), until);
        self.by_expiry.insert((until, assertion_id.to_string()));
        Ok(())
    }
}

/// Runs only the structural inspection of a raw response (the XML text, before
/// samael) and returns the NameID text it read. Public for the fuzz targets
/// (`gateway/fuzz`), which reach the private parser through it; not part of the API.
#[doc(hidden)]
pub fn fuzz_inspect_raw(xml: &str) -> Result<Option<String>, SamlError> {
    raw::inspect(xml).map(|raw| raw.name_id)
}

fn decode_response(saml_response_b64: &str) -> Result<String, SamlError> {
    use base64::Engine;
    if saml_response_b64.len() > MAX_RESPONSE_BASE64_BYTES {
        return Err(SamlError::TooLarge);
    }
    // Form posts may wrap base64 in lines; nothing else may be in it.
    let compact: String = saml_response_b64
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|_| SamlError::Encoding)?;
    String::from_utf8(bytes).map_err(|_| SamlError::Encoding)
}

/// Checks the envelope values that may be unsigned: status, Destination, and the
/// response's own InResponseTo.
fn check_envelope(
    raw: &raw::RawResponse,
    acs_url: &str,
    expected_request: Option<&str>,
) -> Result<(), SamlError> {
    match raw.status_code.as_deref() {
        Some(STATUS_SUCCESS) => {}
        Some(code) => return Err(SamlError::Status(printable_status(code))),
        None => return Err(SamlError::Malformed("the response has no status code")),
    }
    if raw
        .destination
        .as_deref()
        .is_some_and(|destination| destination != acs_url)
    {
        return Err(SamlError::Destination);
    }
    match (raw.in_response_to.as_deref(), expected_request) {
        (None, _) => Ok(()),
        (Some(answered), Some(expected)) if answered == expected => Ok(()),
        (Some(_), _) => Err(SamlError::InResponseTo),
    }
}

/// A status code fit for a log line: standard codes as they are, anything else not.
fn printable_status(code: &str) -> String {
    match code.strip_prefix(STATUS_PREFIX) {
        Some(name) if name.len() <= 40 && name.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            code.to_string()
        }
        _ => "(non-standard)".to_string(),
    }
}

/// The NameID, whole, if its format names a person stably. `raw_name_id` is the same
/// element read by our own parser: a differing value means the parsers disagree.
fn subject_of(assertion: &Assertion, raw_name_id: Option<&str>) -> Result<String, SamlError> {
    let name_id = assertion
        .subject
        .as_ref()
        .and_then(|subject| subject.name_id.as_ref())
        .ok_or(SamlError::NameId("the assertion has no NameID"))?;
    match name_id.format.as_deref() {
        None | Some(NAMEID_PERSISTENT | NAMEID_EMAIL | NAMEID_UNSPECIFIED) => {}
        Some(_) => {
            return Err(SamlError::NameId(
                "format is not persistent, emailAddress or unspecified",
            ));
        }
    }
    // Surrounding whitespace (a pretty-printed NameID) is not part of the value.
    let value = name_id.value.trim();
    if raw_name_id.map(str::trim) != Some(value) {
        return Err(SamlError::NameId("the XML parsers read different values"));
    }
    if value.is_empty()
        || value.chars().count() > MAX_NAME_ID_CHARS
        || value.chars().any(char::is_control)
    {
        return Err(SamlError::NameId(
            "empty, too long or with control characters",
        ));
    }
    Ok(value.to_string())
}

fn to_offset(instant: chrono::DateTime<chrono::Utc>) -> Result<OffsetDateTime, SamlError> {
    let nanos = instant
        .timestamp_nanos_opt()
        .ok_or(SamlError::Malformed("a timestamp out of range"))?;
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
        .map_err(|_| SamlError::Malformed("a timestamp out of range"))
}

/// samael's reasons, mapped to ours (its messages quote attacker-chosen values).
fn samael_error(error: samael::service_provider::Error) -> SamlError {
    use samael::service_provider::Error as E;
    match error {
        E::FailedToValidateSignature => SamlError::Signature,
        E::DestinationValidationError { .. } => SamlError::Destination,
        E::AssertionRecipientMismatch { .. } => SamlError::Recipient,
        E::AssertionBearerSubjectConfirmationMissing | E::AssertionSubjectConfirmationMissing => {
            SamlError::SubjectConfirmation
        }
        E::AssertionConditionAudienceRestrictionFailed { .. } => SamlError::Audience,
        E::AssertionIssuerMismatch { .. } | E::ResponseIssuerMismatch { .. } => SamlError::Issuer,
        E::AssertionExpired { .. }
        | E::ResponseExpired { .. }
        | E::AssertionConditionExpired { .. }
        | E::AssertionSubjectConfirmationExpired { .. } => SamlError::Expired,
        E::AssertionConditionExpiredBefore { .. }
        | E::AssertionSubjectConfirmationExpiredBefore { .. } => SamlError::NotYetValid,
        E::AssertionInResponseToInvalid { .. } | E::ResponseInResponseToInvalid { .. } => {
            SamlError::InResponseTo
        }
        E::ResponseBadStatusCode { code } => SamlError::Status(printable_status(&code)),
        E::EncryptedAssertionsNotYetSupported
        | E::MissingPrivateKeySP
        | E::FailedToDecryptAssertion
        | E::EncryptedAssertionInvalid => {
            SamlError::Malformed("encrypted assertions are not supported")
        }
        _ => SamlError::Rejected,
    }
}
