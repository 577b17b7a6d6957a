//! Shared config-file plumbing: TOML parsing that reports *every* unknown key
//! (not just the first), and the error list both binaries print before exiting
//! with [`EXIT_CONFIG`].

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Exit code for a bad configuration (BSD `EX_USAGE`).
pub const EXIT_CONFIG: u8 = 64;

/// Every problem found in a configuration, one per line when displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<String>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "- {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Parses TOML into `T`. Unknown keys do not stop parsing: each one is
/// appended to `problems` as `unknown key `a.b``, so a file with several typos
/// is reported whole. A syntax or type error ends parsing (there is nothing
/// sound to validate after it) and is returned as the only problem added.
pub fn parse_toml<T: DeserializeOwned>(text: &str, problems: &mut Vec<String>) -> Option<T> {
    let de = match toml::de::Deserializer::parse(text) {
        Ok(de) => de,
        Err(e) => {
            problems.push(e.to_string().trim_end().to_string());
            return None;
        }
    };
    let mut unknown = Vec::new();
    let parsed = serde_ignored::deserialize(de, |path| unknown.push(key_path(&path)));
    unknown.sort();
    problems.extend(unknown.into_iter().map(|k| format!("unknown key `{k}`")));
    match parsed {
        Ok(value) => Some(value),
        Err(e) => {
            problems.push(e.to_string().trim_end().to_string());
            None
        }
    }
}

/// `a.b[0].c` for a serde_ignored path (its own Display shows `?` for options).
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Map { parent, key } => {
            let p = key_path(parent);
            if p.is_empty() {
                key.clone()
            } else {
                format!("{p}.{key}")
            }
        }
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

/// Reads and parses a TOML config file (see [`parse_toml`]).
pub fn read_toml<T: DeserializeOwned>(path: &Path, problems: &mut Vec<String>) -> Option<T> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_toml(&text, problems),
        Err(e) => {
            problems.push(format!("cannot read {}: {e}", path.display()));
            None
        }
    }
}

/// `path` relative to the folder of the config file, unless already absolute.
pub fn resolve(config_path: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        return path.to_path_buf();
    }
    match config_path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Inner {
        #[serde(default)]
        n: u32,
    }

    #[derive(Debug, Deserialize)]
    struct Outer {
        name: String,
        #[serde(default)]
        inner: Option<Inner>,
    }

    #[test]
    fn every_unknown_key_is_reported() {
        let mut problems = Vec::new();
        let parsed: Option<Outer> = parse_toml(
            "name = \"x\"\ntypo = 1\n[inner]\nn = 2\nalso = 3\n",
            &mut problems,
        );
        let parsed = parsed.expect("parses");
        assert_eq!(parsed.name, "x");
        assert_eq!(parsed.inner.map(|i| i.n), Some(2));
        assert_eq!(
            problems,
            vec!["unknown key `inner.also`", "unknown key `typo`"]
        );
    }

    #[test]
    fn syntax_and_type_errors_are_reported() {
        let mut problems = Vec::new();
        assert!(parse_toml::<Outer>("name = ", &mut problems).is_none());
        assert_eq!(problems.len(), 1);
        let mut problems = Vec::new();
        assert!(parse_toml::<Outer>("name = 5", &mut problems).is_none());
        assert!(problems[0].contains("string"), "{problems:?}");
        let mut problems = Vec::new();
        assert!(read_toml::<Outer>(Path::new("/nonexistent/x.toml"), &mut problems).is_none());
        assert!(problems[0].contains("cannot read"));
    }

    #[test]
    fn relative_paths_follow_the_config_file() {
        assert_eq!(
            resolve(Path::new("/etc/vigil/agent.toml"), Path::new("ca.crt")),
            PathBuf::from("/etc/vigil/ca.crt")
        );
        assert_eq!(
            resolve(Path::new("agent.toml"), Path::new("ca.crt")),
            PathBuf::from("ca.crt")
        );
        assert_eq!(
            resolve(Path::new("/etc/a.toml"), Path::new("/x/ca.crt")),
            PathBuf::from("/x/ca.crt")
        );
    }
}
