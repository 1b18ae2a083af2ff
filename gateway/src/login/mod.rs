//! Browser login flows under `/.portcullis/`: password sign-in and sign-out.
//!
//! Forms are CSRF-protected (a `__Host-` cookie that must equal a hidden field, plus an
//! `Origin` check), sign-out is a POST, the session id is always new at sign-in (no
//! fixation), and failures are generic: an unknown email, a disabled account and a
//! wrong password look and cost the same. Failed attempts are throttled per (account,
//! client address) pair and per client address. The choice: locking an account for
//! everyone would let anyone lock out anyone by guessing; keying on the pair means an
//! attacker can only lock themselves out, and the per-address budget bounds spraying
//! across accounts. Counters expire on their own after the window (the unlock path).

pub mod account;
pub mod email_code;
pub mod mfa;
pub mod pages;
pub mod password;
pub mod redirect;
pub mod sso;
pub mod totp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use moka::future::Cache;
use time::OffsetDateTime;

use crate::config::LoginConfig;
use crate::crypto::random::{is_lower_hex, random_hex256};
use crate::crypto::{SecretBox, constant_time_eq};
use crate::net::client_ip::ClientIp;
use crate::proxy::{Body, RequestBody};
use crate::session::{self, Sessions, Timeouts};
use crate::store::{AuthMethod, Store};
use password::{PasswordHasher, Verified};

/// The sign-in path.
pub const LOGIN_PATH: &str = "/.portcullis/login";
/// The sign-out path.
pub const LOGOUT_PATH: &str = "/.portcullis/logout";
/// Whether `path` is one of the browser flows [`Login::handle`] serves.
pub fn is_login_path(path: &str) -> bool {
    matches!(
        path,
        LOGIN_PATH
            | LOGOUT_PATH
            | mfa::MFA_PATH
            | account::ACCOUNT_PATH
            | account::PASSWORD_PATH
            | account::SETUP_PATH
            | email_code::EMAIL_CODE_PATH
    ) || path.starts_with(sso::SSO_PREFIX)
}

/// The CSRF cookie's name.
const CSRF_COOKIE: &str = "__Host-portcullis-csrf";
/// The largest form accepted.
const MAX_FORM: usize = 16 * 1024;
/// Failed attempts allowed per (account, address) in a window.
const PAIR_LIMIT: u32 = 5;
/// Failed attempts allowed per address in a window.
const ADDRESS_LIMIT: u32 = 50;
/// The throttling window.
const WINDOW: Duration = Duration::from_secs(15 * 60);

/// What a login request needs to know about where it came from.
#[derive(Debug, Clone)]
pub struct Origin {
    /// The client address.
    pub client: ClientIp,
    /// `https://host[:port]` (or `http://…`) as this request reached the gateway.
    pub expected_origin: String,
}

/// The login flows and their state.
pub struct Login {
    store: Store,
    sessions: Arc<Sessions>,
    hasher: PasswordHasher,
    secrets: Arc<dyn SecretBox>,
    config: LoginConfig,
    default_timeouts: Timeouts,
    failures: Cache<String, Arc<AtomicU32>>,
    pending: mfa::PendingSignIns,
    email_codes: Option<email_code::EmailCodes>,
    sso: Option<sso::Sso>,
}

