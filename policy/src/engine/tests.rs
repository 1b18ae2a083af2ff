//! Decisions: scoping isolation, guardrail conditions, fail-closed errors and
//! their explanations.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use expect_test::{Expect, expect};

use super::*;
use crate::bundle::tests::load_files;
use crate::directory::MemoryDirectory;
use crate::request::{Environment, RequestContext};

fn default_engine() -> Engine {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    Engine::new(Bundle::load(&dir).unwrap())
}

fn context() -> RequestContext {
    RequestContext {
        ip: "10.1.2.3".parse().unwrap(),
        mfa: true,
        auth_method: "password".into(),
        session_age_seconds: 600,
        environment: Environment::Dev,
        time: UNIX_EPOCH + Duration::from_secs(1_795_000_000),
    }
}

fn request(principal: &str, action: &str, resource: &str, context: RequestContext) -> Request {
    let (kind, id) = resource.split_once(':').unwrap();
    Request {
        principal: principal.to_string().into(),
        action: action.to_string().into(),
        resource: EntityRef::new(kind, id).into(),
        context,
    }
}

/// Decides with the default bundle and its `acme` fixture; `resource` is `Type:id`.
fn check(principal: &str, action: &str, resource: &str, context: RequestContext, expected: Expect) {
    let engine = default_engine();
    let directory = engine.bundle().fixture("acme").unwrap();
    let decision = engine.decide(&request(principal, action, resource, context), directory);
    let summary = match decision.errors() {
        [] => format!(
            "{:?} {:?} {:?}",
            decision.effect(),
            decision.basis(),
            decision.policies()
        ),
        errors => format!("{:?} {:?} {errors:?}", decision.effect(), decision.basis()),
    };
    expected.assert_eq(&summary);
}

