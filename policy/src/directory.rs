//! Who holds which role where, and the resource hierarchy: the data a decision
//! needs besides the policies.
//!
//! The engine asks a [`Directory`] only two things: the parent of an entity and
//! the role bindings of one user on one scope. A store-backed directory can
//! answer from its cache without the engine changing; [`MemoryDirectory`] is
//! the in-memory one, loadable from a JSON file (see `policies/README.md`).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{DirectoryError, IoError};

/// A reference to an entity of the schema: its type name and id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntityRef {
    /// The entity type, e.g. `Folder`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The entity id, e.g. `acme/payments/ops`.
    pub id: String,
}

impl EntityRef {
    /// An entity reference from its type name and id.
    pub fn new(kind: impl Into<String>, id: impl Into<String>) -> EntityRef {
        EntityRef {
            kind: kind.into(),
            id: id.into(),
        }
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{:?}", self.kind, self.id)
    }
}

/// One role binding: `user` holds `role` on `scope` and everything below it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleBinding {
    /// The user id (`User::"<user>"` in policies).
    pub user: String,
    /// The role name (`Role::"<role>"` in policies).
    pub role: String,
    /// The entity the role is bound on.
    pub scope: EntityRef,
}

impl fmt::Display for RoleBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "user `{}` holds role `{}` on {}",
            self.user, self.role, self.scope
        )
    }
}

/// Where an entity sits in the resource hierarchy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parent<'a> {
    /// The entity is not known to the directory.
    Unknown,
    /// The entity is known and has no parent (e.g. a workspace).
    Root,
    /// The entity is known and sits directly below this parent.
    Child(&'a EntityRef),
}

/// The data a decision reads: the resource hierarchy and role bindings.
pub trait Directory {
    /// The parent of `entity` in the resource hierarchy.
    fn parent(&self, entity: &EntityRef) -> Parent<'_>;
    /// The role bindings of `user` bound exactly on `scope` (not below or above it).
    fn bindings_at(&self, user: &str, scope: &EntityRef) -> &[RoleBinding];
}

/// A [`Directory`] held in memory, e.g. loaded from a JSON file.
///
/// Invariant: every parent and every binding scope is a declared entity, so
/// following parents always ends at a root.
#[derive(Debug, Clone, Default)]
pub struct MemoryDirectory {
    parents: Map<EntityRef, Option<EntityRef>>,
    entities_in_order: Vec<EntityRef>,
    bindings: Map<String, Map<EntityRef, Vec<RoleBinding>>>,
    n_bindings: usize,
}

/// The directory's maps are read on every decision: a fast hash, seeded per
/// process (their keys come from the bindings file and the store, not from
/// requests).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// The directory file as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    #[serde(default)]
    entities: Vec<RawEntity>,
    #[serde(default)]
    bindings: Vec<RoleBinding>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    #[serde(rename = "type")]
    kind: String,
    id: String,
    parent: Option<EntityRef>,
}

impl MemoryDirectory {
    /// An empty directory.
    pub fn new() -> MemoryDirectory {
        MemoryDirectory::default()
    }

