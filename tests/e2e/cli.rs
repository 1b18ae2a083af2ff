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
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The first run prints the demo admin's password once.
    let stdout = child.stdout.take().unwrap();
    let (found, password) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        // Read to the end, so the demo never writes into a closed pipe.
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some((_, secret)) = line.split_once("with password: ") {
                let _ = found.send(secret.to_owned());
            }
        }
    });
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut page = None;
    for _ in 0..300 {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            page = Some(raw_get(addr, "localhost", "/", &["Accept: text/html"]).await);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let admin_api = raw_get(addr, "localhost", "/admin", &[]).await;
    let admin_browser = raw_get(addr, "localhost", "/admin", &["Accept: text/html"]).await;
    let internal = raw_get(addr, "localhost", "/internal", &[]).await;
    let password = password
        .recv_timeout(Duration::from_secs(30))
        .expect("the demo printed no password");

    // Sign in as the demo admin and reach the protected route.
    let form = raw_get(addr, "localhost", "/.portcullis/login", &[]).await;
    let csrf = form
        .head
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: __Host-portcullis-csrf="))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("email", "admin@demo.test"),
            ("password", password.as_str()),
            ("csrf", csrf.as_str()),
            ("rd", "/admin"),
        ])
        .finish();
    let request = format!(
        "POST /.portcullis/login HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nCookie: __Host-portcullis-csrf={csrf}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let signed_in = crate::support::raw_exchange(addr, request.as_bytes()).await;
    let session = signed_in
        .head
        .lines()
        .find_map(|line| line.strip_prefix("set-cookie: __Host-portcullis="))
        .and_then(|rest| rest.split(';').next())
        .map(str::to_owned);
    let admin_signed_in = match &session {
        Some(session) => Some(
            raw_get(
                addr,
                "localhost",
                "/admin",
                &[&format!("Cookie: __Host-portcullis={session}")],
            )
            .await,
        ),
        None => None,
    };
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
    assert_eq!(admin_api.status, 401);
    assert_eq!(admin_browser.status, 303);
    assert_eq!(internal.status, 200);
    assert_eq!(signed_in.status, 303, "{signed_in:?}");
    let admin = admin_signed_in.expect("no session cookie after sign-in");
    assert_eq!(admin.status, 200, "{admin:?}");
    assert!(admin.body.contains("x-portcullis-user"), "{}", admin.body);
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

fn policy_bundle_copy(dir: &TempDir) -> std::path::PathBuf {
    let bundle = dir.path().join("policies");
    crate::support::copy_dir(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
        &bundle,
    );
    bundle
}

#[test]
fn policy_validate_test_and_fmt() {
    let dir = TempDir::new("policy-cli");
    let bundle = policy_bundle_copy(&dir);
    let bundle_arg = bundle.to_str().unwrap();
    let output = portcullis(&["policy", "validate", bundle_arg]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("valid ("));
    let output = portcullis(&["policy", "test", bundle_arg, "--require-coverage", "--json"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(report.is_object(), "{report}");
    assert!(
        portcullis(&["policy", "fmt", "--check", bundle_arg])
            .status
            .success()
    );

    // An unformatted file fails the check and `fmt` fixes it.
    let messy = bundle.join("roles/operator.cedar");
    let text = std::fs::read_to_string(&messy)
        .unwrap()
        .replace("  action in", "action    in");
    std::fs::write(&messy, text).unwrap();
    let output = portcullis(&["policy", "fmt", "--check", bundle_arg]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("not formatted:"));
    assert!(portcullis(&["policy", "fmt", bundle_arg]).status.success());
    assert!(
        portcullis(&["policy", "fmt", "--check", bundle_arg])
            .status
            .success()
    );

    // A broken policy: exit 1 and a message pointing at file, line and column.
    std::fs::write(
        bundle.join("roles/broken.cedar"),
        "@id(\"broken\")\npermit (principal, action, resource) when { context.nope };\n",
    )
    .unwrap();
    let output = portcullis(&["policy", "validate", bundle_arg]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("roles/broken.cedar:2:"), "{stderr}");
}

#[test]
fn policy_explain_names_the_deciding_policies() {
    let bundle = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let base = [
        "policy",
        "explain",
        "--dir",
        bundle.to_str().unwrap(),
        "--fixture",
        "acme",
        "--context",
        "{\"environment\":\"dev\",\"mfa\":true}",
    ];
    let allow: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "--principal",
            "olga",
            "--action",
            "http:POST",
            "--resource",
            "App::\"acme/ops-console\"",
            "--expect",
            "allow",
        ])
        .collect();
    let output = portcullis(&allow);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("role.operator"));

    // A sibling folder's app: no permit applies.
    let sibling: Vec<&str> = base
        .iter()
        .copied()
        .chain([
            "--principal",
            "olga",
            "--action",
            "http:GET",
            "--resource",
            "App::\"acme/reports-ui\"",
            "--expect",
            "allow",
        ])
        .collect();
    let output = portcullis(&sibling);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("expected allow, got deny"));
}

#[test]
fn policy_diff_between_folders_and_git_revisions() {
    let dir = TempDir::new("policy-diff");
    let before = policy_bundle_copy(&dir);
    let after = dir.path().join("after");
    crate::support::copy_dir(&before, &after);
    let operator = after.join("roles/operator.cedar");
    let text = std::fs::read_to_string(&operator).unwrap().replace(
        "[Action::\"read\", Action::\"operate\"]",
        "[Action::\"read\"]",
    );
    std::fs::write(&operator, text).unwrap();
    let output = portcullis(&[
        "policy",
        "diff",
        before.to_str().unwrap(),
        after.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let changes: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let text = changes.to_string();
    assert!(text.contains("operator") && text.contains("lost"), "{text}");
    assert!(!text.contains("gained"), "{text}");

    // The same change between two commits of a checkout.
    let git = |args: &[&str]| {
        let status = Command::new("git")
            .arg("-C")
            .arg(&before)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.test"])
            .args(args)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "before"]);
    std::fs::copy(&operator, before.join("roles/operator.cedar")).unwrap();
    git(&["commit", "-q", "-am", "after"]);
    let output = portcullis(&[
        "policy",
        "diff",
        "git:HEAD~1",
        "git:HEAD",
        "--dir",
        before.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("operator"), "{stdout}");
    let unchanged = portcullis(&[
        "policy",
        "diff",
        "git:HEAD",
        "git:HEAD",
        "--dir",
        before.to_str().unwrap(),
    ]);
    assert!(String::from_utf8_lossy(&unchanged.stdout).contains("no change in effective access"));
}
