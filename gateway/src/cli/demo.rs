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

use crate::config::Config;
use crate::ops::server;
use crate::proxy::{Body, full};

/// Prepares `data_dir` and serves the demo on `listen` until interrupted.
pub async fn run(data_dir: &Path, listen: SocketAddr) -> anyhow::Result<()> {
    create_private_dir(data_dir)?;
    let key_path = data_dir.join("main.key");
    if !key_path.exists() {
        write_private(&key_path, &generate_key_hex()).context("writing the generated main key")?;
        println!("generated a new main key in {}", key_path.display());
    }
    let policy_dir = data_dir.join("policies");
    let written = super::bundle::write_default_bundle(&policy_dir).with_context(|| {
        format!(
            "writing the default policy bundle to {}",
            policy_dir.display()
        )
    })?;
    if written > 0 {
        println!(
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

    let config_path = data_dir.join("portcullis.toml");
    std::fs::write(&config_path, demo_config(listen, upstream_addr))
        .with_context(|| format!("writing {}", config_path.display()))?;
    let config = Config::load(&config_path)?;
    println!(
        "Portcullis demo: open http://{listen}/ (configuration in {})",
        config_path.display()
    );
    println!("  /          public route to the built-in demo app");
    println!("  /internal  only for loopback clients (IP allowlist)");
    println!("  /admin     protected route: refused until a login exists (fail closed)");
    println!("Press Ctrl-C to stop.");
    server::serve(config).await?;
    Ok(())
}

fn demo_config(listen: SocketAddr, upstream: SocketAddr) -> String {
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
"#
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

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn generate_key_hex() -> String {
    let key: [u8; 32] = rand::random();
    let mut hex = String::with_capacity(65);
    for byte in key {
        let _ = write!(hex, "{byte:02x}");
    }
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
