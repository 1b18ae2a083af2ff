//! What the gateway asks: who, what action, on which resource, in which context.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::datetime::parse_utc;
use crate::directory::EntityRef;
use crate::error::json_message;

/// One authorization question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The user id; the principal is `User::"<principal>"`. Shared, like the action
    /// and the resource, so the gateway asks without copying them per request.
    pub principal: Arc<str>,
    /// The action name, e.g. `http:GET` or `connection.use` (`Action::"<action>"`).
    pub action: Arc<str>,
    /// The resource, e.g. `App::"acme/billing"`.
    pub resource: Arc<EntityRef>,
    /// Facts about the request.
    pub context: RequestContext,
}

/// Facts about the request that policies may read (`context.*` in Cedar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestContext {
    /// The client address (`context.ip`); IPv4-mapped IPv6 is treated as IPv4.
    pub ip: IpAddr,
    /// Whether the session completed a second factor (`context.mfa`).
    pub mfa: bool,
    /// How the session signed in, e.g. `password`, `oidc`, `saml`,
    /// `email_code`, `api_token` (`context.authMethod`).
    pub auth_method: Cow<'static, str>,
    /// Seconds since the session signed in (`context.sessionAgeSeconds`).
    pub session_age_seconds: u64,
    /// The environment the gateway serves (`context.environment`).
    pub environment: Environment,
    /// When the request arrived (`context.time`, a Cedar `datetime`).
    pub time: SystemTime,
}

/// Why a JSON context could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContextError {
    /// A field is missing, unknown or of the wrong type.
    #[error("context: {0}")]
    Shape(String),
    /// `time` is not `YYYY-MM-DDThh:mm:ss[.SSS]Z`.
    #[error("context: time `{0}` is not `YYYY-MM-DDThh:mm:ssZ`")]
    Time(String),
}

/// The context as JSON, with the field names policies use.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawContext {
    ip: IpAddr,
    mfa: bool,
    auth_method: String,
    session_age_seconds: u64,
    environment: Environment,
    time: String,
}

impl RequestContext {
    /// Reads a context from JSON with the policy field names: `ip`, `mfa`,
    /// `authMethod`, `sessionAgeSeconds`, `environment` (`dev`/`test`/`prod`)
    /// and `time` (`YYYY-MM-DDThh:mm:ssZ`); all are required.
    pub fn from_json_value(value: serde_json::Value) -> Result<RequestContext, ContextError> {
        let raw: RawContext = serde_json::from_value(value)
            .map_err(|error| ContextError::Shape(json_message(&error)))?;
        let time = parse_utc(&raw.time).ok_or(ContextError::Time(raw.time))?;
        Ok(RequestContext {
            ip: raw.ip,
            mfa: raw.mfa,
            auth_method: raw.auth_method.into(),
            session_age_seconds: raw.session_age_seconds,
            environment: raw.environment,
            time,
        })
    }
}

/// The deployment environment, as policies see it (`"dev"`, `"test"`, `"prod"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    /// Development.
    Dev,
    /// Test or staging.
    Test,
    /// Production.
    Prod,
}

impl Environment {
    /// The value policies compare `context.environment` with.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Test => "test",
            Environment::Prod => "prod",
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};
    use serde_json::json;

    use super::*;

    fn check(value: serde_json::Value, expected: Expect) {
        let actual = match RequestContext::from_json_value(value) {
            Ok(context) => format!(
                "{} {} {} {} {}",
                context.ip,
                context.mfa,
                context.auth_method,
                context.session_age_seconds,
                context.environment
            ),
            Err(error) => error.to_string(),
        };
        expected.assert_eq(&actual);
    }

    #[test]
    fn reads_json_contexts() {
        let full = json!({"ip": "::1", "mfa": false, "authMethod": "oidc", "sessionAgeSeconds": 5, "environment": "prod", "time": "2026-11-22T10:00:00Z"});
        check(full.clone(), expect!["::1 false oidc 5 prod"]);
        let mut bad_time = full.clone();
        bad_time["time"] = json!("yesterday");
        check(
            bad_time,
            expect!["context: time `yesterday` is not `YYYY-MM-DDThh:mm:ssZ`"],
        );
        let mut bad_environment = full;
        bad_environment["environment"] = json!("staging");
        check(
            bad_environment,
            expect!["context: unknown variant `staging`, expected one of `dev`, `test`, `prod`"],
        );
        check(
            json!({"ip": "10.0.0.1"}),
            expect!["context: missing field `mfa`"],
        );
    }
}
