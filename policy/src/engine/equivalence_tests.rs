//! The engine hands Cedar only what the action's policies can observe. These
//! tests decide many requests both ways, against a reference that evaluates
//! every policy of the bundle over the full world (every role bound on the
//! chain, every entity of the chain, every context field, schema-validated
//! request and entities), and require identical decisions.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityUid, RestrictedExpression, Schema,
};

use super::*;
use crate::bundle::tests::load_files;
use crate::directory::MemoryDirectory;
use crate::request::Environment;

/// The decision of the unsliced reference evaluation.
fn reference(
    bundle: &Bundle,
    schema: &Schema,
    request: &Request,
    directory: &dyn Directory,
) -> Decision {
    let chain = ancestor_chain(&request.resource, directory).unwrap();
    let bindings: Vec<RoleBinding> = chain
        .iter()
        .flat_map(|scope| directory.bindings_at(&request.principal, scope))
        .cloned()
        .collect();
    let uid = |kind: &str, id: &str| -> EntityUid { format!("{kind}::{id:?}").parse().unwrap() };
    let principal = uid("User", &request.principal);
    let roles = bindings.iter().map(|binding| uid("Role", &binding.role));
    let mut entities = vec![Entity::new_no_attrs(principal.clone(), roles.collect())];
    for (index, entity) in chain.iter().enumerate() {
        let parent = chain
            .get(index + 1)
            .map(|parent| uid(&parent.kind, &parent.id));
        entities.push(Entity::new_no_attrs(
            uid(&entity.kind, &entity.id),
            parent.into_iter().collect(),
        ));
    }
    let entities = Entities::from_entities(entities, Some(schema)).unwrap();
    let context = &request.context;
    let context = Context::from_pairs([
        (
            "ip".to_string(),
            RestrictedExpression::new_ip(context.ip.to_canonical().to_string()),
        ),
        (
            "mfa".to_string(),
            RestrictedExpression::new_bool(context.mfa),
        ),
        (
            "authMethod".to_string(),
            RestrictedExpression::new_string(context.auth_method.to_string()),
        ),
        (
            "sessionAgeSeconds".to_string(),
            RestrictedExpression::new_long(
                i64::try_from(context.session_age_seconds).unwrap_or(i64::MAX),
            ),
        ),
        (
            "environment".to_string(),
            RestrictedExpression::new_string(context.environment.as_str().to_string()),
        ),
        (
            "time".to_string(),
            RestrictedExpression::new_datetime(format_utc(context.time).unwrap()),
        ),
    ])
    .unwrap();
    let cedar_request = cedar_policy::Request::new(
        principal,
        uid("Action", &request.action),
        uid(&request.resource.kind, &request.resource.id),
        context,
        Some(schema),
    )
    .unwrap();
    let response = Authorizer::new().is_authorized(&cedar_request, bundle.policy_set(), &entities);
    let errors: Vec<EvalError> = response
        .diagnostics()
        .errors()
        .map(|error| match error {
            cedar_policy::AuthorizationError::PolicyEvaluationError(error) => EvalError::Policy {
                policy: error.policy_id().to_string(),
                message: error.inner().to_string(),
            },
        })
        .collect();
    if !errors.is_empty() {
        return Decision::failed(errors, bindings);
    }
    let mut policies: Vec<String> = response
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    policies.sort();
    let (effect, basis) = match (response.decision(), policies.is_empty()) {
        (cedar_policy::Decision::Allow, _) => (Effect::Allow, Basis::Permit),
        (cedar_policy::Decision::Deny, true) => (Effect::Deny, Basis::DefaultDeny),
        (cedar_policy::Decision::Deny, false) => (Effect::Deny, Basis::Forbid),
    };
    Decision::new(effect, basis, policies, bindings, errors)
}

/// A small deterministic pseudo-random generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn context(&mut self) -> RequestContext {
        let ips = [
            "10.1.2.3",
            "11.0.0.1",
            "127.0.0.1",
            "192.168.4.4",
            "::1",
            "::ffff:10.0.0.1",
            "2001:db8::1",
        ];
        let methods = ["password", "oidc", "saml", "api_token"];
        let ages = [0, 600, 43_200, 43_201, u64::MAX];
        let environments = [Environment::Dev, Environment::Test, Environment::Prod];
        let times = [0, 1_700_000_000, 1_795_000_000, 1_800_000_000];
        RequestContext {
            ip: self.pick(&ips).parse::<IpAddr>().unwrap(),
            mfa: self.below(2) == 0,
            auth_method: self.pick(&methods).to_string().into(),
            session_age_seconds: *self.pick(&ages),
            environment: *self.pick(&environments),
            time: UNIX_EPOCH + Duration::from_secs(*self.pick(&times)),
        }
    }
}

