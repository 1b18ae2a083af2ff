//! Organizations, workspaces and their settings.

use std::fmt;

use ipnetwork::IpNetwork;
use sqlx::types::Json;
use time::{Duration, OffsetDateTime};

use super::{
    OrganizationId, Store, StoreError, WorkspaceId, stored_seconds, stored_time, with_pool,
};

/// An organization: the tenant that owns users and workspaces.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Organization {
    /// Its id.
    pub id: OrganizationId,
    /// Its display name.
    pub name: String,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// The stage a workspace serves; each has its own users' role bindings and settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Development.
    Dev,
    /// Testing / staging.
    Test,
    /// Production.
    Prod,
}

impl Environment {
    /// The stored (and configured) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Environment::Dev => "dev",
            Environment::Test => "test",
            Environment::Prod => "prod",
        }
    }
}

/// A stored environment that is none of `dev`, `test`, `prod`.
#[derive(Debug, thiserror::Error)]
#[error("unknown environment `{0}`")]
pub struct UnknownEnvironment(String);

impl TryFrom<String> for Environment {
    type Error = UnknownEnvironment;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "dev" => Ok(Environment::Dev),
            "test" => Ok(Environment::Test),
            "prod" => Ok(Environment::Prod),
            _ => Err(UnknownEnvironment(value)),
        }
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A workspace: one environment of one organization; every workspace-owned row
/// carries its id.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Workspace {
    /// Its id.
    pub id: WorkspaceId,
    /// The organization that owns it.
    pub organization_id: OrganizationId,
    /// Its name, unique in the organization.
    pub name: String,
    /// The stage it serves.
    #[sqlx(try_from = "String")]
    pub environment: Environment,
    /// When it was created.
    pub created_at: OffsetDateTime,
}

/// Settings of an organization or a workspace. `None` means "not set here": the
/// session and login code resolve organization → workspace → user, strictest wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// Sessions end after this long without a request.
    pub idle_timeout: Option<Duration>,
    /// Sessions end this long after login, whatever the activity.
    pub absolute_lifetime: Option<Duration>,
    /// Whether every user must use a second factor.
    pub require_2fa: Option<bool>,
    /// Whether members must sign in through single sign-on (no password, no email code).
    pub require_sso: Option<bool>,
    /// The name of the password policy profile (for example `nist` or `compliance`).
    pub password_profile: Option<String>,
    /// Client networks allowed to reach the tenant's routes.
    pub ip_allowlist: Option<Vec<IpNetwork>>,
}

#[derive(sqlx::FromRow)]
struct SettingsRow {
    idle_timeout_secs: Option<i64>,
    absolute_lifetime_secs: Option<i64>,
    require_2fa: Option<bool>,
    require_sso: Option<bool>,
    password_profile: Option<String>,
    ip_allowlist: Option<Json<Vec<IpNetwork>>>,
}

impl From<SettingsRow> for Settings {
    fn from(row: SettingsRow) -> Self {
        Settings {
            idle_timeout: row.idle_timeout_secs.map(Duration::seconds),
            absolute_lifetime: row.absolute_lifetime_secs.map(Duration::seconds),
            require_2fa: row.require_2fa,
            require_sso: row.require_sso,
            password_profile: row.password_profile,
            ip_allowlist: row.ip_allowlist.map(|Json(list)| list),
        }
    }
}

