//! Server-side sessions, keyed by the hash of the session id (never the id itself).

use std::fmt;

use time::{Duration, OffsetDateTime};

use super::{
    OrganizationId, SessionHash, Store, StoreError, UserId, WorkspaceId, stored_seconds,
    stored_time, with_pool,
};

/// Revokes every live session of user `$2` in organization `$1` at time `$3`; shared
/// with [`Store::disable_user`], which runs it in its transaction.
pub(super) const REVOKE_ALL_FOR_USER: &str = "UPDATE sessions SET revoked_at = $3 \
     WHERE organization_id = $1 AND user_id = $2 AND revoked_at IS NULL";

/// How the user proved who they are when the session began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Local password (and, if `mfa_done`, a second factor).
    Password,
    /// An OpenID Connect provider.
    Oidc,
    /// A SAML 2.0 identity provider.
    Saml,
    /// A one-time code sent by email.
    EmailCode,
}

impl AuthMethod {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Password => "password",
            AuthMethod::Oidc => "oidc",
            AuthMethod::Saml => "saml",
            AuthMethod::EmailCode => "email_code",
        }
    }
}

/// A stored authentication method that this version does not know.
#[derive(Debug, thiserror::Error)]
#[error("unknown authentication method `{0}`")]
pub struct UnknownAuthMethod(String);

impl TryFrom<String> for AuthMethod {
    type Error = UnknownAuthMethod;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "password" => Ok(AuthMethod::Password),
            "oidc" => Ok(AuthMethod::Oidc),
            "saml" => Ok(AuthMethod::Saml),
            "email_code" => Ok(AuthMethod::EmailCode),
            _ => Err(UnknownAuthMethod(value)),
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the login flow knows when it starts a session.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The hash of the fresh random session id.
    pub hash: SessionHash,
    /// Who logged in.
    pub user_id: UserId,
    /// The resolved idle timeout (strictest of organization, workspace, user).
    pub idle_timeout: Duration,
    /// When the session ends whatever the activity.
    pub absolute_expiry: OffsetDateTime,
    /// Whether a second factor was verified.
    pub mfa_done: bool,
    /// How the user authenticated.
    pub auth_method: AuthMethod,
}

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The hash of the session id: the key.
    pub hash: SessionHash,
    /// The organization of the user and workspace.
    pub organization_id: OrganizationId,
    /// The workspace the session belongs to.
    pub workspace_id: WorkspaceId,
    /// Who is logged in.
    pub user_id: UserId,
    /// When it began.
    pub created_at: OffsetDateTime,
    /// The last request seen on it.
    pub last_seen_at: OffsetDateTime,
    /// It ends after this long without a request.
    pub idle_timeout: Duration,
    /// It ends at this time whatever the activity.
    pub absolute_expiry: OffsetDateTime,
    /// Whether a second factor was verified.
    pub mfa_done: bool,
    /// How the user authenticated.
    pub auth_method: AuthMethod,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
    /// The user's email (read with the session, for the identity headers).
    pub user_email: Option<std::sync::Arc<str>>,
}

impl Session {
    /// Whether the session may still be used at `now`: not revoked, within its
    /// absolute lifetime, and used recently enough.
    pub fn is_active(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none()
            && now < self.absolute_expiry
            && now < self.last_seen_at + self.idle_timeout
    }
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id_hash: SessionHash,
    organization_id: OrganizationId,
    workspace_id: WorkspaceId,
    user_id: UserId,
    created_at: OffsetDateTime,
    last_seen_at: OffsetDateTime,
    idle_timeout_secs: i64,
    absolute_expiry: OffsetDateTime,
    mfa_done: bool,
    #[sqlx(try_from = "String")]
    auth_method: AuthMethod,
    revoked_at: Option<OffsetDateTime>,
    user_email: Option<String>,
}

impl From<SessionRow> for Session {
    fn from(row: SessionRow) -> Self {
        Session {
            hash: row.id_hash,
            organization_id: row.organization_id,
            workspace_id: row.workspace_id,
            user_id: row.user_id,
            created_at: row.created_at,
            last_seen_at: row.last_seen_at,
            idle_timeout: Duration::seconds(row.idle_timeout_secs),
            absolute_expiry: row.absolute_expiry,
            mfa_done: row.mfa_done,
            auth_method: row.auth_method,
            revoked_at: row.revoked_at,
            user_email: row.user_email.map(std::sync::Arc::from),
        }
    }
}

