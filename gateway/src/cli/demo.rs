//! `portcullis demo`: the whole product on one command. It prepares a data directory
//! (a generated main key, the default policy bundle, a configuration file a user can
//! copy), starts a built-in upstream app on a loopback port, and serves the gateway in
//! front of it with the same code path as `serve`.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use http::{HeaderValue, Response, header};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use crate::clock;
use crate::config::Config;
use crate::login::pages::escape;
use crate::login::password;
use crate::ops::server;
use crate::proxy::{Body, full};
use crate::store::{Environment, Store};

/// Prints a line for the person running the demo; a closed stdout is not an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Prepares `data_dir` and serves the demo on `listen` until interrupted.
pub async fn run(data_dir: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    create_private_dir(data_dir)?;
    let key_path = data_dir.join("main.key");
    if !key_path.exists() {
        write_private(&key_path, &generate_key_hex()).context("writing the generated main key")?;
        say!("generated a new main key in {}", key_path.display());
    }
    let policy_dir = data_dir.join("policies");
    let written = super::bundle::write_default_bundle(&policy_dir).with_context(|| {
        format!(
            "writing the default policy bundle to {}",
            policy_dir.display()
        )
    })?;
    if written > 0 {
        say!(
            "wrote the default policy bundle to {}",
            policy_dir.display()
        );
    }

    let upstream = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the demo upstream")?;
    let upstream_addr = upstream
        .local_addr()
        .context("reading the demo upstream address")?;
    tokio::spawn(serve_demo_app(upstream));

    // First a configuration without sign-in, to open the store and create the demo
    // tenant; then the real one, with sign-in for that tenant.
    let config_path = data_dir.join("portcullis.toml");
    std::fs::write(&config_path, demo_config(listen, upstream_addr, None))
        .with_context(|| format!("writing {}", config_path.display()))?;
    let tenant = demo_tenant(&Config::load(&config_path)?, data_dir).await?;
    std::fs::write(
        &config_path,
        demo_config(listen, upstream_addr, Some(&tenant)),
    )
    .with_context(|| format!("writing {}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    say!(
        "Portcullis demo: open http://{listen}/ (configuration in {})",
        config_path.display()
    );
    say!("  /          public route to the built-in demo app");
    say!("  /internal  only for loopback clients (IP allowlist)");
    say!("  /admin     protected: sign in as {DEMO_EMAIL}; Cedar policies decide");
    say!("Press Ctrl-C to stop.");
    server::serve(config).await?;
    Ok(())
}

/// The demo's sign-in account.
const DEMO_EMAIL: &str = "admin@demo.test";

/// The demo organization, workspace and admin, created on the first run and reused
/// after (their ids are kept in `demo-tenant.txt`; the password is printed once).
struct DemoTenant {
    organization: String,
    workspace: String,
}

async fn demo_tenant(config: &Config, data_dir: &Path) -> anyhow::Result<DemoTenant> {
    let ids_path = data_dir.join("demo-tenant.txt");
    if let Ok(text) = std::fs::read_to_string(&ids_path) {
        let mut lines = text.lines();
        if let (Some(organization), Some(workspace)) = (lines.next(), lines.next()) {
            say!(
                "demo tenant exists; sign in as {DEMO_EMAIL} with the password printed on the first run"
            );
            say!(
                "  (or set a new one: portcullis user passwd --config {} --organization {organization} {DEMO_EMAIL})",
                data_dir.join("portcullis.toml").display()
            );
            return Ok(DemoTenant {
                organization: organization.to_owned(),
                workspace: workspace.to_owned(),
            });
        }
    }
    let store = Store::connect(config.store())
        .await
        .context("opening the demo store")?;
    store.migrate().await.context("migrating the demo store")?;
    let now = clock::now_utc();
    let organization = store.create_organization("demo", now).await?;
    let workspace = store
        .create_workspace(organization.id, "demo", Environment::Dev, now)
        .await?;
    let user = store
        .create_user(organization.id, DEMO_EMAIL, "Demo admin", now)
        .await?;
    let password = generate_password();
    let hasher = password::PasswordHasher::new(config.passwords, 1)?;
    store
        .set_password(
            organization.id,
            user.id,
            &hasher.hash(&password).await?,
            now,
        )
        .await?;
    let bindings = format!(
        "{{\"entities\": [{{\"type\": \"App\", \"id\": \"demo-admin\"}}],\n \"bindings\": [{{\"user\": \"{}\", \"role\": \"admin\", \"scope\": {{\"type\": \"App\", \"id\": \"demo-admin\"}}}}]}}\n",
        user.id
    );
    std::fs::write(data_dir.join("bindings.json"), bindings)
        .context("writing the demo role bindings")?;
    write_private(
        &ids_path,
        &format!("{}\n{}\n", organization.id, workspace.id),
    )
    .context("writing the demo tenant ids")?;
    store.close().await;
    say!("created the demo tenant; sign in as {DEMO_EMAIL} with password: {password}");
    say!("  (shown once; it is stored only as an argon2id hash)");
    Ok(DemoTenant {
        organization: organization.id.to_string(),
        workspace: workspace.id.to_string(),
    })
}

/// 24 random characters from an alphabet without look-alikes.
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyz23456789";
    let bytes: [u8; 24] = rand::random();
    bytes
        .iter()
        .filter_map(|byte| ALPHABET.get(usize::from(*byte) % ALPHABET.len()))
        .map(|&b| char::from(b))
        .collect()
}

