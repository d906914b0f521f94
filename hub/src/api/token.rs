//! The hub's API tokens in its data folder `D`:
//! - `D/api.token`, the **admin** token: every `/v1` route, changes included (from
//!   loopback). The CLI on the hub's machine reads it itself (`read_token_file`).
//! - `D/read.token`, the **read** token: `GET` on `/v1`, the dashboard and `/metrics`,
//!   never a change. `drover-hub dashboard-url` prints the dashboard's address with it.
//!
//! Each is 32 random bytes, base64url without padding (43 characters), created once at
//! the first start (`create_new`, mode 0600, fsync; never rewritten at a restart: delete
//! the file and restart the hub to change it). This module must never log a token or put
//! one in an error message.

use std::io;
use std::path::{Path, PathBuf};

use crate::keys::{self, KeysError};

/// The admin token's file in the data folder.
pub const ADMIN_FILE: &str = "api.token";
/// The read-only token's file in the data folder.
pub const READ_FILE: &str = "read.token";

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Create(#[from] KeysError),
    #[error(
        "cannot read the hub's API token {}: {source} (the file is the hub's, mode 0600: \
         run as root or as the hub's user, or pass --token-file PATH or set DROVER_HUB_TOKEN)",
        path.display()
    )]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "{}: expected a token of at least 16 characters from A-Z a-z 0-9 - _ . ~ on its \
         first line (delete the file and restart the hub to have a new one created)",
        path.display()
    )]
    Invalid { path: PathBuf },
}

/// Both tokens, as read from (or just written to) the data folder.
#[derive(Clone, PartialEq, Eq)]
pub struct Tokens {
    pub admin: String,
    pub read: String,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens { admin: <secret>, read: <secret> }")
    }
}

/// Loads `D/api.token` and `D/read.token`, creating each (0600) when absent.
pub fn load_or_create(dir: &Path) -> Result<Tokens, TokenError> {
    Ok(Tokens {
        admin: load_or_create_one(&dir.join(ADMIN_FILE))?,
        read: load_or_create_one(&dir.join(READ_FILE))?,
    })
}

fn load_or_create_one(path: &Path) -> Result<String, TokenError> {
    let bytes = keys::load_or_create(path, || keys::new_credential().map(String::into_bytes))?;
    parse(&String::from_utf8_lossy(&bytes)).ok_or_else(|| TokenError::Invalid {
        path: path.to_owned(),
    })
}

/// The token in a file written by the hub or by hand: its first line, trimmed.
pub fn read_token_file(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text).ok_or_else(|| TokenError::Invalid {
        path: path.to_owned(),
    })
}

/// The first line, trimmed, if it is a token: at least 16 URL-safe characters (the same
/// rule as `[api] token`), so that it can go into a header, a cookie and a query string.
fn parse(text: &str) -> Option<String> {
    let token = text.lines().next().unwrap_or_default().trim();
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_.~".contains(c);
    (token.len() >= 16 && token.chars().all(safe)).then(|| token.to_owned())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn tokens_are_created_once_0600_distinct_and_kept_at_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create(dir.path()).unwrap();
        assert_ne!(first.admin, first.read);
        assert_eq!(first.admin.len(), 43);
        for name in [ADMIN_FILE, READ_FILE] {
            let meta = std::fs::metadata(dir.path().join(name)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
        let modified = |n| {
            std::fs::metadata(dir.path().join(n))
                .unwrap()
                .modified()
                .unwrap()
        };
        let before = (modified(ADMIN_FILE), modified(READ_FILE));
        let again = load_or_create(dir.path()).unwrap();
        assert_eq!(first, again);
        assert_eq!(before, (modified(ADMIN_FILE), modified(READ_FILE)));
        let path = dir.path().join(ADMIN_FILE);
        assert_eq!(read_token_file(&path).unwrap(), first.admin);
    }

    #[test]
    fn a_bad_or_missing_file_says_which_and_never_shows_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(ADMIN_FILE);
        let err = read_token_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("api.token") && err.contains("run as root"),
            "{err}"
        );
        std::fs::write(&path, "short secret\n").unwrap();
        let err = read_token_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("api.token") && !err.contains("secret"),
            "{err}"
        );
        let err = load_or_create(dir.path()).unwrap_err().to_string();
        assert!(err.contains("delete the file"), "{err}");
        std::fs::write(&path, "  0123456789abcdefXYZ \nsecond line\n").unwrap();
        assert_eq!(read_token_file(&path).unwrap(), "0123456789abcdefXYZ");
        assert!(!format!("{:?}", load_or_create(dir.path()).unwrap()).contains("0123"));
    }
}