/// Why the login flows could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum LoginSetupError {
    /// The mailer for sign-in codes.
    #[error(transparent)]
    Mailer(#[from] email_code::MailerError),
    /// Single sign-on.
    #[error(transparent)]
    Sso(#[from] sso::SsoSetupError),
}

impl Login {
    /// Login flows for the configured organization and workspace.
    pub fn new(
        store: Store,
        sessions: Arc<Sessions>,
        hasher: PasswordHasher,
        secrets: Arc<dyn SecretBox>,
        config: LoginConfig,
        default_timeouts: Timeouts,
    ) -> Login {
        Login {
            store,
            sessions,
            hasher,
            secrets,
            config,
            default_timeouts,
            email_codes: None,
            sso: None,
            failures: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(WINDOW)
                .build(),
            pending: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(mfa::PENDING_TTL)
                .build(),
        }
    }

    /// Adds what the configuration enables besides passwords: sign-in codes by email
    /// (`[email]`) and single sign-on (`[sso]`). `env` reads environment variables.
    pub fn configure(
        mut self,
        config: &crate::config::Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Login, LoginSetupError> {
        if let Some(email) = &config.email {
            self.email_codes = Some(email_code::EmailCodes::new(email_code::Mailer::new(
                email, env,
            )?));
        }
        if let Some(sso) = &config.sso {
            self.sso = Some(sso::Sso::new(sso, env)?);
        }
        Ok(self)
    }

    /// The settings of the sign-in organization and of its workspace, in that order:
    /// the two levels every rule here resolves (strictest wins).
    async fn tenant_settings(
        &self,
    ) -> Result<[crate::store::Settings; 2], crate::store::StoreError> {
        Ok([
            self.store
                .get_organization_settings(self.config.organization)
                .await?,
            self.store
                .get_workspace_settings(self.config.workspace)
                .await?,
        ])
    }

    /// Whether the organization or the workspace requires single sign-on.
    async fn sso_required(&self) -> Result<bool, crate::store::StoreError> {
        Ok(self
            .tenant_settings()
            .await?
            .iter()
            .any(|level| level.require_sso == Some(true)))
    }

    /// What the sign-in page offers. If the settings cannot be read, the page offers
    /// only single sign-on (and sign-in itself will refuse until the store answers).
    async fn login_options(&self, return_to: &str) -> pages::LoginOptions {
        let local = !self.sso_required().await.unwrap_or(true);
        pages::LoginOptions {
            password: local,
            email_code: local && self.email_codes.is_some(),
            providers: self
                .sso
                .as_ref()
                .map(|sso| sso.buttons(return_to))
                .unwrap_or_default(),
        }
    }

    /// Refuses a local sign-in (password, email code) where single sign-on is required.
    async fn refuse_local_sign_in(&self) -> Option<Response<Body>> {
        match self.sso_required().await {
            Ok(false) => None,
            Ok(true) => Some(pages::message(
                StatusCode::FORBIDDEN,
                "Use single sign-on",
                "Your organization requires signing in through its identity provider.",
            )),
            Err(err) => {
                tracing::error!(error = %err, "could not read the sign-in settings");
                Some(pages::sign_in_unavailable())
            }
        }
    }

    /// Serves the browser flows under `/.portcullis/` (see [`is_login_path`]).
    pub async fn handle(
        &self,
        path: &str,
        request: Request<RequestBody>,
        origin: &Origin,
    ) -> Response<Body> {
        if let Some(rest) = path.strip_prefix(sso::SSO_PREFIX) {
            return self.sso_handle(rest, request, origin).await;
        }
        let method = request.method().clone();
        match (path, &method) {
            (LOGIN_PATH, &Method::GET) => {
                let return_to = query_param(request.uri().query(), "rd");
                let (csrf, set) = csrf_token(request.headers());
                let return_to = redirect::return_target(return_to.as_deref());
                with_csrf_cookie(
                    pages::login(
                        StatusCode::OK,
                        &csrf,
                        &return_to,
                        "",
                        None,
                        &self.login_options(&return_to).await,
                    ),
                    set,
                    &csrf,
                )
            }
            (LOGOUT_PATH, &Method::GET) => {
                let (csrf, set) = csrf_token(request.headers());
                with_csrf_cookie(pages::logout(&csrf), set, &csrf)
            }
            (mfa::MFA_PATH, &Method::GET) => {
                let (csrf, set) = csrf_token(request.headers());
                let page = self.second_factor_page(request.headers(), &csrf).await;
                with_csrf_cookie(page, set, &csrf)
            }
            (account::ACCOUNT_PATH, &Method::GET) => {
                let (csrf, set) = csrf_token(request.headers());
                let page = self.account_page(request.headers(), &csrf, None).await;
                with_csrf_cookie(page, set, &csrf)
            }
            (account::PASSWORD_PATH, &Method::GET) => {
                let (csrf, set) = csrf_token(request.headers());
                let page = self.password_page(request.headers(), &csrf).await;
                with_csrf_cookie(page, set, &csrf)
            }
            (account::SETUP_PATH, &Method::GET) => {
                let (csrf, set) = csrf_token(request.headers());
                with_csrf_cookie(self.setup_page(&csrf).await, set, &csrf)
            }
            (path, &Method::POST) if is_login_path(path) => {
                let headers = request.headers().clone();
                if let Err(response) = check_same_origin(&headers, origin) {
                    return *response;
                }
                let form = match read_form(request).await {
                    Ok(form) => form,
                    Err(response) => return *response,
                };
                if !csrf_matches(&headers, form.get("csrf")) {
                    tracing::info!(client.ip = %origin.client, "login form refused: CSRF token missing or wrong");
                    return pages::message(
                        StatusCode::FORBIDDEN,
                        "Form expired",
                        "Reload the page and try again.",
                    );
                }
                match path {
                    LOGIN_PATH => self.sign_in(&form, origin).await,
                    LOGOUT_PATH => self.sign_out(&headers).await,
                    account::ACCOUNT_PATH => self.account_submit(&headers, &form).await,
                    account::PASSWORD_PATH => self.password_submit(&headers, &form, origin).await,
                    account::SETUP_PATH => self.setup_submit(&form, origin).await,
                    email_code::EMAIL_CODE_PATH => {
                        self.email_code_submit(&headers, &form, origin).await
                    }
                    _ => {
                        let csrf = form.get("csrf").unwrap_or_default();
                        self.second_factor_submit(
                            &headers,
                            form.get("code").unwrap_or_default(),
                            csrf,
                        )
                        .await
                    }
                }
            }
            _ => pages::message(
                StatusCode::METHOD_NOT_ALLOWED,
                "Not allowed",
                "Use the form.",
            ),
        }
    }

    async fn sign_in(&self, form: &Form, origin: &Origin) -> Response<Body> {
        if let Some(refusal) = self.refuse_local_sign_in().await {
            return refusal;
        }
        let email = form.get("email").unwrap_or_default().trim().to_lowercase();
        let password = form.get("password").unwrap_or_default();
        let return_to = redirect::return_target(form.get("rd"));
        let csrf = form.get("csrf").unwrap_or_default();
        let pair_key = format!("{}|{email}", origin.client);
        let address_key = origin.client.to_string();
        if self.count(&pair_key).await >= PAIR_LIMIT
            || self.count(&address_key).await >= ADDRESS_LIMIT
        {
            tracing::warn!(client.ip = %origin.client, "sign-in throttled");
            return pages::login(
                StatusCode::TOO_MANY_REQUESTS,
                csrf,
                &return_to,
                &email,
                Some("Too many attempts. Wait a few minutes and try again."),
                &self.login_options(&return_to).await,
            );
        }
        let now = crate::clock::now_utc();
        match self.check_password(&email, password, now).await {
            Ok(Some(user)) => {
                self.failures.invalidate(&pair_key).await;
                self.complete_first_factor(user, &email, &return_to, AuthMethod::Password, false)
                    .await
            }
            Ok(None) => {
                self.record_failure(&pair_key).await;
                self.record_failure(&address_key).await;
                tracing::info!(client.ip = %origin.client, "sign-in failed");
                pages::login(
                    StatusCode::UNAUTHORIZED,
                    csrf,
                    &return_to,
                    &email,
                    Some("Invalid email or password."),
                    &self.login_options(&return_to).await,
                )
            }
            Err(err) => {
                tracing::error!(error = %err, "sign-in could not be checked");
                pages::sign_in_unavailable()
            }
        }
    }

    /// The user id if `password` is right for an enabled account `email`. Unknown and
    /// disabled accounts are verified against a fixed hash so they cost the same.
    async fn check_password(
        &self,
        email: &str,
        password: &str,
        now: OffsetDateTime,
    ) -> Result<Option<crate::store::UserId>, Box<dyn std::error::Error + Send + Sync>> {
        let organization = self.config.organization;
        let user = self
            .store
            .find_user_by_email(organization, email)
            .await?
            .filter(|user| !user.disabled);
        let stored = match &user {
            Some(user) => self.store.get_password(organization, user.id).await?,
            None => None,
        };
        let verified = self
            .hasher
            .verify(stored.as_ref().map(|c| c.phc.as_str()), password)
            .await?;
        let (Some(user), true) = (user, verified != Verified::No) else {
            return Ok(None);
        };
        if let Verified::YesRehashed(phc) = verified {
            self.store
                .set_password(organization, user.id, &phc, now)
                .await?;
            tracing::info!(user.id = %user.id, "password re-hashed with the current parameters");
        }
        Ok(Some(user.id))
    }

    /// After a first factor (a password, an email code, single sign-on): the
    /// organization's second factor if it is owed (`idp_mfa`: the identity provider
    /// already asserted one we trust), then a new password if a password sign-in's
    /// password expired, else a session.
    pub(super) async fn complete_first_factor(
        &self,
        user: crate::store::UserId,
        email: &str,
        return_to: &str,
        method: AuthMethod,
        idp_mfa: bool,
    ) -> Response<Body> {
        let now = crate::clock::now_utc();
        let owed = if idp_mfa {
            Ok(None)
        } else {
            self.second_factor_for(user).await
        };
        match owed {
            Ok(Some(purpose)) => {
                return self
                    .begin_second_factor(user, email, return_to, purpose, None, method)
                    .await;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::error!(error = %err, "could not check the second factor");
                return pages::sign_in_unavailable();
            }
        }
        if method == AuthMethod::Password {
            match self.password_expired(user, now).await {
                Ok(false) => {}
                Ok(true) => {
                    tracing::info!(user.id = %user, "signed in with an expired password");
                    let cookie = self
                        .start_pending(mfa::Pending {
                            user,
                            email: email.to_owned(),
                            return_to: return_to.to_owned(),
                            purpose: mfa::Purpose::ChangePassword,
                            mfa_done: false,
                            auth_method: method,
                            attempts: AtomicU32::new(0),
                            replaces: None,
                        })
                        .await;
                    return redirect_with_cookie(account::PASSWORD_PATH, cookie);
                }
                Err(err) => {
                    tracing::error!(error = %err, "could not check password expiry");
                    return pages::sign_in_unavailable();
                }
            }
        }
        match self.start_session(user, method, idp_mfa, now).await {
            Ok(cookie) => {
                tracing::info!(user.id = %user, method = method.as_str(), "signed in");
                redirect_with_cookie(return_to, session::set_cookie(&cookie))
            }
            Err(err) => {
                tracing::error!(error = %err, "could not start a session");
                pages::sign_in_unavailable()
            }
        }
    }

    async fn start_session(
        &self,
        user: crate::store::UserId,
        method: AuthMethod,
        mfa_done: bool,
        now: OffsetDateTime,
    ) -> Result<String, Box<dyn std::error::Error + Send + Sync>> {
        let [organization, workspace] = self.tenant_settings().await?;
        let own = self
            .store
            .get_user_timeouts(self.config.organization, user)
            .await?;
        let timeouts = Timeouts::strictest(
            self.default_timeouts,
            &[
                (organization.idle_timeout, organization.absolute_lifetime),
                (workspace.idle_timeout, workspace.absolute_lifetime),
                (own.idle_timeout, own.absolute_lifetime),
            ],
        );
        Ok(self
            .sessions
            .create(self.config.workspace, user, timeouts, method, mfa_done, now)
            .await?)
    }

    async fn sign_out(&self, headers: &HeaderMap) -> Response<Body> {
        if let Some((workspace, hash)) = session::presented(headers) {
            match self
                .sessions
                .revoke(workspace, &hash, crate::clock::now_utc())
                .await
            {
                Ok(_) => tracing::info!("signed out"),
                Err(err) => {
                    tracing::error!(error = %err, "could not revoke a session");
                    return pages::message(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "Try again later",
                        "Signing out is not possible right now.",
                    );
                }
            }
        }
        redirect_with_cookie(LOGIN_PATH, Some(session::clear_cookie()))
    }

    async fn count(&self, key: &str) -> u32 {
        self.failures
            .get(key)
            .await
            .map_or(0, |count| count.load(Ordering::Relaxed))
    }

    async fn record_failure(&self, key: &str) {
        self.failures
            .get_with(key.to_owned(), async { Arc::new(AtomicU32::new(0)) })
            .await
            .fetch_add(1, Ordering::Relaxed);
    }
}

/// A parsed `application/x-www-form-urlencoded` body.
struct Form(Vec<(String, String)>);

impl Form {
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

async fn read_form(request: Request<RequestBody>) -> Result<Form, Box<Response<Body>>> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| {
            value.split(';').next().is_some_and(|kind| {
                kind.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(Box::new(pages::message(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Not a form",
            "Use the form.",
        )));
    }
    let body: Bytes = match Limited::new(request.into_body(), MAX_FORM).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return Err(Box::new(pages::message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too large",
                "The form is too large.",
            )));
        }
    };
    Ok(Form(form_urlencoded::parse(&body).into_owned().collect()))
}

fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    form_urlencoded::parse(query?.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Refuses cross-site form posts: a present `Origin` must be this gateway's, and a
/// browser that says the request is cross-site is believed.
fn check_same_origin(headers: &HeaderMap, origin: &Origin) -> Result<(), Box<Response<Body>>> {
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"cross-site"));
    let foreign_origin = headers.get(header::ORIGIN).is_some_and(|value| {
        !value
            .as_bytes()
            .eq_ignore_ascii_case(origin.expected_origin.as_bytes())
    });
    if cross_site || foreign_origin {
        tracing::info!(client.ip = %origin.client, "cross-site form post refused");
        return Err(Box::new(pages::message(
            StatusCode::FORBIDDEN,
            "Refused",
            "This form must be sent from this site.",
        )));
    }
    Ok(())
}

