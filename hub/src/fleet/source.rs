//! Where the parts of a parsed fleet object were written, so that checks made after
//! parsing (pinning `hub:` images, unregistered devices) still answer with
//! `file:line:col`.
//!
//! Positions describe a manifest, not the object: they are never stored (fields holding
//! them are `#[serde(skip)]`, so an object reloaded from the store has none) and never
//! compared ([`Positions`] equals every other), so that re-applying an unchanged object
//! written elsewhere in a file is still "unchanged".

use std::collections::BTreeMap;

use drover_protocol::Name;
use drover_protocol::manifest::ManifestError;
use serde_saphyr::Spanned;

/// A place in a manifest file (1-based line and column).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl Position {
    pub fn of<T>(file: &str, node: &Spanned<T>) -> Position {
        Position {
            file: file.to_owned(),
            line: node.referenced.line(),
            column: node.referenced.column(),
        }
    }

    /// `message`, located here.
    pub fn error(&self, message: impl Into<String>) -> ManifestError {
        ManifestError {
            file: self.file.clone(),
            line: self.line,
            column: self.column,
            message: message.into(),
        }
    }
}

/// The positions of one object's parts; empty for objects that were not just parsed.
#[derive(Debug, Clone, Default)]
pub struct Positions {
    /// `metadata.name`.
    pub name: Option<Position>,
    /// Each container's `image`, by container name.
    pub images: BTreeMap<Name, Position>,
    /// A Deployment template's first `dependsOn` entry.
    pub depends_on: Option<Position>,
    /// Where a Deployment template references Secrets and ConfigMaps.
    pub refs: Vec<drover_protocol::manifest::RefSite>,
}

impl PartialEq for Positions {
    /// Always true: where an object was written is not part of what it is.
    fn eq(&self, _: &Positions) -> bool {
        true
    }
}

impl Eq for Positions {}

impl Positions {
    /// `message` at `position`, or (for an object not parsed from a file) at
    /// `kind/name` with line and column 0.
    pub fn error_at(
        position: Option<&Position>,
        kind: &str,
        name: &Name,
        message: impl Into<String>,
    ) -> ManifestError {
        match position {
            Some(p) => p.error(message),
            None => ManifestError {
                file: format!("{}/{name}", kind.to_ascii_lowercase()),
                line: 0,
                column: 0,
                message: message.into(),
            },
        }
    }
}
