//! What the gateway asks: who, what action, on which resource, in which context.

use std::fmt;
use std::net::IpAddr;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::directory::EntityRef;

/// One authorization question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The user id; the principal is `User::"<principal>"`.
    pub principal: String,
    /// The action name, e.g. `http:GET` or `connection.use` (`Action::"<action>"`).
    pub action: String,
    /// The resource, e.g. `App::"acme/billing"`.
    pub resource: EntityRef,
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
    pub auth_method: String,
    /// Seconds since the session signed in (`context.sessionAgeSeconds`).
    pub session_age_seconds: u64,
    /// The environment the gateway serves (`context.environment`).
    pub environment: Environment,
    /// When the request arrived (`context.time`, a Cedar `datetime`).
    pub time: SystemTime,
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
