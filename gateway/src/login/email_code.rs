//! Passwordless sign-in by a one-time code sent by email: `/.portcullis/email-code`.
//!
//! Asking for a code always looks the same, whether or not the address has an account:
//! the browser gets a pending cookie and the "check your email" form either way, and
//! the mail is sent in the background so timing does not tell either. The code (eight
//! digits, ten minutes, five tries) is kept only as a SHA-256 hash bound to the pending
//! id in this browser's cookie, so a code mailed to one browser's request is useless in
//! another. Requests are throttled per address and per client address. A correct code
//! leads to the organization's second factor exactly like a password does.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, StatusCode};
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use moka::future::Cache;
use sha2::{Digest, Sha256};

use super::{Form, Login, Origin, pages, redirect_with_cookie};
use crate::config::{EmailConfig, KeySource, SmtpSecurity};
use crate::crypto::constant_time_eq;
use crate::crypto::random::random_hex256;
use crate::proxy::Body;
use crate::session::cookie_values;
use crate::store::{AuthMethod, UserId};

/// The path of both steps (ask for a code, enter it).
pub const EMAIL_CODE_PATH: &str = "/.portcullis/email-code";
/// The cookie naming this browser's pending code.
const CODE_COOKIE: &str = "__Host-portcullis-code";
/// How long a code works.
const CODE_TTL: Duration = Duration::from_secs(10 * 60);
/// Tries per code.
const ATTEMPTS: u32 = 5;
/// Codes sent per address per window.
const SENDS_PER_ADDRESS: u32 = 5;
/// Codes asked for per client address per window.
const SENDS_PER_CLIENT: u32 = 20;

/// Why the mailer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MailerError {
    /// The SMTP password could not be read.
    #[error("cannot read the SMTP password from {0}")]
    Password(String),
    /// The extra CA file could not be read or parsed.
    #[error("cannot use the SMTP CA file `{0}`")]
    Ca(String),
    /// The sender address is invalid.
    #[error("email.from is not a valid address")]
    From,
    /// lettre refused the TLS settings.
    #[error("SMTP TLS settings: {0}")]
    Tls(String),
}

/// Sends sign-in codes.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// A mailer for `[email]`; `env` reads environment variables (for `env:` secrets).
    pub fn new(
        config: &EmailConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Mailer, MailerError> {
        let from: Mailbox = config.from.parse().map_err(|_| MailerError::From)?;
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
                .port(config.port)
                .timeout(Some(Duration::from_secs(15)));
        let tls = |host: &str| -> Result<TlsParameters, MailerError> {
            let mut params = TlsParameters::builder(host.to_owned());
            if let Some(ca) = &config.ca {
                let pem =
                    std::fs::read(ca).map_err(|_| MailerError::Ca(ca.display().to_string()))?;
                let certificate = Certificate::from_pem(&pem)
                    .map_err(|_| MailerError::Ca(ca.display().to_string()))?;
                params = params.add_root_certificate(certificate);
            }
            params
                .build_rustls()
                .map_err(|err| MailerError::Tls(err.to_string()))
        };
        builder = match config.security {
            SmtpSecurity::StartTls => builder.tls(Tls::Required(tls(&config.host)?)),
            SmtpSecurity::Tls => builder.tls(Tls::Wrapper(tls(&config.host)?)),
            SmtpSecurity::None => builder.tls(Tls::None),
        };
        if let Some((user, source)) = &config.credentials {
            let password = match source {
                KeySource::File(path) => std::fs::read_to_string(path)
                    .map_err(|_| MailerError::Password(format!("file `{}`", path.display())))?,
                KeySource::Env(name) => {
                    env(name).ok_or_else(|| MailerError::Password(format!("`{name}` (not set)")))?
                }
            };
            let password = zeroize::Zeroizing::new(password);
            builder = builder.credentials(Credentials::new(
                user.clone(),
                password.trim_end_matches(['\r', '\n']).to_owned(),
            ));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    async fn send_code(&self, to: &str, code: &str) -> Result<(), String> {
        let to: Mailbox = to
            .parse()
            .map_err(|_| "not a deliverable address".to_owned())?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject("Your sign-in code")
            .body(format!(
                "Your sign-in code is {code}\n\nIt works once, in the browser that asked for it, \
                 for 10 minutes. If you did not ask for it, ignore this message.\n"
            ))
            .map_err(|err| err.to_string())?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|err| err.to_string())
    }
}

/// A code waiting to be entered.
pub(super) struct PendingCode {
    /// The account, or `None` when the address has none (the code then never works).
    user: Option<UserId>,
    email: String,
    code_hash: [u8; 32],
    return_to: String,
    attempts: AtomicU32,
}

/// Email codes: the mailer and the pending codes.
pub struct EmailCodes {
    mailer: Arc<Mailer>,
    pending: Cache<String, Arc<PendingCode>>,
}

impl EmailCodes {
    /// Email codes sent by `mailer`.
    pub fn new(mailer: Mailer) -> EmailCodes {
        EmailCodes {
            mailer: Arc::new(mailer),
            pending: Cache::builder()
                .max_capacity(100_000)
                .time_to_live(CODE_TTL)
                .build(),
        }
    }
}

/// Eight random decimal digits, uniformly.
fn new_code() -> String {
    loop {
        let value: u32 = rand::random();
        // Reject the top sliver so every code is equally likely.
        if value < 4_200_000_000 {
            return format!("{:08}", value % 100_000_000);
        }
    }
}

/// The stored form of a code: bound to the pending id, so it is useless elsewhere.
fn code_hash(pending_id: &str, code: &str) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(pending_id.as_bytes());
    hasher.update([0]);
    hasher.update(code.as_bytes());
    hasher.finalize().into()
}

