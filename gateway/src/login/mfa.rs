//! The second factor in the sign-in flow: `/.portcullis/2fa`.
//!
//! After a correct password, a user with a confirmed TOTP enrolment (or one whose
//! organization or workspace requires 2FA, and who has none yet) does not get a
//! session: the browser gets a short-lived, single-purpose pending cookie instead and
//! is sent here to verify a code (or a recovery code) or to enrol. A signed-in user may
//! also enrol voluntarily; finishing replaces their session with a new one (new id,
//! `mfa` set). Attempts per pending sign-in are bounded.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use moka::future::Cache;
use time::OffsetDateTime;

use super::{Login, pages, redirect_with_cookie, totp};
use crate::crypto::random::random_hex256;
use crate::crypto::{RecordOwner, record_aad};
use crate::proxy::Body;
use crate::session::{self, cookie_values};
use crate::store::{AuthMethod, RecoveryCodeHash, SessionHash, UserId, WorkspaceId};

/// The second-factor path.
pub const MFA_PATH: &str = "/.portcullis/2fa";
/// The pending-sign-in cookie.
const PENDING_COOKIE: &str = "__Host-portcullis-pending";
/// How long a pending sign-in lasts.
pub(super) const PENDING_TTL: Duration = Duration::from_secs(5 * 60);
/// Codes tried per pending sign-in before it is dropped.
const ATTEMPTS: u32 = 5;

/// What the pending sign-in still needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// A code from the enrolled authenticator, or a recovery code.
    Verify,
    /// Enrolment (required, or asked for by a signed-in user).
    Enrol,
    /// A new password: the old one expired under the compliance profile. Comes after
    /// the second factor, so a stolen password alone cannot change it.
    ChangePassword,
}

/// A sign-in waiting for its second factor.
pub(super) struct Pending {
    pub(super) user: UserId,
    pub(super) email: String,
    pub(super) return_to: String,
    pub(super) purpose: Purpose,
    /// Whether a second factor was already verified (for a password change).
    pub(super) mfa_done: bool,
    /// How the first factor was proven (the session records it).
    pub(super) auth_method: AuthMethod,
    pub(super) attempts: AtomicU32,
    /// The session this replaces, for a signed-in user who enrols.
    pub(super) replaces: Option<(WorkspaceId, SessionHash)>,
}

/// The store of pending sign-ins.
pub(super) type PendingSignIns = Cache<String, Arc<Pending>>;

impl Login {
    /// Starts a pending sign-in and sends the browser to the second-factor page.
    pub(super) async fn begin_second_factor(
        &self,
        user: UserId,
        email: &str,
        return_to: &str,
        purpose: Purpose,
        replaces: Option<(WorkspaceId, SessionHash)>,
        auth_method: AuthMethod,
    ) -> http::Response<Body> {
        let pending = Pending {
            user,
            email: email.to_owned(),
            return_to: return_to.to_owned(),
            purpose,
            mfa_done: false,
            auth_method,
            attempts: AtomicU32::new(0),
            replaces,
        };
        let cookie = self.start_pending(pending).await;
        redirect_with_cookie(MFA_PATH, cookie)
    }

    /// Stores a pending sign-in; returns the cookie that names it.
    pub(super) async fn start_pending(&self, pending: Pending) -> Option<HeaderValue> {
        let id = random_hex256();
        self.pending.insert(id.clone(), Arc::new(pending)).await;
        HeaderValue::from_str(&format!(
            "{PENDING_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            PENDING_TTL.as_secs()
        ))
        .ok()
    }

    /// What a correct password leads to: `None` for a session right away.
    pub(super) async fn second_factor_for(
        &self,
        user: UserId,
    ) -> Result<Option<Purpose>, crate::store::StoreError> {
        let organization = self.config.organization;
        if let Some(enrolment) = self.store.get_totp_enrolment(organization, user).await?
            && enrolment.confirmed_at.is_some()
        {
            return Ok(Some(Purpose::Verify));
        }
        let required = self
            .tenant_settings()
            .await?
            .iter()
            .any(|level| level.require_2fa == Some(true));
        Ok(required.then_some(Purpose::Enrol))
    }

    /// `GET /.portcullis/2fa`: the form for the pending sign-in, or enrolment for a
    /// signed-in user.
    pub(super) async fn second_factor_page(
        &self,
        headers: &HeaderMap,
        csrf: &str,
    ) -> http::Response<Body> {
        let now = crate::clock::now_utc();
        let Some(pending) = self.pending_of(headers).await else {
            return match self.signed_in_user(headers, now).await {
                Some((user, email, hash, workspace)) => {
                    self.begin_second_factor(
                        user,
                        &email,
                        "/",
                        Purpose::Enrol,
                        Some((workspace, hash)),
                        AuthMethod::Password,
                    )
                    .await
                }
                None => redirect_with_cookie(super::LOGIN_PATH, None),
            };
        };
        match pending.purpose {
            Purpose::Verify => pages::second_factor(StatusCode::OK, csrf, None),
            Purpose::Enrol => self.enrol_page(&pending, csrf, None, now).await,
            Purpose::ChangePassword => redirect_with_cookie(super::account::PASSWORD_PATH, None),
        }
    }

