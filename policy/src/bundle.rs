//! Loading a policy bundle from a folder: schema, policies, fixtures and test
//! cases, strictly validated, with every problem pointing at file, line and
//! column.
//!
//! Layout: exactly one `*.cedarschema` and any number of `*.cedar` files
//! anywhere below the folder (hidden folders and `target` are skipped);
//! `fixtures/<name>.json` directory files; `tests/*.json` test suites.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;
use serde::Serialize;

use crate::directory::MemoryDirectory;
use crate::engine::Compiled;
use crate::error::{DirectoryError, IoError, LoadError, Problem, Problems};
use crate::revision::{Revision, revision_of};
use crate::source::{line_column, statement_starts};
use crate::testing::{TestSuite, parse_suite};

/// A loaded, validated policy bundle. Immutable once loaded.
#[derive(Debug)]
pub struct Bundle {
    dir: PathBuf,
    revision: Revision,
    policies: PolicySet,
    infos: BTreeMap<String, PolicyInfo>,
    fixtures: BTreeMap<String, MemoryDirectory>,
    suites: Vec<TestSuite>,
    compiled: Compiled,
}

/// Where a policy is written and what its annotations say about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyInfo {
    id: String,
    effect: &'static str,
    file: PathBuf,
    line: usize,
    column: usize,
    title: Option<String>,
    description: Option<String>,
}

impl PolicyInfo {
    /// The policy's `@id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// `permit` or `forbid`.
    pub fn effect(&self) -> &'static str {
        self.effect
    }

    /// The file it is written in, relative to the bundle folder.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line where the policy starts.
    pub fn line(&self) -> usize {
        self.line
    }

    /// 1-based column where the policy starts.
    pub fn column(&self) -> usize {
        self.column
    }

    /// Its `@title` annotation.
    pub fn title(&self) -> Option<&str> {
        self.title.as_deref()
    }

    /// Its `@description` annotation.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

/// The text of every bundle file, by kind, with paths relative to the folder.
struct Files {
    schemas: Vec<(PathBuf, String)>,
    policies: Vec<(PathBuf, String)>,
    fixtures: Vec<(PathBuf, String)>,
    tests: Vec<(PathBuf, String)>,
}

impl Bundle {
    /// Reads and validates the bundle in `dir`.
    ///
    /// Any parse error, missing or duplicate `@id`, schema validation error
    /// *or warning*, invalid fixture or invalid test file rejects the bundle
    /// with [`LoadError::Invalid`], listing every problem found.
    pub fn load(dir: &Path) -> Result<Bundle, LoadError> {
        let files = read_files(dir)?;
        let mut problems = Vec::new();

        let schema = load_schema(&files.schemas, &mut problems);
        let (policies, infos) = load_policies(&files.policies, &mut problems);
        if let Some(schema) = &schema {
            validate_policies(schema, &policies, &infos, &files.policies, &mut problems);
        }
        let fixtures = load_fixtures(&files.fixtures, &mut problems);
        let mut suites = Vec::new();
        for (path, text) in &files.tests {
            match parse_suite(path, text, &fixtures, &infos) {
                Ok(suite) => suites.push(suite),
                Err(suite_problems) => problems.extend(suite_problems),
            }
        }
        if let Some(schema) = &schema {
            check_fixture_types(schema, &files.fixtures, &fixtures, &mut problems);
        }
        // With a schema, compile even when other problems exist, so that a
        // schema the engine cannot use is reported alongside them.
        let compiled = match &schema {
            Some(schema) => match Compiled::new(schema, &policies) {
                Ok(compiled) => Some(compiled),
                Err(message) => {
                    let schema_file = files.schemas.first().map(|(path, _)| path.as_path());
                    problems.push(Problem::in_file(
                        schema_file.unwrap_or(Path::new(".")),
                        message,
                    ));
                    None
                }
            },
            None => None,
        };
        let (Some(_), Some(compiled), true) = (schema, compiled, problems.is_empty()) else {
            return Err(LoadError::Invalid(Problems::new(problems)));
        };

        let all_files: Vec<(String, String)> = [
            &files.schemas,
            &files.policies,
            &files.fixtures,
            &files.tests,
        ]
        .into_iter()
        .flatten()
        .map(|(path, text)| (slash_path(path), text.clone()))
        .collect();
        Ok(Bundle {
            dir: dir.to_path_buf(),
            revision: revision_of(dir, &all_files),
            policies,
            infos,
            fixtures,
            suites,
            compiled,
        })
    }

    /// The folder the bundle was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The Git commit of the checkout, else `sha256:<hex>` of the files.
    pub fn revision(&self) -> &Revision {
        &self.revision
    }

    /// Every policy, by `@id`.
    pub fn policies(&self) -> impl Iterator<Item = &PolicyInfo> {
        self.infos.values()
    }

    /// One policy by `@id`.
    pub fn policy(&self, id: &str) -> Option<&PolicyInfo> {
        self.infos.get(id)
    }