/// Digits only, spaces and dashes ignored (people copy "1234 5678").
fn normalise_code(text: &str) -> Option<String> {
    let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    (digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit())).then_some(digits)
}

impl Login {
    /// `POST /.portcullis/email-code`: `email` asks for a code, `code` enters one.
    pub(super) async fn email_code_submit(
        &self,
        headers: &HeaderMap,
        form: &Form,
        origin: &Origin,
    ) -> http::Response<Body> {
        let Some(codes) = &self.email_codes else {
            return pages::message(
                StatusCode::NOT_FOUND,
                "Not available",
                "Sign-in codes by email are not enabled here.",
            );
        };
        if let Some(refusal) = self.refuse_local_sign_in().await {
            return refusal;
        }
        let csrf = form.get("csrf").unwrap_or_default();
        match form.get("code") {
            None => self.send_code(codes, form, origin, csrf).await,
            Some(code) => self.check_code(codes, headers, code, csrf).await,
        }
    }

    async fn send_code(
        &self,
        codes: &EmailCodes,
        form: &Form,
        origin: &Origin,
        csrf: &str,
    ) -> http::Response<Body> {
        let email = form.get("email").unwrap_or_default().trim().to_lowercase();
        let return_to = super::redirect::return_target(form.get("rd"));
        if !email.contains('@') || email.len() > 254 {
            return pages::message(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Check the address",
                "Enter your email address.",
            );
        }
        let address_key = format!("code|{email}");
        let client_key = format!("code|{}", origin.client);
        if self.count(&address_key).await >= SENDS_PER_ADDRESS
            || self.count(&client_key).await >= SENDS_PER_CLIENT
        {
            tracing::warn!(client.ip = %origin.client, "sign-in code requests throttled");
            return pages::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                "Wait a few minutes and try again.",
            );
        }
        self.record_failure(&address_key).await;
        self.record_failure(&client_key).await;
        let user = match self
            .store
            .find_user_by_email(self.config.organization, &email)
            .await
        {
            Ok(user) => user.filter(|user| !user.disabled).map(|user| user.id),
            Err(err) => {
                tracing::error!(error = %err, "could not look up a sign-in code address");
                return pages::sign_in_unavailable();
            }
        };
        let id = random_hex256();
        let code = new_code();
        codes
            .pending
            .insert(
                id.clone(),
                Arc::new(PendingCode {
                    user,
                    email: email.clone(),
                    code_hash: code_hash(&id, &code),
                    return_to,
                    attempts: AtomicU32::new(0),
                }),
            )
            .await;
        if user.is_some() {
            let mailer = Arc::clone(&codes.mailer);
            tokio::spawn(async move {
                match mailer.send_code(&email, &code).await {
                    Ok(()) => tracing::info!("sign-in code sent"),
                    Err(err) => tracing::error!(error = %err, "could not send a sign-in code"),
                }
            });
        }
        let cookie = HeaderValue::from_str(&format!(
            "{CODE_COOKIE}={id}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
            CODE_TTL.as_secs()
        ))
        .ok();
        let mut response = pages::email_code(StatusCode::OK, csrf, None);
        if let Some(cookie) = cookie {
            response
                .headers_mut()
                .append(http::header::SET_COOKIE, cookie);
        }
        response
    }

    async fn check_code(
        &self,
        codes: &EmailCodes,
        headers: &HeaderMap,
        code: &str,
        csrf: &str,
    ) -> http::Response<Body> {
        let mut ids = cookie_values(headers, CODE_COOKIE);
        let (Some(id), None) = (ids.next(), ids.next()) else {
            return redirect_with_cookie(super::LOGIN_PATH, None);
        };
        let Some(pending) = codes.pending.get(id).await else {
            return pages::message(
                StatusCode::UNAUTHORIZED,
                "Code expired",
                "Ask for a new code.",
            );
        };
        if pending.attempts.fetch_add(1, Ordering::Relaxed) >= ATTEMPTS {
            codes.pending.invalidate(id).await;
            return pages::message(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Ask for a new code.",
            );
        }
        let matches = normalise_code(code)
            .is_some_and(|code| constant_time_eq(&code_hash(id, &code), &pending.code_hash));
        let Some(user) = pending.user.filter(|_| matches) else {
            tracing::info!("sign-in code refused");
            return pages::email_code(StatusCode::UNAUTHORIZED, csrf, Some("Invalid code."));
        };
        // Single use: gone before anything else happens.
        codes.pending.invalidate(id).await;
        let clear = HeaderValue::from_static(
            "__Host-portcullis-code=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0",
        );
        let mut response = self
            .complete_first_factor(
                user,
                &pending.email,
                &pending.return_to,
                AuthMethod::EmailCode,
                false,
            )
            .await;
        response
            .headers_mut()
            .append(http::header::SET_COOKIE, clear);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::{code_hash, new_code, normalise_code};

    #[test]
    fn codes_are_eight_digits_and_bound_to_their_pending_id() {
        for _ in 0..100 {
            let code = new_code();
            assert_eq!(code.len(), 8);
            assert!(code.bytes().all(|b| b.is_ascii_digit()));
        }
        assert_eq!(normalise_code("1234 5678").as_deref(), Some("12345678"));
        assert_eq!(normalise_code("1234-5678").as_deref(), Some("12345678"));
        assert_eq!(normalise_code("1234567"), None);
        assert_eq!(normalise_code("12345678a"), None);
        assert_eq!(
            normalise_code("１２３４５６７８"),
            None,
            "ASCII digits only"
        );
        assert_ne!(code_hash("a", "12345678"), code_hash("b", "12345678"));
        assert_eq!(code_hash("a", "12345678"), code_hash("a", "12345678"));
    }
}
