//! Second factors: TOTP enrolments (sealed seed, last accepted step) and recovery codes.

use time::OffsetDateTime;

use super::{OrganizationId, RecoveryCodeHash, Store, StoreError, UserId, stored_time, with_pool};

/// A user's TOTP enrolment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TotpEnrolment {
    /// The user.
    pub user_id: UserId,
    /// The seed sealed by [`crate::crypto::SecretBox`], with associated data naming
    /// the organization, the `totp_enrolments` table and the user.
    pub sealed_seed: Vec<u8>,
    /// When enrolment started.
    pub created_at: OffsetDateTime,
    /// When the user proved possession with a first code; `None` while pending.
    pub confirmed_at: Option<OffsetDateTime>,
    /// The last time step whose code was accepted; a code is accepted at most once.
    pub last_step: Option<u64>,
}

#[derive(sqlx::FromRow)]
struct TotpRow {
    user_id: UserId,
    sealed_seed: Vec<u8>,
    created_at: OffsetDateTime,
    confirmed_at: Option<OffsetDateTime>,
    last_step: Option<i64>,
}

impl TryFrom<TotpRow> for TotpEnrolment {
    type Error = StoreError;

    fn try_from(row: TotpRow) -> Result<Self, StoreError> {
        let last_step = row
            .last_step
            .map(u64::try_from)
            .transpose()
            .map_err(|_| StoreError::OutOfRange { what: "TOTP step" })?;
        Ok(TotpEnrolment {
            user_id: row.user_id,
            sealed_seed: row.sealed_seed,
            created_at: row.created_at,
            confirmed_at: row.confirmed_at,
            last_step,
        })
    }
}

fn stored_step(step: u64) -> Result<i64, StoreError> {
    i64::try_from(step).map_err(|_| StoreError::OutOfRange { what: "TOTP step" })
}

