//! The active policy only ever holds a bundle that loaded, validated and passed its
//! tests; a bad reload keeps the last good one.

use std::path::{Path, PathBuf};

use super::{ActivePolicy, PolicyError, load_snapshot};
use crate::config::PolicyConfig;

/// A scratch copy of the default bundle.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir =
            std::env::temp_dir().join(format!("portcullis-authz-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        copy_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies"),
            &dir,
        );
        Scratch(dir)
    }

    fn config(&self, bindings: Option<PathBuf>) -> PolicyConfig {
        PolicyConfig {
            dir: self.0.clone(),
            bindings,
            environment: portcullis_policy::Environment::Prod,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let target = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_dir(&path, &target);
        } else {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

#[test]
fn default_bundle_becomes_active() {
    let scratch = Scratch::new("default");
    let active = ActivePolicy::load(&scratch.config(None), Vec::new()).unwrap();
    assert!(
        active.revision().starts_with("sha256:"),
        "{}",
        active.revision()
    );
}

#[test]
fn broken_reload_keeps_the_last_good_bundle() {
    let scratch = Scratch::new("broken");
    let active = ActivePolicy::load(&scratch.config(None), Vec::new()).unwrap();
    let good = active.revision();
    std::fs::write(
        scratch.0.join("roles/broken.cedar"),
        "@id(\"broken\")\npermit (principal, action, resource) when { context.nope };\n",
    )
    .unwrap();
    let err = active.reload().unwrap_err();
    assert!(matches!(err, PolicyError::Load { .. }), "{err}");
    assert!(err.to_string().contains("roles/broken.cedar:2:"), "{err}");
    assert_eq!(active.revision(), good);

    std::fs::remove_file(scratch.0.join("roles/broken.cedar")).unwrap();
    std::fs::write(
        scratch.0.join("guardrails/lockout.cedar"),
        "@id(\"guard.lockout\")\nforbid (principal, action, resource);\n",
    )
    .unwrap();
    // Valid, but it breaks every case that expects an allow: the bundle's own tests
    // fail and the reload is refused.
    let err = active.reload().unwrap_err();
    assert!(matches!(err, PolicyError::Tests { .. }), "{err}");
    assert_eq!(active.revision(), good);

    std::fs::remove_file(scratch.0.join("guardrails/lockout.cedar")).unwrap();
    let admin = scratch.0.join("roles/admin.cedar");
    let text = std::fs::read_to_string(&admin).unwrap();
    std::fs::write(&admin, format!("// Reviewed.\n{text}")).unwrap();
    active.reload().unwrap();
    assert_ne!(
        active.revision(),
        good,
        "a content change is a new revision"
    );
}

#[test]
fn bindings_file_must_load() {
    let scratch = Scratch::new("bindings");
    let bindings = scratch.0.join("bindings.json");
    std::fs::write(&bindings, "{\"entities\": [], \"bindings\": [{\"user\": \"u\", \"role\": \"admin\", \"scope\": {\"type\": \"Workspace\", \"id\": \"nowhere\"}}]}").unwrap();
    let err = load_snapshot(&scratch.0, Some(&bindings), &[])
        .err()
        .unwrap();
    assert!(matches!(err, PolicyError::Bindings { .. }), "{err}");
    std::fs::write(&bindings, "{\"entities\": [{\"type\": \"Workspace\", \"id\": \"acme\"}], \"bindings\": [{\"user\": \"u\", \"role\": \"admin\", \"scope\": {\"type\": \"Workspace\", \"id\": \"acme\"}}]}").unwrap();
    let snapshot = load_snapshot(&scratch.0, Some(&bindings), &[]).unwrap();
    assert_eq!(snapshot.directory().n_bindings(), 1);
}