impl Store {
    /// Creates an organization: the one query without a tenant argument, since it
    /// makes the tenant.
    pub async fn create_organization(
        &self,
        name: &str,
        now: OffsetDateTime,
    ) -> Result<Organization, StoreError> {
        const SQL: &str = "INSERT INTO organizations (id, name, created_at) VALUES ($1, $2, $3)";
        let organization = Organization {
            id: OrganizationId::generate(now),
            name: name.to_owned(),
            created_at: stored_time(now),
        };
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(organization.id)
                .bind(name)
                .bind(organization.created_at)
                .execute(pool)
                .await?;
        });
        Ok(organization)
    }

    /// The organization, if it exists.
    pub async fn get_organization(
        &self,
        organization: OrganizationId,
    ) -> Result<Option<Organization>, StoreError> {
        const SQL: &str = "SELECT id, name, created_at FROM organizations WHERE id = $1";
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, Organization>(SQL)
                .bind(organization)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// Creates a workspace in the organization.
    pub async fn create_workspace(
        &self,
        organization: OrganizationId,
        name: &str,
        environment: Environment,
        now: OffsetDateTime,
    ) -> Result<Workspace, StoreError> {
        const SQL: &str = "INSERT INTO workspaces (id, organization_id, name, environment, created_at) \
             VALUES ($1, $2, $3, $4, $5)";
        let workspace = Workspace {
            id: WorkspaceId::generate(now),
            organization_id: organization,
            name: name.to_owned(),
            environment,
            created_at: stored_time(now),
        };
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(workspace.id)
                .bind(organization)
                .bind(name)
                .bind(environment.as_str())
                .bind(workspace.created_at)
                .execute(pool)
                .await?;
        });
        Ok(workspace)
    }

    /// The workspace, if it exists in this organization.
    pub async fn get_workspace(
        &self,
        organization: OrganizationId,
        workspace: WorkspaceId,
    ) -> Result<Option<Workspace>, StoreError> {
        const SQL: &str = "SELECT id, organization_id, name, environment, created_at \
             FROM workspaces WHERE organization_id = $1 AND id = $2";
        Ok(with_pool!(self, |pool| {
            sqlx::query_as::<_, Workspace>(SQL)
                .bind(organization)
                .bind(workspace)
                .fetch_optional(pool)
                .await?
        }))
    }

    /// The organization that owns the workspace (it never changes), or
    /// [`StoreError::UnknownWorkspace`].
    pub(super) async fn workspace_organization(
        &self,
        workspace: WorkspaceId,
    ) -> Result<OrganizationId, StoreError> {
        const SQL: &str = "SELECT organization_id FROM workspaces WHERE id = $1";
        let found = with_pool!(self, |pool| {
            sqlx::query_scalar::<_, OrganizationId>(SQL)
                .bind(workspace)
                .fetch_optional(pool)
                .await?
        });
        found.ok_or(StoreError::UnknownWorkspace)
    }

    /// The organization's settings (all unset if never written).
    pub async fn get_organization_settings(
        &self,
        organization: OrganizationId,
    ) -> Result<Settings, StoreError> {
        const SQL: &str = "SELECT idle_timeout_secs, absolute_lifetime_secs, require_2fa, require_sso, \
             password_profile, ip_allowlist FROM organization_settings WHERE organization_id = $1";
        let row = with_pool!(self, |pool| {
            sqlx::query_as::<_, SettingsRow>(SQL)
                .bind(organization)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Settings::from).unwrap_or_default())
    }

    /// Replaces the organization's settings.
    pub async fn set_organization_settings(
        &self,
        organization: OrganizationId,
        settings: &Settings,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO organization_settings (organization_id, idle_timeout_secs, \
             absolute_lifetime_secs, require_2fa, password_profile, ip_allowlist, require_sso) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (organization_id) DO UPDATE SET \
             idle_timeout_secs = excluded.idle_timeout_secs, \
             absolute_lifetime_secs = excluded.absolute_lifetime_secs, \
             require_2fa = excluded.require_2fa, password_profile = excluded.password_profile, \
             ip_allowlist = excluded.ip_allowlist, require_sso = excluded.require_sso";
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(organization)
                .bind(settings.idle_timeout.map(stored_seconds))
                .bind(settings.absolute_lifetime.map(stored_seconds))
                .bind(settings.require_2fa)
                .bind(settings.password_profile.as_deref())
                .bind(settings.ip_allowlist.as_ref().map(Json))
                .bind(settings.require_sso)
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// The workspace's own settings (all unset if never written); not merged with the
    /// organization's.
    pub async fn get_workspace_settings(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Settings, StoreError> {
        const SQL: &str = "SELECT idle_timeout_secs, absolute_lifetime_secs, require_2fa, require_sso, \
             password_profile, ip_allowlist FROM workspace_settings WHERE workspace_id = $1";
        let row = with_pool!(self, |pool| {
            sqlx::query_as::<_, SettingsRow>(SQL)
                .bind(workspace)
                .fetch_optional(pool)
                .await?
        });
        Ok(row.map(Settings::from).unwrap_or_default())
    }

    /// Replaces the workspace's own settings.
    pub async fn set_workspace_settings(
        &self,
        workspace: WorkspaceId,
        settings: &Settings,
    ) -> Result<(), StoreError> {
        const SQL: &str = "INSERT INTO workspace_settings (workspace_id, organization_id, \
             idle_timeout_secs, absolute_lifetime_secs, require_2fa, password_profile, ip_allowlist, require_sso) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (workspace_id) DO UPDATE SET \
             idle_timeout_secs = excluded.idle_timeout_secs, \
             absolute_lifetime_secs = excluded.absolute_lifetime_secs, \
             require_2fa = excluded.require_2fa, password_profile = excluded.password_profile, \
             ip_allowlist = excluded.ip_allowlist, require_sso = excluded.require_sso";
        let organization = self.workspace_organization(workspace).await?;
        with_pool!(self, |pool| {
            sqlx::query(SQL)
                .bind(workspace)
                .bind(organization)
                .bind(settings.idle_timeout.map(stored_seconds))
                .bind(settings.absolute_lifetime.map(stored_seconds))
                .bind(settings.require_2fa)
                .bind(settings.password_profile.as_deref())
                .bind(settings.ip_allowlist.as_ref().map(Json))
                .bind(settings.require_sso)
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
