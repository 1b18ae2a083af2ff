//! The login, logout and message pages: plain server-rendered HTML, no scripts, no
//! external assets, labelled fields, and headers that keep them out of frames and caches.

use http::{HeaderValue, Response, StatusCode, header};

use crate::proxy::{Body, full};

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem}\
label{display:block;margin-top:1rem}input{width:100%;padding:.5rem;font-size:1rem}\
button{margin-top:1.5rem;padding:.6rem 1.2rem;font-size:1rem}.error{color:#a00}";

fn page(status: StatusCode, title: &str, body: &str) -> Response<Body> {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n",
        title = escape(title),
    );
    let mut response = Response::new(full(html));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// What the sign-in page offers besides the password form.
#[derive(Debug, Clone, Default)]
pub struct LoginOptions {
    /// The password form (off where single sign-on is required).
    pub password: bool,
    /// A one-time code by email.
    pub email_code: bool,
    /// Single sign-on buttons: (start path, label).
    pub providers: Vec<(String, String)>,
}

/// The sign-in form. `error` is shown above it (already generic).
pub fn login(
    status: StatusCode,
    csrf: &str,
    return_to: &str,
    email: &str,
    error: Option<&str>,
    options: &LoginOptions,
) -> Response<Body> {
    let error = error_block(error);
    let providers: String = options
        .providers
        .iter()
        .map(|(path, label)| {
            format!(
                "<li><a class=\"sso\" href=\"{}\">Sign in with {}</a></li>",
                escape(path),
                escape(label)
            )
        })
        .collect();
    let providers = if providers.is_empty() {
        String::new()
    } else {
        format!("<ul id=\"providers\">{providers}</ul>")
    };
    let password = if options.password {
        format!(
            "<form method=\"post\" action=\"/.portcullis/login\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"rd\" value=\"{return_to}\">\
             <label for=\"email\">Email</label>\
             <input id=\"email\" name=\"email\" type=\"email\" autocomplete=\"username\" required value=\"{email}\">\
             <label for=\"password\">Password</label>\
             <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required>\
             <button type=\"submit\">Sign in</button></form>",
            csrf = escape(csrf),
            return_to = escape(return_to),
            email = escape(email),
        )
    } else {
        String::new()
    };
    let email_code = if options.email_code {
        format!(
            "<h2>Or get a code by email</h2><form method=\"post\" action=\"/.portcullis/email-code\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"rd\" value=\"{return_to}\">\
             <label for=\"code-email\">Email</label>\
             <input id=\"code-email\" name=\"email\" type=\"email\" autocomplete=\"username\" required>\
             <button type=\"submit\">Email me a sign-in code</button></form>",
            csrf = escape(csrf),
            return_to = escape(return_to),
        )
    } else {
        String::new()
    };
    page(
        status,
        "Sign in",
        &format!("<h1>Sign in</h1>{error}{providers}{password}{email_code}"),
    )
}

/// The form for a code sent by email.
pub fn email_code(status: StatusCode, csrf: &str, error: Option<&str>) -> Response<Body> {
    page(
        status,
        "Check your email",
        &format!(
            "<h1>Check your email</h1>{}<p>If the address has an account here, we sent it a sign-in \
             code. It works for 10 minutes, in this browser only.</p>\
             <form method=\"post\" action=\"/.portcullis/email-code\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label for=\"code\">Sign-in code</label>\
             <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required>\
             <button type=\"submit\">Sign in</button></form>",
            error_block(error),
            escape(csrf)
        ),
    )
}

/// The sign-out confirmation (sign-out itself is a POST).
pub fn logout(csrf: &str) -> Response<Body> {
    page(
        StatusCode::OK,
        "Sign out",
        &format!(
            "<h1>Sign out</h1><form method=\"post\" action=\"/.portcullis/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">Sign out</button></form>",
            escape(csrf)
        ),
    )
}

/// The second-factor form: a code from the authenticator app, or a recovery code.
pub fn second_factor(status: StatusCode, csrf: &str, error: Option<&str>) -> Response<Body> {
    page(
        status,
        "Two-factor sign-in",
        &format!(
            "<h1>Two-factor sign-in</h1>{}<form method=\"post\" action=\"/.portcullis/2fa\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label for=\"code\">Code from your authenticator app, or a recovery code</label>\
             <input id=\"code\" name=\"code\" autocomplete=\"one-time-code\" required>\
             <button type=\"submit\">Continue</button></form>",
            error_block(error),
            escape(csrf)
        ),
    )
}

/// Enrolment: the QR code and `otpauth://` URI, and the form for the first code.
pub fn enrol(
    status: StatusCode,
    csrf: &str,
    uri: &str,
    qr_png_base64: &str,
    error: Option<&str>,
) -> Response<Body> {
    page(
        status,
        "Set up two-factor sign-in",
        &format!(
            "<h1>Set up two-factor sign-in</h1>{}<p>Scan this code with an authenticator app \
             (Google or Microsoft Authenticator, Authy, …), then enter the code it shows.</p>\
             <img alt=\"QR code for your authenticator app\" src=\"data:image/png;base64,{}\" width=\"200\" height=\"200\">\
             <p>Or enter this address in the app: <code id=\"otpauth\">{}</code></p>\
             <form method=\"post\" action=\"/.portcullis/2fa\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <label for=\"code\">Code from the app</label>\
             <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" required>\
             <button type=\"submit\">Turn on</button></form>",
            error_block(error),
            escape(qr_png_base64),
            escape(uri),
            escape(csrf)
        ),
    )
}

/// The recovery codes, shown once after enrolment.
pub fn recovery_codes(codes: &[String], continue_to: &str) -> Response<Body> {
    let items: String = codes
        .iter()
        .map(|code| format!("<li><code>{}</code></li>", escape(code)))
        .collect();
    page(
        StatusCode::OK,
        "Recovery codes",
        &format!(
            "<h1>Two-factor sign-in is on</h1><p>Keep these recovery codes somewhere safe. \
             Each works once if you lose your authenticator. They are shown only now.</p>\
             <ul id=\"recovery-codes\">{items}</ul><p><a href=\"{}\">Continue</a></p>",
            escape(continue_to)
        ),
    )
}

/// Which password change form to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordForm {
    /// A signed-in user: the current password is asked again.
    Change,
    /// A sign-in whose password expired: already proven a moment ago.
    Expired,
    /// First run: the one-time setup token instead of a current password.
    Setup,
}

