//! Policy test cases kept in the bundle (`tests/*.json`) and the runner that
//! checks them and reports coverage.
//!
//! A suite names a fixture (`fixtures/<name>.json`: the hierarchy and role
//! bindings), a default context, and cases; each case may override context
//! fields and add role bindings. The format is documented in
//! `policies/README.md`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::{Bundle, PolicyInfo};
use crate::directory::{EntityRef, MemoryDirectory, RoleBinding};
use crate::engine::{Basis, Decision, decide};
use crate::error::{Problem, json_message};
use crate::request::{Request, RequestContext};

/// A parsed `tests/*.json` file.
#[derive(Debug)]
pub(crate) struct TestSuite {
    file: PathBuf,
    fixture: String,
    cases: Vec<TestCase>,
}

#[derive(Debug)]
struct TestCase {
    name: String,
    request: Request,
    /// The fixture plus this case's extra bindings, when it has any.
    directory: Option<MemoryDirectory>,
    expect: Expect,
    policies: Option<Vec<String>>,
}

/// What a case expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
    /// A deny caused by an evaluation error.
    Error,
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Expect::Allow => "allow",
            Expect::Deny => "deny",
            Expect::Error => "error",
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    fixture: String,
    #[serde(default)]
    context: serde_json::Map<String, serde_json::Value>,
    cases: Vec<RawCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCase {
    name: String,
    principal: String,
    action: String,
    resource: EntityRef,
    #[serde(default)]
    context: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    bindings: Vec<RoleBinding>,
    expect: Expect,
    policies: Option<Vec<String>>,
}

/// Parses one test file, checking fixture names, bindings and policy ids.
pub(crate) fn parse_suite(
    path: &Path,
    text: &str,
    fixtures: &BTreeMap<String, MemoryDirectory>,
    policies: &BTreeMap<String, PolicyInfo>,
) -> Result<TestSuite, Vec<Problem>> {
    let raw: RawSuite = serde_json::from_str(text).map_err(|error| {
        vec![Problem::at(
            path,
            error.line(),
            error.column(),
            format!("error: {}", json_message(&error)),
        )]
    })?;
    let mut problems = Vec::new();
    let problem = |name: &str, message: String| {
        Problem::in_file(path, format!("error: case `{name}`: {message}"))
    };
    let Some(fixture) = fixtures.get(&raw.fixture) else {
        let message = format!(
            "error: unknown fixture `{}` (expected `fixtures/{}.json`)",
            raw.fixture, raw.fixture
        );
        return Err(vec![Problem::in_file(path, message)]);
    };
    let mut cases = Vec::new();
    for case in raw.cases {
        let mut fields = raw.context.clone();
        fields.extend(case.context);
        let context = match RequestContext::from_json_value(serde_json::Value::Object(fields)) {
            Ok(context) => context,
            Err(error) => {
                problems.push(problem(&case.name, error.to_string()));
                continue;
            }
        };
        let directory = if case.bindings.is_empty() {
            None
        } else {
            let mut directory = fixture.clone();
            let mut bound = Ok(());
            for binding in case.bindings {
                bound = bound.and_then(|()| directory.bind(binding));
            }
            if let Err(error) = bound {
                problems.push(problem(&case.name, error.to_string()));
                continue;
            }
            Some(directory)
        };
        for id in case.policies.iter().flatten() {
            if !policies.contains_key(id) {
                problems.push(problem(
                    &case.name,
                    format!("expects unknown policy `{id}`"),
                ));
            }
        }
        let mut expected_policies = case.policies;
        if let Some(ids) = &mut expected_policies {
            ids.sort();
        }
        cases.push(TestCase {
            name: case.name,
            request: Request {
                principal: case.principal.into(),
                action: case.action.into(),
                resource: case.resource.into(),
                context,
            },
            directory,
            expect: case.expect,
            policies: expected_policies,
        });
    }
    if problems.is_empty() {
        Ok(TestSuite {
            file: path.to_path_buf(),
            fixture: raw.fixture,
            cases,
        })
    } else {
        Err(problems)
    }
}

/// The outcome of running a bundle's test cases.
#[derive(Debug, Clone, Serialize)]
pub struct TestReport {
    revision: String,
    cases: Vec<CaseResult>,
    coverage: Coverage,
}

/// The outcome of one case.
#[derive(Debug, Clone, Serialize)]
pub struct CaseResult {
    file: PathBuf,
    name: String,
    passed: bool,
    failures: Vec<String>,
    decision: Decision,
}