/// Decides every user × applicable action × entity of `directory` in a few
/// random contexts, both ways; counts the decisions compared by basis.
fn compare_all(
    engine: &Engine,
    schema: &Schema,
    directory: &MemoryDirectory,
    users: &[&str],
    rng: &mut Rng,
    compared: &mut HashMap<Basis, usize>,
) {
    let mut actions: Vec<(&str, &[String])> =
        engine.bundle().compiled().action_resource_types().collect();
    actions.sort();
    for user in users {
        for (action, resource_types) in &actions {
            for resource in directory.entities() {
                if !resource_types.contains(&resource.kind) {
                    continue;
                }
                for _ in 0..3 {
                    let request = Request {
                        principal: user.to_string().into(),
                        action: action.to_string().into(),
                        resource: resource.clone().into(),
                        context: rng.context(),
                    };
                    let expected = reference(engine.bundle(), schema, &request, directory);
                    // The first answer may already come from the memo (an
                    // earlier request with the same observable inputs); the
                    // second one does.
                    let actual = engine.decide(&request, directory);
                    assert_eq!(*actual, expected, "{request:?}");
                    let again = engine.decide(&request, directory);
                    assert_eq!(*again, expected, "{request:?} (remembered)");
                    *compared.entry(actual.basis()).or_default() += 1;
                }
            }
        }
    }
}

/// Every kind of decision came up, and enough of them.
fn assert_varied(compared: &HashMap<Basis, usize>, bases: &[Basis]) {
    for basis in bases {
        assert!(
            compared.get(basis).is_some_and(|n| *n >= 20),
            "{compared:?}"
        );
    }
    assert!(compared.values().sum::<usize>() > 1_000, "{compared:?}");
}

#[test]
fn the_default_bundle_decides_as_if_it_saw_everything() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let engine = Engine::new(Bundle::load(&dir).unwrap());
    let schema_text = std::fs::read_to_string(dir.join("schema.cedarschema")).unwrap();
    let schema = Schema::from_cedarschema_str(&schema_text).unwrap().0;
    let directory = engine.bundle().fixture("acme").unwrap();
    let mut users: Vec<&str> = directory
        .bindings()
        .map(|binding| binding.user.as_str())
        .collect();
    users.sort();
    users.dedup();
    users.push("nobody");
    let mut compared = HashMap::new();
    compare_all(
        &engine,
        &schema,
        directory,
        &users,
        &mut Rng(0x5eed),
        &mut compared,
    );
    assert_varied(
        &compared,
        &[Basis::Permit, Basis::Forbid, Basis::DefaultDeny],
    );
}

const TRICKY_SCHEMA: &str = r#"entity Workspace;
entity Project in [Workspace];
entity Folder in [Project, Folder];
entity App in [Folder, Project, Workspace];
entity Role;
entity User in [Role];
type Ctx = { ip: ipaddr, mfa: Bool, authMethod: String, sessionAgeSeconds: Long, environment: String, time: datetime };
action read;
action write;
action view in [read] appliesTo { principal: User, resource: [App, Folder, Project, Workspace], context: Ctx };
action edit in [write] appliesTo { principal: User, resource: [App, Folder], context: Ctx };
action purge appliesTo { principal: User, resource: App, context: Ctx };
"#;

/// Policies that name entities on the chain, read the whole context, gate
/// on roles, fail to evaluate, and read every field.
const TRICKY_POLICIES: &str = r#"
@id("viewer-in-p1")
permit (principal in Role::"viewer", action in Action::"read", resource in Project::"p1");

@id("editor")
permit (principal in Role::"editor", action in [Action::"read", Action::"write"], resource)
when { context.time < datetime("2027-01-01") };

@id("alice-anywhere-by-oidc")
permit (principal == User::"alice", action, resource)
when { {c: context}.c.authMethod == "oidc" };

@id("nested-folder-needs-mfa")
forbid (principal, action, resource in Folder::"f1")
when { Folder::"f2" in Project::"p1" && !context.mfa };

@id("banned")
forbid (principal in Role::"banned", action, resource);

@id("admin-reads")
permit (principal is User in Role::"admin", action in Action::"read", resource);

@id("ops-from-loopback")
permit (principal in Role::"ops", action == Action::"purge", resource in Workspace::"w")
when { context.ip.isLoopback() && context has environment && context.environment != "prod" };

@id("ops-overflow")
forbid (principal in Role::"ops", action, resource)
when { context.sessionAgeSeconds + 1 > 0 };

@id("user-scoped")
permit (principal, action, resource)
when { principal in Role::"viewer" && resource in Folder::"f3" && context.sessionAgeSeconds < 43200 };
"#;

/// An entity of the tricky hierarchy: type, id and parent.
type Node = (
    &'static str,
    &'static str,
    Option<(&'static str, &'static str)>,
);

