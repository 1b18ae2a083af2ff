//! Evaluating a request against one immutable bundle.
//!
//! Per request the engine builds a tiny Cedar world: the resource and its
//! ancestor chain (from the [`Directory`]), the user as a member of exactly the
//! roles bound on that chain, and the requested action. It evaluates only the
//! policies whose action scope can match the action (precomputed per action at
//! load, with that scope dropped since it holds), and of those gated on a role
//! (`principal in Role::"<role>"`) only the ones for roles bound on the chain,
//! so the cost does not grow with the number of role bindings. Any evaluation
//! error denies.
//!
//! Policies scoped to one resource (`resource == E`, `resource in E`,
//! `resource is T in E`) can only apply when `E` is the resource or on its
//! ancestor chain, so each action files them in an [`index::PolicyIndex`]
//! under `E` (as it files role-gated policies under the role when there are
//! too many roles to precompute a set per combination). A request evaluates
//! the always-applicable policies and, in a second set chosen (and cached) by
//! the index entries it matches, only the indexed policies that can apply:
//! the cost no longer grows with policies written for other resources.
//!
//! Of that world it hands Cedar only what those policies can observe
//! (see [`observe`]): the context fields they read, and the entities and
//! ancestors they can look up. Building Cedar values (the transitive closure
//! of the entities, extension values such as `ip(...)`) is most of the cost of
//! a decision, and what no policy can observe cannot change it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cedar_policy::{
    ActionConstraint, Authorizer, Context, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    Policy, PolicySet, PrincipalConstraint, ResourceConstraint, RestrictedExpression, Schema,
};
use serde::Serialize;

use crate::bundle::Bundle;
use crate::datetime::{format_utc, in_cedar_range};
use crate::directory::{Directory, EntityRef, Parent, RoleBinding};
use crate::engine::index::{IndexBuilder, PolicyIndex};
use crate::engine::memo::{Key, Memo, Observed};
use crate::engine::observe::{ContextReads, Field, Literals};
use crate::explain::Explanation;
use crate::request::{Request, RequestContext};
use crate::revision::Revision;

mod index;
mod memo;
mod observe;

/// The deepest resource hierarchy the engine follows; deeper means a data error.
const MAX_DEPTH: usize = 32;

/// The most roles an action's policies may be gated on for the engine to
/// precompute one policy set per combination of held roles (2^n sets).
const MAX_GATES: usize = 4;

/// Holds one loaded bundle and answers requests with it.
///
/// Hot reload swaps whole engines (e.g. an `Arc<Engine>`); an engine's bundle
/// never changes, so it remembers the decisions it made (module `memo`).
#[derive(Debug)]
pub struct Engine {
    bundle: Bundle,
    memo: Memo,
}

impl Engine {
    /// An engine deciding with `bundle`.
    pub fn new(bundle: Bundle) -> Engine {
        Engine {
            bundle,
            memo: Memo::new(),
        }
    }

    /// The bundle this engine decides with.
    pub fn bundle(&self) -> &Bundle {
        &self.bundle
    }

    /// The revision of the bundle, for health output, metrics and audit entries.
    pub fn revision(&self) -> &Revision {
        self.bundle.revision()
    }

    /// Decides `request`, reading role bindings and the hierarchy from `directory`.
    ///
    /// Default deny; `forbid` wins; any evaluation error denies and is reported.
    ///
    /// The decision is shared with every later request that has the same
    /// principal, action, ancestor chain, role bindings on it and observed
    /// context fields: those are all the evaluation can see.
    pub fn decide(&self, request: &Request, directory: &dyn Directory) -> Arc<Decision> {
        let compiled = self.bundle.compiled();
        let chain = match ancestor_chain(&request.resource, directory) {
            Ok(chain) => chain,
            Err(error) => return Arc::new(Decision::failed(vec![error], Vec::new())),
        };
        let bindings = bindings_on(&chain, request, directory);
        // An unknown action fails at once; and the time is checked even when no
        // policy reads it, so an out-of-range time must not find the decision of
        // an in-range one. Neither is remembered.
        let remembered = compiled
            .actions
            .get(&*request.action)
            .filter(|_| in_cedar_range(request.context.time));
        let Some(action) = remembered else {
            return Arc::new(decide_on(compiled, request, &chain, &bindings));
        };
        let key = Key {
            principal: &request.principal,
            action: &request.action,
            chain: &chain,
            bindings: &bindings,
            context: Observed::of_shared(request, action.context),
        };
        self.memo
            .get_or_insert(key, || decide_on(compiled, request, &chain, &bindings))
    }