    /// Reads a directory file (JSON, see `policies/README.md`).
    pub fn load(path: &Path) -> Result<MemoryDirectory, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| IoError::new(path, source))?;
        MemoryDirectory::from_json_str(&text)
    }

    /// Parses a directory from JSON text.
    pub fn from_json_str(text: &str) -> Result<MemoryDirectory, DirectoryError> {
        let raw: RawDirectory =
            serde_json::from_str(text).map_err(|error| DirectoryError::from_json(&error))?;
        let mut directory = MemoryDirectory::new();
        for entity in raw.entities {
            directory.insert_entity(
                EntityRef {
                    kind: entity.kind,
                    id: entity.id,
                },
                entity.parent,
            )?;
        }
        for binding in raw.bindings {
            directory.bind(binding)?;
        }
        Ok(directory)
    }

    /// Declares an entity; its parent, if any, must already be declared.
    pub fn insert_entity(
        &mut self,
        entity: EntityRef,
        parent: Option<EntityRef>,
    ) -> Result<(), DirectoryError> {
        if self.parents.contains_key(&entity) {
            return Err(DirectoryError::DuplicateEntity {
                entity: entity.to_string(),
            });
        }
        if let Some(parent) = &parent
            && !self.parents.contains_key(parent)
        {
            return Err(DirectoryError::UnknownParent {
                entity: entity.to_string(),
                parent: parent.to_string(),
            });
        }
        self.entities_in_order.push(entity.clone());
        self.parents.insert(entity, parent);
        Ok(())
    }

    /// Adds a role binding; its scope must be a declared entity. Adding the
    /// same binding twice keeps one.
    pub fn bind(&mut self, binding: RoleBinding) -> Result<(), DirectoryError> {
        if !self.parents.contains_key(&binding.scope) {
            return Err(DirectoryError::UnknownScope {
                user: binding.user,
                role: binding.role,
                scope: binding.scope.to_string(),
            });
        }
        let at_scope = self
            .bindings
            .entry(binding.user.clone())
            .or_default()
            .entry(binding.scope.clone())
            .or_default();
        if !at_scope.contains(&binding) {
            at_scope.push(binding);
            self.n_bindings += 1;
        }
        Ok(())
    }

    /// The declared entities, in declaration order.
    pub fn entities(&self) -> impl Iterator<Item = &EntityRef> {
        self.entities_in_order.iter()
    }

    /// Every role binding, grouped by user (in no particular order).
    pub fn bindings(&self) -> impl Iterator<Item = &RoleBinding> {
        self.bindings
            .values()
            .flat_map(|by_scope| by_scope.values().flatten())
    }

    /// The number of role bindings.
    pub fn n_bindings(&self) -> usize {
        self.n_bindings
    }
}

impl Directory for MemoryDirectory {
    fn parent(&self, entity: &EntityRef) -> Parent<'_> {
        match self.parents.get(entity) {
            None => Parent::Unknown,
            Some(None) => Parent::Root,
            Some(Some(parent)) => Parent::Child(parent),
        }
    }

    fn bindings_at(&self, user: &str, scope: &EntityRef) -> &[RoleBinding] {
        self.bindings
            .get(user)
            .and_then(|by_scope| by_scope.get(scope))
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    fn check_error(text: &str, expected: Expect) {
        match MemoryDirectory::from_json_str(text) {
            Ok(_) => expected.assert_eq("ok"),
            Err(error) => expected.assert_eq(&error.to_string()),
        }
    }

    #[test]
    fn rejects_invalid_directory_files() {
        check_error(
            r#"{"entities": [{"type": "Folder", "id": "f", "parent": {"type": "Project", "id": "p"}}]}"#,
            expect![[
                r#"entity Folder::"f" has parent Project::"p", which is not declared before it"#
            ]],
        );
        check_error(
            r#"{"entities": [{"type": "Workspace", "id": "w"}, {"type": "Workspace", "id": "w"}]}"#,
            expect![[r#"entity Workspace::"w" is declared twice"#]],
        );
        check_error(
            r#"{"bindings": [{"user": "ann", "role": "admin", "scope": {"type": "Workspace", "id": "w"}}]}"#,
            expect![[
                r#"role binding of user `ann` to role `admin` names undeclared scope Workspace::"w""#
            ]],
        );
        check_error(
            "{\n  \"entity\": []\n}",
            expect![
                "invalid directory file at line 2, column 10: unknown field `entity`, expected `entities` or `bindings`"
            ],
        );
    }

    #[test]
    fn answers_parents_and_bindings_at_one_scope() {
        let directory = MemoryDirectory::from_json_str(
            r#"{
              "entities": [
                {"type": "Workspace", "id": "w"},
                {"type": "Project", "id": "p", "parent": {"type": "Workspace", "id": "w"}}
              ],
              "bindings": [
                {"user": "ann", "role": "admin", "scope": {"type": "Workspace", "id": "w"}},
                {"user": "ann", "role": "admin", "scope": {"type": "Workspace", "id": "w"}}
              ]
            }"#,
        );
        let Ok(directory) = directory else {
            panic!("valid directory: {directory:?}")
        };
        let workspace = EntityRef::new("Workspace", "w");
        let project = EntityRef::new("Project", "p");
        assert_eq!(directory.parent(&project), Parent::Child(&workspace));
        assert_eq!(directory.parent(&workspace), Parent::Root);
        assert_eq!(
            directory.parent(&EntityRef::new("Project", "q")),
            Parent::Unknown
        );
        assert_eq!(directory.bindings_at("ann", &workspace).len(), 1);
        assert_eq!(directory.n_bindings(), 1);
        assert!(directory.bindings_at("ann", &project).is_empty());
        assert!(directory.bindings_at("bob", &workspace).is_empty());
    }
}
