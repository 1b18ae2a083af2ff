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
    /// In which representative contexts the change shows, in words; empty for all of them.
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
                        principal: PROBE_USER.to_string().into(),
                        action: action.clone().into(),
                        resource: resource.clone().into(),
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
                            principal: user.to_string().into(),
                            action: action.clone().into(),
                            resource: (*entity).clone().into(),
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
            let points: Vec<[usize; 4]> = indexes
                .iter()
                .filter_map(|index| contexts.get(*index))
                .map(|(point, _)| *point)
                .collect();
            let contexts = describe_contexts(&points);
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

/// The dimensions of the representative contexts and the words for each value.
const DIMENSIONS: [[&str; 3]; 4] = [
    ["dev", "test", "prod"],
    ["no mfa", "mfa", ""],
    ["internal ip", "external ip", ""],
    ["password sign-in", "oidc sign-in", ""],
];

/// The number of values of each dimension.
const SIZES: [usize; 4] = [3, 2, 2, 2];

/// Contexts covering the facts the default guardrails read, each with its
/// value index per dimension.
fn representative_contexts() -> Vec<([usize; 4], RequestContext)> {
    let mut contexts = Vec::new();
    let internal = IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3));
    let external = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let environments = [Environment::Dev, Environment::Test, Environment::Prod];
    for (env_index, environment) in environments.into_iter().enumerate() {
        for (mfa_index, mfa) in [false, true].into_iter().enumerate() {
            for (ip_index, ip) in [internal, external].into_iter().enumerate() {
                for (auth_index, auth_method) in ["password", "oidc"].into_iter().enumerate() {
                    let context = RequestContext {
                        ip,
                        mfa,
                        auth_method: auth_method.to_string().into(),
                        session_age_seconds: 60,
                        environment,
                        time: UNIX_EPOCH + Duration::from_secs(1_767_614_400),
                    };
                    contexts.push(([env_index, mfa_index, ip_index, auth_index], context));
                }
            }
        }
    }
    contexts
}

/// Words for a set of contexts: empty for all of them, else phrases such as
/// "dev or test, password sign-in" whose union is exactly the set.
fn describe_contexts(points: &[[usize; 4]]) -> Vec<String> {
    let n_all: usize = SIZES.iter().product();
    if points.len() == n_all {
        return Vec::new();
    }
    phrases(points, [false; 4])
}