    /// What a decision on `request` depends on in its context: the fields its
    /// action's policies read, as `request` has them. Two requests with the same
    /// principal, action and resource, decided against the same directory, get the
    /// same decision from this engine exactly when their keys are equal, so a caller
    /// may remember a decision under it (with those inputs held, not just compared).
    /// `None` when the engine does not remember decisions for `request` either (an
    /// unknown action, a time outside Cedar's range).
    pub fn context_key(&self, request: &Request) -> Option<ContextKey> {
        let action = self.bundle.compiled().actions.get(&*request.action)?;
        in_cedar_range(request.context.time)
            .then(|| ContextKey(Observed::of_shared(request, action.context)))
    }

    /// Why `decision` came out as it did, in words.    /// Why `decision` came out as it did, in words.
    pub fn explain(&self, decision: &Decision) -> Explanation {
        Explanation::new(&self.bundle, decision)
    }
}

/// The context fields a decision depends on ([`Engine::context_key`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextKey(Observed);

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// The request may proceed.
    Allow,
    /// The request must be refused.
    Deny,
}

/// What the effect rests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// Allowed: at least one permit matched and no forbid did.
    Permit,
    /// Denied: at least one forbid matched.
    Forbid,
    /// Denied: no permit matched (default deny).
    DefaultDeny,
    /// Denied: something could not be evaluated.
    Error,
}

/// Something that could not be evaluated; always makes the decision a deny.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EvalError {
    /// A policy's condition failed to evaluate (Cedar would have skipped it).
    #[error("policy `{policy}` failed to evaluate: {message}")]
    Policy {
        /// The policy's `@id`.
        policy: String,
        /// Cedar's message.
        message: String,
    },
    /// The resource (or one of its ancestors) is not in the directory.
    #[error("entity {entity} is not in the directory")]
    UnknownEntity {
        /// The missing entity.
        entity: String,
    },
    /// The hierarchy above the resource loops or is deeper than the engine follows.
    #[error("the hierarchy above {entity} has a cycle or is deeper than {MAX_DEPTH}")]
    Hierarchy {
        /// The requested resource.
        entity: String,
    },
    /// The request does not fit the schema (unknown action or entity type,
    /// action not applicable to the resource type, bad context).
    #[error("invalid request: {message}")]
    InvalidRequest {
        /// What does not fit.
        message: String,
    },
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    effect: Effect,
    basis: Basis,
    policies: Vec<String>,
    bindings: Vec<RoleBinding>,
    /// The roles of `bindings`, sorted, each once (derived, so not serialized: the
    /// machine-readable output stays as it was).
    #[serde(skip)]
    roles: Vec<String>,
    errors: Vec<EvalError>,
}

impl Decision {
    fn new(
        effect: Effect,
        basis: Basis,
        policies: Vec<String>,
        bindings: Vec<RoleBinding>,
        errors: Vec<EvalError>,
    ) -> Decision {
        let mut roles: Vec<String> = bindings
            .iter()
            .map(|binding| binding.role.clone())
            .collect();
        roles.sort();
        roles.dedup();
        Decision {
            effect,
            basis,
            policies,
            bindings,
            roles,
            errors,
        }
    }

    /// Allow or deny.
    pub fn effect(&self) -> Effect {
        self.effect
    }

    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// What the effect rests on.
    pub fn basis(&self) -> Basis {
        self.basis
    }

    /// The determining policies' `@id`s, sorted: the matching permits for an
    /// allow, the matching forbids for a forbid, the failing policies for an
    /// error, none for a default deny.
    pub fn policies(&self) -> &[String] {
        &self.policies
    }

