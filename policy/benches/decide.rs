//! Decision time with 10, 1k and 100k role bindings, with 1 and 1,000
//! policies (the shapes of `tests/bench/fixtures.py policies`), and bundle
//! load time.
//!
//! Run: `cargo bench -p portcullis-policy --bench decide`
//! (add `-- --measurement-time 2 --warm-up-time 1` for a quick run).

#![expect(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    reason = "benchmark setup: a broken fixture should stop the run"
)]
#![expect(
    missing_docs,
    reason = "criterion_group! generates an undocumented function"
)]

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use portcullis_policy::{
    Bundle, Engine, EntityRef, Environment, MemoryDirectory, Request, RequestContext, RoleBinding,
};

const N_PROJECTS: usize = 100;
const N_FOLDERS_PER_PROJECT: usize = 10;
const ROLES: [&str; 4] = ["admin", "operator", "analyst", "auditor"];

fn bundle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// One workspace, 100 projects × 10 folders with one app each, and
/// `n_bindings` users each bound to one folder.
fn directory_with(n_bindings: usize) -> MemoryDirectory {
    let mut directory = MemoryDirectory::new();
    let workspace = EntityRef::new("Workspace", "w");
    directory.insert_entity(workspace.clone(), None).unwrap();
    let mut folders = Vec::new();
    for project_index in 0..N_PROJECTS {
        let project = EntityRef::new("Project", format!("w/p{project_index}"));
        directory
            .insert_entity(project.clone(), Some(workspace.clone()))
            .unwrap();
        for folder_index in 0..N_FOLDERS_PER_PROJECT {
            let folder = EntityRef::new("Folder", format!("w/p{project_index}/f{folder_index}"));
            directory
                .insert_entity(folder.clone(), Some(project.clone()))
                .unwrap();
            let app = EntityRef::new("App", format!("w/p{project_index}/f{folder_index}/app"));
            directory.insert_entity(app, Some(folder.clone())).unwrap();
            folders.push(folder);
        }
    }
    for index in 0..n_bindings {
        let binding = RoleBinding {
            user: format!("u{index}"),
            role: ROLES[index % ROLES.len()].to_string(),
            scope: folders[index % folders.len()].clone(),
        };
        directory.bind(binding).unwrap();
    }
    directory
}

fn request() -> Request {
    Request {
        // u1 is an operator on w/p0/f1.
        principal: "u1".into(),
        action: "http:POST".into(),
        resource: EntityRef::new("App", "w/p0/f1/app").into(),
        context: RequestContext {
            ip: IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3)),
            mfa: true,
            auth_method: "password".into(),
            session_age_seconds: 600,
            environment: Environment::Dev,
            time: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
        },
    }
}

fn decide(c: &mut Criterion) {
    let engine = Engine::new(Bundle::load(&bundle_dir()).unwrap());
    let request = request();
    let mut group = c.benchmark_group("decide");
    for n_bindings in [10, 1_000, 100_000] {
        let directory = directory_with(n_bindings);
        assert!(engine.decide(&request, &directory).is_allowed());
        group.bench_with_input(
            BenchmarkId::from_parameter(n_bindings),
            &directory,
            |b, directory| b.iter(|| engine.decide(black_box(&request), directory)),
        );
    }
    group.finish();
}

/// A bundle of the default schema, the operator role and `count - 1`
/// generated policies, as `tests/bench/fixtures.py policies` writes it.
fn many_policies_bundle(count: usize) -> (tempfile::TempDir, Bundle) {
    let source = bundle_dir();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        source.join("schema.cedarschema"),
        dir.path().join("schema.cedarschema"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("roles")).unwrap();
    std::fs::copy(
        source.join("roles/operator.cedar"),
        dir.path().join("roles/operator.cedar"),
    )
    .unwrap();
    let generated: Vec<String> = (0..count.saturating_sub(1))
        .map(|i| {
            let body = match i % 4 {
                0 => format!(
                    "forbid (principal, action, resource == App::\"app-{i}\")\nunless {{ context.authMethod == \"oidc\" }};"
                ),
                1 => format!(
                    "permit (principal in Role::\"custom-{i}\", action in [Action::\"read\"], resource);"
                ),
                2 => format!(
                    "forbid (principal, action, resource)\nwhen {{ context.sessionAgeSeconds > {} && context.ip.isInRange(ip(\"10.{}.0.0/16\")) }};",
                    100_000 + i,
                    i % 256
                ),
                _ => format!(
                    "forbid (principal, action in Action::\"write\", resource)\nwhen {{ context.environment == \"prod\" && context.sessionAgeSeconds > {i} }};"
                ),
            };
            format!("@id(\"bench.generated-{i}\")\n{body}\n")
        })
        .collect();
    if !generated.is_empty() {
        std::fs::create_dir(dir.path().join("generated")).unwrap();
        std::fs::write(
            dir.path().join("generated/bench.cedar"),
            generated.join("\n"),
        )
        .unwrap();
    }
    let bundle = Bundle::load(dir.path()).unwrap();
    (dir, bundle)
}

fn many_policies(c: &mut Criterion) {
    let directory = directory_with(10);
    let mut request = request();
    let mut group = c.benchmark_group("decide_policies");
    for count in [1, 1_000] {
        let (_dir, bundle) = many_policies_bundle(count);
        let engine = Engine::new(bundle);
        for (name, action) in [("GET", "http:GET"), ("POST", "http:POST")] {
            request.action = action.into();
            assert!(engine.decide(&request, &directory).is_allowed());
            group.bench_with_input(BenchmarkId::new(name, count), &request, |b, request| {
                b.iter(|| engine.decide(black_box(request), &directory))
            });
        }
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let dir = bundle_dir();
    c.bench_function("bundle_load", |b| {
        b.iter(|| Bundle::load(black_box(&dir)).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = decide, many_policies, load
}
criterion_main!(benches);
