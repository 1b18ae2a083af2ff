//! What a user manages for themselves (shorter session timeouts), the first-run setup
//! token, and the links from single sign-on identities to users.

use time::{Duration, OffsetDateTime};

use super::{
    OrganizationId, SetupTokenHash, Store, StoreError, UserId, stored_seconds, stored_time,
    with_pool,
};

/// A user's own session timeouts. They only ever shorten what the organization and
/// workspace allow: the strictest value wins when a session starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UserTimeouts {
    /// Sessions end after this long without a request.
    pub idle_timeout: Option<Duration>,
    /// Sessions end this long after sign-in.
    pub absolute_lifetime: Option<Duration>,
}

#[derive(sqlx::FromRow)]
struct UserTimeoutsRow {
    idle_timeout_secs: Option<i64>,
    absolute_lifetime_secs: Option<i64>,
}

impl Store {
    /// The user's own timeouts (both unset if never written).
    pub async fn get_user_timeouts(
        &self,
        organization: OrganizationId,
        user: UserId,
    ) -> Result<UserTimeouts, StoreError> {
        const SQL: &str = "SELECT idle_timeout_secs, absolute_lifetime_secs FROM user_settings \
             WHERE organization_id = $1 AND user_id = $2";
        let row = with_pool!(self, |pool| {
            sqlx::query_as::<_, UserTimeoutsRow>(SQL)
                .bind(organization)
                .bind(user)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map_or_else(UserTimeouts::default, |row| UserTimeouts {
            idle_timeout: row.idle_timeout_secs.map(Duration::seconds),
            absolute_lifetime: row.absolute_lifetime_secs.map(Duration::seconds),
        }))
    }

    /// Replaces the user's own timeouts.
    pub async fn set_user_timeouts(
        &self,
        organization: OrganizationId,
        user: UserId,
        timeouts: UserTimeouts,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO user_settings (organization_id, user_id, idle_timeout_secs, \
             absolute_lifetime_secs) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (organization_id, user_id) DO UPDATE SET \
             idle_timeout_secs = excluded.idle_timeout_secs, \
             absolute_lifetime_secs = excluded.absolute_lifetime_secs";
        for value in [timeouts.idle_timeout, timeouts.absolute_lifetime]
            .into_iter()
            .flatten()
        {
            if !value.is_positive() {
                return Err(StoreError::OutOfRange { what: "a timeout" });
            }
        }
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(organization)
                .bind(user)
                .bind(timeouts.idle_timeout.map(stored_seconds))
                .bind(timeouts.absolute_lifetime.map(stored_seconds))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// How many users the organization has (enabled or not).
    pub async fn count_users(&self, organization: OrganizationId) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM users WHERE organization_id = $1";
        let count: i64 = with_pool!(self, |pool| {
            sqlx::query_scalar(SQL)
                .bind(organization)
                .fetch_one(pool)
                .await?
        });
        u64::try_from(count).map_err(|_| StoreError::OutOfRange {
            what: "a user count",
        })
    }

    /// Stores a setup token for `user`, valid until `expires_at`.
    pub async fn create_setup_token(
        &self,
        organization: OrganizationId,
        user: UserId,
        hash: &SetupTokenHash,
        now: OffsetDateTime,
        expires_at: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO setup_tokens (token_hash, organization_id, user_id, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(hash)
                .bind(organization)
                .bind(user)
                .bind(stored_time(now))
                .bind(stored_time(expires_at))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The user a live, unused setup token belongs to, without using it up.
    pub async fn peek_setup_token(
        &self,
        organization: OrganizationId,
        hash: &SetupTokenHash,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, StoreError> {
        const SQL: &str = "SELECT user_id FROM setup_tokens WHERE organization_id = $1 \
             AND token_hash = $2 AND used_at IS NULL AND expires_at > $3";
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar::<_, UserId>(SQL)
                .bind(organization)
                .bind(hash)
                .bind(stored_time(now))
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Uses up a live setup token and sets its user's password, in one transaction:
    /// of two concurrent uses exactly one succeeds. Returns the user, or `None` if the
    /// token is unknown, used or expired (and then nothing changes).
    pub async fn redeem_setup_token(
        &self,
        organization: OrganizationId,
        hash: &SetupTokenHash,
        phc: &str,
        now: OffsetDateTime,
    ) -> Result<Option<UserId>, StoreError> {
        const USE: &str = "UPDATE setup_tokens SET used_at = $3 WHERE organization_id = $1 \
             AND token_hash = $2 AND used_at IS NULL AND expires_at > $3 RETURNING user_id";
        const UPSERT: &str = "INSERT INTO password_credentials (organization_id, user_id, phc, changed_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (organization_id, user_id) DO UPDATE SET \
             phc = excluded.phc, changed_at = excluded.changed_at";
        const HISTORY: &str = "INSERT INTO password_history (organization_id, user_id, phc, created_at) \
             VALUES ($1, $2, $3, $4)";
        let now = stored_time(now);
        Ok(with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let user = sqlx::query_scalar::<_, UserId>(USE)
                .bind(organization)
                .bind(hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
            if let Some(user) = user {
                for sql in [UPSERT, HISTORY] {
                    sqlx::query(sql)
                        .bind(organization)
                        .bind(user)
                        .bind(phc)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
            user
        }))
    }

    /// The user linked to `subject` at `provider`, if any.
    pub async fn find_external_identity(
        &self,
        organization: OrganizationId,
        provider: &str,
        subject: &str,
    ) -> Result<Option<UserId>, StoreError> {
        const SQL: &str = "SELECT user_id FROM external_identities WHERE organization_id = $1 \
             AND provider = $2 AND subject = $3";
        Ok(with_pool!(self, |pool| {
            sqlx::query_scalar::<_, UserId>(SQL)
                .bind(organization)
                .bind(provider)
                .bind(subject)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Links `subject` at `provider` to `user`, or records another sign-in through an
    /// existing link. [`StoreError::Duplicate`] never happens: an existing link to
    /// another user is left alone and `false` returned.
    pub async fn link_external_identity(
        &self,
        organization: OrganizationId,
        provider: &str,
        subject: &str,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "INSERT INTO external_identities (organization_id, provider, subject, \
             user_id, created_at, last_login_at) VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (organization_id, provider, subject) DO UPDATE SET \
             last_login_at = excluded.last_login_at \
             WHERE external_identities.user_id = excluded.user_id";
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(organization)
                .bind(provider)
                .bind(subject)
                .bind(user)
                .bind(stored_time(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }
}