    /// The role bindings that applied to the resource (the user's roles here).
    pub fn bindings(&self) -> &[RoleBinding] {
        &self.bindings
    }

    /// The names of the roles in [`Self::bindings`], sorted, each once (computed with
    /// the decision, so a remembered decision hands them out without work).
    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    /// What could not be evaluated.
    pub fn errors(&self) -> &[EvalError] {
        &self.errors
    }

    fn failed(errors: Vec<EvalError>, bindings: Vec<RoleBinding>) -> Decision {
        let mut policies: Vec<String> = errors
            .iter()
            .filter_map(|error| match error {
                EvalError::Policy { policy, .. } => Some(policy.clone()),
                _ => None,
            })
            .collect();
        policies.sort();
        policies.dedup();
        Decision::new(Effect::Deny, Basis::Error, policies, bindings, errors)
    }
}

/// What the bundle precomputes for fast decisions.
#[derive(Debug)]
pub(crate) struct Compiled {
    authorizer: Authorizer,
    entity_types: HashMap<String, EntityTypeName>,
    user_type: EntityTypeName,
    user_type_name: String,
    role_type: EntityTypeName,
    role_type_name: String,
    actions: HashMap<String, ActionSlice, foldhash::fast::RandomState>,
    /// Each policy's position in the bundle's policy set, the order Cedar
    /// reports errors in (kept when a request evaluates two sets).
    positions: HashMap<String, usize>,
}

/// One action: the policies whose action scope can match it, and what those
/// policies can observe of a request.
#[derive(Debug)]
struct ActionSlice {
    uid: EntityUid,
    resource_types: Vec<String>,
    /// Just the action entity, with those of its groups the policies name as
    /// ancestors; each request adds its entities to a copy (paying the
    /// transitive closure for those only).
    entities: Entities,
    /// Every policy of the slice (evaluating all of them is always correct,
    /// just slower).
    policies: PolicySet,
    /// The roles some unindexed policies are gated on (`principal in
    /// Role::"<role>"`), at most [`MAX_GATES`]; none when there are more
    /// (the gated policies are then indexed by role).
    gates: Vec<String>,
    /// For each combination of held gates (bit `i` for `gates[i]`), the
    /// unindexed policies that can apply: the ungated ones and those gated
    /// on a held role.
    by_gates: Vec<PolicySet>,
    /// The policies that can only apply when the chain holds an entity or
    /// the user holds a role.
    index: PolicyIndex,
    /// The context fields the policies read.
    context: ContextReads,
    /// The entities the policies name.
    literals: Literals,
}

