//! Authorization: the principal, the route's resource and the request's facts become a
//! Cedar request; only an allow lets the request on, as an [`Authorized`] value that
//! the header step requires.
//!
//! The action is the route's per-method entry, else its default, else `http:<METHOD>`.
//! Every decision is logged with the policy revision that made it.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::SystemTime;

use http::Method;
use portcullis_policy::{ContextKey, Decision, EntityRef, Environment, Request, RequestContext};

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

/// The last decision a connection's requests got, held together with every input it
/// was made from, so that the connection's next request with the very same inputs
/// gets it without asking the engine (which would look up the resource's ancestors
/// and the principal's bindings on them, then hash and compare all of it to find
/// the same decision in its own memo).
///
/// The inputs are the policy snapshot (the bundle and the directory), the
/// principal's role bindings, the principal, the action, the resource and the context
/// fields the action's policies read ([`portcullis_policy::Engine::context_key`]).
/// All but the last are shared values compared by address: they are held here, so an
/// address cannot be freed and reused for another value while it is remembered, and
/// the same address is the same value. A reload, new bindings or another principal
/// is another address, so it is asked about afresh.
#[derive(Default)]
pub struct LastDecision(Mutex<Option<Remembered>>);

impl std::fmt::Debug for LastDecision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LastDecision").finish_non_exhaustive()
    }
}

struct Remembered {
    snapshot: Arc<PolicySnapshot>,
    bindings: Option<Arc<UserBindings>>,
    principal: Arc<str>,
    action: Arc<str>,
    resource: Arc<EntityRef>,
    context: ContextKey,
    decision: Arc<Decision>,
}

impl Remembered {
    fn is_for(
        &self,
        snapshot: &Arc<PolicySnapshot>,
        bindings: Option<&Arc<UserBindings>>,
        request: &Request,
        context: &ContextKey,
    ) -> bool {
        Arc::ptr_eq(&self.snapshot, snapshot)
            && match (&self.bindings, bindings) {
                (None, None) => true,
                (Some(held), Some(given)) => Arc::ptr_eq(held, given),
                _ => false,
            }
            && Arc::ptr_eq(&self.principal, &request.principal)
            && Arc::ptr_eq(&self.action, &request.action)
            && Arc::ptr_eq(&self.resource, &request.resource)
            && self.context == *context
    }
}

impl LastDecision {
    /// The engine's decision on `request`, remembered for the next one when the
    /// engine would remember it too.
    fn decide(
        &self,
        snapshot: &Arc<PolicySnapshot>,
        bindings: Option<&Arc<UserBindings>>,
        request: &Request,
    ) -> Arc<Decision> {
        let engine = snapshot.engine();
        let Some(context) = engine.context_key(request) else {
            return decide(snapshot, bindings, request);
        };
        if let Ok(slot) = self.0.lock()
            && let Some(last) = slot.as_ref()
            && last.is_for(snapshot, bindings, request, &context)
        {
            return Arc::clone(&last.decision);
        }
        let decision = decide(snapshot, bindings, request);
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(Remembered {
                snapshot: Arc::clone(snapshot),
                bindings: bindings.cloned(),
                principal: Arc::clone(&request.principal),
                action: Arc::clone(&request.action),
                resource: Arc::clone(&request.resource),
                context,
                decision: Arc::clone(&decision),
            });
        }
        decision
    }
}

/// The engine's decision on `request`, with the principal's `bindings` over the
/// snapshot's directory.
fn decide(
    snapshot: &PolicySnapshot,
    bindings: Option<&Arc<UserBindings>>,
    request: &Request,
) -> Arc<Decision> {
    match bindings {
        Some(bindings) => {
            let overlay = Overlay::new(snapshot.directory(), &request.principal, bindings);
            snapshot.engine().decide(request, &overlay)
        }
        None => snapshot.engine().decide(request, snapshot.directory()),
    }
}

