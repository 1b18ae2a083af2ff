//! Pages for a person managing their own account: `/.portcullis/account` (their
//! sessions and their own, shorter timeouts), `/.portcullis/password` (change, or
//! replace an expired password) and `/.portcullis/setup` (the first administrator's
//! password, with the one-time token `portcullis init` printed).
//!
//! Every change is a CSRF-checked POST (see [`super::Login::handle`]). A password change
//! asks for the current password (throttled like sign-in), checks the organization's
//! profile and history, then ends every session of the user and starts a new one here.

use std::sync::atomic::Ordering;

use http::{HeaderMap, StatusCode};
use time::OffsetDateTime;

use super::mfa::Purpose;
use super::pages::{self, PasswordForm, SessionRow};
use super::password::{PasswordProfile, REUSED, Verified};
use super::{Form, LOGIN_PATH, Login, Origin, redirect_with_cookie};
use crate::proxy::Body;
use crate::session;
use crate::store::{AuthMethod, Session, SessionHash, SetupTokenHash, UserId, UserTimeouts};

/// The account page.
pub const ACCOUNT_PATH: &str = "/.portcullis/account";
/// The password change page.
pub const PASSWORD_PATH: &str = "/.portcullis/password";
/// The first-run setup page.
pub const SETUP_PATH: &str = "/.portcullis/setup";
/// The longest idle timeout a user may ask for, in minutes (a year; the organization's
/// value caps it anyway).
const MAX_IDLE_MINUTES: i64 = 525_600;
/// The longest lifetime a user may ask for, in hours (a year).
const MAX_LIFETIME_HOURS: i64 = 8_760;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A signed-in browser: its session and user.
struct SignedIn {
    hash: SessionHash,
    session: Session,
    email: String,
}

fn unavailable() -> http::Response<Body> {
    pages::message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "This is not possible right now.",
    )
}

fn rules_text(profile: PasswordProfile) -> &'static str {
    match profile {
        PasswordProfile::Nist => {
            "At least 15 characters. Long phrases are good; common passwords and your email address are refused."
        }
        PasswordProfile::Compliance => {
            "At least 15 characters with three of: lower-case, upper-case, digits, symbols. Not one of your last 4 passwords. Passwords expire after 90 days."
        }
    }
}

/// A whole number in `1..=max` from a form field; empty means unset.
fn bounded_number(field: Option<&str>, max: i64) -> Result<Option<i64>, ()> {
    match field.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<i64>() {
            Ok(value) if (1..=max).contains(&value) => Ok(Some(value)),
            _ => Err(()),
        },
    }
}

impl Login {
    /// The organization's effective password profile (the stricter of organization
    /// and workspace).
    pub(super) async fn password_profile(&self) -> Result<PasswordProfile, BoxError> {
        let [organization, workspace] = self.tenant_settings().await?;
        Ok(PasswordProfile::resolve(&[
            organization.password_profile.as_deref(),
            workspace.password_profile.as_deref(),
        ]))
    }

