//! Effective-access diff between two bundles: what a reviewer reads on a
//! policy pull request.
//!
//! Two sweeps, each decided by both bundles over a fixed set of representative
//! contexts (environment × MFA × internal/external IP × password/OIDC sign-in):
//! every role (plus "no role") × action × resource type of either schema, with
//! the role bound on the resource itself; and, for each fixture, every user
//! with bindings × every fixture entity × every action applicable to it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, UNIX_EPOCH};

use serde::Serialize;

use crate::bundle::Bundle;
use crate::directory::{EntityRef, MemoryDirectory, RoleBinding};
use crate::engine::decide;
use crate::request::{Environment, Request, RequestContext};

/// Every effective access change between two bundles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessDiff {
    before: String,
    after: String,
    changes: Vec<AccessChange>,
}

/// One (who, action, resource) whose access changed in one direction.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AccessChange {
    subject: Subject,
    action: String,
    resource: String,
    change: Change,
    /// The representative contexts in which the change shows, or empty for all of them.
    contexts: Vec<String>,
}

/// Whose access changed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Subject {
    /// Anyone holding this role on the resource.
    Role {
        /// The role name.
        role: String,
    },
    /// Anyone, without any role on the resource.
    NoRole,
    /// A user of a fixture, with the fixture's bindings.
    User {
        /// The fixture name.
        fixture: String,
        /// The user id.
        user: String,
    },
}

/// The direction of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    /// Denied before, allowed after.
    Gained,
    /// Allowed before, denied after.
    Lost,
}

impl AccessDiff {
    /// The changes, sorted by subject, action and resource.
    pub fn changes(&self) -> &[AccessChange] {
        &self.changes
    }

    /// Whether effective access is the same.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

impl AccessChange {
    /// Whose access changed.
    pub fn subject(&self) -> &Subject {
        &self.subject
    }