impl Compiled {
    /// Precomputes per-action policy slices; fails if the schema lacks the
    /// entity types the engine relies on.
    pub(crate) fn new(schema: &Schema, policies: &PolicySet) -> Result<Compiled, String> {
        let entity_types: HashMap<String, EntityTypeName> = schema
            .entity_types()
            .map(|name| (name.to_string(), name.clone()))
            .collect();
        let required = |name: &str| {
            entity_types
                .get(name)
                .cloned()
                .ok_or_else(|| format!("error: the schema must declare entity type `{name}`"))
        };
        let user_type = required("User")?;
        let role_type = required("Role")?;
        let action_entities = schema
            .action_entities()
            .map_err(|error| format!("error: {error}"))?;
        // Within an action's slice every policy's action scope holds (that is
        // how the slice is chosen), so the slice holds the policies without
        // it: Cedar would otherwise rebuild and test the scope on every request.
        type Prepared<'a> = (
            &'a Policy,
            Policy,
            ContextReads,
            Option<String>,
            Option<EntityRef>,
        );
        let unscoped: Vec<Prepared<'_>> = policies
            .policies()
            .map(|policy| {
                let unscoped = without_action_scope(policy)?;
                let reads = ContextReads::of_policy(&unscoped);
                let gate = role_gate(&unscoped, &role_type);
                let scope = resource_scope(&unscoped);
                Ok((policy, unscoped, reads, gate, scope))
            })
            .collect::<Result<_, String>>()?;
        let mut actions = HashMap::default();
        for uid in schema.actions() {
            if action_entities.get(uid).is_none() {
                continue;
            }
            let ancestors: HashSet<&EntityUid> = action_entities
                .ancestors(uid)
                .map(Iterator::collect)
                .unwrap_or_default();
            let mut slice = PolicySet::new();
            let mut gated = Vec::new();
            let mut index = IndexBuilder::default();
            let mut context = ContextReads::NONE;
            let mut literals = Literals::default();
            for (policy, unscoped, reads, gate, scope) in &unscoped {
                let matches = match policy.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(action) => action == *uid,
                    ActionConstraint::In(actions) => actions
                        .iter()
                        .any(|action| action == uid || ancestors.contains(action)),
                };
                if matches {
                    context = context.union(*reads);
                    literals.add_policy(unscoped);
                    slice
                        .add(unscoped.clone())
                        .map_err(|error| format!("error: {error}"))?;
                    match scope {
                        Some(entity) => index.file_under_entity(entity, gate.as_deref(), unscoped),
                        None => gated.push((gate.clone(), unscoped)),
                    }
                }
            }
            let gated = index.take_gated_if_too_many(gated, MAX_GATES);
            let (gates, by_gates) = sets_by_gates(&gated)?;
            let index = index.build()?;
            let groups: HashSet<EntityUid> = ancestors
                .into_iter()
                .filter(|group| literals.contains_uid(group))
                .cloned()
                .collect();
            let name = uid.id().unescaped().to_string();
            let mut resource_types: Vec<String> = schema
                .resources_for_action(uid)
                .map(|types| types.map(ToString::to_string).collect())
                .unwrap_or_default();
            resource_types.sort();
            let slice = ActionSlice {
                uid: uid.clone(),
                resource_types,
                entities: Entities::from_entities(
                    [Entity::new_no_attrs(uid.clone(), groups)],
                    None,
                )
                .map_err(|error| format!("error: {error}"))?,
                policies: slice,
                gates,
                by_gates,
                index,
                context,
                literals,
            };
            check_context_shape(schema, &user_type, &slice)?;
            actions.insert(name, slice);
        }
        let positions = policies
            .policies()
            .enumerate()
            .map(|(position, policy)| (policy.id().to_string(), position))
            .collect();
        Ok(Compiled {
            authorizer: Authorizer::new(),
            positions,
            entity_types,
            user_type_name: user_type.to_string(),
            user_type,
            role_type_name: role_type.to_string(),
            role_type,
            actions,
        })
    }

    /// Each requestable action with the resource types it applies to.
    pub(crate) fn action_resource_types(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.actions
            .iter()
            .filter(|(_, slice)| !slice.resource_types.is_empty())
            .map(|(name, slice)| (name.as_str(), slice.resource_types.as_slice()))
    }

    fn type_name(&self, entity: &EntityRef) -> Result<&EntityTypeName, EvalError> {
        self.entity_types
            .get(&entity.kind)
            .ok_or_else(|| EvalError::InvalidRequest {
                message: format!("unknown entity type `{}`", entity.kind),
            })
    }
}

/// The role `policy` is gated on: its principal scope is `principal in
/// Role::"<role>"` (optionally with `is`). The principal is always a user, so
/// such a policy can only apply when the user holds the role on the chain.
fn role_gate(policy: &Policy, role_type: &EntityTypeName) -> Option<String> {
    match policy.principal_constraint() {
        PrincipalConstraint::In(group) | PrincipalConstraint::IsIn(_, group)
            if group.type_name() == role_type =>
        {
            Some(group.id().unescaped().to_string())
        }
        _ => None,
    }
}

/// The entity `policy`'s resource scope requires the resource to be or to
/// descend from (`resource == E`, `resource in E`, `resource is T in E`);
/// none when the scope is unconstrained or only typed.
fn resource_scope(policy: &Policy) -> Option<EntityRef> {
    match policy.resource_constraint() {
        ResourceConstraint::Eq(entity)
        | ResourceConstraint::In(entity)
        | ResourceConstraint::IsIn(_, entity) => Some(EntityRef::new(
            entity.type_name().to_string(),
            entity.id().unescaped(),
        )),
        ResourceConstraint::Any | ResourceConstraint::Is(_) => None,
    }
}