/// Which policies the cases exercised as a determining policy.
#[derive(Debug, Clone, Serialize)]
pub struct Coverage {
    total: usize,
    covered: Vec<String>,
    uncovered: Vec<String>,
}

impl TestReport {
    /// Whether every case passed.
    pub fn passed(&self) -> bool {
        self.cases.iter().all(|case| case.passed)
    }

    /// Every case's outcome, in file order.
    pub fn cases(&self) -> &[CaseResult] {
        &self.cases
    }

    /// Policy coverage.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }
}

impl CaseResult {
    /// `file: name`.
    pub fn name(&self) -> String {
        format!("{}: {}", self.file.display(), self.name)
    }

    /// Whether the case passed.
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// Why it failed; empty when it passed.
    pub fn failures(&self) -> &[String] {
        &self.failures
    }

    /// The decision the engine made.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

impl Coverage {
    /// Whether every policy determined at least one decision.
    pub fn is_complete(&self) -> bool {
        self.uncovered.is_empty()
    }

    /// The policies no case exercised as a determining policy, sorted.
    pub fn uncovered(&self) -> &[String] {
        &self.uncovered
    }
}

/// Runs every test case of `bundle` and computes coverage.
pub fn run_tests(bundle: &Bundle) -> TestReport {
    let mut cases = Vec::new();
    let mut covered = std::collections::BTreeSet::new();
    let empty = MemoryDirectory::new();
    for suite in bundle.suites() {
        let fixture = bundle.fixture(&suite.fixture).unwrap_or(&empty);
        for case in &suite.cases {
            let directory = case.directory.as_ref().unwrap_or(fixture);
            let decision = decide(bundle, &case.request, directory);
            if matches!(decision.basis(), Basis::Permit | Basis::Forbid) {
                covered.extend(decision.policies().iter().cloned());
            }
            let failures = check_case(case, &decision);
            cases.push(CaseResult {
                file: suite.file.clone(),
                name: case.name.clone(),
                passed: failures.is_empty(),
                failures,
                decision,
            });
        }
    }
    let all: Vec<String> = bundle
        .policies()
        .map(|info| info.id().to_string())
        .collect();
    let uncovered = all
        .iter()
        .filter(|id| !covered.contains(*id))
        .cloned()
        .collect();
    let coverage = Coverage {
        total: all.len(),
        covered: covered.into_iter().collect(),
        uncovered,
    };
    TestReport {
        revision: bundle.revision().to_string(),
        cases,
        coverage,
    }
}

fn check_case(case: &TestCase, decision: &Decision) -> Vec<String> {
    let mut failures = Vec::new();
    let actual = match decision.basis() {
        Basis::Permit => Expect::Allow,
        Basis::Forbid | Basis::DefaultDeny => Expect::Deny,
        Basis::Error => Expect::Error,
    };
    if actual != case.expect {
        failures.push(format!(
            "expected {}, got {actual} ({})",
            case.expect,
            describe(decision)
        ));
    }
    if let Some(expected) = &case.policies
        && expected.as_slice() != decision.policies()
    {
        failures.push(format!(
            "expected determining policies [{}], got [{}]",
            expected.join(", "),
            decision.policies().join(", ")
        ));
    }
    if case.expect != Expect::Error {
        failures.extend(
            decision
                .errors()
                .iter()
                .map(|error| format!("evaluation error: {error}")),
        );
    }
    failures
}

fn describe(decision: &Decision) -> String {
    match decision.basis() {
        Basis::Permit => format!("permitted by {}", decision.policies().join(", ")),
        Basis::Forbid => format!("forbidden by {}", decision.policies().join(", ")),
        Basis::DefaultDeny => "no policy permits it".to_string(),
        Basis::Error => "evaluation error".to_string(),
    }
}

impl fmt::Display for TestReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for case in &self.cases {
            let status = if case.passed { "ok  " } else { "FAIL" };
            writeln!(f, "{status} {}", case.name())?;
            for failure in &case.failures {
                writeln!(f, "       {failure}")?;
            }
        }
        let n_passed = self.cases.iter().filter(|case| case.passed).count();
        writeln!(
            f,
            "results: {n_passed} passed, {} failed",
            self.cases.len() - n_passed
        )?;
        write!(
            f,
            "coverage: {} of {} policies determined at least one decision",
            self.coverage.covered.len(),
            self.coverage.total
        )?;
        if !self.coverage.uncovered.is_empty() {
            write!(f, "\nnot covered: {}", self.coverage.uncovered.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;
    use crate::bundle::tests::load_files;

    const SCHEMA: &str = r#"entity Role;
entity User in [Role];
entity App;
type Ctx = { ip: ipaddr, mfa: Bool, authMethod: String, sessionAgeSeconds: Long, environment: String, time: datetime };
action view appliesTo { principal: User, resource: App, context: Ctx };
"#;

    const POLICIES: &str = r#"@id("viewers")
permit (principal in Role::"viewer", action, resource);

@id("no-mfa-no-view")
forbid (principal, action, resource) unless { context.mfa };

@id("never-tested")
forbid (principal, action, resource) when { context.sessionAgeSeconds > 100 };
"#;

    const FIXTURE: &str = r#"{
  "entities": [{"type": "App", "id": "a"}],
  "bindings": [{"user": "vic", "role": "viewer", "scope": {"type": "App", "id": "a"}}]
}"#;

    const SUITE: &str = r#"{
  "fixture": "apps",
  "context": {"ip": "10.0.0.1", "mfa": true, "authMethod": "password", "sessionAgeSeconds": 1, "environment": "dev", "time": "2026-01-01T00:00:00Z"},
  "cases": [
    {"name": "viewer views", "principal": "vic", "action": "view", "resource": {"type": "App", "id": "a"}, "expect": "allow", "policies": ["viewers"]},
    {"name": "mfa is required", "principal": "vic", "action": "view", "resource": {"type": "App", "id": "a"}, "context": {"mfa": false}, "expect": "deny", "policies": ["no-mfa-no-view"]},
    {"name": "a stranger views (wrong on purpose)", "principal": "eve", "action": "view", "resource": {"type": "App", "id": "a"}, "expect": "allow"},
    {"name": "wrong policy expected", "principal": "vic", "action": "view", "resource": {"type": "App", "id": "a"}, "expect": "allow", "policies": ["no-mfa-no-view"]},
    {"name": "a per-case binding", "principal": "eve", "action": "view", "resource": {"type": "App", "id": "a"}, "bindings": [{"user": "eve", "role": "viewer", "scope": {"type": "App", "id": "a"}}], "expect": "allow"},
    {"name": "an unknown resource errs", "principal": "vic", "action": "view", "resource": {"type": "App", "id": "b"}, "expect": "error"},
    {"name": "an unexpected error fails", "principal": "vic", "action": "view", "resource": {"type": "App", "id": "b"}, "expect": "deny"}
  ]
}"#;

