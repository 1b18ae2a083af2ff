//! The store test suite, run twice: against SQLite (a temporary file per test) and
//! against PostgreSQL (a fresh database per test on the server named by
//! `PORTCULLIS_TEST_POSTGRES`, dropped afterwards, so parallel test processes never
//! share a schema). Without that variable the PostgreSQL half prints a notice and
//! passes; under `CI=true` it fails instead, as it does whenever the server named
//! there cannot be reached.

mod cases;

use std::future::Future;
use std::path::PathBuf;

use sqlx::AssertSqlSafe;
use sqlx::postgres::PgPoolOptions;

use super::{Store, StoreError};
use crate::config::StoreUrl;

/// Generates one `#[tokio::test]` per case and backend: `store::tests::sqlite::<case>`
/// and `store::tests::postgres::<case>`.
macro_rules! store_suite {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_sqlite(super::cases::$case).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    super::on_postgres(super::cases::$case).await;
                }
            )*
        }
    };
}

store_suite!(
    migrations_apply_twice,
    organizations_workspaces_and_settings,
    users_and_passwords,
    disabling_a_user_revokes_its_sessions,
    tenant_scoping_of_sessions_roles_and_tokens,
    sessions_are_stored_only_by_hash,
    session_lifecycle_and_revoke_all,
    totp_step_compare_and_set_is_atomic,
    recovery_codes_work_once,
    second_factor_reset,
    role_bindings,
    api_tokens,
    user_timeouts_and_user_count,
    setup_tokens_work_once_and_expire,
    external_identities_link_once,
    provider_role_bindings_sync_without_touching_manual_ones,
    a_connection_remembers_its_session_within_the_caches_bounds,
);

/// An SQLite database file (with its WAL and shared-memory files) removed on drop.
struct SqliteFile(PathBuf);

impl SqliteFile {
    fn new() -> SqliteFile {
        SqliteFile(std::env::temp_dir().join(format!(
            "portcullis-store-test-{}-{:016x}.db",
            std::process::id(),
            rand::random::<u64>()
        )))
    }
}

impl Drop for SqliteFile {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.0.clone().into_os_string();
            path.push(suffix);
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn on_sqlite<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let file = SqliteFile::new();
    let store = Store::connect(&StoreUrl::Sqlite(file.0.clone()))
        .await
        .unwrap();
    assert!(file.0.exists(), "connect creates the database file");
    store.migrate().await.unwrap();
    case(store.clone()).await;
    store.close().await;
}

/// The server URL to test against, or `None` to skip (never under CI).
fn postgres_url() -> Option<String> {
    let in_ci = std::env::var("CI").is_ok_and(|value| value == "true");
    match std::env::var("PORTCULLIS_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if in_ci => panic!("CI=true but PORTCULLIS_TEST_POSTGRES is not set"),
        _ => {
            eprintln!(
                "notice: PORTCULLIS_TEST_POSTGRES is not set; skipping the PostgreSQL store test"
            );
            None
        }
    }
}

/// `url` with its database name replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, format!("?{query}")),
        None => (url, String::new()),
    };
    let authority_start = base.find("://").map_or(0, |index| index + 3);
    let authority_end = base[authority_start..]
        .find('/')
        .map_or(base.len(), |index| authority_start + index);
    format!("{}/{database}{query}", &base[..authority_end])
}

async fn on_postgres<F, Fut>(case: F)
where
    F: FnOnce(Store) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let Some(server) = postgres_url() else {
        return;
    };
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&server)
        .await
        .unwrap_or_else(|error| {
            panic!("PORTCULLIS_TEST_POSTGRES is set but the server is unreachable: {error}")
        });
    let database = format!("portcullis_test_{:016x}", rand::random::<u64>());
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&admin)
        .await
        .unwrap();
    let url = with_database(&server, &database);
    let outcome = tokio::spawn(async move {
        let store = Store::connect(&StoreUrl::Postgres(url)).await.unwrap();
        store.migrate().await.unwrap();
        case(store.clone()).await;
        store.close().await;
    })
    .await;
    // Dropped even when the case failed; FORCE ends connections a panicking case left.
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .unwrap();
    admin.close().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[test]
fn database_name_is_replaced_in_urls() {
    assert_eq!(
        with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
        "postgres://postgres@127.0.0.1:5432/x"
    );
    assert_eq!(
        with_database("postgresql://u:p@h/db?sslmode=disable", "x"),
        "postgresql://u:p@h/x?sslmode=disable"
    );
    assert_eq!(
        with_database("postgres://h:5432", "x"),
        "postgres://h:5432/x"
    );
}

#[tokio::test]
async fn unopenable_sqlite_file_is_a_connect_error() {
    let path = std::env::temp_dir()
        .join("portcullis-no-such-dir-for-store-test")
        .join("store.db");
    let error = Store::connect(&StoreUrl::Sqlite(path)).await.unwrap_err();
    assert!(matches!(error, StoreError::Connect { .. }), "{error:?}");
    assert_eq!(error.to_string(), "cannot open the SQLite store");
}