#[test]
fn roles_apply_at_their_scope_and_below_only() {
    let ctx = context;
    check(
        "olga",
        "http:POST",
        "App:acme/ops-console",
        ctx(),
        expect![[r#"Allow Permit ["role.operator"]"#]],
    );
    check(
        "olga",
        "http:POST",
        "App:acme/nightly-jobs",
        ctx(),
        expect![[r#"Allow Permit ["role.operator"]"#]],
    );
    check(
        "olga",
        "http:GET",
        "App:acme/reports-ui",
        ctx(),
        expect!["Deny DefaultDeny []"],
    );
    check(
        "olga",
        "scope.read",
        "Project:acme/payments",
        ctx(),
        expect!["Deny DefaultDeny []"],
    );
    check(
        "olga",
        "http:GET",
        "App:globex/ops-console",
        ctx(),
        expect!["Deny DefaultDeny []"],
    );
    check(
        "ann",
        "http:GET",
        "App:globex/ops-console",
        ctx(),
        expect!["Deny DefaultDeny []"],
    );
    check(
        "gus",
        "http:GET",
        "App:acme/ops-console",
        ctx(),
        expect!["Deny DefaultDeny []"],
    );
    check(
        "andy",
        "http:GET",
        "App:acme/nightly-jobs",
        ctx(),
        expect![[r#"Allow Permit ["role.analyst"]"#]],
    );
}

#[test]
fn ip_conditions_read_the_client_address() {
    let from = |ip: &str| RequestContext {
        ip: ip.parse::<IpAddr>().unwrap(),
        ..context()
    };
    let payload = |ip: &str, expected: Expect| {
        check(
            "ann",
            "transaction.readPayload",
            "Transaction:acme/ops-db/tx-1",
            from(ip),
            expected,
        );
    };
    payload("10.200.0.1", expect![[r#"Allow Permit ["role.admin"]"#]]);
    payload("192.168.0.9", expect![[r#"Allow Permit ["role.admin"]"#]]);
    payload("127.0.0.1", expect![[r#"Allow Permit ["role.admin"]"#]]);
    payload(
        "::ffff:10.0.0.1",
        expect![[r#"Allow Permit ["role.admin"]"#]],
    );
    payload(
        "11.0.0.1",
        expect![[r#"Deny Forbid ["guard.payload-corp-network"]"#]],
    );
    payload(
        "2001:db8::1",
        expect![[r#"Deny Forbid ["guard.payload-corp-network"]"#]],
    );
}

#[test]
fn mfa_is_required_for_production_writes_only() {
    let with = |environment, mfa| RequestContext {
        environment,
        mfa,
        ..context()
    };
    let write = "connection.write";
    let db = "Connection:acme/ops-db";
    check(
        "ann",
        write,
        db,
        with(Environment::Prod, true),
        expect![[r#"Allow Permit ["role.admin"]"#]],
    );
    check(
        "ann",
        write,
        db,
        with(Environment::Prod, false),
        expect![[r#"Deny Forbid ["guard.prod-write-mfa"]"#]],
    );
    check(
        "ann",
        write,
        db,
        with(Environment::Test, false),
        expect![[r#"Allow Permit ["role.admin"]"#]],
    );
    check(
        "ann",
        "connection.read",
        db,
        with(Environment::Prod, false),
        expect![[r#"Allow Permit ["role.admin"]"#]],
    );
}

#[test]
fn invalid_requests_deny_with_an_error() {
    let ctx = context;
    check(
        "ann",
        "http:BREW",
        "App:acme/ops-console",
        ctx(),
        expect![[r#"Deny Error [InvalidRequest { message: "unknown action `http:BREW`" }]"#]],
    );
    check(
        "ann",
        "http:GET",
        "App:acme/missing",
        ctx(),
        expect![[r#"Deny Error [UnknownEntity { entity: "App::\"acme/missing\"" }]"#]],
    );
    check(
        "ann",
        "http:GET",
        "Connection:acme/ops-db",
        ctx(),
        expect![[
            r#"Deny Error [InvalidRequest { message: "action `http:GET` does not apply to resource type `Connection`" }]"#
        ]],
    );
}

/// A directory whose hierarchy loops: the engine must stop and deny.
struct LoopingDirectory {
    a: EntityRef,
    b: EntityRef,
}

impl Directory for LoopingDirectory {
    fn parent(&self, entity: &EntityRef) -> Parent<'_> {
        if *entity == self.a {
            Parent::Child(&self.b)
        } else {
            Parent::Child(&self.a)
        }
    }

    fn bindings_at(&self, _user: &str, _scope: &EntityRef) -> &[RoleBinding] {
        &[]
    }
}

#[test]
fn a_hierarchy_cycle_denies() {
    let engine = default_engine();
    let directory = LoopingDirectory {
        a: EntityRef::new("Folder", "a"),
        b: EntityRef::new("Folder", "b"),
    };
    let decision = engine.decide(
        &request("ann", "scope.read", "Folder:a", context()),
        &directory,
    );
    assert_eq!(decision.basis(), Basis::Error);
    expect![[r#"
        denied: evaluation failed, and any evaluation error denies
          error: the hierarchy above Folder::"a" has a cycle or is deeper than 32
        roles on this resource: none"#]]
    .assert_eq(&without_revision(&engine.explain(&decision).to_string()));
}

fn without_revision(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("policy revision: "))
        .collect::<Vec<_>>()
        .join("\n")
}

const ERROR_SCHEMA: &str = r#"entity Role;
entity User in [Role];
entity App;
type Ctx = { ip: ipaddr, mfa: Bool, authMethod: String, sessionAgeSeconds: Long, environment: String, time: datetime };
action view appliesTo { principal: User, resource: App, context: Ctx };
"#;

#[test]
fn a_forbid_that_fails_to_evaluate_still_denies() {
    let policies = "@id(\"everyone\")\npermit (principal, action, resource);\n\n\
        @id(\"overflowing-guard\")\n@title(\"Guard whose arithmetic overflows\")\n\
        forbid (principal, action, resource)\nwhen { context.sessionAgeSeconds * 4611686018427387904 > 0 };\n";
    let bundle =
        load_files(&[("schema.cedarschema", ERROR_SCHEMA), ("p.cedar", policies)]).unwrap();
    let engine = Engine::new(bundle);
    let mut directory = MemoryDirectory::new();
    directory
        .insert_entity(EntityRef::new("App", "a"), None)
        .unwrap();

    let fresh = request(
        "u",
        "view",
        "App:a",
        RequestContext {
            session_age_seconds: 0,
            ..context()
        },
    );
    let decision = engine.decide(&fresh, &directory);
    assert_eq!(
        (decision.effect(), decision.policies()),
        (Effect::Allow, ["everyone".to_string()].as_slice())
    );

    let old = request(
        "u",
        "view",
        "App:a",
        RequestContext {
            session_age_seconds: 2,
            ..context()
        },
    );
    let decision = engine.decide(&old, &directory);
    assert_eq!(decision.effect(), Effect::Deny);
    expect![[r#"
        denied: evaluation failed, and any evaluation error denies
          - overflowing-guard "Guard whose arithmetic overflows" (p.cedar:4)
          error: policy `overflowing-guard` failed to evaluate: integer overflow while attempting to multiply the values `2` and `4611686018427387904`
        roles on this resource: none"#]]
    .assert_eq(&without_revision(&engine.explain(&decision).to_string()));
}

#[test]
fn explanations_name_policies_roles_and_the_kind_of_deny() {
    let engine = default_engine();
    let directory = engine.bundle().fixture("acme").unwrap();
    let explain = |request: Request, expected: Expect| {
        let decision = engine.decide(&request, directory);
        expected.assert_eq(&without_revision(&engine.explain(&decision).to_string()));
    };
    explain(
        request("olga", "http:POST", "App:acme/nightly-jobs", context()),
        expect![[r#"
            allowed: permitted by
              - role.operator "Operator" (roles/operator.cedar:2)
                Reads and operates inside the bound scope; cannot administer it.
            roles on this resource:
              - operator on Folder::"acme/payments/ops""#]],
    );
    explain(
        request(
            "olga",
            "http:POST",
            "App:acme/ops-console",
            RequestContext {
                environment: Environment::Prod,
                ..context()
            },
        ),
        expect![[r#"
            denied: explicitly forbidden by
              - guard.prod-admin-only "Only Admins change production" (guardrails/production.cedar:1)
                In the prod environment every write needs the Admin role on the resource's scope.
            roles on this resource:
              - operator on Folder::"acme/payments/ops""#]],
    );
    explain(
        request("olga", "http:GET", "App:acme/reports-ui", context()),
        expect![[r#"
            denied: no policy permits this request (default deny)
            roles on this resource: none"#]],
    );
}

#[test]
fn revision_is_reported() {
    let engine = default_engine();
    assert_eq!(engine.revision(), engine.bundle().revision());
    assert!(!engine.revision().as_str().is_empty());
}

#[test]
fn engines_can_be_shared_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Engine>();
    shareable::<MemoryDirectory>();
    shareable::<Decision>();
}

/// One engine, one warm decision, then every input it depends on changes in
/// turn: the remembered decision must never answer for another input.
#[test]
fn remembered_decisions_follow_every_input_they_depend_on() {
    let engine = default_engine();
    let directory = engine.bundle().fixture("acme").unwrap();
    let decide = |request: &Request| {
        let decision = engine.decide(request, directory);
        format!("{:?} {:?}", decision.effect(), decision.policies())
    };
    let with = |principal: &str, action: &str, resource: &str, context: RequestContext| {
        request(principal, action, resource, context)
    };
    let payload = |ip: &str, age: u64| RequestContext {
        ip: ip.parse::<IpAddr>().unwrap(),
        session_age_seconds: age,
        ..context()
    };
    let tx = "Transaction:acme/ops-db/tx-1";
    let read = "transaction.readPayload";
    let allowed = r#"Allow ["role.admin"]"#;

    // Warm, then the same request again: the same answer.
    let warm = with("ann", read, tx, payload("10.0.0.1", 600));
    assert_eq!(decide(&warm), allowed);
    assert_eq!(decide(&warm), allowed);
    // The address is read by this action's policies.
    assert_eq!(
        decide(&with("ann", read, tx, payload("11.0.0.1", 600))),
        r#"Deny ["guard.payload-corp-network"]"#
    );
    // The session age is read by every action's policies.
    assert_eq!(
        decide(&with("ann", read, tx, payload("10.0.0.1", 43_200))),
        allowed
    );
    assert_eq!(
        decide(&with("ann", read, tx, payload("10.0.0.1", 43_201))),
        r#"Deny ["guard.session-age"]"#
    );
    // Another principal (no binding there), another action, another resource.
    assert_eq!(
        decide(&with("gus", read, tx, payload("10.0.0.1", 600))),
        "Deny []"
    );
    assert_eq!(
        decide(&with(
            "ann",
            "transaction.read",
            tx,
            payload("10.0.0.1", 600)
        )),
        r#"Allow ["role.admin"]"#
    );
    assert_eq!(
        decide(&with(
            "ann",
            read,
            "Transaction:globex/db/tx-1",
            payload("10.0.0.1", 600)
        )),
        r#"Deny []"#
    );
    // Environment and MFA, on a write.
    let write = |environment, mfa| RequestContext {
        environment,
        mfa,
        ..context()
    };
    let db = "Connection:acme/ops-db";
    assert_eq!(
        decide(&with(
            "ann",
            "connection.write",
            db,
            write(Environment::Prod, true)
        )),
        allowed
    );
    assert_eq!(
        decide(&with(
            "ann",
            "connection.write",
            db,
            write(Environment::Prod, false)
        )),
        r#"Deny ["guard.prod-write-mfa"]"#
    );
    // The same principal with other bindings (a store overlay in the gateway).
    let mut bare = MemoryDirectory::new();
    for entity in directory.entities() {
        let parent = match directory.parent(entity) {
            Parent::Child(parent) => Some(parent.clone()),
            _ => None,
        };
        bare.insert_entity(entity.clone(), parent).unwrap();
    }
    let decision = engine.decide(&warm, &bare);
    assert_eq!(
        (decision.effect(), decision.bindings().len()),
        (Effect::Deny, 0)
    );
    // A time Cedar cannot represent fails even where no policy reads the time.
    let far = RequestContext {
        time: UNIX_EPOCH + Duration::from_secs(400_000_000_000),
        ..payload("10.0.0.1", 600)
    };
    assert_eq!(
        engine
            .decide(&with("ann", read, tx, far), directory)
            .basis(),
        Basis::Error
    );
    assert_eq!(decide(&warm), allowed);
}
