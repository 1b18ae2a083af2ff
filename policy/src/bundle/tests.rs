//! Loading the default bundle and the exact messages of invalid bundles.

use std::path::Path;

use expect_test::{Expect, expect};

use super::*;
use crate::testing::run_tests;

const SCHEMA: &str = r#"entity Role;
entity User in [Role];
entity App;
type Ctx = { ip: ipaddr, mfa: Bool, authMethod: String, sessionAgeSeconds: Long, environment: String, time: datetime };
action view appliesTo { principal: User, resource: App, context: Ctx };
"#;

const FIXTURE: &str = r#"{"entities": [{"type": "App", "id": "a"}]}"#;

fn default_bundle_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// Writes `files` (relative path, text) into a fresh folder and loads it.
pub(crate) fn load_files(files: &[(&str, &str)]) -> Result<Bundle, LoadError> {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
    }
    Bundle::load(dir.path())
}

fn check(files: &[(&str, &str)], expected: Expect) {
    let mut with_schema = vec![("schema.cedarschema", SCHEMA)];
    with_schema.extend_from_slice(files);
    match load_files(&with_schema) {
        Ok(_) => expected.assert_eq("ok"),
        Err(error) => expected.assert_eq(&error.to_string()),
    }
}

#[test]
fn default_bundle_loads_passes_its_tests_and_covers_every_policy() {
    let bundle = Bundle::load(&default_bundle_dir()).unwrap();
    let report = run_tests(&bundle);
    assert!(report.passed(), "{report}");
    assert!(report.coverage().is_complete(), "{report}");
    assert!(report.cases().len() >= 30, "{report}");
}

#[test]
fn accepts_a_minimal_bundle() {
    check(
        &[(
            "p.cedar",
            "@id(\"p\")\npermit(principal, action, resource);\n",
        )],
        expect!["ok"],
    );
}

#[test]
fn rejects_parse_errors_with_position() {
    check(
        &[(
            "roles/bad.cedar",
            "@id(\"p\")\npermit(principal, action, resource)\nwhen { context.mfa == };\n",
        )],
        expect!["roles/bad.cedar:3:23: error: unexpected token `}`"],
    );
}

