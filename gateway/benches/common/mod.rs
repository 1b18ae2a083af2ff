//! Fixtures shared by the gateway's micro-benchmarks: a configuration with one
//! protected route, the default policy bundle, and an SQLite store in a temp folder
//! holding one organization, workspace and user.

#![allow(
    dead_code,
    reason = "each benchmark binary uses a different part of the fixture"
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;
use portcullis_gateway::authz::{PolicySnapshot, load_snapshot, route_resources};
use portcullis_gateway::config::Config;
use portcullis_gateway::crypto::{MainKey, SigningKey, load_main_key};
use portcullis_gateway::proxy::path::CanonicalPath;
use portcullis_gateway::proxy::route::{Route, RouteTable};
use portcullis_gateway::store::{Environment, Store, UserId, WorkspaceId};

/// Everything a benchmark needs, built once.
pub struct Fixture {
    pub dir: PathBuf,
    pub config: Config,
    pub routes: RouteTable,
    pub snapshot: std::sync::Arc<PolicySnapshot>,
    pub main_key: MainKey,
    pub runtime: tokio::runtime::Runtime,
    pub store: Store,
    pub workspace: WorkspaceId,
    pub user: UserId,
    pub now: SystemTime,
}

impl Fixture {
    /// The assertion signing key (derived afresh: a key is not `Clone`).
    pub fn signing(&self) -> SigningKey {
        SigningKey::derive(&self.main_key).expect("signing key")
    }

    /// The protected route `/app` on `App::"bench"`.
    pub fn route(&self) -> &Arc<Route> {
        let path = CanonicalPath::parse("/app", false).expect("static path");
        self.routes
            .lookup("bench.test", &path)
            .expect("the bench route exists")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Builds the fixture in a fresh temp folder.
pub fn fixture() -> Fixture {
    let dir = std::env::temp_dir().join(format!("portcullis-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp folder");
    let policies = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The store first: the bindings file names the user it creates.
    let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    let toml = |bindings: &str| {
        format!(
            r#"
version = 1

[[listener]]
name = "bench"
bind = "127.0.0.1:0"

[store]
url = "sqlite://{db}"

[policy]
dir = "{policies}"
{bindings}
environment = "dev"

[keys]
main_key = "env:PORTCULLIS_BENCH_KEY"

[[route]]
id = "app"
host = "*"
path = "/app"
upstream = "http://127.0.0.1:9"
access = "protected"
resource = 'App::"bench"'
allow = ["127.0.0.0/8", "10.0.0.0/8"]
"#,
            db = dir.join("bench.db").display(),
            policies = policies.display(),
        )
    };
    let config_path = dir.join("portcullis.toml");
    let bare = Config::from_toml(&config_path, &toml("")).expect("bench configuration");
    let (store, workspace, user) = runtime.block_on(async {
        let store = Store::connect(bare.store()).await.expect("store");
        store.migrate().await.expect("migrations");
        let at = time::OffsetDateTime::from(now);
        let organization = store
            .create_organization("bench", at)
            .await
            .expect("organization");
        let workspace = store
            .create_workspace(organization.id, "bench", Environment::Dev, at)
            .await
            .expect("workspace");
        let user = store
            .create_user(organization.id, "bench@bench.test", "Bench", at)
            .await
            .expect("user");
        (store, workspace.id, user.id)
    });
    let bindings_path = dir.join("bindings.json");
    std::fs::write(
        &bindings_path,
        format!(
            r#"{{"entities": [{{"type": "App", "id": "bench"}}],
 "bindings": [{{"user": "{user}", "role": "operator", "scope": {{"type": "App", "id": "bench"}}}}]}}"#
        ),
    )
    .expect("bindings file");
    let config = Config::from_toml(
        &config_path,
        &toml(&format!("bindings = \"{}\"", bindings_path.display())),
    )
    .expect("bench configuration with bindings");
    let snapshot = load_snapshot(&policies, Some(&bindings_path), &route_resources(&config))
        .expect("the default bundle loads");
    let routes = RouteTable::build(config.routes(), StatusCode::NOT_FOUND, 1).expect("routes");
    let main_key = load_main_key(config.main_key(), &|_| Some("ab".repeat(32))).expect("main key");
    Fixture {
        dir,
        config,
        routes,
        snapshot: std::sync::Arc::new(snapshot),
        main_key,
        runtime,
        store,
        workspace,
        user,
        now,
    }
}
