//! Errors of loading a bundle, reading a directory file and formatting.
//!
//! Evaluation errors are not here: they never fail a call, they turn a
//! decision into a deny and travel inside the [`crate::Decision`].

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Why a policy bundle could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// A file or folder of the bundle could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The bundle was read but is not valid; every problem found is listed.
    #[error("{0}")]
    Invalid(Problems),
}

/// A file or folder that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read `{}`", path.display())]
pub struct IoError {
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl IoError {
    pub(crate) fn new(path: &Path, source: io::Error) -> IoError {
        IoError {
            path: path.to_path_buf(),
            source,
        }
    }

    /// The path that could not be read.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// One problem in one bundle file, with its position when known.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    file: PathBuf,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
}

impl Problem {
    /// A problem at a 1-based line and column of `file`.
    pub(crate) fn at(file: &Path, line: usize, column: usize, message: String) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line: Some(line),
            column: Some(column),
            message,
        }
    }

    /// A problem with a whole file (or folder).
    pub(crate) fn in_file(file: &Path, message: String) -> Problem {
        Problem {
            file: file.to_path_buf(),
            line: None,
            column: None,
            message,
        }
    }

    /// The file, relative to the bundle folder.
    pub fn file(&self) -> &Path {
        &self.file
    }

    /// 1-based line, when the problem has a position.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// 1-based column (in characters), when the problem has a position.
    pub fn column(&self) -> Option<usize> {
        self.column
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// All problems found in a bundle, in file order; never empty.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(transparent)]
pub struct Problems(Vec<Problem>);

impl Problems {
    pub(crate) fn new(problems: Vec<Problem>) -> Problems {
        Problems(problems)
    }

    /// The problems, in file order.
    pub fn as_slice(&self) -> &[Problem] {
        &self.0
    }
}

impl fmt::Display for Problems {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for problem in &self.0 {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Why a directory (role bindings and resource hierarchy) could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectoryError {
    /// The directory file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// The directory file is not valid JSON of the documented shape.
    #[error("invalid directory file at line {line}, column {column}: {message}")]
    Json {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What serde found.
        message: String,
    },
    /// The same entity is declared twice.
    #[error("entity {entity} is declared twice")]
    DuplicateEntity {
        /// The entity, as `Type::"id"`.
        entity: String,
    },
    /// An entity names a parent that is not declared before it.
    #[error("entity {entity} has parent {parent}, which is not declared before it")]
    UnknownParent {
        /// The child entity.
        entity: String,
        /// The missing parent.
        parent: String,
    },
    /// A role binding's scope is not a declared entity.
    #[error("role binding of user `{user}` to role `{role}` names undeclared scope {scope}")]
    UnknownScope {
        /// The bound user.
        user: String,
        /// The bound role.
        role: String,
        /// The missing scope.
        scope: String,
    },
}

impl DirectoryError {
    pub(crate) fn from_json(error: &serde_json::Error) -> DirectoryError {
        DirectoryError::Json {
            line: error.line(),
            column: error.column(),
            message: json_message(error),
        }
    }
}

/// serde_json's message without its trailing " at line L column C".
pub(crate) fn json_message(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(end) => text.get(..end).unwrap_or(&text).to_string(),
        None => text,
    }
}

/// Why formatting the bundle's policy files failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A policy file could not be read.
    #[error(transparent)]
    Io(#[from] IoError),
    /// A policy file does not parse, so it has no canonical form.
    #[error("cannot format `{}`: {message}", file.display())]
    Unparsable {
        /// The file, relative to the bundle folder.
        file: PathBuf,
        /// The parser's message.
        message: String,
    },
}
