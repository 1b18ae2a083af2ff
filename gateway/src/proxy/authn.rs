//! Authentication: who is calling. The result is a [`Principal`] or a refusal.
//!
//! Session cookies and API tokens plug in here (accounts and sessions issue); until a
//! credential source exists, a protected route has no way to authenticate anyone and
//! refuses every request (fail closed).

use std::time::SystemTime;

use super::reject::Reject;
use super::route::Route;

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    user_id: String,
    auth_method: &'static str,
    mfa: bool,
    authenticated_at: SystemTime,
}

impl Principal {
    /// The user's id (the Cedar principal is `User::"<id>"`).
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// How the caller signed in: `password`, `oidc`, `saml`, `email_code`, `api_token`.
    pub fn auth_method(&self) -> &'static str {
        self.auth_method
    }

    /// Whether a second factor was completed.
    pub fn mfa(&self) -> bool {
        self.mfa
    }

    /// When the caller signed in.
    pub fn authenticated_at(&self) -> SystemTime {
        self.authenticated_at
    }
}

/// Finds the principal for a request to a protected route.
pub fn authenticate(route: &Route) -> Result<Principal, Reject> {
    Err(Reject::Unauthenticated {
        resource: route.resource.clone().unwrap_or_default(),
    })
}