/// Asks the policy engine (or the connection's `last` decision, when every input is
/// the same); anything but an allow is a [`Reject::Denied`].
pub fn authorize(
    snapshot: &Arc<PolicySnapshot>,
    store_bindings: Option<&Arc<UserBindings>>,
    principal: Principal,
    route: &Route,
    facts: RequestFacts<'_>,
    last: &LastDecision,
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
    let decision = last.decide(snapshot, store_bindings, &request);
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
    use std::borrow::Cow;
    use std::sync::Arc;

    use http::Method;
    use portcullis_policy::{Decision, EntityRef, Environment, Request, RequestContext};

    use super::{LastDecision, action_for};
    use crate::authz::bindings::UserBindings;
    use crate::authz::{PolicySnapshot, load_snapshot, parse_entity};
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

    /// A snapshot of the repository's bundle where `bound` has `role` on `App::"wiki"`.
    fn snapshot(dir: &std::path::Path, bound: &str, role: &str) -> Arc<PolicySnapshot> {
        let bindings = dir.join("bindings.json");
        let text = format!(
            r#"{{"entities": [{{"type": "App", "id": "wiki"}}], "bindings": [{{"user": "{bound}", "role": "{role}", "scope": {{"type": "App", "id": "wiki"}}}}]}}"#
        );
        std::fs::write(&bindings, text).unwrap();
        let policies = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        Arc::new(load_snapshot(&policies, Some(&bindings), &[]).unwrap())
    }

    fn request(principal: &Arc<str>, age: u64) -> Request {
        Request {
            principal: Arc::clone(principal),
            action: Arc::from("http:GET"),
            resource: Arc::new(EntityRef::new("App", "wiki")),
            context: RequestContext {
                ip: std::net::Ipv4Addr::LOCALHOST.into(),
                mfa: false,
                auth_method: Cow::Borrowed("password"),
                session_age_seconds: age,
                environment: Environment::Dev,
                time: crate::clock::system_now(),
            },
        }
    }

    /// A connection's remembered decision is handed out only for the very same
    /// inputs: any other principal, snapshot, bindings, action, resource or observed
    /// context field gets the engine's own answer.
    #[test]
    fn a_remembered_decision_needs_every_input_to_be_the_same() {
        let dir = std::env::temp_dir().join(format!("portcullis-last-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let reader = snapshot(&dir, "u-1", "analyst");
        let nobody = snapshot(&dir, "u-3", "analyst");
        let _ = std::fs::remove_dir_all(&dir);
        let last = LastDecision::default();
        let u1: Arc<str> = Arc::from("u-1");
        let allowed = |decision: &Arc<Decision>| decision.is_allowed();

        // Another request on `first`'s action and resource (the same values).
        let same_route = |first: &Request, principal: &Arc<str>, age: u64| Request {
            action: Arc::clone(&first.action),
            resource: Arc::clone(&first.resource),
            ..request(principal, age)
        };
        let first = request(&u1, 100);
        let decision = last.decide(&reader, None, &first);
        assert!(allowed(&decision));
        // The same inputs, held by address: the very same decision.
        let again = same_route(&first, &u1, 100);
        assert!(Arc::ptr_eq(&decision, &last.decide(&reader, None, &again)));
        // An observed context field moved (the session-age guardrail reads it).
        let old = same_route(&first, &u1, 43_201);
        assert!(!allowed(&last.decide(&reader, None, &old)));
        assert!(allowed(&last.decide(&reader, None, &again)));
        // Another principal, or the same one in another value, is asked afresh.
        let u2: Arc<str> = Arc::from("u-2");
        let other = same_route(&first, &u2, 100);
        assert!(!allowed(&last.decide(&reader, None, &other)));
        assert!(allowed(&last.decide(&reader, None, &first)));
        // A reload: the binding is gone in the new snapshot.
        assert!(!allowed(&last.decide(&nobody, None, &first)));
        assert!(allowed(&last.decide(&reader, None, &first)));
        // The principal's own bindings from the store, laid over the snapshot.
        let mut granted = UserBindings::default();
        granted.insert(
            EntityRef::new("App", "wiki"),
            vec![portcullis_policy::RoleBinding {
                user: "u-2".into(),
                role: "admin".into(),
                scope: EntityRef::new("App", "wiki"),
            }],
        );
        let granted = Arc::new(granted);
        assert!(!allowed(&last.decide(&nobody, None, &other)));
        assert!(allowed(&last.decide(&nobody, Some(&granted), &other)));
        assert!(!allowed(&last.decide(
            &nobody,
            Some(&Arc::default()),
            &other
        )));
        // Another action or resource (one the bundle does not know denies).
        let write = Request {
            action: Arc::from("http:DELETE"),
            ..request(&u1, 100)
        };
        assert!(allowed(&last.decide(&reader, None, &first)));
        assert!(!allowed(&last.decide(&reader, None, &write)));
        let elsewhere = Request {
            resource: Arc::new(EntityRef::new("App", "billing")),
            ..request(&u1, 100)
        };
        assert!(allowed(&last.decide(&reader, None, &first)));
        assert!(!allowed(&last.decide(&reader, None, &elsewhere)));
    }

    #[test]
    fn resource_entities() {
        let entity = parse_entity("App::\"wiki\"").map(|e| e.to_string());
        assert_eq!(entity.as_deref(), Some("App::\"wiki\""));
        assert!(parse_entity("wiki").is_none());
    }
}