    /// The entity fixtures of `fixtures/<name>.json`, by name.
    pub fn fixture(&self, name: &str) -> Option<&MemoryDirectory> {
        self.fixtures.get(name)
    }

    /// The names of the bundle's fixtures, sorted.
    pub fn fixture_names(&self) -> impl Iterator<Item = &str> {
        self.fixtures.keys().map(String::as_str)
    }

    pub(crate) fn policy_set(&self) -> &PolicySet {
        &self.policies
    }

    pub(crate) fn compiled(&self) -> &Compiled {
        &self.compiled
    }

    pub(crate) fn suites(&self) -> &[TestSuite] {
        &self.suites
    }
}

fn read_files(dir: &Path) -> Result<Files, IoError> {
    let mut files = Files {
        schemas: Vec::new(),
        policies: Vec::new(),
        fixtures: Vec::new(),
        tests: Vec::new(),
    };
    let mut paths = Vec::new();
    walk(dir, dir, &mut paths)?;
    paths.sort();
    for relative in paths {
        let in_folder = |name: &str| {
            relative.parent() == Some(Path::new(name))
                && relative.extension().is_some_and(|ext| ext == "json")
        };
        let list = match relative.extension().and_then(|ext| ext.to_str()) {
            Some("cedarschema") => &mut files.schemas,
            Some("cedar") => &mut files.policies,
            _ if in_folder("fixtures") => &mut files.fixtures,
            _ if in_folder("tests") => &mut files.tests,
            _ => continue,
        };
        let path = dir.join(&relative);
        let text = fs::read_to_string(&path).map_err(|source| IoError::new(&path, source))?;
        list.push((relative, text));
    }
    Ok(files)
}

/// Collects every file below `dir` as a path relative to `root`.
fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IoError> {
    let entries = fs::read_dir(dir).map_err(|source| IoError::new(dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| IoError::new(dir, source))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let file_type = entry
            .file_type()
            .map_err(|source| IoError::new(&path, source))?;
        if file_type.is_dir() {
            if !name.starts_with('.') && name != "target" {
                walk(root, &path, out)?;
            }
        } else if let Ok(relative) = path.strip_prefix(root) {
            out.push(relative.to_path_buf());
        }
    }
    Ok(())
}

fn load_schema(schemas: &[(PathBuf, String)], problems: &mut Vec<Problem>) -> Option<Schema> {
    let [(path, text)] = schemas else {
        let message = if schemas.is_empty() {
            "no `*.cedarschema` file in the bundle".to_string()
        } else {
            let names: Vec<String> = schemas
                .iter()
                .map(|(path, _)| format!("`{}`", path.display()))
                .collect();
            format!(
                "the bundle must have exactly one `*.cedarschema` file, found {}",
                names.join(", ")
            )
        };
        problems.push(Problem::in_file(Path::new("."), message));
        return None;
    };
    match Schema::from_cedarschema_str(text) {
        Ok((schema, warnings)) => {
            let before = problems.len();
            for warning in warnings {
                problems.push(located(path, text, &warning, format!("warning: {warning}")));
            }
            (problems.len() == before).then_some(schema)
        }
        Err(error) => {
            problems.push(located(
                path,
                text,
                &error,
                format!("error: {}", full_message(&error)),
            ));
            None
        }
    }
}

fn load_policies(
    files: &[(PathBuf, String)],
    problems: &mut Vec<Problem>,
) -> (PolicySet, BTreeMap<String, PolicyInfo>) {
    let mut set = PolicySet::new();
    let mut infos: BTreeMap<String, PolicyInfo> = BTreeMap::new();
    for (path, text) in files {
        let parsed = match PolicySet::from_str(text) {
            Ok(parsed) => parsed,
            Err(errors) => {
                for error in errors.iter() {
                    problems.push(located(
                        path,
                        text,
                        error,
                        format!("error: {}", full_message(error)),
                    ));
                }
                continue;
            }
        };
        let starts = statement_starts(text);
        let position = |cedar_id: &PolicyId| {
            let index: Option<usize> = cedar_id
                .to_string()
                .strip_prefix("policy")
                .and_then(|n| n.parse().ok());
            let offset = index
                .and_then(|index| starts.get(index))
                .copied()
                .unwrap_or(0);
            line_column(text, offset)
        };
        for template in parsed.templates() {
            let (line, column) = position(template.id());
            problems.push(Problem::at(
                path,
                line,
                column,
                "error: templates are not supported; grant roles with role bindings and `principal in Role::\"<name>\"`".to_string(),
            ));
        }
        let mut in_file: Vec<_> = parsed.policies().collect();
        in_file.sort_by_key(|policy| position(policy.id()));
        for policy in in_file {
            let (line, column) = position(policy.id());
            let Some(id) = policy.annotation("id") else {
                problems.push(Problem::at(
                    path,
                    line,
                    column,
                    "error: policy has no `@id(\"...\")` annotation".to_string(),
                ));
                continue;
            };
            if let Some(first) = infos.get(id) {
                problems.push(Problem::at(
                    path,
                    line,
                    column,
                    format!(
                        "error: duplicate policy id `{id}`, first used at {}:{}:{}",
                        first.file.display(),
                        first.line,
                        first.column
                    ),
                ));
                continue;
            }
            if let Err(error) = set.add(policy.new_id(PolicyId::new(id))) {
                problems.push(Problem::at(path, line, column, format!("error: {error}")));
                continue;
            }
            let effect = match policy.effect() {
                cedar_policy::Effect::Permit => "permit",
                cedar_policy::Effect::Forbid => "forbid",
            };
            infos.insert(
                id.to_string(),
                PolicyInfo {
                    id: id.to_string(),
                    effect,
                    file: path.clone(),
                    line,
                    column,
                    title: policy.annotation("title").map(str::to_string),
                    description: policy.annotation("description").map(str::to_string),
                },
            );
        }
    }
    (set, infos)
}