    /// The action name.
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The resource type (role sweep) or entity (fixture sweep).
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// Gained or lost.
    pub fn change(&self) -> Change {
        self.change
    }
}

/// The user id the role sweep decides for.
const PROBE_USER: &str = "(diff)";
/// The entity id the role sweep decides on.
const PROBE_ENTITY: &str = "(any)";

/// Compares the effective access of two bundles.
pub fn diff(before: &Bundle, after: &Bundle) -> AccessDiff {
    let contexts = representative_contexts();
    let mut cells: BTreeMap<(Subject, String, String, Change), Vec<usize>> = BTreeMap::new();
    let mut record =
        |subject: &Subject, action: &str, resource: String, index: usize, was: bool, is: bool| {
            let change = match (was, is) {
                (false, true) => Change::Gained,
                (true, false) => Change::Lost,
                _ => return,
            };
            cells
                .entry((subject.clone(), action.to_string(), resource, change))
                .or_default()
                .push(index);
        };

    let actions = action_resource_types(before, after);
    let mut subjects = vec![Subject::NoRole];
    subjects.extend(
        roles_named(before)
            .union(&roles_named(after))
            .map(|role| Subject::Role { role: role.clone() }),
    );
    for subject in &subjects {
        for (action, resource_types) in &actions {
            for resource_type in resource_types {
                let resource = EntityRef::new(resource_type.as_str(), PROBE_ENTITY);
                let directory = probe_directory(subject, &resource);
                for (index, (_, context)) in contexts.iter().enumerate() {
                    let request = Request {
                        principal: PROBE_USER.to_string(),
                        action: action.clone(),
                        resource: resource.clone(),
                        context: context.clone(),
                    };
                    let was = decide(before, &request, &directory).is_allowed();
                    let is = decide(after, &request, &directory).is_allowed();
                    record(subject, action, resource_type.clone(), index, was, is);
                }
            }
        }
    }

    let fixture_names: BTreeSet<&str> = before
        .fixture_names()
        .chain(after.fixture_names())
        .collect();
    let empty = MemoryDirectory::new();
    for name in fixture_names {
        let before_fixture = before
            .fixture(name)
            .or_else(|| after.fixture(name))
            .unwrap_or(&empty);
        let after_fixture = after
            .fixture(name)
            .or_else(|| before.fixture(name))
            .unwrap_or(&empty);
        let users: BTreeSet<&str> = before_fixture
            .bindings()
            .chain(after_fixture.bindings())
            .map(|binding| binding.user.as_str())
            .collect();
        let entities: BTreeSet<&EntityRef> = before_fixture
            .entities()
            .chain(after_fixture.entities())
            .collect();
        for user in users {
            let subject = Subject::User {
                fixture: name.to_string(),
                user: user.to_string(),
            };
            for entity in &entities {
                for (action, resource_types) in &actions {
                    if !resource_types.contains(&entity.kind) {
                        continue;
                    }
                    for (index, (_, context)) in contexts.iter().enumerate() {
                        let request = Request {
                            principal: user.to_string(),
                            action: action.clone(),
                            resource: (*entity).clone(),
                            context: context.clone(),
                        };
                        let was = decide(before, &request, before_fixture).is_allowed();
                        let is = decide(after, &request, after_fixture).is_allowed();
                        record(&subject, action, entity.to_string(), index, was, is);
                    }
                }
            }
        }
    }

    let changes = cells
        .into_iter()
        .map(|((subject, action, resource, change), indexes)| {
            let contexts = if indexes.len() == contexts.len() {
                Vec::new()
            } else {
                indexes
                    .iter()
                    .filter_map(|index| contexts.get(*index))
                    .map(|(label, _)| label.clone())
                    .collect()
            };
            AccessChange {
                subject,
                action,
                resource,
                change,
                contexts,
            }
        })
        .collect();
    AccessDiff {
        before: before.revision().to_string(),
        after: after.revision().to_string(),
        changes,
    }
}

/// Every action of either bundle with the union of its resource types, sorted.
fn action_resource_types(before: &Bundle, after: &Bundle) -> Vec<(String, Vec<String>)> {
    let mut actions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for bundle in [before, after] {
        for (action, types) in bundle.compiled().action_resource_types() {
            actions
                .entry(action.to_string())
                .or_default()
                .extend(types.iter().cloned());
        }
    }
    actions
        .into_iter()
        .map(|(action, types)| (action, types.into_iter().collect()))
        .collect()
}

/// The ids of every `Role` entity any policy of `bundle` mentions.
fn roles_named(bundle: &Bundle) -> BTreeSet<String> {
    fn walk(value: &serde_json::Value, out: &mut BTreeSet<String>) {
        match value {
            serde_json::Value::Object(fields) => {
                if let (Some(serde_json::Value::String(kind)), Some(serde_json::Value::String(id))) =
                    (fields.get("type"), fields.get("id"))
                    && kind == "Role"
                {
                    out.insert(id.clone());
                }
                fields.values().for_each(|field| walk(field, out));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|item| walk(item, out)),
            _ => {}
        }
    }
    let mut roles = BTreeSet::new();
    for policy in bundle.policy_set().policies() {
        if let Ok(json) = policy.to_json() {
            walk(&json, &mut roles);
        }
    }
    roles
}

/// A one-entity directory where the probe user holds `subject`'s role on `resource`.
fn probe_directory(subject: &Subject, resource: &EntityRef) -> MemoryDirectory {
    let mut directory = MemoryDirectory::new();
    // A fresh directory accepts a root entity and a binding on it.
    let _ = directory.insert_entity(resource.clone(), None);
    if let Subject::Role { role } = subject {
        let binding = RoleBinding {
            user: PROBE_USER.to_string(),
            role: role.clone(),
            scope: resource.clone(),
        };
        let _ = directory.bind(binding);
    }
    directory
}

/// Labelled contexts covering the facts the default guardrails read.
fn representative_contexts() -> Vec<(String, RequestContext)> {
    let mut contexts = Vec::new();
    let internal = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let external = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    for environment in [Environment::Dev, Environment::Test, Environment::Prod] {
        for mfa in [false, true] {
            for (network, ip) in [("internal", internal), ("external", external)] {
                for auth_method in ["password", "oidc"] {
                    let label = format!(
                        "{environment}/{}/{network}/{auth_method}",
                        if mfa { "mfa" } else { "no-mfa" }
                    );
                    let context = RequestContext {
                        ip,
                        mfa,
                        auth_method: auth_method.to_string(),
                        session_age_seconds: 60,
                        environment,
                        time: UNIX_EPOCH + Duration::from_secs(1_767_614_400),
                    };
                    contexts.push((label, context));
                }
            }
        }
    }
    contexts
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Role { role } => write!(f, "role `{role}`"),
            Subject::NoRole => write!(f, "anyone without a role"),
            Subject::User { fixture, user } => write!(f, "user `{user}` of fixture `{fixture}`"),
        }
    }
}

impl fmt::Display for AccessChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (sign, verb) = match self.change {
            Change::Gained => ('+', "gains"),
            Change::Lost => ('-', "loses"),
        };
        write!(
            f,
            "{sign} {} {verb} {} on {}",
            self.subject, self.action, self.resource
        )?;
        if self.contexts.is_empty() {
            write!(f, " in every context")
        } else {
            write!(f, " when {}", self.contexts.join(", "))
        }
    }
}

impl fmt::Display for AccessDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "effective access {} -> {}", self.before, self.after)?;
        if self.changes.is_empty() {
            return write!(f, "\nno changes");
        }
        for change in &self.changes {
            write!(f, "\n{change}")?;
        }
        Ok(())
    }
}
