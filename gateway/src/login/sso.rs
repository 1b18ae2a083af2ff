//! Single sign-on in the browser flow, under `/.portcullis/sso/`:
//!
//! - `oidc/{id}/start` and `saml/{id}/start` (GET, `rd` = where to return) begin a
//!   sign-in: the provider module's pending state is kept here, under a random id in a
//!   `__Host-` cookie of this browser, for ten minutes and one use;
//! - `oidc/{id}/callback` (GET) and `saml/{id}/acs` (POST, cross-site by design, so no
//!   CSRF token: the pending state bound to this browser's cookie and the provider's
//!   signature are the protection) finish it;
//! - `saml/{id}/metadata` serves our SP metadata.
//!
//! A verified [`ExternalIdentity`] becomes a user by (provider, subject). An unknown
//! subject is linked to an existing account only with `link_by_email` and an address
//! the provider vouches for, or provisioned with `provision`; otherwise refused. Group
//! mappings are re-synced at each sign-in. The organization's second factor still
//! applies unless the provider asserted an MFA its configuration trusts.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use moka::future::Cache;
use time::OffsetDateTime;

use super::{Login, Origin, pages, redirect_with_cookie};
use crate::config::sso::{SsoConfig, SsoProtocol, SsoProvider};
use crate::crypto::random::{is_lower_hex, random_hex256};
use crate::proxy::{Body, RequestBody};
use crate::session::cookie_values;
use crate::sso::ExternalIdentity;
use crate::sso::oidc::{self, CallbackParams, OidcProvider, OidcSettings, PendingOidc};
use crate::sso::saml::{PendingSaml, SamlProvider};
use crate::store::{AuthMethod, RoleScope, UserId};

/// Where single sign-on lives.
pub const SSO_PREFIX: &str = "/.portcullis/sso/";
/// The cookie naming this browser's pending sign-in. `SameSite=None` because the SAML
/// answer arrives as a cross-site POST; it names state, it grants nothing.
const SSO_COOKIE: &str = "__Host-portcullis-sso";
/// How long a started sign-in may take.
const PENDING_TTL: Duration = Duration::from_secs(10 * 60);
/// The largest ACS form accepted (the SAML module caps the response at 256 KiB).
const MAX_ACS_FORM: usize = 512 * 1024;

/// Why single sign-on could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SsoSetupError {
    /// An OIDC client secret could not be resolved.
    #[error("{0}")]
    Secret(String),
    /// IdP metadata could not be read.
    #[error("sso provider `{id}`: cannot read IdP metadata `{path}`")]
    Metadata {
        /// The provider.
        id: String,
        /// The file.
        path: String,
    },
    /// The SAML module refused the provider.
    #[error("sso provider `{id}`: {source}")]
    Saml {
        /// The provider.
        id: String,
        /// Why.
        #[source]
        source: crate::sso::saml::SamlError,
    },
}

enum Runtime {
    Oidc {
        settings: Box<OidcSettings>,
        redirect_uri: String,
        require_iss: bool,
        discovered: tokio::sync::Mutex<Option<Arc<OidcProvider>>>,
    },
    Saml(SamlRuntime),
}

/// A SAML provider, built at start-up from a metadata file or on first use from a
/// metadata URL (and again after a failed fetch).
struct SamlRuntime {
    settings: Box<crate::sso::saml::SamlSettings>,
    public_url: String,
    provider: tokio::sync::Mutex<Option<Arc<SamlProvider>>>,
}

impl SamlRuntime {
    async fn provider(&self) -> Result<Arc<SamlProvider>, String> {
        let mut slot = self.provider.lock().await;
        if let Some(provider) = slot.as_ref() {
            return Ok(Arc::clone(provider));
        }
        let url = self
            .settings
            .idp_metadata_url
            .as_deref()
            .ok_or_else(|| "no metadata".to_owned())?;
        let xml = crate::sso::fetch_idp_metadata(url)
            .await
            .map_err(|err| format!("fetching IdP metadata: {err}"))?;
        let provider = SamlProvider::new(&self.settings, &xml, &self.public_url)
            .map_err(|err| format!("{} ({err})", err.code()))?;
        let provider = Arc::new(provider);
        *slot = Some(Arc::clone(&provider));
        Ok(provider)
    }
}

struct Entry {
    id: String,
    label: String,
    runtime: Runtime,
    provision: bool,
    link_by_email: bool,
    roles: Vec<(String, String, RoleScope)>,
}

