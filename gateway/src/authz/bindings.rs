//! Role bindings from the store, laid over the directory for one request.
//!
//! Who holds which role where is data: the store's bindings (managed with `portcullis
//! role` and, later, the console) join the bindings file's. A user's store bindings are
//! cached for a few seconds, merged with the file's bindings at the same scopes, so a
//! warm request does not touch the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use portcullis_policy::{Directory, EntityRef, MemoryDirectory, Parent, RoleBinding};

use crate::store::{Store, StoreError, UserId, WorkspaceId};

/// How long a user's store bindings are trusted without asking again.
const TTL: Duration = Duration::from_secs(5);

/// A user's bindings by scope: the store's and the file's, merged (looked up on every
/// decision; the seeded fast hash is enough for keys an administrator wrote).
pub type UserBindings = HashMap<EntityRef, Vec<RoleBinding>, foldhash::fast::RandomState>;

/// Reads and caches users' role bindings from the store.
pub struct StoreBindings {
    store: Store,
    cache: Cache<(WorkspaceId, UserId), Arc<UserBindings>>,
}

impl StoreBindings {
    /// Bindings read from `store`.
    pub fn new(store: Store) -> StoreBindings {
        StoreBindings {
            store,
            cache: Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(TTL)
                .build(),
        }
    }

    /// `user`'s bindings in `workspace`, merged with `base`'s at the same scopes.
    pub async fn of(
        &self,
        workspace: WorkspaceId,
        user: UserId,
        base: &MemoryDirectory,
    ) -> Result<Arc<UserBindings>, Arc<StoreError>> {
        let store = &self.store;
        // By reference: the owned-key variant allocates the key on every hit.
        self.cache
            .try_get_with_by_ref(&(workspace, user), async move {
                let stored = store.list_user_role_bindings(workspace, user).await?;
                let user_id = user.to_string();
                let mut merged = UserBindings::default();
                for binding in stored {
                    let scope = EntityRef::new(binding.scope.entity_type, binding.scope.entity_id);
                    let at_scope = merged
                        .entry(scope.clone())
                        .or_insert_with(|| base.bindings_at(&user_id, &scope).to_vec());
                    let binding = RoleBinding {
                        user: user_id.clone(),
                        role: binding.role,
                        scope,
                    };
                    if !at_scope.contains(&binding) {
                        at_scope.push(binding);
                    }
                }
                Ok(Arc::new(merged))
            })
            .await
    }
}

/// The directory one request decides against: the hierarchy and bindings of the file,
/// with one user's merged bindings laid over it.
pub struct Overlay<'a> {
    base: &'a MemoryDirectory,
    user: &'a str,
    bindings: &'a UserBindings,
}

impl<'a> Overlay<'a> {
    /// `base` with `user`'s `bindings` laid over it.
    pub fn new(
        base: &'a MemoryDirectory,
        user: &'a str,
        bindings: &'a UserBindings,
    ) -> Overlay<'a> {
        Overlay {
            base,
            user,
            bindings,
        }
    }
}

impl Directory for Overlay<'_> {
    fn parent(&self, entity: &EntityRef) -> Parent<'_> {
        self.base.parent(entity)
    }

    fn bindings_at(&self, user: &str, scope: &EntityRef) -> &[RoleBinding] {
        if user == self.user
            && let Some(merged) = self.bindings.get(scope)
        {
            return merged;
        }
        self.base.bindings_at(user, scope)
    }
}

#[cfg(test)]
mod tests {
    use portcullis_policy::{Directory, EntityRef, MemoryDirectory, RoleBinding};

    use super::{Overlay, UserBindings};

    #[test]
    fn overlay_unites_file_and_store_bindings_for_its_user_only() {
        let app = EntityRef::new("App", "wiki");
        let mut base = MemoryDirectory::new();
        base.insert_entity(app.clone(), None).unwrap();
        let binding = |user: &str, role: &str| RoleBinding {
            user: user.into(),
            role: role.into(),
            scope: app.clone(),
        };
        base.bind(binding("olga", "analyst")).unwrap();
        base.bind(binding("sam", "analyst")).unwrap();
        let mut merged = UserBindings::default();
        merged.insert(
            app.clone(),
            vec![binding("olga", "analyst"), binding("olga", "operator")],
        );
        let overlay = Overlay::new(&base, "olga", &merged);
        assert_eq!(overlay.bindings_at("olga", &app).len(), 2);
        assert_eq!(
            overlay.bindings_at("sam", &app),
            [binding("sam", "analyst")]
        );
        assert_eq!(overlay.parent(&app), base.parent(&app));
    }
}