fn validate_policies(
    schema: &Schema,
    policies: &PolicySet,
    infos: &BTreeMap<String, PolicyInfo>,
    files: &[(PathBuf, String)],
    problems: &mut Vec<Problem>,
) {
    let result = Validator::new(schema.clone()).validate(policies, ValidationMode::Strict);
    let mut found = Vec::new();
    let errors = result
        .validation_errors()
        .map(|error| (error.policy_id(), error as &dyn Diagnostic, "error"));
    let warnings = result
        .validation_warnings()
        .map(|warning| (warning.policy_id(), warning as &dyn Diagnostic, "warning"));
    for (policy_id, diagnostic, severity) in errors.chain(warnings) {
        let info = infos.get(policy_id.to_string().as_str());
        let source = info.and_then(|info| files.iter().find(|(path, _)| *path == info.file));
        let message = format!("{severity}: {}", full_message(diagnostic));
        found.push(match (info, source) {
            (Some(info), Some((path, text))) => match first_label_offset(diagnostic) {
                Some(offset) => {
                    let (line, column) = line_column(text, offset);
                    Problem::at(path, line, column, message)
                }
                None => Problem::at(path, info.line, info.column, message),
            },
            _ => Problem::in_file(Path::new(&policy_id.to_string()), message),
        });
    }
    found.sort_by(|a, b| (a.file(), a.line(), a.column()).cmp(&(b.file(), b.line(), b.column())));
    problems.extend(found);
}

fn load_fixtures(
    files: &[(PathBuf, String)],
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, MemoryDirectory> {
    let mut fixtures = BTreeMap::new();
    for (path, text) in files {
        let Some(name) = path.file_stem().and_then(|stem| stem.to_str()) else {
            continue;
        };
        match MemoryDirectory::from_json_str(text) {
            Ok(directory) => {
                fixtures.insert(name.to_string(), directory);
            }
            Err(DirectoryError::Json {
                line,
                column,
                message,
            }) => {
                problems.push(Problem::at(path, line, column, format!("error: {message}")));
            }
            Err(error) => problems.push(Problem::in_file(path, format!("error: {error}"))),
        }
    }
    fixtures
}

/// Every fixture entity must have a type the schema declares.
fn check_fixture_types(
    schema: &Schema,
    files: &[(PathBuf, String)],
    fixtures: &BTreeMap<String, MemoryDirectory>,
    problems: &mut Vec<Problem>,
) {
    let declared: BTreeSet<String> = schema.entity_types().map(ToString::to_string).collect();
    for (path, _) in files {
        let fixture = path
            .file_stem()
            .and_then(|stem| stem.to_str())
            .and_then(|name| fixtures.get(name));
        for entity in fixture.into_iter().flat_map(MemoryDirectory::entities) {
            if !declared.contains(&entity.kind) {
                let message = format!(
                    "error: entity {entity} has type `{}`, which the schema does not declare",
                    entity.kind
                );
                problems.push(Problem::in_file(path, message));
            }
        }
    }
}

/// A problem at the first labelled span of `diagnostic` in `text`, else for the whole file.
fn located(path: &Path, text: &str, diagnostic: &dyn Diagnostic, message: String) -> Problem {
    match first_label_offset(diagnostic) {
        Some(offset) => {
            let (line, column) = line_column(text, offset);
            Problem::at(path, line, column, message)
        }
        None => Problem::in_file(path, message),
    }
}

fn first_label_offset(diagnostic: &dyn Diagnostic) -> Option<usize> {
    diagnostic.labels()?.next().map(|label| label.offset())
}

/// The error's message followed by cedar's help text, when it has one.
fn full_message(diagnostic: &dyn Diagnostic) -> String {
    match diagnostic.help() {
        Some(help) => format!("{diagnostic} (help: {help})"),
        None => diagnostic.to_string(),
    }
}

fn slash_path(path: &Path) -> String {
    path.components()
        .map(|part| part.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
pub(crate) mod tests;
