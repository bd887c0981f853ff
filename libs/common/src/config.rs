//! Layered configuration: command-line flag > environment variable > TOML file.
//!
//! Every service declares its flags with clap, each with an `env` name under one
//! prefix (e.g. `MAGNETAR_META_`). A TOML file given by `--config FILE` (or the
//! `{PREFIX}CONFIG` variable) is folded in *as environment defaults*: each
//! top-level key `data-dir = "..."` becomes `MAGNETAR_META_DATA_DIR` unless that
//! variable is already set. One mechanism, and the precedence falls out of it.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("config file {0} is not valid TOML: {1}")]
    Parse(PathBuf, toml::de::Error),
    #[error("config file {path}: key {key:?} must be a string, number, boolean or array of those")]
    Unsupported { path: PathBuf, key: String },
}

/// The config file named on the command line (`--config F` / `--config=F`) or by
/// `{prefix}CONFIG`, if any.
pub fn config_path_from_args(prefix: &str, args: &[String]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(p) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(p));
        }
    }
    std::env::var_os(format!("{prefix}CONFIG")).map(PathBuf::from)
}

fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Parses the file into (ENV_NAME, value) pairs.
pub fn toml_as_env(prefix: &str, path: &Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read(path.into(), e))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| ConfigError::Parse(path.into(), e))?;
    let mut out = Vec::new();
    for (key, value) in &table {
        let rendered = match value {
            toml::Value::Array(items) => items
                .iter()
                .map(scalar)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            other => scalar(other),
        }
        .ok_or_else(|| ConfigError::Unsupported {
            path: path.into(),
            key: key.clone(),
        })?;
        let name = format!("{prefix}{}", key.to_uppercase().replace(['-', '.'], "_"));
        out.push((name, rendered));
    }
    Ok(out)
}

/// Folds the config file (if one is named) into the environment, without
/// overriding variables that are already set. Call before starting any threads.
pub fn load_config_file(prefix: &str) -> Result<(), ConfigError> {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = config_path_from_args(prefix, &args) else {
        return Ok(());
    };
    for (name, value) in toml_as_env(prefix, &path)? {
        if std::env::var_os(&name).is_none() {
            // Safe here: called at the top of main, before any other thread exists.
            std::env::set_var(name, value);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_keys_become_prefixed_env_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "id = 2\ndata-dir = \"/d\"\npeers = [\"1=a:1\", \"2=b:2\"]\nsync = true\n",
        )
        .unwrap();
        let mut env = toml_as_env("MAGNETAR_META_", &path).unwrap();
        env.sort();
        assert_eq!(
            env,
            vec![
                ("MAGNETAR_META_DATA_DIR".into(), "/d".into()),
                ("MAGNETAR_META_ID".into(), "2".into()),
                ("MAGNETAR_META_PEERS".into(), "1=a:1,2=b:2".into()),
                ("MAGNETAR_META_SYNC".into(), "true".into()),
            ]
        );
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "id = \n").unwrap();
        assert!(matches!(
            toml_as_env("P_", &path),
            Err(ConfigError::Parse(..))
        ));
        std::fs::write(&path, "[section]\nx = 1\n").unwrap();
        assert!(matches!(
            toml_as_env("P_", &path),
            Err(ConfigError::Unsupported { .. })
        ));
        assert!(matches!(
            toml_as_env("P_", &dir.path().join("missing")),
            Err(ConfigError::Read(..))
        ));
    }

    #[test]
    fn config_flag_is_found_in_both_spellings() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            config_path_from_args("X_", &args(&["bin", "--config", "a.toml"])),
            Some("a.toml".into())
        );
        assert_eq!(
            config_path_from_args("X_", &args(&["bin", "--config=b.toml"])),
            Some("b.toml".into())
        );
    }
}
