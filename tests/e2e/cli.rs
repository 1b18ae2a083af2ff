//! The command line: `check-config` and `demo`.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{TempDir, free_port, raw_get};

fn portcullis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn check_config_accepts_the_example_and_names_errors() {
    let dir = TempDir::new("check");
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/portcullis.example.toml"
    ))
    .unwrap()
    .replace(
        "tls = { cert = \"tls/cert.pem\", key = \"tls/key.pem\" }\n",
        "",
    )
    .replace("upstream_ca = \"tls/internal-ca.pem\"", "");
    crate::support::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        &dir.path().join("policies"),
    );
    let good = dir.path().join("good.toml");
    std::fs::write(&good, &example).unwrap();
    let output = portcullis(&["check-config", good.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("ok (1 listener(s), 3 route(s))"));

    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        example.replace("access = \"public\"", "access = \"open\""),
    )
    .unwrap();
    let output = portcullis(&["check-config", bad.to_str().unwrap()]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "error: {}: `route[2].access`: must be `public` or `protected`, got `open`",
            bad.display()
        )),
        "{stderr}"
    );

    // TLS files are loaded too: a missing certificate fails the check.
    let tls = dir.path().join("tls.toml");
    std::fs::write(
        &tls,
        example.replace(
            "bind = \"0.0.0.0:8443\"",
            "bind = \"0.0.0.0:8443\"\ntls = { cert = \"nope.pem\", key = \"nope.key\" }",
        ),
    )
    .unwrap();
    let output = portcullis(&["check-config", tls.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("listener `public`: certificate"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_serves_a_page_with_one_command() {
    let dir = TempDir::new("demo");
    let port = free_port();
    let data_dir = dir.path().join("data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args([
            "demo",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("PORTCULLIS_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut page = None;
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            page = Some(raw_get(addr, "localhost", "/", &["Accept: text/html"]).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin = raw_get(addr, "localhost", "/admin", &[]).await;
    let internal = raw_get(addr, "localhost", "/internal", &[]).await;
    let _ = child.kill();
    let _ = child.wait();
    let page = page.expect("demo never listened");
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("Hello from the demo app"),
        "{}",
        page.body
    );
    assert!(page.body.contains("x-forwarded-for"));
    assert_eq!(admin.status, 401);
    assert_eq!(internal.status, 200);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data_dir.join("main.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the main key must be private");
    assert!(
        data_dir.join("policies/schema.cedarschema").is_file(),
        "default policy bundle not written"
    );
}