/// The gates of the unindexed policies of a slice (at most [`MAX_GATES`],
/// see [`IndexBuilder::take_gated_if_too_many`]) and the policy set for each
/// combination of held gates.
fn sets_by_gates(
    gated: &[(Option<String>, &Policy)],
) -> Result<(Vec<String>, Vec<PolicySet>), String> {
    let mut gates: Vec<String> = gated.iter().filter_map(|(gate, _)| gate.clone()).collect();
    gates.sort();
    gates.dedup();
    let mut sets = Vec::with_capacity(1 << gates.len());
    for held in 0..1_usize << gates.len() {
        let mut set = PolicySet::new();
        for (gate, policy) in gated {
            let applies = gate
                .as_ref()
                .and_then(|gate| gates.iter().position(|known| known == gate))
                .is_none_or(|index| held & (1 << index) != 0);
            if applies {
                set.add((*policy).clone())
                    .map_err(|error| format!("error: {error}"))?;
            }
        }
        sets.push(set);
    }
    Ok((gates, sets))
}

/// `policy` with its action scope replaced by `action` (any action).
fn without_action_scope(policy: &Policy) -> Result<Policy, String> {
    let mut json = policy
        .to_json()
        .map_err(|error| format!("error: {error}"))?;
    let Some(fields) = json.as_object_mut() else {
        return Err(format!(
            "error: policy `{}` is not a JSON object",
            policy.id()
        ));
    };
    fields.insert("action".to_string(), serde_json::json!({ "op": "All" }));
    Policy::from_json(Some(policy.id().clone()), json).map_err(|error| format!("error: {error}"))
}

/// Checks once, at load, that the schema accepts a `User` principal and the
/// context the engine supplies for `action` (so requests need no per-request
/// schema validation).
fn check_context_shape(
    schema: &Schema,
    user_type: &EntityTypeName,
    action: &ActionSlice,
) -> Result<(), String> {
    let Some(resource_type) = action.resource_types.first() else {
        return Ok(());
    };
    let resource_type: EntityTypeName = resource_type
        .parse()
        .map_err(|error| format!("error: {error}"))?;
    let context = RequestContext {
        ip: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        mfa: false,
        auth_method: String::new().into(),
        session_age_seconds: 0,
        environment: crate::request::Environment::Dev,
        time: std::time::UNIX_EPOCH,
    };
    let probe = cedar_policy::Request::new(
        EntityUid::from_type_name_and_id(user_type.clone(), EntityId::new("probe")),
        action.uid.clone(),
        EntityUid::from_type_name_and_id(resource_type, EntityId::new("probe")),
        cedar_context(&context, ContextReads::all()).map_err(|error| format!("error: {error}"))?,
        Some(schema),
    );
    match probe {
        Ok(_) => Ok(()),
        Err(error) => Err(format!(
            "error: the schema must accept a `User` principal and the engine's context (ip, mfa, authMethod, sessionAgeSeconds, environment, time) for action {}: {error}",
            action.uid
        )),
    }
}

/// Decides `request` without the memo (bundle tests, diffs, and the memo's misses).
pub(crate) fn decide(bundle: &Bundle, request: &Request, directory: &dyn Directory) -> Decision {
    let compiled = bundle.compiled();
    let chain = match ancestor_chain(&request.resource, directory) {
        Ok(chain) => chain,
        Err(error) => return Decision::failed(vec![error], Vec::new()),
    };
    let bindings = bindings_on(&chain, request, directory);
    decide_on(compiled, request, &chain, &bindings)
}

/// The principal's role bindings on the chain, nearest scope first.
fn bindings_on<'a>(
    chain: &[&EntityRef],
    request: &Request,
    directory: &'a dyn Directory,
) -> Vec<&'a RoleBinding> {
    chain
        .iter()
        .flat_map(|scope| directory.bindings_at(&request.principal, scope))
        .collect()
}

