//! Role bindings: which role a user holds in a workspace, over which scope. They feed
//! the policy engine's entities.

use time::OffsetDateTime;

use super::{Store, StoreError, UserId, WorkspaceId, stored_time, with_pool};

/// The entity a role binding covers, as a Cedar entity type and id (for example
/// `Workspace` + the workspace id, or `Project` + a project id).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoleScope {
    /// The Cedar entity type.
    #[sqlx(rename = "scope_type")]
    pub entity_type: String,
    /// The entity id.
    #[sqlx(rename = "scope_id")]
    pub entity_id: String,
}

/// A user holds a role in a workspace, over a scope.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RoleBinding {
    /// The workspace.
    pub workspace_id: WorkspaceId,
    /// The user.
    pub user_id: UserId,
    /// The role's name (built-in `Admin`, `Operator`, `Analyst`, or a custom role).
    pub role: String,
    /// What the role applies to.
    #[sqlx(flatten)]
    pub scope: RoleScope,
    /// When it was granted.
    pub created_at: OffsetDateTime,
}

impl Store {
    /// Grants the role. Returns `false` if the same binding already existed.
    /// [`StoreError::NotInTenant`] if the user is not of the workspace's organization.
    pub async fn add_role_binding(
        &self,
        workspace: WorkspaceId,
        user: UserId,
        role: &str,
        scope: &RoleScope,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO role_bindings \
             (workspace_id, organization_id, user_id, role, scope_type, scope_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (workspace_id, user_id, role, scope_type, scope_id) DO NOTHING";
        let organization = self.workspace_organization(workspace).await?;
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(workspace)
                .bind(organization)
                .bind(user)
                .bind(role)
                .bind(&scope.entity_type)
                .bind(&scope.entity_id)
                .bind(stored_time(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Withdraws the role. Returns whether the binding existed.
    pub async fn remove_role_binding(
        &self,
        workspace: WorkspaceId,
        user: UserId,
        role: &str,
        scope: &RoleScope,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "DELETE FROM role_bindings WHERE workspace_id = $1 AND user_id = $2 \
             AND role = $3 AND scope_type = $4 AND scope_id = $5";
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(workspace)
                .bind(user)
                .bind(role)
                .bind(&scope.entity_type)
                .bind(&scope.entity_id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// The user's role bindings in this workspace, ordered by role then scope.
    pub async fn list_user_role_bindings(
        &self,
        workspace: WorkspaceId,
        user: UserId,
    ) -> Result<Vec<RoleBinding>, StoreError> {
        const SQL: &str = "SELECT workspace_id, user_id, role, scope_type, scope_id, created_at \
             FROM role_bindings WHERE workspace_id = $1 AND user_id = $2 \
             ORDER BY role, scope_type, scope_id";
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, RoleBinding>(SQL)
                .bind(workspace)
                .bind(user)
                .fetch_all(pool)
                .await?
        }))
    }

    /// Makes the bindings that single sign-on through `provider` granted the user in
    /// this workspace exactly `bindings`, in one transaction: mapped bindings the
    /// provider no longer asserts are removed; manual bindings are never touched (a
    /// mapped binding equal to a manual one leaves the manual one in place).
    pub async fn sync_provider_role_bindings(
        &self,
        workspace: WorkspaceId,
        user: UserId,
        provider: &str,
        bindings: &[(String, RoleScope)],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const DELETE: &str =
            "DELETE FROM role_bindings WHERE workspace_id = $1 AND user_id = $2 AND source = $3";
        const INSERT: &str = "INSERT INTO role_bindings \
             (workspace_id, organization_id, user_id, role, scope_type, scope_id, created_at, source) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (workspace_id, user_id, role, scope_type, scope_id) DO NOTHING";
        let organization = self.workspace_organization(workspace).await?;
        let source = format!("sso:{provider}");
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(DELETE)
                .bind(workspace)
                .bind(user)
                .bind(&source)
                .execute(&mut *tx)
                .await?;
            for (role, scope) in bindings {
                sqlx::query(INSERT)
                    .bind(workspace)
                    .bind(organization)
                    .bind(user)
                    .bind(role)
                    .bind(&scope.entity_type)
                    .bind(&scope.entity_id)
                    .bind(stored_time(now))
                    .bind(&source)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        });
        Ok(())
    }
}
