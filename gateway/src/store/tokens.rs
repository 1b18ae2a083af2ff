//! API tokens for machine clients: workspace-scoped, stored hashed, expiring, revocable.

use time::OffsetDateTime;

use super::{
    ApiTokenId, Store, StoreError, TokenHash, UserId, WorkspaceId, stored_time, with_pool,
};

/// What the admin supplies when creating a token (the token itself is shown once and
/// only its hash reaches the store).
#[derive(Debug, Clone)]
pub struct NewApiToken {
    /// The hash of the random token.
    pub hash: TokenHash,
    /// A label for listings.
    pub name: String,
    /// The user who created it (the token acts with that user's role bindings).
    pub created_by: UserId,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

/// A stored API token (without its hash).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ApiToken {
    /// Its public id.
    pub id: ApiTokenId,
    /// The workspace it works in.
    pub workspace_id: WorkspaceId,
    /// Its label.
    pub name: String,
    /// Who created it.
    pub created_by: UserId,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// The email of the user it acts as.
    pub creator_email: Option<String>,
}

impl ApiToken {
    /// Whether the token may be used at `now`: not revoked and not expired.
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// `SELECT` of tokens of workspace `$1`, with the rest of the statement.
macro_rules! select_token_where {
    ($rest:literal) => {
        concat!(
            "SELECT id, workspace_id, name, created_by, created_at, expires_at, revoked_at, \
             (SELECT email FROM users WHERE users.organization_id = api_tokens.organization_id \
             AND users.id = api_tokens.created_by) AS creator_email \
             FROM api_tokens WHERE workspace_id = $1",
            $rest
        )
    };
}

impl Store {
    /// Stores a new token in the workspace. [`StoreError::NotInTenant`] if the creator
    /// is not of the workspace's organization.
    pub async fn create_api_token(
        &self,
        workspace: WorkspaceId,
        new: &NewApiToken,
        now: OffsetDateTime,
    ) -> Result<ApiToken, StoreError> {
        const SQL: &str = "INSERT INTO api_tokens (id, organization_id, workspace_id, token_hash, \
             name, created_by, created_at, expires_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL)";
        let organization = self.workspace_organization(workspace).await?;
        let creator_email = self
            .get_user(organization, new.created_by)
            .await?
            .map(|user| user.email);
        let token = ApiToken {
            id: ApiTokenId::generate(now),
            workspace_id: workspace,
            name: new.name.clone(),
            created_by: new.created_by,
            created_at: stored_time(now),
            expires_at: stored_time(new.expires_at),
            revoked_at: None,
            creator_email,
        };
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(token.id)
                .bind(organization)
                .bind(workspace)
                .bind(&new.hash)
                .bind(&token.name)
                .bind(token.created_by)
                .bind(token.created_at)
                .bind(token.expires_at)
                .execute(pool)
                .await?;
        });
        Ok(token)
    }

    /// The token with this hash in this workspace, revoked or not.
    pub async fn get_api_token_by_hash(
        &self,
        workspace: WorkspaceId,
        hash: &TokenHash,
    ) -> Result<Option<ApiToken>, StoreError> {
        const SQL: &str = select_token_where!(" AND token_hash = $2");
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, ApiToken>(SQL)
                .bind(workspace)
                .bind(hash)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Revokes the token. Returns whether a live token was revoked.
    pub async fn revoke_api_token(
        &self,
        workspace: WorkspaceId,
        token: ApiTokenId,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE api_tokens SET revoked_at = $3 \
             WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL";
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(workspace)
                .bind(token)
                .bind(stored_time(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Every token of the workspace, revoked and expired ones included, oldest first.
    pub async fn list_api_tokens(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Vec<ApiToken>, StoreError> {
        const SQL: &str = select_token_where!(" ORDER BY created_at, id");
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, ApiToken>(SQL)
                .bind(workspace)
                .fetch_all(pool)
                .await?
        }))
    }
}