fn demo_config(listen: SocketAddr, upstream: SocketAddr, tenant: Option<&DemoTenant>) -> String {
    let (bindings, login) = match tenant {
        Some(tenant) => (
            "bindings = \"bindings.json\"\n",
            format!(
                "\n[login]\norganization = \"{}\"\nworkspace = \"{}\"\n",
                tenant.organization, tenant.workspace
            ),
        ),
        None => ("", String::new()),
    };
    format!(
        r#"# Written by `portcullis demo` on every start; copy it to begin your own.
version = 1

[[listener]]
name = "demo"
bind = "{listen}"

[store]
url = "sqlite://portcullis.db"

[policy]
dir = "policies"
environment = "dev"
{bindings}
[keys]
main_key = "file:main.key"

[[route]]
id = "demo-app"
host = "*"
path = "/"
upstream = "http://{upstream}"
access = "public"

[[route]]
id = "demo-internal"
host = "*"
path = "/internal"
upstream = "http://{upstream}"
access = "public"
allow = ["127.0.0.0/8", "::1/128"]

[[route]]
id = "demo-admin"
host = "*"
path = "/admin"
upstream = "http://{upstream}"
access = "protected"
resource = 'App::"demo-admin"'
{login}"#
    )
}

/// The built-in upstream: a page that shows what the gateway forwarded.
async fn serve_demo_app(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            let service = service_fn(|request: hyper::Request<Incoming>| async move {
                Ok::<_, Infallible>(demo_page(&request))
            });
            if let Err(err) = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(error = %err, "demo app connection ended with error");
            }
        });
    }
}

fn demo_page(request: &hyper::Request<Incoming>) -> Response<Body> {
    let mut rows = String::new();
    for (name, value) in request.headers() {
        let value = value.to_str().unwrap_or("(binary)");
        let _ = writeln!(
            rows,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name.as_str()),
            escape(value)
        );
    }
    let page = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Portcullis demo app</title></head>\
         <body><main><h1>Hello from the demo app</h1>\
         <p>This page is served by the built-in upstream, through Portcullis.</p>\
         <p>Request: <code>{} {}</code></p><h2>Headers the app received</h2><table>{rows}</table></main></body></html>\n",
        escape(request.method().as_str()),
        escape(&request.uri().to_string()),
    );
    let mut response = Response::new(full(page));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn generate_key_hex() -> String {
    let mut hex = crate::crypto::random::random_hex256();
    hex.push('\n');
    hex
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents.as_bytes())
}
