//! The integrated backend's store: organizations, workspaces, users and their
//! credentials, sessions, role bindings, API tokens and settings, on SQLite (the
//! embedded default) or PostgreSQL (the scale-out store).
//!
//! [`Store`] holds one of two *typed* pools, not sqlx's `Any` driver, so ids stay
//! [`uuid::Uuid`], timestamps stay [`time::OffsetDateTime`] and settings can be JSON.
//! Every query is a runtime query (`sqlx::query` with binds): building needs no
//! database. The SQL text is shared by both dialects (`$1` placeholders work on both);
//! migrations are per dialect (`gateway/migrations/sqlite`, `gateway/migrations/postgres`).
//!
//! Storage conventions, the same in both dialects:
//! - ids are UUIDv7 (a 16-byte BLOB in SQLite, `UUID` in PostgreSQL);
//! - timestamps are written in UTC and truncated to whole seconds, so both dialects
//!   hold the same values: RFC 3339 `TEXT` in SQLite (fixed width, so text order is
//!   time order) and `TIMESTAMPTZ` in PostgreSQL;
//! - durations are whole seconds (`INTEGER` / `BIGINT`).
//!
//! **Tenant scoping.** Every row owned by a tenant carries its organization and, where
//! it belongs to one, its workspace; every query function takes that tenant's id
//! ([`OrganizationId`] or [`WorkspaceId`]) as its first argument and filters by it.
//! Composite foreign keys on `(organization_id, id)` make it impossible to attach a row
//! to a user or workspace of another organization. The only function without a tenant
//! argument is [`Store::create_organization`], which creates the tenant.
//!
//! **Secrets.** Session ids, API tokens and recovery codes are stored only as SHA-256
//! hashes ([`SessionHash`], [`TokenHash`], [`RecoveryCodeHash`]); TOTP seeds arrive
//! already sealed by [`crate::crypto`].

mod accounts;
mod ids;
mod mfa;
mod roles;
mod sessions;
mod tenants;
mod tokens;
mod users;

#[cfg(test)]
mod tests;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use time::{OffsetDateTime, UtcOffset};

use crate::config::StoreUrl;

pub use accounts::UserTimeouts;
pub use ids::{
    ApiTokenId, OrganizationId, RecoveryCodeHash, SessionHash, SetupTokenHash, TokenHash, UserId,
    WorkspaceId,
};
pub use mfa::TotpEnrolment;
pub use roles::{RoleBinding, RoleScope};
pub use sessions::{AuthMethod, NewSession, Session};
pub use tenants::{Environment, Organization, Settings, Workspace};
pub use tokens::{ApiToken, NewApiToken};
pub use users::{PasswordCredential, User};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// How long an SQLite writer waits for the lock before giving up.
const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// SQLite has one writer at a time; a few connections serve concurrent readers.
const SQLITE_MAX_CONNECTIONS: u32 = 8;
const POSTGRES_MAX_CONNECTIONS: u32 = 16;
const POSTGRES_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `$body` with `$pool` bound to the store's typed pool; the body is compiled
/// once per dialect, so the same SQL and binds serve both.
macro_rules! with_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            $crate::store::Store::Sqlite($pool) => $body,
            $crate::store::Store::Postgres($pool) => $body,
        }
    };
}
use with_pool;

/// The store: one typed connection pool, SQLite or PostgreSQL. Cloning is cheap and
/// shares the pool.
#[derive(Clone)]
pub enum Store {
    /// The embedded default: one file, WAL journal.
    Sqlite(SqlitePool),
    /// The scale-out store shared by many gateway instances.
    Postgres(PgPool),
}