/// The password change form. `rules` is the policy in one sentence.
pub fn password(
    status: StatusCode,
    form: PasswordForm,
    csrf: &str,
    rules: &str,
    error: Option<&str>,
) -> Response<Body> {
    let (title, intro, action, first_field) = match form {
        PasswordForm::Change => (
            "Change password",
            "Changing your password signs you out everywhere else.",
            "/.portcullis/password",
            "<label for=\"current\">Current password</label>\
             <input id=\"current\" name=\"current\" type=\"password\" autocomplete=\"current-password\" required>",
        ),
        PasswordForm::Expired => (
            "Choose a new password",
            "Your password has expired. Choose a new one to continue.",
            "/.portcullis/password",
            "",
        ),
        PasswordForm::Setup => (
            "Set up the first administrator",
            "Enter the setup token that `portcullis init` printed, and choose a password.",
            "/.portcullis/setup",
            "<label for=\"token\">Setup token</label>\
             <input id=\"token\" name=\"token\" autocomplete=\"off\" required>",
        ),
    };
    page(
        status,
        title,
        &format!(
            "<h1>{title}</h1>{error}<p>{intro}</p><p id=\"rules\">{rules}</p>\
             <form method=\"post\" action=\"{action}\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             {first_field}\
             <label for=\"new\">New password</label>\
             <input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" required minlength=\"15\">\
             <label for=\"confirm\">New password again</label>\
             <input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
             <button type=\"submit\">Save password</button></form>",
            title = escape(title),
            error = error_block(error),
            intro = escape(intro),
            rules = escape(rules),
            csrf = escape(csrf),
        ),
    )
}