/// The CSRF token the browser holds, or a new one (and whether to set it).
fn csrf_token(headers: &HeaderMap) -> (String, bool) {
    let mut existing = session::cookie_values(headers, CSRF_COOKIE);
    match (existing.next(), existing.next()) {
        (Some(value), None) if is_lower_hex(value, 64) => (value.to_owned(), false),
        _ => (random_hex256(), true),
    }
}

fn csrf_matches(headers: &HeaderMap, field: Option<&str>) -> bool {
    let mut cookies = session::cookie_values(headers, CSRF_COOKIE);
    match (cookies.next(), cookies.next(), field) {
        (Some(cookie), None, Some(field)) if !cookie.is_empty() => {
            constant_time_eq(cookie.as_bytes(), field.as_bytes())
        }
        _ => false,
    }
}

fn with_csrf_cookie(mut response: Response<Body>, set: bool, csrf: &str) -> Response<Body> {
    if set
        && let Ok(value) = HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={csrf}; Path=/; Secure; HttpOnly; SameSite=Strict"
        ))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

fn redirect_with_cookie(location: &str, cookie: Option<HeaderValue>) -> Response<Body> {
    let mut response = Response::new(crate::proxy::full(""));
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(cookie) = cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

#[cfg(test)]
mod tests {
    use http::{HeaderMap, HeaderValue, header};

    use super::{csrf_matches, csrf_token, query_param};
    use crate::crypto::constant_time_eq;

    #[test]
    fn csrf_requires_one_matching_cookie() {
        let token = "a".repeat(64);
        let mut headers = HeaderMap::new();
        assert!(!csrf_matches(&headers, Some(&token)));
        headers.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("__Host-portcullis-csrf={token}")).unwrap(),
        );
        assert!(csrf_matches(&headers, Some(&token)));
        assert!(!csrf_matches(&headers, Some(&"b".repeat(64))));
        assert!(!csrf_matches(&headers, None));
        assert_eq!(csrf_token(&headers), (token.clone(), false));
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-portcullis-csrf=other"),
        );
        assert!(
            !csrf_matches(&headers, Some(&token)),
            "two CSRF cookies: trust neither"
        );
        assert!(csrf_token(&headers).1, "a fresh token is issued");
    }

    #[test]
    fn helpers() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert_eq!(
            query_param(Some("a=1&rd=%2Fapp%3Fx%3D1"), "rd").as_deref(),
            Some("/app?x=1")
        );
        assert_eq!(query_param(None, "rd"), None);
    }
}