    /// Whether the user's password expired under the effective profile.
    pub(super) async fn password_expired(
        &self,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<bool, BoxError> {
        let profile = self.password_profile().await?;
        let Some(credential) = self
            .store
            .get_password(self.config.organization, user)
            .await?
        else {
            return Ok(false);
        };
        Ok(profile.is_expired(credential.changed_at, now))
    }

    async fn signed_in(&self, headers: &HeaderMap, now: OffsetDateTime) -> Option<SignedIn> {
        let (workspace, hash) = session::presented(headers)?;
        if workspace != self.config.workspace {
            return None;
        }
        let session = self.sessions.find(workspace, &hash, now).await.ok()??;
        let user = self
            .store
            .get_user(self.config.organization, session.user_id)
            .await
            .ok()??;
        if user.disabled {
            return None;
        }
        Some(SignedIn {
            hash,
            session,
            email: user.email,
        })
    }

    /// `GET /.portcullis/account`.
    pub(super) async fn account_page(
        &self,
        headers: &HeaderMap,
        csrf: &str,
        notice: Option<&str>,
    ) -> http::Response<Body> {
        let now = crate::clock::now_utc();
        let Some(me) = self.signed_in(headers, now).await else {
            return redirect_with_cookie(
                &format!("{LOGIN_PATH}?rd=%2F.portcullis%2Faccount"),
                None,
            );
        };
        let listed = self
            .store
            .list_user_sessions(self.config.workspace, me.session.user_id, now)
            .await;
        let timeouts = self
            .store
            .get_user_timeouts(self.config.organization, me.session.user_id)
            .await;
        let (Ok(listed), Ok(timeouts)) = (listed, timeouts) else {
            tracing::error!("could not read the account page's sessions or settings");
            return unavailable();
        };
        let rows: Vec<SessionRow> = listed
            .iter()
            .map(|session| SessionRow {
                handle: session::handle(&session.hash),
                started: rfc3339(session.created_at),
                last_seen: rfc3339(session.last_seen_at),
                method: format!(
                    "{}{}",
                    session.auth_method.as_str(),
                    if session.mfa_done { " + 2FA" } else { "" }
                ),
                current: session.hash == me.hash,
            })
            .collect();
        pages::account(
            StatusCode::OK,
            csrf,
            &me.email,
            &rows,
            timeouts.idle_timeout.map(|d| d.whole_minutes()),
            timeouts.absolute_lifetime.map(|d| d.whole_hours()),
            notice,
        )
    }

    /// `POST /.portcullis/account` with `action` = `revoke` (+ `session`),
    /// `revoke-others` or `timeouts` (+ `idle_minutes`, `lifetime_hours`).
    pub(super) async fn account_submit(
        &self,
        headers: &HeaderMap,
        form: &Form,
    ) -> http::Response<Body> {
        let now = crate::clock::now_utc();
        let csrf = form.get("csrf").unwrap_or_default();
        let Some(me) = self.signed_in(headers, now).await else {
            return redirect_with_cookie(LOGIN_PATH, None);
        };
        let user = me.session.user_id;
        match form.get("action") {
            Some(action @ ("revoke" | "revoke-others")) => {
                let wanted = form.get("session");
                let listed = match self
                    .store
                    .list_user_sessions(self.config.workspace, user, now)
                    .await
                {
                    Ok(listed) => listed,
                    Err(err) => {
                        tracing::error!(error = %err, "could not list sessions");
                        return unavailable();
                    }
                };
                let targets = listed.iter().filter(|session| {
                    session.hash != me.hash
                        && (action == "revoke-others"
                            || wanted
                                .is_some_and(|wanted| session::handle(&session.hash) == wanted))
                });
                let mut ended = 0;
                for target in targets {
                    match self
                        .sessions
                        .revoke(self.config.workspace, &target.hash, now)
                        .await
                    {
                        Ok(_) => ended += 1,
                        Err(err) => {
                            tracing::error!(error = %err, "could not revoke a session");
                            return unavailable();
                        }
                    }
                }
                tracing::info!(user.id = %user, sessions = ended, "user ended own sessions");
                let notice = if ended == 0 {
                    "No session was signed out."
                } else {
                    "Signed out."
                };
                self.account_page(headers, csrf, Some(notice)).await
            }
            Some("timeouts") => {
                let idle = bounded_number(form.get("idle_minutes"), MAX_IDLE_MINUTES);
                let lifetime = bounded_number(form.get("lifetime_hours"), MAX_LIFETIME_HOURS);
                let (Ok(idle), Ok(lifetime)) = (idle, lifetime) else {
                    return self
                        .account_page(
                            headers,
                            csrf,
                            Some("Timeouts must be whole numbers of at least 1 (or empty)."),
                        )
                        .await;
                };
                let timeouts = UserTimeouts {
                    idle_timeout: idle.map(time::Duration::minutes),
                    absolute_lifetime: lifetime.map(time::Duration::hours),
                };
                if let Err(err) = self
                    .store
                    .set_user_timeouts(self.config.organization, user, timeouts)
                    .await
                {
                    tracing::error!(error = %err, "could not save a user's timeouts");
                    return unavailable();
                }
                tracing::info!(user.id = %user, "user changed own session timeouts");
                self.account_page(
                    headers,
                    csrf,
                    Some("Saved. Your timeouts apply from your next sign-in."),
                )
                .await
            }
            _ => pages::message(StatusCode::BAD_REQUEST, "Unknown action", "Use the form."),
        }
    }

    /// `GET /.portcullis/password`: the change form for a signed-in user, or the new
    /// password form for a sign-in whose password expired.
    pub(super) async fn password_page(
        &self,
        headers: &HeaderMap,
        csrf: &str,
    ) -> http::Response<Body> {
        let now = crate::clock::now_utc();
        let Ok(profile) = self.password_profile().await else {
            return unavailable();
        };
        let rules = rules_text(profile);
        if let Some((_, pending)) = self.pending_with_id(headers).await
            && pending.purpose == Purpose::ChangePassword
        {
            return pages::password(StatusCode::OK, PasswordForm::Expired, csrf, rules, None);
        }
        match self.signed_in(headers, now).await {
            Some(me) if me.session.auth_method == AuthMethod::Password => {
                pages::password(StatusCode::OK, PasswordForm::Change, csrf, rules, None)
            }
            Some(_) => pages::message(
                StatusCode::CONFLICT,
                "No password here",
                "You signed in with single sign-on; change your password there.",
            ),
            None => redirect_with_cookie(LOGIN_PATH, None),
        }
    }

    /// `POST /.portcullis/password` with `current` (unless expired), `new`, `confirm`.
    pub(super) async fn password_submit(
        &self,
        headers: &HeaderMap,
        form: &Form,
        origin: &Origin,
    ) -> http::Response<Body> {
        let now = crate::clock::now_utc();
        let csrf = form.get("csrf").unwrap_or_default();
        let Ok(profile) = self.password_profile().await else {
            return unavailable();
        };
        let rules = rules_text(profile);
        let new = form.get("new").unwrap_or_default();
        let confirm = form.get("confirm").unwrap_or_default();

        // Who is changing: a pending sign-in with an expired password, or a signed-in
        // user who proves the current password again.
        let expired = match self.pending_with_id(headers).await {
            Some((id, pending)) if pending.purpose == Purpose::ChangePassword => {
                Some((id, pending))
            }
            _ => None,
        };
        let (kind, user, email, mfa_done, return_to) = if let Some((_, pending)) = &expired {
            if pending.attempts.fetch_add(1, Ordering::Relaxed) >= 5 {
                return pages::message(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many attempts",
                    "Sign in again.",
                );
            }
            (
                PasswordForm::Expired,
                pending.user,
                pending.email.clone(),
                pending.mfa_done,
                pending.return_to.clone(),
            )
        } else {
            let Some(me) = self.signed_in(headers, now).await else {
                return redirect_with_cookie(LOGIN_PATH, None);
            };
            if me.session.auth_method != AuthMethod::Password {
                return pages::message(
                    StatusCode::CONFLICT,
                    "No password here",
                    "You signed in with single sign-on; change your password there.",
                );
            }
            let pair_key = format!("{}|{}", origin.client, me.email);
            if self.count(&pair_key).await >= super::PAIR_LIMIT {
                return pages::password(
                    StatusCode::TOO_MANY_REQUESTS,
                    PasswordForm::Change,
                    csrf,
                    rules,
                    Some("Too many attempts. Wait a few minutes and try again."),
                );
            }
            let current = form.get("current").unwrap_or_default();
            match self.check_password(&me.email, current, now).await {
                Ok(Some(user)) if user == me.session.user_id => {}
                Ok(_) => {
                    self.record_failure(&pair_key).await;
                    tracing::info!(user.id = %me.session.user_id, "password change: wrong current password");
                    return pages::password(
                        StatusCode::UNAUTHORIZED,
                        PasswordForm::Change,
                        csrf,
                        rules,
                        Some("The current password is wrong."),
                    );
                }
                Err(err) => {
                    tracing::error!(error = %err, "password change could not be checked");
                    return unavailable();
                }
            }
            (
                PasswordForm::Change,
                me.session.user_id,
                me.email,
                me.session.mfa_done,
                ACCOUNT_PATH.to_owned(),
            )
        };

        let refuse = |message: &str| {
            pages::password(
                StatusCode::UNPROCESSABLE_ENTITY,
                kind,
                csrf,
                rules,
                Some(message),
            )
        };
        if new != confirm {
            return refuse("The two new passwords differ.");
        }
        if let Err(rule) = profile.check(new, &email) {
            return refuse(&format!("Choose another password: {rule}."));
        }
        match self.reuses_history(user, new, profile).await {
            Ok(false) => {}
            Ok(true) => return refuse(&format!("Choose another password: {REUSED}.")),
            Err(err) => {
                tracing::error!(error = %err, "password history could not be checked");
                return unavailable();
            }
        }
        let stored = async {
            let phc = self.hasher.hash(new).await?;
            self.store
                .set_password(self.config.organization, user, &phc, now)
                .await?;
            self.sessions
                .revoke_user(self.config.organization, user, now)
                .await?;
            self.start_session(user, AuthMethod::Password, mfa_done, now)
                .await
        }
        .await;
        let cookie = match stored {
            Ok(cookie) => cookie,
            Err(err) => {
                tracing::error!(error = %err, "could not change a password");
                return unavailable();
            }
        };
        if let Some((id, _)) = expired {
            self.pending.invalidate(&id).await;
        }
        tracing::info!(user.id = %user, "password changed; every other session ended");
        let mut response = redirect_with_cookie(&return_to, session::set_cookie(&cookie));
        response.headers_mut().append(
            http::header::SET_COOKIE,
            http::HeaderValue::from_static(
                "__Host-portcullis-pending=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
            ),
        );
        response
    }

    /// Whether `new` equals the current password or, under the compliance profile, one
    /// of the last passwords.
    async fn reuses_history(
        &self,
        user: UserId,
        new: &str,
        profile: PasswordProfile,
    ) -> Result<bool, BoxError> {
        let depth = profile.history_depth().max(1);
        let history = self
            .store
            .password_history(self.config.organization, user, depth)
            .await?;
        for phc in &history {
            if self.hasher.verify(Some(phc), new).await? != Verified::No {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `GET /.portcullis/setup`.
    pub(super) async fn setup_page(&self, csrf: &str) -> http::Response<Body> {
        let Ok(profile) = self.password_profile().await else {
            return unavailable();
        };
        pages::password(
            StatusCode::OK,
            PasswordForm::Setup,
            csrf,
            rules_text(profile),
            None,
        )
    }

    /// `POST /.portcullis/setup` with `token`, `new`, `confirm`: the first administrator
    /// chooses a password; the token then no longer works.
    pub(super) async fn setup_submit(&self, form: &Form, origin: &Origin) -> http::Response<Body> {
        let now = crate::clock::now_utc();
        let csrf = form.get("csrf").unwrap_or_default();
        let Ok(profile) = self.password_profile().await else {
            return unavailable();
        };
        let rules = rules_text(profile);
        let refuse = |status: StatusCode, message: &str| {
            pages::password(status, PasswordForm::Setup, csrf, rules, Some(message))
        };
        let address_key = format!("setup|{}", origin.client);
        if self.count(&address_key).await >= super::PAIR_LIMIT {
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts. Wait a few minutes and try again.",
            );
        }
        let token = form.get("token").unwrap_or_default().trim();
        let hash = SetupTokenHash::of(token.as_bytes());
        let user = match self
            .store
            .peek_setup_token(self.config.organization, &hash, now)
            .await
        {
            Ok(Some(user)) => user,
            Ok(None) => {
                self.record_failure(&address_key).await;
                tracing::info!(client.ip = %origin.client, "setup refused: unknown, used or expired token");
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    "This setup token is not valid: it is wrong, used or expired.",
                );
            }
            Err(err) => {
                tracing::error!(error = %err, "setup token could not be checked");
                return unavailable();
            }
        };
        let email = match self.store.get_user(self.config.organization, user).await {
            Ok(Some(user)) => user.email,
            Ok(None) => return unavailable(),
            Err(err) => {
                tracing::error!(error = %err, "setup user could not be read");
                return unavailable();
            }
        };
        let new = form.get("new").unwrap_or_default();
        if new != form.get("confirm").unwrap_or_default() {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                "The two new passwords differ.",
            );
        }
        if let Err(rule) = profile.check(new, &email) {
            return refuse(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("Choose another password: {rule}."),
            );
        }
        let redeemed = async {
            let phc = self.hasher.hash(new).await?;
            Ok::<_, BoxError>(
                self.store
                    .redeem_setup_token(self.config.organization, &hash, &phc, now)
                    .await?,
            )
        }
        .await;
        match redeemed {
            Ok(Some(user)) => {
                tracing::info!(user.id = %user, "first administrator set a password with the setup token");
                pages::message(
                    StatusCode::OK,
                    "Password set",
                    "Sign in with your email address and the new password.",
                )
            }
            Ok(None) => refuse(
                StatusCode::UNAUTHORIZED,
                "This setup token is not valid: it is wrong, used or expired.",
            ),
            Err(err) => {
                tracing::error!(error = %err, "setup could not be completed");
                unavailable()
            }
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::bounded_number;
    use crate::session::handle;
    use crate::store::SessionHash;

    #[test]
    fn form_numbers_are_bounded() {
        assert_eq!(bounded_number(None, 10), Ok(None));
        assert_eq!(bounded_number(Some(" "), 10), Ok(None));
        assert_eq!(bounded_number(Some("7"), 10), Ok(Some(7)));
        assert_eq!(bounded_number(Some("0"), 10), Err(()));
        assert_eq!(bounded_number(Some("-3"), 10), Err(()));
        assert_eq!(bounded_number(Some("11"), 10), Err(()));
        assert_eq!(bounded_number(Some("1e3"), 10), Err(()));
    }

    #[test]
    fn handles_are_half_the_hash() {
        let handle = handle(&SessionHash::of(b"abc"));
        assert_eq!(handle, "ba7816bf8f01cfea414140de5dae2223");
    }
}