enum PendingState {
    Oidc(PendingOidc),
    Saml(PendingSaml),
}

struct PendingSso {
    provider: String,
    state: PendingState,
    return_to: String,
}

/// The configured providers and the sign-ins in progress.
pub struct Sso {
    entries: Vec<Entry>,
    pending: Cache<String, Arc<PendingSso>>,
}

impl Sso {
    /// Builds the providers of `[sso]`. SAML metadata is read now; OIDC providers are
    /// discovered on first use (and again after a failure), so a provider that is down
    /// at start-up does not keep the gateway down.
    pub fn new(
        config: &SsoConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Sso, SsoSetupError> {
        let oidc_count = config
            .providers
            .iter()
            .filter(|provider| matches!(provider.protocol, SsoProtocol::Oidc(_)))
            .count();
        let mut entries = Vec::new();
        for provider in &config.providers {
            let runtime = match &provider.protocol {
                SsoProtocol::Oidc(settings) => {
                    let mut settings = settings.clone();
                    settings
                        .resolve_client_secret(env)
                        .map_err(SsoSetupError::Secret)?;
                    Runtime::Oidc {
                        redirect_uri: format!(
                            "{}{SSO_PREFIX}oidc/{}/callback",
                            config.public_url, settings.id
                        ),
                        settings,
                        require_iss: oidc_count > 1,
                        discovered: tokio::sync::Mutex::new(None),
                    }
                }
                SsoProtocol::Saml(settings) => {
                    let ready = match &settings.idp_metadata_file {
                        Some(file) => {
                            let xml = std::fs::read_to_string(file).map_err(|_| {
                                SsoSetupError::Metadata {
                                    id: settings.id.clone(),
                                    path: file.display().to_string(),
                                }
                            })?;
                            let saml = SamlProvider::new(settings, &xml, &config.public_url)
                                .map_err(|source| SsoSetupError::Saml {
                                    id: settings.id.clone(),
                                    source,
                                })?;
                            Some(Arc::new(saml))
                        }
                        None => None,
                    };
                    Runtime::Saml(SamlRuntime {
                        settings: settings.clone(),
                        public_url: config.public_url.clone(),
                        provider: tokio::sync::Mutex::new(ready),
                    })
                }
            };
            entries.push(entry(provider, runtime));
        }
        Ok(Sso {
            entries,
            pending: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(PENDING_TTL)
                .build(),
        })
    }

    /// The login page's buttons: (start path, label).
    pub fn buttons(&self, return_to: &str) -> Vec<(String, String)> {
        let rd: String = form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
        self.entries
            .iter()
            .map(|entry| {
                let kind = match entry.runtime {
                    Runtime::Oidc { .. } => "oidc",
                    Runtime::Saml(_) => "saml",
                };
                (
                    format!("{SSO_PREFIX}{kind}/{}/start?rd={rd}", entry.id),
                    entry.label.clone(),
                )
            })
            .collect()
    }

    fn entry(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|entry| entry.id == id)
    }
}

fn entry(provider: &SsoProvider, runtime: Runtime) -> Entry {
    let (id, label) = match &provider.protocol {
        SsoProtocol::Oidc(settings) => (settings.id.clone(), settings.display_name.clone()),
        SsoProtocol::Saml(settings) => (settings.id.clone(), settings.display_name.clone()),
    };
    let roles = provider
        .roles
        .iter()
        .filter_map(|mapping| {
            let entity = crate::authz::parse_entity(&mapping.scope)?;
            Some((
                mapping.group.clone(),
                mapping.role.clone(),
                RoleScope {
                    entity_type: entity.kind,
                    entity_id: entity.id,
                },
            ))
        })
        .collect();
    Entry {
        label: label.unwrap_or_else(|| id.clone()),
        id,
        runtime,
        provision: provider.provision,
        link_by_email: provider.link_by_email,
        roles,
    }
}

async fn discovered(
    settings: &OidcSettings,
    redirect_uri: &str,
    require_iss: bool,
    slot: &tokio::sync::Mutex<Option<Arc<OidcProvider>>>,
) -> Result<Arc<OidcProvider>, oidc::OidcError> {
    let mut slot = slot.lock().await;
    if let Some(provider) = slot.as_ref() {
        return Ok(Arc::clone(provider));
    }
    let provider = oidc::discover(settings, redirect_uri).await?;
    let provider = Arc::new(if require_iss {
        provider.require_iss_param()
    } else {
        provider
    });
    *slot = Some(Arc::clone(&provider));
    Ok(provider)
}