/// Which database a [`Store`] talks to; named in errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// Why a store operation failed. Messages never contain connection URLs, hashes or
/// other stored values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or reached.
    #[error("cannot open the {backend} store")]
    Connect {
        /// Which database.
        backend: Backend,
        /// The driver's reason.
        #[source]
        source: sqlx::Error,
    },
    /// The schema migrations could not be applied.
    #[error("cannot apply the {backend} store migrations")]
    Migrate {
        /// Which database.
        backend: Backend,
        /// The migrator's reason.
        #[source]
        source: MigrateError,
    },
    /// A row with the same unique key already exists (for example the same email in
    /// the same organization).
    #[error("a row with the same key already exists")]
    Duplicate(#[source] sqlx::Error),
    /// A row refers to a user or workspace that does not exist in this tenant.
    #[error("a referenced user or workspace does not exist in this tenant")]
    NotInTenant(#[source] sqlx::Error),
    /// The workspace named as the tenant does not exist.
    #[error("the workspace does not exist")]
    UnknownWorkspace,
    /// A value does not fit the column that stores it.
    #[error("{what} is out of range")]
    OutOfRange {
        /// Which value.
        what: &'static str,
    },
    /// Any other database failure.
    #[error("store query failed")]
    Query(#[source] sqlx::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        let kind = error.as_database_error().map(|db| db.kind());
        match kind {
            Some(sqlx::error::ErrorKind::UniqueViolation) => StoreError::Duplicate(error),
            Some(sqlx::error::ErrorKind::ForeignKeyViolation) => StoreError::NotInTenant(error),
            _ => StoreError::Query(error),
        }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The pools' own Debug would print connection options; say only the backend.
        write!(f, "Store({})", self.backend())
    }
}

impl Store {
    /// Opens the store named in the configuration. SQLite: creates the file if it is
    /// missing, WAL journal, `synchronous = FULL` (a committed revocation survives a
    /// power loss), foreign keys on, a busy timeout. PostgreSQL: a connection pool.
    /// Does not migrate: call [`Store::migrate`].
    pub async fn connect(url: &StoreUrl) -> Result<Store, StoreError> {
        match url {
            StoreUrl::Sqlite(path) => {
                let options = SqliteConnectOptions::new()
                    .filename(path)
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(SQLITE_BUSY_TIMEOUT);
                let pool = SqlitePoolOptions::new()
                    .max_connections(SQLITE_MAX_CONNECTIONS)
                    .connect_with(options)
                    .await
                    .map_err(|source| StoreError::Connect {
                        backend: Backend::Sqlite,
                        source,
                    })?;
                Ok(Store::Sqlite(pool))
            }
            StoreUrl::Postgres(url) => {
                let connect_error = |source| StoreError::Connect {
                    backend: Backend::Postgres,
                    source,
                };
                let options = PgConnectOptions::from_str(url).map_err(connect_error)?;
                let pool = PgPoolOptions::new()
                    .max_connections(POSTGRES_MAX_CONNECTIONS)
                    .acquire_timeout(POSTGRES_ACQUIRE_TIMEOUT)
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                Ok(Store::Postgres(pool))
            }
        }
    }

    /// Which database this store talks to.
    pub fn backend(&self) -> Backend {
        match self {
            Store::Sqlite(_) => Backend::Sqlite,
            Store::Postgres(_) => Backend::Postgres,
        }
    }

    /// Applies the embedded migrations for this dialect; already applied ones are
    /// skipped, so running it again is harmless.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let backend = self.backend();
        let result = match self {
            Store::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await,
            Store::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await,
        };
        result.map_err(|source| StoreError::Migrate { backend, source })
    }

    /// Closes every connection; later queries fail.
    pub async fn close(&self) {
        with_pool!(self, |pool| pool.close().await);
    }
}

/// A timestamp as stored: UTC, whole seconds.
fn stored_time(at: OffsetDateTime) -> OffsetDateTime {
    at.to_offset(UtcOffset::UTC).truncate_to_second()
}

/// A duration as stored: whole seconds.
fn stored_seconds(duration: time::Duration) -> i64 {
    duration.whole_seconds()
}