/// `SELECT` of sessions of workspace `$1`, with one more condition.
macro_rules! select_session_where {
    ($condition:literal) => {
        concat!(
            "SELECT id_hash, organization_id, workspace_id, user_id, created_at, last_seen_at, \
             idle_timeout_secs, absolute_expiry, mfa_done, auth_method, revoked_at, \
             (SELECT email FROM users WHERE users.organization_id = sessions.organization_id \
             AND users.id = sessions.user_id) AS user_email \
             FROM sessions WHERE workspace_id = $1 AND ",
            $condition
        )
    };
}

impl Store {
    /// Stores a new session in the workspace, last seen `now`.
    /// [`StoreError::NotInTenant`] if the user is not of the workspace's organization.
    pub async fn insert_session(
        &self,
        workspace: WorkspaceId,
        new: &NewSession,
        now: OffsetDateTime,
    ) -> Result<Session, StoreError> {
        const SQL: &str = "INSERT INTO sessions (id_hash, organization_id, workspace_id, user_id, \
             created_at, last_seen_at, idle_timeout_secs, absolute_expiry, mfa_done, auth_method, \
             revoked_at) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, NULL)";
        let organization = self.workspace_organization(workspace).await?;
        let user_email = self
            .get_user(organization, new.user_id)
            .await?
            .map(|user| std::sync::Arc::from(user.email));
        let session = Session {
            hash: new.hash.clone(),
            organization_id: organization,
            workspace_id: workspace,
            user_id: new.user_id,
            created_at: stored_time(now),
            last_seen_at: stored_time(now),
            idle_timeout: Duration::seconds(stored_seconds(new.idle_timeout)),
            absolute_expiry: stored_time(new.absolute_expiry),
            mfa_done: new.mfa_done,
            auth_method: new.auth_method,
            revoked_at: None,
            user_email,
        };
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(&session.hash)
                .bind(organization)
                .bind(workspace)
                .bind(session.user_id)
                .bind(session.created_at)
                .bind(stored_seconds(session.idle_timeout))
                .bind(session.absolute_expiry)
                .bind(session.mfa_done)
                .bind(session.auth_method.as_str())
                .execute(pool)
                .await?;
        });
        Ok(session)
    }

    /// The session with this id hash in this workspace, revoked or not.
    pub async fn get_session(
        &self,
        workspace: WorkspaceId,
        hash: &SessionHash,
    ) -> Result<Option<Session>, StoreError> {
        const SQL: &str = select_session_where!("id_hash = $2");
        let row = with_pool!(self, |pool| {
            sqlx::query_as::<_, SessionRow>(SQL)
                .bind(workspace)
                .bind(hash)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Session::from))
    }

    /// Records a request on a live session. Returns whether the session exists here and
    /// is not revoked.
    pub async fn touch_session(
        &self,
        workspace: WorkspaceId,
        hash: &SessionHash,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE sessions SET last_seen_at = $3 \
             WHERE workspace_id = $1 AND id_hash = $2 AND revoked_at IS NULL";
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(workspace)
                .bind(hash)
                .bind(stored_time(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Revokes one session. Returns whether a live session was revoked.
    pub async fn revoke_session(
        &self,
        workspace: WorkspaceId,
        hash: &SessionHash,
        now: OffsetDateTime,
    ) -> Result<bool, StoreError> {
        const SQL: &str = "UPDATE sessions SET revoked_at = $3 \
             WHERE workspace_id = $1 AND id_hash = $2 AND revoked_at IS NULL";
        let changed = with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(workspace)
                .bind(hash)
                .bind(stored_time(now))
                .execute(pool)
                .await?
                .rows_affected()
        });
        Ok(changed == 1)
    }

    /// Revokes every live session of the user, in every workspace of the organization
    /// (password change, disable, "log out everywhere"). Returns how many.
    pub async fn revoke_user_sessions(
        &self,
        organization: OrganizationId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<u64, StoreError> {
        Ok(with_pool!(self, |pool| {
            sqlx::query(REVOKE_ALL_FOR_USER)
                .bind(organization)
                .bind(user)
                .bind(stored_time(now))
                .execute(pool)
                .await?
                .rows_affected()
        }))
    }

    /// The user's sessions in this workspace that are active at `now`, oldest first.
    pub async fn list_user_sessions(
        &self,
        workspace: WorkspaceId,
        user: UserId,
        now: OffsetDateTime,
    ) -> Result<Vec<Session>, StoreError> {
        const SQL: &str = select_session_where!(
            "user_id = $2 AND revoked_at IS NULL ORDER BY created_at, id_hash"
        );
        let rows = with_pool!(self, |pool| {
            sqlx::query_as::<_, SessionRow>(SQL)
                .bind(workspace)
                .bind(user)
                .fetch_all(pool)
                .await?
        });
        Ok(rows
            .into_iter()
            .map(Session::from)
            .filter(|session| session.is_active(now))
            .collect())
    }
}