fn refused(status: StatusCode, text: &str) -> Response<Body> {
    pages::message(status, "Sign-in failed", text)
}

fn with_cookie(mut response: Response<Body>, cookie: &str) -> Response<Body> {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

const CLEAR_SSO_COOKIE: &str =
    "__Host-portcullis-sso=; Path=/; Secure; HttpOnly; SameSite=None; Max-Age=0";

impl Login {
    /// Serves everything under [`SSO_PREFIX`]; `rest` is the path after it.
    pub(super) async fn sso_handle(
        &self,
        rest: &str,
        request: Request<RequestBody>,
        origin: &Origin,
    ) -> Response<Body> {
        let Some(sso) = &self.sso else {
            return refused(
                StatusCode::NOT_FOUND,
                "Single sign-on is not configured here.",
            );
        };
        let mut parts = rest.split('/');
        let (Some(kind), Some(id), Some(step), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return refused(StatusCode::NOT_FOUND, "No such sign-in step.");
        };
        let Some(entry) = sso.entry(id) else {
            return refused(StatusCode::NOT_FOUND, "No such identity provider.");
        };
        let method = request.method().clone();
        match (&entry.runtime, kind, step, method) {
            (Runtime::Oidc { .. }, "oidc", "start", Method::GET)
            | (Runtime::Saml(_), "saml", "start", Method::GET) => {
                let return_to = super::redirect::return_target(
                    super::query_param(request.uri().query(), "rd").as_deref(),
                );
                self.sso_start(sso, entry, return_to).await
            }
            (Runtime::Oidc { .. }, "oidc", "callback", Method::GET) => {
                let query = request.uri().query().unwrap_or_default().to_owned();
                self.oidc_callback(sso, entry, request.headers(), &query, origin)
                    .await
            }
            (Runtime::Saml(saml), "saml", "acs", Method::POST) => {
                let headers = request.headers().clone();
                let body: Bytes = match Limited::new(request.into_body(), MAX_ACS_FORM)
                    .collect()
                    .await
                {
                    Ok(collected) => collected.to_bytes(),
                    Err(_) => {
                        return refused(StatusCode::PAYLOAD_TOO_LARGE, "The answer is too large.");
                    }
                };
                let response = form_urlencoded::parse(&body)
                    .find(|(key, _)| key == "SAMLResponse")
                    .map(|(_, value)| value.into_owned());
                let Some(response) = response else {
                    return refused(
                        StatusCode::BAD_REQUEST,
                        "The identity provider sent no answer.",
                    );
                };
                let provider = match saml.provider().await {
                    Ok(provider) => provider,
                    Err(err) => {
                        tracing::error!(provider = %entry.id, error = %err, "SAML provider unavailable");
                        return refused(StatusCode::SERVICE_UNAVAILABLE, "Try again later.");
                    }
                };
                self.saml_acs(sso, entry, &provider, &headers, response, origin)
                    .await
            }
            (Runtime::Saml(saml), "saml", "metadata", Method::GET) => {
                match saml.provider().await.and_then(|provider| {
                    provider
                        .metadata_xml()
                        .map_err(|err| format!("{} ({err})", err.code()))
                }) {
                    Ok(xml) => {
                        let mut response = Response::new(crate::proxy::full(xml));
                        response.headers_mut().insert(
                            header::CONTENT_TYPE,
                            HeaderValue::from_static("application/samlmetadata+xml"),
                        );
                        response
                    }
                    Err(err) => {
                        tracing::error!(provider = %entry.id, error = %err, "cannot render SP metadata");
                        refused(StatusCode::SERVICE_UNAVAILABLE, "Try again later.")
                    }
                }
            }
            _ => refused(StatusCode::NOT_FOUND, "No such sign-in step."),
        }
    }

    async fn sso_start(&self, sso: &Sso, entry: &Entry, return_to: String) -> Response<Body> {
        let started = match &entry.runtime {
            Runtime::Oidc {
                settings,
                redirect_uri,
                require_iss,
                discovered: slot,
            } => match discovered(settings, redirect_uri, *require_iss, slot).await {
                Ok(provider) => {
                    let (url, pending) = provider.begin(None);
                    Ok((url, PendingState::Oidc(pending)))
                }
                Err(err) => Err(format!("{} ({err})", err.code())),
            },
            Runtime::Saml(saml) => saml.provider().await.and_then(|provider| {
                provider
                    .begin("")
                    .map(|(url, pending)| (url, PendingState::Saml(pending)))
                    .map_err(|err| format!("{} ({err})", err.code()))
            }),
        };
        let (url, state) = match started {
            Ok(started) => started,
            Err(err) => {
                tracing::error!(provider = %entry.id, error = %err, "could not start single sign-on");
                return refused(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The identity provider cannot be reached right now. Try again later.",
                );
            }
        };
        let id = random_hex256();
        sso.pending
            .insert(
                id.clone(),
                Arc::new(PendingSso {
                    provider: entry.id.clone(),
                    state,
                    return_to,
                }),
            )
            .await;
        tracing::info!(provider = %entry.id, "single sign-on started");
        with_cookie(
            redirect_with_cookie(&url, None),
            &format!(
                "{SSO_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=None; Max-Age={}",
                PENDING_TTL.as_secs()
            ),
        )
    }

    /// This browser's pending sign-in, removed (one use, whatever happens next).
    async fn take_pending(&self, sso: &Sso, headers: &HeaderMap) -> Option<Arc<PendingSso>> {
        let mut values = cookie_values(headers, SSO_COOKIE);
        let (Some(id), None) = (values.next(), values.next()) else {
            return None;
        };
        if !is_lower_hex(id, 64) {
            return None;
        }
        sso.pending.remove(id).await
    }

    async fn oidc_callback(
        &self,
        sso: &Sso,
        entry: &Entry,
        headers: &HeaderMap,
        query: &str,
        origin: &Origin,
    ) -> Response<Body> {
        let Runtime::Oidc {
            settings,
            redirect_uri,
            require_iss,
            discovered: slot,
        } = &entry.runtime
        else {
            return refused(StatusCode::NOT_FOUND, "No such sign-in step.");
        };
        let pending = self.take_pending(sso, headers).await;
        let Some(pending) = pending.filter(|pending| pending.provider == entry.id) else {
            tracing::info!(provider = %entry.id, client.ip = %origin.client, "OIDC callback without a sign-in started in this browser");
            return with_cookie(
                refused(
                    StatusCode::BAD_REQUEST,
                    "This sign-in was not started in this browser, or it expired. Start again.",
                ),
                CLEAR_SSO_COOKIE,
            );
        };
        let PendingState::Oidc(state) = &pending.state else {
            return refused(StatusCode::BAD_REQUEST, "Start again.");
        };
        let verified = async {
            let provider = discovered(settings, redirect_uri, *require_iss, slot).await?;
            let params = CallbackParams::from_query(query)?;
            provider
                .complete(state, &params, crate::clock::now_utc())
                .await
        }
        .await;
        let response = match verified {
            Ok(identity) => {
                self.finish_sso(
                    entry,
                    identity,
                    &pending.return_to,
                    AuthMethod::Oidc,
                    origin,
                )
                .await
            }
            Err(err) => {
                tracing::warn!(provider = %entry.id, client.ip = %origin.client, code = err.code(), error = %err, "OIDC sign-in refused");
                refused(
                    StatusCode::UNAUTHORIZED,
                    "The identity provider's answer was not accepted.",
                )
            }
        };
        with_cookie(response, CLEAR_SSO_COOKIE)
    }

    async fn saml_acs(
        &self,
        sso: &Sso,
        entry: &Entry,
        provider: &Arc<SamlProvider>,
        headers: &HeaderMap,
        saml_response: String,
        origin: &Origin,
    ) -> Response<Body> {
        let pending = self
            .take_pending(sso, headers)
            .await
            .filter(|pending| pending.provider == entry.id);
        let saml_pending = pending.as_ref().and_then(|pending| match &pending.state {
            PendingState::Saml(state) => Some(state.clone()),
            PendingState::Oidc(_) => None,
        });
        let return_to = pending
            .as_ref()
            .map_or_else(|| "/".to_owned(), |pending| pending.return_to.clone());
        let provider = Arc::clone(provider);
        let now = crate::clock::now_utc();
        // Signature checking is CPU work in libxmlsec: keep it off the async workers.
        let verified = tokio::task::spawn_blocking(move || {
            provider.complete(&saml_response, saml_pending.as_ref(), now)
        })
        .await;
        let response = match verified {
            Ok(Ok(identity)) => {
                self.finish_sso(entry, identity, &return_to, AuthMethod::Saml, origin)
                    .await
            }
            Ok(Err(err)) => {
                tracing::warn!(provider = %entry.id, client.ip = %origin.client, code = err.code(), error = %err, "SAML sign-in refused");
                refused(
                    StatusCode::UNAUTHORIZED,
                    "The identity provider's answer was not accepted.",
                )
            }
            Err(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "Try again later."),
        };
        with_cookie(response, CLEAR_SSO_COOKIE)
    }

    async fn finish_sso(
        &self,
        entry: &Entry,
        identity: ExternalIdentity,
        return_to: &str,
        method: AuthMethod,
        origin: &Origin,
    ) -> Response<Body> {
        let now = crate::clock::now_utc();
        let user = match self.user_for(entry, &identity, now).await {
            Ok(Ok(user)) => user,
            Ok(Err(reason)) => {
                tracing::warn!(provider = %entry.id, client.ip = %origin.client, reason, "single sign-on: no account");
                return refused(
                    StatusCode::FORBIDDEN,
                    "There is no account here for this sign-in. Ask an administrator.",
                );
            }
            Err(err) => {
                tracing::error!(error = %err, "single sign-on: account lookup failed");
                return refused(StatusCode::SERVICE_UNAVAILABLE, "Try again later.");
            }
        };
        if !entry.roles.is_empty() {
            let mapped: Vec<(String, RoleScope)> = entry
                .roles
                .iter()
                .filter(|(group, _, _)| identity.groups.iter().any(|g| g == group))
                .map(|(_, role, scope)| (role.clone(), scope.clone()))
                .collect();
            if let Err(err) = self
                .store
                .sync_provider_role_bindings(self.config.workspace, user.0, &entry.id, &mapped, now)
                .await
            {
                tracing::error!(error = %err, "single sign-on: role mapping failed");
                return refused(StatusCode::SERVICE_UNAVAILABLE, "Try again later.");
            }
        }
        tracing::info!(provider = %entry.id, user.id = %user.0, mfa = identity.mfa, "single sign-on verified");
        self.complete_first_factor(user.0, &user.1, return_to, method, identity.mfa)
            .await
    }

    /// The account for a verified identity: `Ok(Err(reason))` when there is none to use.
    async fn user_for(
        &self,
        entry: &Entry,
        identity: &ExternalIdentity,
        now: OffsetDateTime,
    ) -> Result<Result<(UserId, String), &'static str>, crate::store::StoreError> {
        let organization = self.config.organization;
        let enabled = |user: Option<crate::store::User>| user.filter(|user| !user.disabled);
        if let Some(id) = self
            .store
            .find_external_identity(organization, &entry.id, &identity.subject)
            .await?
        {
            return Ok(
                match enabled(self.store.get_user(organization, id).await?) {
                    Some(user) => {
                        self.store
                            .link_external_identity(
                                organization,
                                &entry.id,
                                &identity.subject,
                                id,
                                now,
                            )
                            .await?;
                        Ok((user.id, user.email))
                    }
                    None => Err("the linked account is disabled"),
                },
            );
        }
        let Some(email) = identity.email.as_deref().map(str::to_lowercase) else {
            return Ok(Err("unknown subject and no email address"));
        };
        if let Some(existing) = self.store.find_user_by_email(organization, &email).await? {
            if !(entry.link_by_email && identity.email_verified) {
                return Ok(Err("an account with this address exists and is not linked"));
            }
            if existing.disabled {
                return Ok(Err("the account with this address is disabled"));
            }
            self.store
                .link_external_identity(
                    organization,
                    &entry.id,
                    &identity.subject,
                    existing.id,
                    now,
                )
                .await?;
            tracing::info!(provider = %entry.id, user.id = %existing.id, "linked an existing account by verified email");
            return Ok(Ok((existing.id, existing.email)));
        }
        if !entry.provision {
            return Ok(Err("unknown subject and provisioning is off"));
        }
        let name = identity
            .display_name
            .clone()
            .unwrap_or_else(|| email.clone());
        let user = self
            .store
            .create_user(organization, &email, &name, now)
            .await?;
        if !self
            .store
            .link_external_identity(organization, &entry.id, &identity.subject, user.id, now)
            .await?
        {
            return Ok(Err("the identity was linked concurrently"));
        }
        tracing::info!(provider = %entry.id, user.id = %user.id, "provisioned an account on first sign-in");
        Ok(Ok((user.id, user.email)))
    }
}