/// Phrases covering `points`, ignoring the dimensions marked `fixed` (the
/// caller names them). A set that is a product of per-dimension values is one
/// phrase; otherwise it is split on its first varying dimension and the parts
/// with the same description are merged.
fn phrases(points: &[[usize; 4]], fixed: [bool; 4]) -> Vec<String> {
    let word = |dim: usize, value: usize| {
        DIMENSIONS
            .get(dim)
            .and_then(|words| words.get(value))
            .copied()
            .unwrap_or("")
    };
    let values: Vec<BTreeSet<usize>> = (0..SIZES.len())
        .map(|dim| {
            points
                .iter()
                .filter_map(|point| point.get(dim).copied())
                .collect()
        })
        .collect();
    let n_product: usize = values.iter().map(BTreeSet::len).product();
    let free = |dim: usize| !fixed.get(dim).copied().unwrap_or(true);
    if n_product == points.len() {
        let constrained = values
            .iter()
            .enumerate()
            .zip(SIZES)
            .filter(|((dim, set), size)| free(*dim) && set.len() < *size);
        let phrase = constrained
            .map(|((dim, set), _)| {
                set.iter()
                    .map(|value| word(dim, *value))
                    .collect::<Vec<_>>()
                    .join(" or ")
            })
            .collect::<Vec<_>>()
            .join(", ");
        return vec![phrase];
    }
    let Some(dim) = (0..SIZES.len())
        .find(|dim| free(*dim) && values.get(*dim).is_some_and(|set| set.len() > 1))
    else {
        return Vec::new();
    };
    let mut groups: BTreeMap<usize, Vec<[usize; 4]>> = BTreeMap::new();
    for point in points {
        if let Some(value) = point.get(dim) {
            groups.entry(*value).or_default().push(*point);
        }
    }
    let mut fixed_here = fixed;
    if let Some(slot) = fixed_here.get_mut(dim) {
        *slot = true;
    }
    let mut merged: Vec<(Vec<String>, Vec<usize>)> = Vec::new();
    for (value, group) in groups {
        let sub = phrases(&group, fixed_here);
        match merged.iter_mut().find(|(existing, _)| *existing == sub) {
            Some((_, group_values)) => group_values.push(value),
            None => merged.push((sub, vec![value])),
        }
    }
    let mut out = Vec::new();
    for (sub, group_values) in merged {
        let prefix = group_values
            .iter()
            .map(|value| word(dim, *value))
            .collect::<Vec<_>>()
            .join(" or ");
        for phrase in sub {
            out.push(if phrase.is_empty() {
                prefix.clone()
            } else {
                format!("{prefix}, {phrase}")
            });
        }
    }
    out
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
            write!(f, " when {}", self.contexts.join("; or "))
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::Path;

    use expect_test::{Expect, expect};

    use super::*;

    /// Copies the default bundle without its tests into a fresh folder,
    /// replacing `edits` (relative path, new text; empty text deletes).
    fn bundle_with(edits: &[(&str, &str)]) -> Bundle {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let dir = tempfile::tempdir().unwrap();
        for folder in ["", "roles", "guardrails", "routes", "fixtures"] {
            fs::create_dir_all(dir.path().join(folder)).unwrap();
            for entry in fs::read_dir(source.join(folder)).unwrap() {
                let path = entry.unwrap().path();
                let keep = path
                    .extension()
                    .is_some_and(|ext| ext == "cedar" || ext == "cedarschema" || ext == "json");
                if path.is_file() && keep {
                    fs::copy(
                        &path,
                        dir.path().join(folder).join(path.file_name().unwrap()),
                    )
                    .unwrap();
                }
            }
        }
        for (path, text) in edits {
            let path = dir.path().join(path);
            if text.is_empty() {
                fs::remove_file(path).unwrap();
            } else {
                fs::write(path, text).unwrap();
            }
        }
        Bundle::load(dir.path()).unwrap()
    }

    fn check_diff(access_diff: &AccessDiff, expected: Expect) {
        let text = access_diff.to_string();
        let without_header: Vec<&str> = text.lines().skip(1).collect();
        expected.assert_eq(&without_header.join("\n"));
    }

    #[test]
    fn identical_bundles_have_no_changes() {
        let bundle = bundle_with(&[("fixtures/acme.json", SMALL_FIXTURE)]);
        let same = diff(&bundle, &bundle);
        assert!(same.is_empty());
        check_diff(&same, expect!["no changes"]);
    }

    const SMALL_FIXTURE: &str = r#"{
      "entities": [
        {"type": "Workspace", "id": "acme"},
        {"type": "Environment", "id": "acme/prod", "parent": {"type": "Workspace", "id": "acme"}},
        {"type": "App", "id": "acme/billing", "parent": {"type": "Environment", "id": "acme/prod"}},
        {"type": "Connection", "id": "acme/db", "parent": {"type": "Workspace", "id": "acme"}}
      ],
      "bindings": [
        {"user": "andy", "role": "analyst", "scope": {"type": "Workspace", "id": "acme"}},
        {"user": "ann", "role": "admin", "scope": {"type": "Environment", "id": "acme/prod"}}
      ]
    }"#;

    #[test]
    fn lists_access_gained_and_lost_by_role_and_fixture_user() {
        let before = bundle_with(&[("fixtures/acme.json", SMALL_FIXTURE)]);
        let after = bundle_with(&[
            ("fixtures/acme.json", SMALL_FIXTURE),
            (
                "roles/analyst.cedar",
                "@id(\"role.analyst\")\npermit (\n  principal in Role::\"analyst\",\n  action in [Action::\"read\", Action::\"connection.use\"],\n  resource\n);\n",
            ),
            (
                "roles/auditor.cedar",
                "@id(\"role.custom.auditor\")\npermit (\n  principal in Role::\"auditor\",\n  action in [Action::\"transaction.read\", Action::\"scope.read\"],\n  resource\n)\nwhen { context.mfa };\n",
            ),
            ("routes/billing.cedar", ""),
        ]);
        let forward = diff(&before, &after);
        check_diff(
            &forward,
            expect![[r#"
                + role `analyst` gains connection.use on Connection in every context
                - role `auditor` loses connection.read on Connection when mfa
                - role `auditor` loses transaction.readPayload on Transaction when mfa, internal ip
                + user `andy` of fixture `acme` gains connection.use on Connection::"acme/db" in every context
                + user `andy` of fixture `acme` gains http:GET on App::"acme/billing" when password sign-in
                + user `andy` of fixture `acme` gains http:HEAD on App::"acme/billing" when password sign-in
                + user `andy` of fixture `acme` gains http:OPTIONS on App::"acme/billing" when password sign-in
                + user `ann` of fixture `acme` gains http:DELETE on App::"acme/billing" when dev or test, password sign-in; or prod, mfa, password sign-in
                + user `ann` of fixture `acme` gains http:GET on App::"acme/billing" when password sign-in
                + user `ann` of fixture `acme` gains http:HEAD on App::"acme/billing" when password sign-in
                + user `ann` of fixture `acme` gains http:OPTIONS on App::"acme/billing" when password sign-in
                + user `ann` of fixture `acme` gains http:PATCH on App::"acme/billing" when dev or test, password sign-in; or prod, mfa, password sign-in
                + user `ann` of fixture `acme` gains http:POST on App::"acme/billing" when dev or test, password sign-in; or prod, mfa, password sign-in
                + user `ann` of fixture `acme` gains http:PUT on App::"acme/billing" when dev or test, password sign-in; or prod, mfa, password sign-in"#]],
        );

        let reverse = diff(&after, &before);
        let flipped: Vec<(Subject, String, String, Change)> = reverse
            .changes()
            .iter()
            .map(|change| {
                let opposite = match change.change() {
                    Change::Gained => Change::Lost,
                    Change::Lost => Change::Gained,
                };
                (
                    change.subject().clone(),
                    change.action().to_string(),
                    change.resource().to_string(),
                    opposite,
                )
            })
            .collect();
        let mut forward_rows: Vec<_> = forward
            .changes()
            .iter()
            .map(|change| {
                (
                    change.subject().clone(),
                    change.action().to_string(),
                    change.resource().to_string(),
                    change.change(),
                )
            })
            .collect();
        let mut flipped = flipped;
        forward_rows.sort();
        flipped.sort();
        assert_eq!(forward_rows, flipped);
    }
}