    fn report() -> TestReport {
        let bundle = load_files(&[
            ("schema.cedarschema", SCHEMA),
            ("policies.cedar", POLICIES),
            ("fixtures/apps.json", FIXTURE),
            ("tests/apps.json", SUITE),
        ])
        .unwrap();
        run_tests(&bundle)
    }

    #[test]
    fn reports_each_case_and_coverage() {
        let report = report();
        assert!(!report.passed());
        assert!(!report.coverage().is_complete());
        expect![[r#"
            ok   tests/apps.json: viewer views
            ok   tests/apps.json: mfa is required
            FAIL tests/apps.json: a stranger views (wrong on purpose)
                   expected allow, got deny (no policy permits it)
            FAIL tests/apps.json: wrong policy expected
                   expected determining policies [no-mfa-no-view], got [viewers]
            ok   tests/apps.json: a per-case binding
            ok   tests/apps.json: an unknown resource errs
            FAIL tests/apps.json: an unexpected error fails
                   expected deny, got error (evaluation error)
                   evaluation error: entity App::"b" is not in the directory
            results: 4 passed, 3 failed
            coverage: 2 of 3 policies determined at least one decision
            not covered: never-tested"#]]
        .assert_eq(&report.to_string());
    }

    #[test]
    fn serializes_for_machines() {
        let report = report();
        let json = serde_json::to_value(&report).unwrap();
        expect![[r#"
            {
              "total": 3,
              "covered": [
                "no-mfa-no-view",
                "viewers"
              ],
              "uncovered": [
                "never-tested"
              ]
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&json["coverage"]).unwrap());
        expect![[r#"
            {
              "file": "tests/apps.json",
              "name": "mfa is required",
              "passed": true,
              "failures": [],
              "decision": {
                "effect": "deny",
                "basis": "forbid",
                "policies": [
                  "no-mfa-no-view"
                ],
                "bindings": [
                  {
                    "user": "vic",
                    "role": "viewer",
                    "scope": {
                      "type": "App",
                      "id": "a"
                    }
                  }
                ],
                "errors": []
              }
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&json["cases"][1]).unwrap());
    }
}
