//! Authorization: the principal, the route's resource and the request's facts become a
//! Cedar request; only an allow lets the request on, as an [`Authorized`] value that
//! the header step requires.
//!
//! The action is the route's per-method entry, else its default, else `http:<METHOD>`.
//! Every decision is logged with the policy revision that made it.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};
use std::time::SystemTime;

use http::Method;
use portcullis_policy::{Decision, Environment, Request, RequestContext};

use super::authn::Principal;
use super::reject::Reject;
use super::route::Route;
use crate::authz::PolicySnapshot;
use crate::authz::bindings::{Overlay, UserBindings};
use crate::config::RouteActions;
use crate::net::client_ip::ClientIp;

/// Proof that the policy engine allowed this principal on this route. Only
/// [`authorize`] makes one.
#[derive(Debug)]
pub struct Authorized {
    principal: Principal,
    /// The allow (shared with the engine's memo while it remembers it).
    decision: Arc<Decision>,
}

impl Authorized {
    /// Who was allowed.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The roles the principal holds on this route's resource (from the bindings the
    /// decision used), sorted and without duplicates.
    pub fn roles(&self) -> &[String] {
        self.decision.roles()
    }
}

/// The facts about this request that are not the principal's.
#[derive(Debug, Clone, Copy)]
pub struct RequestFacts<'a> {
    /// The HTTP method.
    pub method: &'a Method,
    /// The client address.
    pub client: ClientIp,
    /// The environment this gateway serves.
    pub environment: Environment,
    /// When the request arrived.
    pub now: SystemTime,
}

/// Asks the policy engine; anything but an allow is a [`Reject::Denied`].
pub fn authorize(
    snapshot: &PolicySnapshot,
    store_bindings: Option<&UserBindings>,
    principal: Principal,
    route: &Route,
    facts: RequestFacts<'_>,
) -> Result<Authorized, Reject> {
    let Some(resource) = route.resource_entity.clone() else {
        return Err(Reject::Internal("protected route has no resource entity"));
    };
    // Nothing is copied: the id, the action and the resource are shared.
    let request = Request {
        principal: Arc::clone(principal.user_id_shared()),
        action: action_for(&route.actions, facts.method),
        resource,
        context: RequestContext {
            ip: facts.client.addr(),
            mfa: principal.mfa(),
            auth_method: Cow::Borrowed(principal.auth_method()),
            session_age_seconds: facts
                .now
                .duration_since(principal.authenticated_at())
                .map_or(0, |age| age.as_secs()),
            environment: facts.environment,
            time: facts.now,
        },
    };
    let decision = match store_bindings {
        Some(bindings) => {
            let overlay = Overlay::new(snapshot.directory(), principal.user_id(), bindings);
            snapshot.engine().decide(&request, &overlay)
        }
        None => snapshot.engine().decide(&request, snapshot.directory()),
    };
    let revision = snapshot.engine().revision();
    if decision.is_allowed() {
        tracing::debug!(
            policy.revision = %revision, user.id = %request.principal, action = %request.action,
            resource = %request.resource, policies = ?decision.policies(), "allowed"
        );
        return Ok(Authorized {
            principal,
            decision,
        });
    }
    let explanation = snapshot.engine().explain(&decision);
    tracing::info!(
        policy.revision = %revision, user.id = %request.principal, action = %request.action,
        resource = %request.resource, basis = ?decision.basis(), policies = ?decision.policies(),
        errors = decision.errors().len(), "denied: {explanation}"
    );
    Err(Reject::Denied {
        basis: format!("{:?}", decision.basis()),
    })
}

/// The Cedar action for a request on a route.
pub fn action_for(actions: &RouteActions, method: &Method) -> Arc<str> {
    actions
        .by_method
        .iter()
        .find(|(configured, _)| configured == method)
        .map(|(_, action)| Arc::clone(action))
        .or_else(|| actions.default.clone())
        .unwrap_or_else(|| http_action(method))
}

/// `http:<METHOD>` for the common methods, made once and shared.
static HTTP_ACTIONS: LazyLock<[(Method, Arc<str>); 7]> = LazyLock::new(|| {
    [
        Method::GET,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::HEAD,
        Method::OPTIONS,
    ]
    .map(|method| {
        let action = Arc::from(format!("http:{method}"));
        (method, action)
    })
});

/// `http:<METHOD>`.
fn http_action(method: &Method) -> Arc<str> {
    HTTP_ACTIONS
        .iter()
        .find(|(common, _)| common == method)
        .map_or_else(
            || Arc::from(format!("http:{}", method.as_str())),
            |(_, action)| Arc::clone(action),
        )
}

#[cfg(test)]
mod tests {
    use http::Method;

    use super::action_for;
    use crate::authz::parse_entity;
    use crate::config::RouteActions;

    #[test]
    fn actions_per_method_then_default_then_http_method() {
        let none = RouteActions::default();
        assert_eq!(&*action_for(&none, &Method::GET), "http:GET");
        assert_eq!(&*action_for(&none, &Method::DELETE), "http:DELETE");
        let brew = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(&*action_for(&none, &brew), "http:BREW");
        for method in [Method::PUT, Method::PATCH, Method::HEAD, Method::OPTIONS] {
            assert_eq!(*action_for(&none, &method), *format!("http:{method}"));
        }
        let configured = RouteActions {
            default: Some("read".into()),
            by_method: vec![(Method::POST, "operate".into())],
        };
        assert_eq!(&*action_for(&configured, &Method::POST), "operate");
        assert_eq!(&*action_for(&configured, &Method::GET), "read");
    }

    #[test]
    fn resource_entities() {
        let entity = parse_entity("App::\"wiki\"").map(|e| e.to_string());
        assert_eq!(entity.as_deref(), Some("App::\"wiki\""));
        assert!(parse_entity("wiki").is_none());
    }
}