/// Decides `request` on its resource's `chain`, with the principal's `bindings` there.
fn decide_on(
    compiled: &Compiled,
    request: &Request,
    chain: &[&EntityRef],
    bindings: &[&RoleBinding],
) -> Decision {
    let bindings: Vec<RoleBinding> = bindings.iter().map(|binding| (*binding).clone()).collect();
    let Some(action) = compiled.actions.get(&*request.action) else {
        let error = EvalError::InvalidRequest {
            message: format!("unknown action `{}`", request.action),
        };
        return Decision::failed(vec![error], bindings);
    };
    if action
        .resource_types
        .binary_search(&request.resource.kind)
        .is_err()
    {
        let message = format!(
            "action `{}` does not apply to resource type `{}`",
            request.action, request.resource.kind
        );
        return Decision::failed(vec![EvalError::InvalidRequest { message }], bindings);
    }
    let prepared = prepare(compiled, request, chain, &bindings, action);
    let (cedar_request, entities) = match prepared {
        Ok(prepared) => prepared,
        Err(error) => return Decision::failed(vec![error], bindings),
    };
    let held = bindings
        .iter()
        .filter_map(|binding| action.gates.iter().position(|gate| *gate == binding.role))
        .fold(0_usize, |held, index| held | 1 << index);
    let unindexed = action.by_gates.get(held).unwrap_or(&action.policies);
    let indexed = action.index.select(chain, &bindings);
    let responses: Vec<cedar_policy::Response> = std::iter::once(unindexed)
        .chain(indexed.as_deref())
        .map(|policies| {
            compiled
                .authorizer
                .is_authorized(&cedar_request, policies, &entities)
        })
        .collect();
    let mut errors: Vec<EvalError> = responses
        .iter()
        .flat_map(|response| response.diagnostics().errors())
        .map(|error| match error {
            cedar_policy::AuthorizationError::PolicyEvaluationError(error) => EvalError::Policy {
                policy: error.policy_id().to_string(),
                message: error.inner().to_string(),
            },
        })
        .collect();
    if !errors.is_empty() {
        errors.sort_by_key(|error| match error {
            EvalError::Policy { policy, .. } => compiled.positions.get(policy).copied(),
            _ => None,
        });
        errors.dedup();
        return Decision::failed(errors, bindings);
    }
    // Cedar's decision is a function of which policies are satisfied, so the
    // responses of disjoint sets combine: any satisfied forbid denies (a
    // response denies with reasons exactly when one of its forbids holds),
    // else any satisfied permit allows, else the default deny.
    let reasons = |decision: cedar_policy::Decision| -> Vec<String> {
        let mut reasons: Vec<String> = responses
            .iter()
            .filter(|response| response.decision() == decision)
            .flat_map(|response| response.diagnostics().reason())
            .map(ToString::to_string)
            .collect();
        reasons.sort();
        reasons.dedup();
        reasons
    };
    let forbids = reasons(cedar_policy::Decision::Deny);
    let (effect, basis, policies) = if forbids.is_empty() {
        let permits = reasons(cedar_policy::Decision::Allow);
        if permits.is_empty() {
            (Effect::Deny, Basis::DefaultDeny, permits)
        } else {
            (Effect::Allow, Basis::Permit, permits)
        }
    } else {
        (Effect::Deny, Basis::Forbid, forbids)
    };
    Decision::new(effect, basis, policies, bindings, errors)
}

/// The resource followed by its ancestors, nearest first.
fn ancestor_chain<'a>(
    resource: &'a EntityRef,
    directory: &'a dyn Directory,
) -> Result<Vec<&'a EntityRef>, EvalError> {
    let mut chain = vec![resource];
    let mut current = resource;
    loop {
        match directory.parent(current) {
            Parent::Unknown => {
                return Err(EvalError::UnknownEntity {
                    entity: current.to_string(),
                });
            }
            Parent::Root => return Ok(chain),
            Parent::Child(parent) => {
                if chain.len() >= MAX_DEPTH || chain.contains(&parent) {
                    return Err(EvalError::Hierarchy {
                        entity: resource.to_string(),
                    });
                }
                chain.push(parent);
                current = parent;
            }
        }
    }
}