const TRICKY_HIERARCHY: &[Node] = &[
    ("Workspace", "w", None),
    ("Workspace", "w2", None),
    ("Project", "p1", Some(("Workspace", "w"))),
    ("Project", "p2", Some(("Workspace", "w"))),
    ("Project", "p3", Some(("Workspace", "w2"))),
    ("Folder", "f1", Some(("Project", "p1"))),
    ("Folder", "f2", Some(("Folder", "f1"))),
    ("Folder", "f3", Some(("Project", "p2"))),
    ("App", "a1", Some(("Folder", "f2"))),
    ("App", "a2", Some(("Project", "p1"))),
    ("App", "a3", Some(("Project", "p3"))),
    ("App", "a4", Some(("Folder", "f3"))),
];

#[test]
fn observing_less_never_changes_a_decision() {
    let bundle = load_files(&[
        ("schema.cedarschema", TRICKY_SCHEMA),
        ("p.cedar", TRICKY_POLICIES),
    ])
    .unwrap();
    let engine = Engine::new(bundle);
    // Every action gets one set of unindexed policies per combination of
    // held roles (`viewer-in-p1`, `nested-folder-needs-mfa` and
    // `ops-from-loopback` are indexed by their resource scope); the
    // many-policies test covers more roles than that.
    let actions = &engine.bundle().compiled().actions;
    assert_eq!(
        actions.get("view").unwrap().gates,
        ["admin", "banned", "editor", "ops"]
    );
    assert_eq!(
        actions.get("edit").unwrap().gates,
        ["banned", "editor", "ops"]
    );
    assert_eq!(actions.get("edit").unwrap().by_gates.len(), 8);
    assert_eq!(actions.get("purge").unwrap().gates, ["banned", "ops"]);
    let schema = Schema::from_cedarschema_str(TRICKY_SCHEMA).unwrap().0;
    let users = ["alice", "bob", "carol"];
    let roles = ["viewer", "editor", "banned", "ops", "admin"];
    let mut rng = Rng(0xc0ff_ee00_d15e_a5e5);
    let mut compared = HashMap::new();
    for _ in 0..12 {
        let mut directory = MemoryDirectory::new();
        for (kind, id, parent) in TRICKY_HIERARCHY {
            let parent = parent.map(|(kind, id)| EntityRef::new(kind, id));
            directory
                .insert_entity(EntityRef::new(*kind, *id), parent)
                .unwrap();
        }
        for user in users {
            for _ in 0..rng.below(4) {
                let (kind, id, _) = rng.pick(TRICKY_HIERARCHY);
                directory
                    .bind(RoleBinding {
                        user: user.to_string(),
                        role: rng.pick(&roles).to_string(),
                        scope: EntityRef::new(*kind, *id),
                    })
                    .unwrap();
            }
        }
        compare_all(
            &engine,
            &schema,
            &directory,
            &users,
            &mut rng,
            &mut compared,
        );
    }
    assert_varied(
        &compared,
        &[
            Basis::Permit,
            Basis::Forbid,
            Basis::DefaultDeny,
            Basis::Error,
        ],
    );
}

/// `count` generated policies in the shapes of the benchmark bundle
/// (`tests/bench/fixtures.py`), aimed at entities of [`many_directory`] so
/// that the resource-scoped and role-gated ones sometimes apply, plus
/// `resource in`, `is … in`, principal-scoped and failing variants.
fn many_policies(count: usize) -> String {
    let mut out = String::new();
    for i in 0..count {
        let body = match i % 8 {
            0 => format!(
                "forbid (principal, action, resource == App::\"app-{}\")\nunless {{ context.authMethod == \"oidc\" }};",
                i / 8 % 40
            ),
            1 => format!(
                "permit (principal in Role::\"custom-{}\", action in [Action::\"read\"], resource);",
                i / 8 % 12
            ),
            2 => format!(
                "forbid (principal, action, resource)\nwhen {{ context.sessionAgeSeconds > {} && context.ip.isInRange(ip(\"10.{}.0.0/16\")) }};",
                100_000 + i,
                i / 8 % 256
            ),
            3 => format!(
                "forbid (principal, action in Action::\"write\", resource)\nwhen {{ context.environment == \"prod\" && context.sessionAgeSeconds > {i} }};"
            ),
            4 => format!(
                "permit (principal in Role::\"custom-{}\", action, resource in Folder::\"f{}\")\nwhen {{ context.mfa }};",
                i / 8 % 12,
                i / 8 % 7
            ),
            5 => format!(
                "permit (principal, action in Action::\"operate\", resource in Project::\"p{}\")\nwhen {{ context.ip.isInRange(ip(\"10.1.0.0/16\")) && context.authMethod == \"password\" }};",
                i / 8 % 5
            ),
            6 => format!(
                "forbid (principal in Role::\"custom-{}\", action, resource is App in Project::\"p{}\")\nwhen {{ context.sessionAgeSeconds + 9223372036854775000 > 0 }};",
                i / 8 % 12,
                i / 8 % 5
            ),
            _ => format!(
                "permit (principal == User::\"u{}\", action, resource == App::\"app-{}\");",
                i / 8 % 5,
                i / 8 % 50
            ),
        };
        out.push_str(&format!("@id(\"gen-{i}\")\n{body}\n\n"));
    }
    out
}