impl Store {
    /// Starts (or restarts) the user's TOTP enrolment with a new sealed seed; it stays
    /// pending until [`Store::confirm_totp_enrolment`].
    pub async fn upsert_totp_enrolment(
        &self,
        organization: OrganizationId,
        user: UserId,
        sealed_seed: &[u8],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO totp_enrolments \
             (organization_id, user_id, sealed_seed, created_at, confirmed_at, last_step) \
             VALUES ($1, $2, $3, $4, NULL, NULL) \
             ON CONFLICT (organization_id, user_id) DO UPDATE SET \
             sealed_seed = excluded.sealed_seed, created_at = excluded.created_at, \
             confirmed_at = NULL, last_step = NULL";
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(organization)
                .bind(user)
                .bind(sealed_seed)
                .bind(stored_time(now))
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The user's TOTP enrolment, pending or confirmed.
    pub async fn get_totp_enrolment(
        &self,
        organization: OrganizationId,
        user: UserId,
    ) -> Result<Option<TotpEnrolment>, StoreError> {
        const SQL: &str = "SELECT user_id, sealed_seed, created_at, confirmed_at, last_step \
             FROM totp_enrolments WHERE organization_id = $1 AND user_id = $2";
        let row = with_pool!(self, |pool| {
            sqlx::query_as::<_, TotpRow>(SQL)
                .bind(organization)
                .bind(user)
                .fetch_optional(pool)
                .await?
        });
        row.map(TotpEnrolment::try_from).transpose()
    }

    /// Confirms a pending enrolment with the step of the first valid code, recording it
    /// as used. Returns `false` if there is no pending enrolment or the step is not newer
    /// than one already accepted.
    pub async fn confirm_totp_enrolment(
        &self,
        organization: OrganizationId,
        user: UserId,
        step: u64,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE totp_enrolments SET confirmed_at = $4, last_step = $3 \
             WHERE organization_id = $1 AND user_id = $2 AND confirmed_at IS NULL \
             AND (last_step IS NULL OR last_step < $3)";
        let step = stored_step(step)?;
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(organization)
                .bind(user)
                .bind(step)
                .bind(stored_time(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Atomically records `step` as the last accepted step of a confirmed enrolment if
    /// it is newer than the one stored. Returns whether this call won: of two
    /// concurrent logins with the same code, exactly one gets `true` (replay guard).
    pub async fn accept_totp_step(
        &self,
        organization: OrganizationId,
        user: UserId,
        step: u64,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE totp_enrolments SET last_step = $3 \
             WHERE organization_id = $1 AND user_id = $2 AND confirmed_at IS NOT NULL \
             AND (last_step IS NULL OR last_step < $3)";
        let step = stored_step(step)?;
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(organization)
                .bind(user)
                .bind(step)
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Replaces the user's recovery codes with a new set (all unused).
    pub async fn replace_recovery_codes(
        &self,
        organization: OrganizationId,
        user: UserId,
        codes: &[RecoveryCodeHash],
        now: OffsetDateTime,
    ) -> Result<(), StoreError> {
        const DELETE: &str =
            "DELETE FROM recovery_codes WHERE organization_id = $1 AND user_id = $2";
        const INSERT: &str = "INSERT INTO recovery_codes (organization_id, user_id, code_hash, created_at, used_at) \
             VALUES ($1, $2, $3, $4, NULL)";
        let now = stored_time(now);
        with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            sqlx::query(DELETE)
                .bind(organization)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            for code in codes {
                sqlx::query(INSERT)
                    .bind(organization)
                    .bind(user)
                    .bind(code)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?
        });
        Ok(())
    }

    /// Removes the user's TOTP enrolment and recovery codes and ends their sessions, in
    /// one transaction (an admin reset: the user signs in with the password again and
    /// enrols anew). Returns whether there was an enrolment to remove.
    pub async fn reset_second_factor(
        &self,
        organization: OrganizationId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const ENROLMENT: &str =
            "DELETE FROM totp_enrolments WHERE organization_id = $1 AND user_id = $2";
        const CODES: &str =
            "DELETE FROM recovery_codes WHERE organization_id = $1 AND user_id = $2";
        let removed = with_pool!(self, |pool| {
            let mut tx = pool.begin().await?;
            let removed = sqlx::query(ENROLMENT)
                .bind(organization)
                .bind(user)
                .execute(&mut *tx)
                .await?
                .rows_affected();
            sqlx::query(CODES)
                .bind(organization)
                .bind(user)
                .execute(&mut *tx)
                .await?;
            sqlx::query(super::sessions::REVOKE_ALL_FOR_USER)
                .bind(organization)
                .bind(user)
                .bind(stored_time(now))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            removed
        });
        Ok(removed == 1)
    }

    /// Marks the recovery code used if it is one of the user's unused codes. Returns
    /// whether it was: a code works once, even under concurrent attempts.
    pub async fn consume_recovery_code(
        &self,
        organization: OrganizationId,
        user: UserId,
        code: &RecoveryCodeHash,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE recovery_codes SET used_at = $4 \
             WHERE organization_id = $1 AND user_id = $2 AND code_hash = $3 AND used_at IS NULL";
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(organization)
                .bind(user)
                .bind(code)
                .bind(stored_time(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// How many of the user's recovery codes are still unused.
    pub async fn count_unused_recovery_codes(
        &self,
        organization: OrganizationId,
        user: UserId,
    ) -> Result<u64, StoreError> {
        const SQL: &str = "SELECT COUNT(*) FROM recovery_codes \
             WHERE organization_id = $1 AND user_id = $2 AND used_at IS NULL";
        let count = with_pool!(self, |pool| {
            sqlx::query_scalar::<_, i64>(SQL)
                .bind(organization)
                .bind(user)
                .fetch_one(pool)
                .await?
        });
        u64::try_from(count).map_err(|_| StoreError::OutOfRange {
            what: "recovery code count",
        })
    }
}