/// The Cedar request and the per-request entities.
///
/// The request is not validated against the schema here (that costs more than
/// the evaluation): the resource type was checked against the action, the
/// principal is always a `User`, and [`Compiled::new`] checked once that the
/// schema accepts this context shape for every action.
///
/// Only what the action's policies can observe is built: an entity is looked
/// up only if it is the principal, the action, the resource or named in a
/// policy, so the entities are the principal (a member of the bound roles the
/// policies name), the action, the resource and the named entities on its
/// chain, each with its observable ancestors (already transitively closed).
fn prepare(
    compiled: &Compiled,
    request: &Request,
    chain: &[&EntityRef],
    bindings: &[RoleBinding],
    action: &ActionSlice,
) -> Result<(cedar_policy::Request, Entities), EvalError> {
    let invalid = |message: String| EvalError::InvalidRequest { message };
    let observable = |entity: &EntityRef| {
        action.literals.contains(entity)
            || *entity == *request.resource
            || (entity.kind == compiled.user_type_name && *entity.id == *request.principal)
    };
    let principal = EntityUid::from_type_name_and_id(
        compiled.user_type.clone(),
        EntityId::new(&request.principal),
    );
    let mut roles = HashSet::new();
    for binding in bindings {
        let role = EntityRef::new(compiled.role_type_name.clone(), binding.role.clone());
        if observable(&role) {
            roles.insert(EntityUid::from_type_name_and_id(
                compiled.role_type.clone(),
                EntityId::new(&binding.role),
            ));
        }
    }
    let mut entities = Vec::with_capacity(2);
    entities.push(Entity::new_no_attrs(principal.clone(), roles));
    let mut observed = Vec::with_capacity(chain.len());
    for (index, entity) in chain.iter().enumerate() {
        let type_name = compiled.type_name(entity)?;
        if index == 0 || observable(entity) {
            observed.push(EntityUid::from_type_name_and_id(
                type_name.clone(),
                EntityId::new(&entity.id),
            ));
        }
    }
    let resource = observed
        .first()
        .cloned()
        .ok_or_else(|| invalid("empty resource chain".to_string()))?;
    for (position, uid) in observed.iter().enumerate() {
        let ancestors: HashSet<EntityUid> = observed.iter().skip(position + 1).cloned().collect();
        entities.push(Entity::new_no_attrs(uid.clone(), ancestors));
    }
    let entities = action
        .entities
        .clone()
        .add_entities(entities, None)
        .map_err(|error| invalid(error.to_string()))?;

    let context = cedar_context(&request.context, action.context)?;
    let cedar_request =
        cedar_policy::Request::new(principal, action.uid.clone(), resource, context, None)
            .map_err(|error| invalid(error.to_string()))?;
    Ok((cedar_request, entities))
}

/// The Cedar context of a request, with the fields in `reads`.
///
/// The request time is checked whether or not a policy reads it.
fn cedar_context(context: &RequestContext, reads: ContextReads) -> Result<Context, EvalError> {
    let out_of_range = || EvalError::InvalidRequest {
        message: "request time is before 1970 or after 9999".to_string(),
    };
    if !in_cedar_range(context.time) {
        return Err(out_of_range());
    }
    let mut pairs = Vec::with_capacity(Field::ALL.len());
    for field in Field::ALL {
        if !reads.contains(field) {
            continue;
        }
        let value = match field {
            Field::Ip => RestrictedExpression::new_ip(context.ip.to_canonical().to_string()),
            Field::Mfa => RestrictedExpression::new_bool(context.mfa),
            Field::AuthMethod => RestrictedExpression::new_string(context.auth_method.to_string()),
            Field::SessionAgeSeconds => RestrictedExpression::new_long(
                i64::try_from(context.session_age_seconds).unwrap_or(i64::MAX),
            ),
            Field::Environment => {
                RestrictedExpression::new_string(context.environment.as_str().to_string())
            }
            Field::Time => RestrictedExpression::new_datetime(
                format_utc(context.time).ok_or_else(out_of_range)?,
            ),
        };
        pairs.push((field.name().to_string(), value));
    }
    Context::from_pairs(pairs).map_err(|error| EvalError::InvalidRequest {
        message: error.to_string(),
    })
}

#[cfg(test)]
mod equivalence_tests;
#[cfg(test)]
mod tests;