/// A workspace with 4 projects, 6 folders (one nested), 30 apps, and a few
/// connections and transactions; users bound at random to the operator role
/// and the generated roles.
fn many_directory(rng: &mut Rng, users: &[&str]) -> MemoryDirectory {
    let mut directory = MemoryDirectory::new();
    let mut scopes = vec![EntityRef::new("Workspace", "w")];
    let mut insert = |directory: &mut MemoryDirectory, entity: EntityRef, parent: EntityRef| {
        directory
            .insert_entity(entity.clone(), Some(parent))
            .unwrap();
        scopes.push(entity);
    };
    directory
        .insert_entity(EntityRef::new("Workspace", "w"), None)
        .unwrap();
    for p in 0..4 {
        insert(
            &mut directory,
            EntityRef::new("Project", format!("p{p}")),
            EntityRef::new("Workspace", "w"),
        );
    }
    for f in 0..6 {
        let parent = if f == 5 {
            EntityRef::new("Folder", "f1")
        } else {
            EntityRef::new("Project", format!("p{}", f % 4))
        };
        insert(
            &mut directory,
            EntityRef::new("Folder", format!("f{f}")),
            parent,
        );
    }
    for a in 0..30 {
        let parent = if a % 3 == 0 {
            EntityRef::new("Project", format!("p{}", a % 4))
        } else {
            EntityRef::new("Folder", format!("f{}", a % 6))
        };
        insert(
            &mut directory,
            EntityRef::new("App", format!("app-{a}")),
            parent,
        );
    }
    for c in 0..3 {
        insert(
            &mut directory,
            EntityRef::new("Connection", format!("c{c}")),
            EntityRef::new("Folder", format!("f{}", c * 2)),
        );
        insert(
            &mut directory,
            EntityRef::new("Transaction", format!("t{c}")),
            EntityRef::new("Connection", format!("c{c}")),
        );
    }
    let roles: Vec<String> = std::iter::once("operator".to_string())
        .chain((0..12).map(|r| format!("custom-{r}")))
        .collect();
    for user in users {
        for _ in 0..1 + rng.below(4) {
            directory
                .bind(RoleBinding {
                    user: user.to_string(),
                    role: rng.pick(&roles).clone(),
                    scope: rng.pick(&scopes).clone(),
                })
                .unwrap();
        }
    }
    directory
}

#[test]
fn many_policies_are_sliced_by_resource_and_role_without_changing_a_decision() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    let schema_text = std::fs::read_to_string(dir.join("schema.cedarschema")).unwrap();
    let operator = std::fs::read_to_string(dir.join("roles/operator.cedar")).unwrap();
    let generated = many_policies(1_000);
    let bundle = load_files(&[
        ("schema.cedarschema", &schema_text),
        ("roles/operator.cedar", &operator),
        ("generated/bench.cedar", &generated),
    ])
    .unwrap();
    let engine = Engine::new(bundle);
    // `http:GET` (in read) sees policies gated on 12 roles: they are indexed
    // by role, as the resource-scoped ones are by entity; what is left for
    // every request is the unscoped, ungated policies.
    let get = engine.bundle().compiled().actions.get("http:GET").unwrap();
    assert!(get.gates.is_empty(), "{:?}", get.gates);
    assert_eq!(get.by_gates.len(), 1);
    let unindexed = get.by_gates[0].policies().count();
    assert_eq!(get.policies.policies().count(), 751);
    assert_eq!(unindexed, 125, "the unscoped, ungated forbids");
    let schema = Schema::from_cedarschema_str(&schema_text).unwrap().0;
    let users = ["u0", "u1", "u2", "u3"];
    let mut rng = Rng(0x0010_00b0_d1e5);
    let mut compared = HashMap::new();
    for _ in 0..2 {
        let directory = many_directory(&mut rng, &users);
        compare_all(
            &engine,
            &schema,
            &directory,
            &users,
            &mut rng,
            &mut compared,
        );
    }
    assert_varied(
        &compared,
        &[
            Basis::Permit,
            Basis::Forbid,
            Basis::DefaultDeny,
            Basis::Error,
        ],
    );
}