#[test]
fn rejects_missing_and_duplicate_ids() {
    check(
        &[
            (
                "a.cedar",
                "@id(\"same\")\npermit(principal, action, resource);\n\n  // no id here\n  forbid(principal, action, resource);\n",
            ),
            (
                "b.cedar",
                "@id(\"same\") permit(principal, action, resource);\n",
            ),
        ],
        expect![[r#"
            a.cedar:5:3: error: policy has no `@id("...")` annotation
            b.cedar:1:1: error: duplicate policy id `same`, first used at a.cedar:1:1"#]],
    );
}

#[test]
fn rejects_validation_errors_at_their_position() {
    check(
        &[(
            "guard.cedar",
            "@id(\"g\")\nforbid(principal, action == Action::\"view\", resource)\nwhen { context.sessionAge > 10 };\n\n@id(\"h\")\npermit(principal, action == Action::\"edit\", resource);\n",
        )],
        expect![[r#"
            guard.cedar:3:8: error: for policy `g`, attribute `sessionAge` in context for Action::"view" not found (help: did you mean `sessionAgeSeconds`?)
            guard.cedar:5:1: warning: for policy `h`, unable to find an applicable action given the policy scope constraints
            guard.cedar:5:1: warning: for policy `h`, policy is impossible: the policy expression evaluates to false for all valid requests
            guard.cedar:6:29: error: for policy `h`, unrecognized action `Action::"edit"` (help: did you mean `Action::"view"`?)"#]],
    );
}

#[test]
fn rejects_validation_warnings() {
    check(
        &[(
            "w.cedar",
            "@id(\"impossible\")\npermit(principal, action, resource)\nwhen { false };\n",
        )],
        expect![
            "w.cedar:1:1: warning: for policy `impossible`, policy is impossible: the policy expression evaluates to false for all valid requests"
        ],
    );
}

#[test]
fn rejects_templates() {
    check(
        &[(
            "t.cedar",
            "@id(\"t\")\npermit(principal == ?principal, action, resource);\n",
        )],
        expect![[
            r#"t.cedar:1:1: error: templates are not supported; grant roles with role bindings and `principal in Role::"<name>"`"#
        ]],
    );
}

#[test]
fn rejects_a_bundle_without_one_schema() {
    let error = load_files(&[(
        "p.cedar",
        "@id(\"p\")\npermit(principal, action, resource);\n",
    )])
    .unwrap_err();
    let message = error.to_string();
    assert_eq!(message, ".: no `*.cedarschema` file in the bundle");
    check(
        &[("other.cedarschema", SCHEMA)],
        expect![
            ".: the bundle must have exactly one `*.cedarschema` file, found `other.cedarschema`, `schema.cedarschema`"
        ],
    );
}

#[test]
fn rejects_schema_errors_with_position() {
    let files = [(
        "schema.cedarschema",
        "entity User in [Role];\nentity Role\n",
    )];
    match load_files(&files) {
        Ok(_) => panic!("loaded an invalid schema"),
        Err(error) => {
            expect!["schema.cedarschema:2:12: error: error parsing schema: unexpected end of input"]
                .assert_eq(&error.to_string())
        }
    }
}

#[test]
fn rejects_invalid_fixtures_and_test_files() {
    check(
        &[
            (
                "fixtures/f.json",
                "{\"entities\": [{\"type\": \"App\", \"id\": \"a\", \"parent\": {\"type\": \"App\", \"id\": \"b\"}}]}",
            ),
            ("fixtures/g.json", FIXTURE),
            (
                "fixtures/h.json",
                r#"{"entities": [{"type": "Folder", "id": "x"}]}"#,
            ),
            (
                "tests/bad-json.json",
                "{\n  \"fixture\": \"g\",\n  \"cases\": [\n    {\"name\": 1}\n  ]\n}",
            ),
            (
                "tests/unknown-fixture.json",
                "{\"fixture\": \"nope\", \"cases\": []}",
            ),
            (
                "tests/bad-case.json",
                r#"{"fixture": "g", "context": {"ip": "10.0.0.1"}, "cases": [
                    {"name": "c", "principal": "u", "action": "view", "resource": {"type": "App", "id": "a"}, "expect": "allow"}]}"#,
            ),
            (
                "tests/bad-policy.json",
                r#"{"fixture": "g", "context": {"ip": "10.0.0.1", "mfa": true, "authMethod": "password", "sessionAgeSeconds": 1, "environment": "dev", "time": "2026-01-01T00:00:00Z"},
                    "cases": [{"name": "c", "principal": "u", "action": "view", "resource": {"type": "App", "id": "a"}, "expect": "allow", "policies": ["nope"]}]}"#,
            ),
        ],
        expect![[r#"
            fixtures/f.json: error: entity App::"a" has parent App::"b", which is not declared before it
            tests/bad-case.json: error: case `c`: context: missing field `mfa`
            tests/bad-json.json:4:14: error: invalid type: integer `1`, expected a string
            tests/bad-policy.json: error: case `c`: expects unknown policy `nope`
            tests/unknown-fixture.json: error: unknown fixture `nope` (expected `fixtures/nope.json`)
            fixtures/h.json: error: entity Folder::"x" has type `Folder`, which the schema does not declare"#]],
    );
}

#[test]
fn policy_info_carries_annotations_and_position() {
    let bundle = Bundle::load(&default_bundle_dir()).unwrap();
    let info = bundle.policy("guard.prod-write-mfa").unwrap();
    assert_eq!(
        (
            info.effect(),
            info.file(),
            info.line(),
            info.column(),
            info.title()
        ),
        (
            "forbid",
            Path::new("guardrails/production.cedar"),
            12,
            1,
            Some("MFA for production writes")
        )
    );
}

#[test]
fn rejects_a_schema_without_user_and_role() {
    let files = [("schema.cedarschema", "entity App;\n")];
    match load_files(&files) {
        Ok(_) => panic!("loaded a schema the engine cannot use"),
        Err(error) => {
            expect!["schema.cedarschema: error: the schema must declare entity type `User`"]
                .assert_eq(&error.to_string())
        }
    }
}

#[test]
fn rejects_a_schema_whose_context_the_engine_cannot_supply() {
    let schema = "entity Role;\nentity User in [Role];\nentity App;\naction view appliesTo { principal: User, resource: App, context: { ip: ipaddr } };\n";
    match load_files(&[("schema.cedarschema", schema)]) {
        Ok(_) => panic!("loaded a schema with a foreign context"),
        Err(error) => expect![[r#"schema.cedarschema: error: the schema must accept a `User` principal and the engine's context (ip, mfa, authMethod, sessionAgeSeconds, environment, time) for action Action::"view": context `{authMethod: "", environment: "dev", ip: ip("127.0.0.1"), mfa: false, sessionAgeSeconds: 0, .. }` is not valid for `Action::"view"`"#]].assert_eq(&error.to_string()),
    }
}
