//! TOML config text → typed settings, with errors that name the file, line and column.
//! Shared by the agent's and the hub's config; reading the file is theirs (no IO here).

use std::path::PathBuf;

use serde::de::DeserializeOwned;

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Parse {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
}

/// Parses config `text`; `file` only labels errors.
pub fn parse<T: DeserializeOwned>(file: &str, text: &str) -> Result<T, ConfigError> {
    toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
        ConfigError::Parse {
            file: file.to_owned(),
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// `log_level`, checked: comma-separated `tracing` directives, each a level (`info`) or
/// `target=level` (`drover_hub=debug`). A bare word that is no level would parse as a
/// target with no level and silence every log, so it is refused, with what is expected.
pub fn check_log_level(s: &str) -> Result<(), String> {
    let level = |l: &str| LEVELS.contains(&l.trim().to_ascii_lowercase().as_str());
    for d in s.split(',').map(str::trim) {
        let ok = match d.split_once('=') {
            Some((target, l)) => !target.trim().is_empty() && level(l),
            None => level(d),
        };
        if !ok {
            return Err(format!(
                "log_level: {d:?} is not a level ({}) or target=level; e.g. \"info\" or \
                 \"info,drover_hub=debug\"",
                LEVELS.join(", ")
            ));
        }
    }
    Ok(())
}

/// serde `deserialize_with` for `log_level` settings: [`check_log_level`].
pub fn log_level<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let s = <String as serde::Deserialize>::deserialize(d)?;
    check_log_level(&s).map_err(serde::de::Error::custom)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    #[test]
    fn log_levels_are_levels_or_target_directives() {
        for ok in [
            "info",
            "DEBUG",
            "info,drover_hub=debug",
            "warn, rumqttd=off",
            "off",
        ] {
            assert_eq!(super::check_log_level(ok), Ok(()), "{ok}");
        }
        for bad in [
            "loud",
            "",
            "info,",
            "drover_hub=",
            "=debug",
            "info,drover=loud",
        ] {
            let e = super::check_log_level(bad).expect_err(bad);
            assert!(
                e.contains("is not a level (off, error, warn, info, debug, trace)"),
                "{e}"
            );
        }
    }

    use super::*;

    #[test]
    fn positions_count_lines_and_characters() {
        assert_eq!(line_column("a\nbé c", 6), (2, 4));
        assert_eq!(line_column("x", 0), (1, 1));
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct C {
            #[allow(dead_code)]
            a: u32,
        }
        let e = parse::<C>("c.toml", "a = 1\nb = 2\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:2:1: unknown field `b`"), "{e}");
    }
}
