//! Users of an organization and their password credentials (PHC strings only).

use std::fmt;

use time::OffsetDateTime;

use super::{OrganizationId, Store, StoreError, UserId, sessions, stored_time, with_pool};

/// A user of one organization.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    /// Its id.
    pub id: UserId,
    /// The organization it belongs to.
    pub organization_id: OrganizationId,
    /// Its email, unique in the organization. Compared exactly: callers normalise it.
    pub email: String,
    /// The name shown in the console.
    pub display_name: String,
    /// A disabled user cannot log in and has no live sessions.
    pub disabled: bool,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// A user's current password hash.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PasswordCredential {
    /// The argon2id hash as a PHC string (parameters and salt included).
    pub phc: String,
    /// When the password was last set.
    pub changed_at: OffsetDateTime,
}

impl fmt::Debug for PasswordCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PasswordCredential")
            .field("phc", &"<redacted>")
            .field("changed_at", &self.changed_at)
            .finish()
    }
}

/// `SELECT` of a user of organization `$1`, with one more condition.
macro_rules! select_user_where {
    ($condition:literal) => {
        concat!(
            "SELECT id, organization_id, email, display_name, disabled, created_at FROM users \
             WHERE organization_id = $1 AND ",
            $condition
        )
    };
}

/// Revokes every live API token created by user `$2` of organization `$1`.
const REVOKE_TOKENS_OF_USER: &str = "UPDATE api_tokens SET revoked_at = $3 \
     WHERE organization_id = $1 AND created_by = $2 AND revoked_at IS NULL";

impl Store {
    /// Creates an enabled user. [`StoreError::Duplicate`] if the email is taken in this
    /// organization.
    pub async fn create_user(
        &self,
        organization: OrganizationId,
        email: &str,
        display_name: &str,
        now: OffsetDateTime,
    ) -> Result<User, StoreError> {
        const SQL: &str = "INSERT INTO users (id, organization_id, email, display_name, disabled, created_at) \
             VALUES ($1, $2, $3, $4, FALSE, $5)";
        let user = User {
            id: UserId::generate(now),
            organization_id: organization,
            email: email.to_owned(),
            display_name: display_name.to_owned(),
            disabled: false,
            created_at: stored_time(now),
        };
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(user.id)
                .bind(organization)
                .bind(email)
                .bind(display_name)
                .bind(user.created_at)
                .execute(pool)
                .await?;
        });
        Ok(user)
    }

    /// The user with this id in this organization.
    pub async fn get_user(
        &self,
        organization: OrganizationId,
        user: UserId,
    ) -> Result<Option<User>, StoreError> {
        const SQL: &str = select_user_where!("id = $2");
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, User>(SQL)
                .bind(organization)
                .bind(user)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The user with this email in this organization.
    pub async fn find_user_by_email(
        &self,
        organization: OrganizationId,
        email: &str,
    ) -> Result<Option<User>, StoreError> {
        const SQL: &str = select_user_where!("email = $2");
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, User>(SQL)
                .bind(organization)
                .bind(email)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Disables the user and revokes all of its sessions and the API tokens that act as
    /// it, in one transaction. Returns whether the user exists in this organization.
    pub async fn disable_user(
        &self,
        organization: OrganizationId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE users SET disabled = TRUE WHERE organization_id = $1 AND id = $2";
        let changed = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let changed = sqlx::query(SQL)
                .bind(organization)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(sessions::REVOKE_ALL_FOR_USER)
                .bind(organization)
                .bind(user)
                .bind(stored_time(now))
                .execute(&mut *tx)
                .await?;
            sqlx::query(REVOKE_TOKENS_OF_USER)
                .bind(organization)
                .bind(user)
                .bind(stored_time(now))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            changed
        });
        Ok(changed == 1)
    }

    /// Sets the user's password hash and appends it to the password history, in one
    /// transaction. [`StoreError::NotInTenant`] if the user is not in this organization.
    pub async fn set_password(
        &self,
        organization: OrganizationId,
        user: UserId,
        phc: &str,
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const UPSERT: &str = "INSERT INTO password_credentials (organization_id, user_id, phc, changed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, user_id) DO UPDATE SET \
             phc = excluded.phc, changed_at = excluded.changed_at";
        const HISTORY: &str = "INSERT INTO password_history (organization_id, user_id, phc, created_at) \
             VALUES ($1, $2, $3, $4)";
        let now = stored_time(now);
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            for sql in [UPSERT, HISTORY] {
                sqlx::query(sql)
                    .bind(organization)
                    .bind(user)
                    .bind(phc)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?
        });
        Ok(())
    }

    /// The user's current password hash, if it has a password.
    pub async fn get_password(
        &self,
        organization: OrganizationId,
        user: UserId,
    ) -> Result<Option<PasswordCredential>, StoreError> {
        const SQL: &str = "SELECT phc, changed_at FROM password_credentials \
             WHERE organization_id = $1 AND user_id = $2";
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, PasswordCredential>(SQL)
                .bind(organization)
                .bind(user)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The user's last `limit` password hashes, newest first (the current one included).
    pub async fn password_history(
        &self,
        organization: OrganizationId,
        user: UserId,
        limit: u32,
    ) -> Result<Vec<String>, StoreError> {
        const SQL: &str = "SELECT phc FROM password_history \
             WHERE organization_id = $1 AND user_id = $2 ORDER BY seq DESC LIMIT $3";
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar::<_, String>(SQL)
                .bind(organization)
                .bind(user)
                .bind(i64::from(limit))
                .fetch_all(pool)
                .await?
        }))
    }
}