/// One row of the "my sessions" table.
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// The handle the revoke button posts (not the session id).
    pub handle: String,
    /// When it started (UTC, RFC 3339).
    pub started: String,
    /// Last activity (UTC, RFC 3339).
    pub last_seen: String,
    /// How it signed in, and whether with a second factor.
    pub method: String,
    /// Whether this is the session viewing the page.
    pub current: bool,
}

/// The signed-in user's account page: their sessions, their own timeouts, and links.
pub fn account(
    status: StatusCode,
    csrf: &str,
    email: &str,
    sessions: &[SessionRow],
    idle_minutes: Option<i64>,
    lifetime_hours: Option<i64>,
    notice: Option<&str>,
) -> Response<Body> {
    let csrf = escape(csrf);
    let rows: String = sessions
        .iter()
        .map(|row| {
            let action = if row.current {
                "This session".to_owned()
            } else {
                format!(
                    "<form method=\"post\" action=\"/.portcullis/account\">\
                     <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
                     <input type=\"hidden\" name=\"action\" value=\"revoke\">\
                     <input type=\"hidden\" name=\"session\" value=\"{handle}\">\
                     <button type=\"submit\">Sign out</button></form>",
                    handle = escape(&row.handle)
                )
            };
            format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                escape(&row.started),
                escape(&row.last_seen),
                escape(&row.method)
            )
        })
        .collect();
    let value = |v: Option<i64>| v.map_or_else(String::new, |v| v.to_string());
    page(
        status,
        "Your account",
        &format!(
            "<h1>Your account</h1>{notice}<p>Signed in as <strong id=\"email\">{email}</strong>.</p>\
             <h2>Your sessions</h2><table id=\"sessions\"><thead><tr><th scope=\"col\">Started (UTC)</th>\
             <th scope=\"col\">Last active (UTC)</th><th scope=\"col\">Method</th><th scope=\"col\"></th></tr></thead>\
             <tbody>{rows}</tbody></table>\
             <form method=\"post\" action=\"/.portcullis/account\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"action\" value=\"revoke-others\">\
             <button type=\"submit\">Sign out all other sessions</button></form>\
             <h2>Session timeouts</h2><p>You may choose shorter timeouts than your organization's; \
             they apply from your next sign-in. Leave a field empty for the organization's value.</p>\
             <form method=\"post\" action=\"/.portcullis/account\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"action\" value=\"timeouts\">\
             <label for=\"idle\">Sign me out after this many idle minutes</label>\
             <input id=\"idle\" name=\"idle_minutes\" inputmode=\"numeric\" value=\"{idle}\">\
             <label for=\"lifetime\">End my sessions after this many hours</label>\
             <input id=\"lifetime\" name=\"lifetime_hours\" inputmode=\"numeric\" value=\"{lifetime}\">\
             <button type=\"submit\">Save timeouts</button></form>\
             <h2>Security</h2><ul><li><a href=\"/.portcullis/password\">Change password</a></li>\
             <li><a href=\"/.portcullis/2fa\">Set up two-factor sign-in</a></li>\
             <li><a href=\"/.portcullis/logout\">Sign out</a></li></ul>",
            notice = notice.map_or_else(String::new, |text| format!(
                "<p role=\"status\">{}</p>",
                escape(text)
            )),
            email = escape(email),
            idle = value(idle_minutes),
            lifetime = value(lifetime_hours),
        ),
    )
}

fn error_block(error: Option<&str>) -> String {
    error.map_or_else(String::new, |message| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(message))
    })
}

/// The page for a sign-in step that failed on our side (store, hashing pool): no
/// detail, the log has it.
pub fn sign_in_unavailable() -> Response<Body> {
    message(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again later",
        "Signing in is not possible right now.",
    )
}

/// A short message page.
pub fn message(status: StatusCode, title: &str, text: &str) -> Response<Body> {
    page(
        status,
        title,
        &format!("<h1>{}</h1><p>{}</p>", escape(title), escape(text)),
    )
}

#[cfg(test)]
mod tests {
    use super::escape;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