    async fn enrol_page(
        &self,
        pending: &Pending,
        csrf: &str,
        error: Option<&str>,
        now: OffsetDateTime,
    ) -> http::Response<Body> {
        let secret = totp::new_secret();
        let sealed = self.secrets.seal(&self.totp_aad(pending.user), &secret);
        let stored = match sealed {
            Ok(sealed) => self
                .store
                .upsert_totp_enrolment(self.config.organization, pending.user, &sealed, now)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        let shown = stored
            .and_then(|()| totp::enrolment(&secret, &pending.email).map_err(|err| err.to_string()));
        match shown {
            Ok((uri, qr)) => pages::enrol(StatusCode::OK, csrf, &uri, &qr, error),
            Err(err) => {
                tracing::error!(error = %err, "could not start TOTP enrolment");
                pages::message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again later",
                    "Two-factor setup is not possible right now.",
                )
            }
        }
    }

    /// `POST /.portcullis/2fa` with `code`.
    pub(super) async fn second_factor_submit(
        &self,
        headers: &HeaderMap,
        code: &str,
        csrf: &str,
    ) -> http::Response<Body> {
        let Some((id, pending)) = self.pending_with_id(headers).await else {
            return redirect_with_cookie(super::LOGIN_PATH, None);
        };
        if pending.purpose == Purpose::ChangePassword {
            return redirect_with_cookie(super::account::PASSWORD_PATH, None);
        }
        if pending.attempts.fetch_add(1, Ordering::Relaxed) >= ATTEMPTS {
            self.pending.invalidate(&id).await;
            tracing::warn!(user.id = %pending.user, "second factor: too many attempts");
            return pages::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Sign in again.",
            );
        }
        let now = crate::clock::now_utc();
        let accepted = match pending.purpose {
            Purpose::Verify => self.verify_code(pending.user, code, now).await,
            Purpose::Enrol | Purpose::ChangePassword => {
                self.confirm_enrolment(pending.user, code, now).await
            }
        };
        match accepted {
            Ok(false) => match pending.purpose {
                Purpose::Verify | Purpose::ChangePassword => {
                    pages::second_factor(StatusCode::UNAUTHORIZED, csrf, Some("Invalid code."))
                }
                Purpose::Enrol => {
                    self.enrol_page(
                        &pending,
                        csrf,
                        Some("Invalid code. Scan the new QR code and try again."),
                        now,
                    )
                    .await
                }
            },
            Ok(true) => {
                self.pending.invalidate(&id).await;
                self.finish(&pending, now).await
            }
            Err(err) => {
                tracing::error!(error = %err, "second factor could not be checked");
                pages::sign_in_unavailable()
            }
        }
    }

    async fn finish(&self, pending: &Pending, now: OffsetDateTime) -> http::Response<Body> {
        let expired = match self.password_expired(pending.user, now).await {
            Ok(expired) => {
                pending.replaces.is_none() && pending.auth_method == AuthMethod::Password && expired
            }
            Err(err) => {
                tracing::error!(error = %err, "could not check password expiry");
                return pages::sign_in_unavailable();
            }
        };
        if expired {
            return self.finish_with_password_change(pending, now).await;
        }
        if let Some((workspace, hash)) = &pending.replaces
            && let Err(err) = self.sessions.revoke(*workspace, hash, now).await
        {
            tracing::error!(error = %err, "could not retire the session being upgraded");
            return pages::sign_in_unavailable();
        }
        let cookie = match self
            .start_session(pending.user, pending.auth_method, true, now)
            .await
        {
            Ok(cookie) => cookie,
            Err(err) => {
                tracing::error!(error = %err, "could not start a session");
                return pages::sign_in_unavailable();
            }
        };
        tracing::info!(user.id = %pending.user, purpose = ?pending.purpose, "second factor completed");
        let mut response = match pending.purpose {
            Purpose::Verify | Purpose::ChangePassword => {
                redirect_with_cookie(&pending.return_to, None)
            }
            Purpose::Enrol => match self.issue_recovery_codes(pending.user, now).await {
                Ok(codes) => pages::recovery_codes(&codes, &pending.return_to),
                Err(err) => {
                    tracing::error!(error = %err, "could not store recovery codes");
                    redirect_with_cookie(&pending.return_to, None)
                }
            },
        };
        if let Some(value) = session::set_cookie(&cookie) {
            response
                .headers_mut()
                .append(http::header::SET_COOKIE, value);
        }
        response.headers_mut().append(
            http::header::SET_COOKIE,
            HeaderValue::from_static(
                "__Host-portcullis-pending=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
        );
        response
    }

    /// The second factor is done but the password expired: a new pending sign-in for
    /// the password change (after showing new recovery codes, for an enrolment).
    async fn finish_with_password_change(
        &self,
        pending: &Pending,
        now: OffsetDateTime,
    ) -> http::Response<Body> {
        let change = Pending {
            user: pending.user,
            email: pending.email.clone(),
            return_to: pending.return_to.clone(),
            purpose: Purpose::ChangePassword,
            mfa_done: true,
            auth_method: pending.auth_method,
            attempts: AtomicU32::new(0),
            replaces: None,
        };
        let cookie = self.start_pending(change).await;
        tracing::info!(user.id = %pending.user, "second factor completed; password expired");
        let mut response = match pending.purpose {
            Purpose::Enrol => match self.issue_recovery_codes(pending.user, now).await {
                Ok(codes) => pages::recovery_codes(&codes, super::account::PASSWORD_PATH),
                Err(err) => {
                    tracing::error!(error = %err, "could not store recovery codes");
                    redirect_with_cookie(super::account::PASSWORD_PATH, None)
                }
            },
            Purpose::Verify | Purpose::ChangePassword => {
                redirect_with_cookie(super::account::PASSWORD_PATH, None)
            }
        };
        if let Some(cookie) = cookie {
            response
                .headers_mut()
                .append(http::header::SET_COOKIE, cookie);
        }
        response
    }

    async fn verify_code(
        &self,
        user: UserId,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let organization = self.config.organization;
        if let Some(recovery) = totp::normalise_recovery_code(code) {
            return Ok(self
                .store
                .consume_recovery_code(
                    organization,
                    user,
                    &RecoveryCodeHash::of(recovery.as_bytes()),
                    now,
                )
                .await?);
        }
        let Some(enrolment) = self.store.get_totp_enrolment(organization, user).await? else {
            return Ok(false);
        };
        if enrolment.confirmed_at.is_none() {
            return Ok(false);
        }
        let secret = self
            .secrets
            .open(&self.totp_aad(user), &enrolment.sealed_seed)?;
        let Some(step) = totp::matching_step(&secret, code, unix_seconds(now)) else {
            return Ok(false);
        };
        // Atomic: a replayed or older step changes no row.
        Ok(self
            .store
            .accept_totp_step(organization, user, step)
            .await?)
    }

    async fn confirm_enrolment(
        &self,
        user: UserId,
        code: &str,
        now: OffsetDateTime,
    ) -> Result<bool, Box<dyn std::error::Error + Send + Sync>> {
        let organization = self.config.organization;
        let Some(enrolment) = self.store.get_totp_enrolment(organization, user).await? else {
            return Ok(false);
        };
        let secret = self
            .secrets
            .open(&self.totp_aad(user), &enrolment.sealed_seed)?;
        let Some(step) = totp::matching_step(&secret, code, unix_seconds(now)) else {
            return Ok(false);
        };
        Ok(self
            .store
            .confirm_totp_enrolment(organization, user, step, now)
            .await?)
    }

    async fn issue_recovery_codes(
        &self,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<String>, crate::store::StoreError> {
        let codes = totp::new_recovery_codes();
        let hashes: Vec<RecoveryCodeHash> = codes
            .iter()
            .map(|code| RecoveryCodeHash::of(code.as_bytes()))
            .collect();
        self.store
            .replace_recovery_codes(self.config.organization, user, &hashes, now)
            .await?;
        Ok(codes)
    }

    fn totp_aad(&self, user: UserId) -> Vec<u8> {
        record_aad(
            RecordOwner::Organization(self.config.organization),
            "totp_enrolments",
            user.as_uuid(),
        )
    }

    async fn pending_of(&self, headers: &HeaderMap) -> Option<Arc<Pending>> {
        self.pending_with_id(headers)
            .await
            .map(|(_, pending)| pending)
    }

    pub(super) async fn pending_with_id(
        &self,
        headers: &HeaderMap,
    ) -> Option<(String, Arc<Pending>)> {
        let mut values = cookie_values(headers, PENDING_COOKIE);
        let (Some(id), None) = (values.next(), values.next()) else {
            return None;
        };
        let pending = self.pending.get(id).await?;
        Some((id.to_owned(), pending))
    }

    async fn signed_in_user(
        &self,
        headers: &HeaderMap,
        now: OffsetDateTime,
    ) -> Option<(UserId, String, SessionHash, WorkspaceId)> {
        let (workspace, hash) = session::presented(headers)?;
        let found = self.sessions.find(workspace, &hash, now).await.ok()??;
        if found.mfa_done || found.auth_method != AuthMethod::Password {
            return None;
        }
        let user = self
            .store
            .get_user(self.config.organization, found.user_id)
            .await
            .ok()??;
        Some((user.id, user.email, hash, workspace))
    }
}

fn unix_seconds(now: OffsetDateTime) -> u64 {
    u64::try_from(now.unix_timestamp()).unwrap_or(0)
}
