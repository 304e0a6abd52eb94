//! Settings of every command that runs work, read one way: a TOML file over the settings'
//! defaults ([`parse_settings`]), then the flags given on the command line over the file
//! ([`resolve_settings`]), then written resolved into the run's folder ([`write_settings`]).
//!
//! A command's flags are a `Serialize` struct whose fields are `Option`s (or `bool` switches that
//! serialise only when set) named like the settings they override; a dotted name (`lora.r`)
//! reaches into a nested table. Flags not given serialise to nothing, so they leave the file's
//! value alone.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::atomic::write_atomic;
use crate::error::{DataError, Result};

/// The resolved settings file's name in a run folder.
pub const SETTINGS_FILE: &str = "config.toml";

/// Parses the TOML settings file `path` holding `text` over `T::default()` (so defaults of
/// embedded settings are `T`'s own); a key that `T` does not have, at any depth, is an error
/// naming its line (and the closest known key).
///
/// # Errors
/// [`DataError::SettingsFile`] for invalid TOML, a wrong type or an unknown key.
pub fn parse_settings<T: DeserializeOwned + Serialize + Default>(text: &str, path: &Path) -> Result<T> {
    let given = given_table::<T>(text, path)?;
    settings_from_table(given, path, |name| line_of(text, name))
}

/// Reads the settings file `file` (or starts from the defaults) and writes the flags given over
/// it: `flags` serialises to the settings it overrides (see the module docs). `cleared` settings
/// go back to their defaults first: a flag that replaces a setting qualified by another (epochs
/// given on the command line replace a file's `max_steps`) names the other here.
///
/// # Errors
/// [`DataError::Read`] for an unreadable file; [`DataError::SettingsFile`] for invalid TOML, a
/// wrong type or an unknown key, in the file or among the flags.
pub fn resolve_settings<T: DeserializeOwned + Serialize + Default>(
    file: Option<&Path>,
    flags: &impl Serialize,
    cleared: &[&str],
) -> Result<T> {
    let flags_at = Path::new("command-line flags");
    let (mut given, text) = match file {
        None => (toml::Table::new(), String::new()),
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|error| DataError::Read { path: path.to_owned(), error })?;
            (given_table::<T>(&text, path)?, text)
        }
    };
    for key in cleared {
        given.remove(*key);
    }
    let flags = toml::Table::try_from(flags)
        .map_err(|e| DataError::SettingsFile { path: flags_at.to_owned(), message: e.to_string() })?;
    overlay(&mut given, undotted(flags));
    settings_from_table(given, file.unwrap_or(flags_at), |name| line_of(&text, name))
}

/// Writes `settings` as TOML into `dir/config.toml` (creating `dir`), atomically.
///
/// # Errors
/// [`DataError::Write`] when the folder or file cannot be written.
pub fn write_settings(settings: &impl Serialize, dir: &Path) -> Result<PathBuf> {
    let path = dir.join(SETTINGS_FILE);
    let write_error = |error| DataError::Write { path: path.clone(), error };
    std::fs::create_dir_all(dir).map_err(write_error)?;
    let text = toml::to_string_pretty(settings)
        .map_err(|e| DataError::SettingsFile { path: path.clone(), message: e.to_string() })?;
    write_atomic(&path, text.as_bytes()).map_err(write_error)?;
    Ok(path)
}

/// The table of settings file `path` holding `text`, after checking that it parses as `T` as
/// written (so that a wrong type is an error naming its line).
fn given_table<T: DeserializeOwned>(text: &str, path: &Path) -> Result<toml::Table> {
    let fail = |e: toml::de::Error| DataError::SettingsFile { path: path.to_owned(), message: e.to_string() };
    toml::from_str::<T>(text).map_err(fail)?;
    toml::from_str(text).map_err(fail)
}

/// The line of `text` where the key `name` is set (0 when none is).
fn line_of(text: &str, name: &str) -> usize {
    text.lines().position(|line| line.trim_start().starts_with(name)).map_or(0, |i| i + 1)
}

/// `given` over `T::default()`, checked for unknown keys; `line_of` finds a key's line.
fn settings_from_table<T: DeserializeOwned + Serialize + Default>(
    given: toml::Table,
    path: &Path,
    line_of: impl Fn(&str) -> usize,
) -> Result<T> {
    let fail = |message: String| DataError::SettingsFile { path: path.to_owned(), message };
    let mut merged = toml::Table::try_from(T::default()).map_err(|e| fail(e.to_string()))?;
    overlay(&mut merged, given.clone());
    let settings: T = merged.try_into().map_err(|e: toml::de::Error| fail(e.to_string()))?;
    let known = toml::Table::try_from(&settings).map_err(|e| fail(e.to_string()))?;
    match first_unknown_key(&given, &known) {
        None => Ok(settings),
        Some((key, suggestion)) => {
            let line = line_of(key.rsplit('.').next().unwrap_or(&key));
            let at = if line > 0 { format!("line {line}: ") } else { String::new() };
            let hint = suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default();
            Err(fail(format!("{at}unknown setting `{key}`{hint}")))
        }
    }
}

/// Dotted keys (`lora.r`) as nested tables.
fn undotted(table: toml::Table) -> toml::Table {
    let mut nested = toml::Table::new();
    for (key, value) in table {
        let mut parts = key.rsplit('.');
        let last = parts.next().unwrap_or_default().to_owned();
        let mut wrapped = toml::Table::from_iter([(last, value)]);
        for part in parts {
            wrapped = toml::Table::from_iter([(part.to_owned(), toml::Value::Table(wrapped))]);
        }
        overlay(&mut nested, wrapped);
    }
    nested
}

/// Writes `given` over `base`, table by table.
fn overlay(base: &mut toml::Table, given: toml::Table) {
    for (key, value) in given {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(inner)), toml::Value::Table(given_inner)) => overlay(inner, given_inner),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// The first key of `given` that `known` lacks, with its dotted path and the closest known key.
fn first_unknown_key(given: &toml::Table, known: &toml::Table) -> Option<(String, Option<String>)> {
    for (key, value) in given {
        match (value, known.get(key)) {
            (_, None) => {
                let closest = known
                    .keys()
                    .map(|k| (strsim::jaro_winkler(k, key), k))
                    .filter(|(score, _)| *score > 0.85)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| k.clone());
                return Some((key.clone(), closest));
            }
            (toml::Value::Table(inner), Some(toml::Value::Table(known_inner))) => {
                if let Some((path, closest)) = first_unknown_key(inner, known_inner) {
                    return Some((format!("{key}.{path}"), closest));
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Inner {
        r: usize,
        alpha: f64,
    }

    impl Default for Inner {
        fn default() -> Self {
            Self { r: 8, alpha: 16.0 }
        }
    }

    #[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
    #[serde(default)]
    struct Settings {
        name: String,
        steps: Option<u64>,
        packing: bool,
        lora: Inner,
    }

    #[derive(Default, Serialize)]
    struct Flags {
        name: Option<String>,
        steps: Option<u64>,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        packing: bool,
        #[serde(rename = "lora.r")]
        lora_r: Option<usize>,
    }

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn flags_given_override_the_file_and_flags_not_given_leave_it_alone() {
        let (_dir, path) = file("name = \"a\"\npacking = true\n[lora]\nr = 4\nalpha = 8.0\n");
        let settings: Settings = resolve_settings(Some(&path), &Flags::default(), &[]).unwrap();
        assert_eq!(
            settings,
            Settings { name: "a".into(), steps: None, packing: true, lora: Inner { r: 4, alpha: 8.0 } }
        );
        let flags = Flags { steps: Some(3), lora_r: Some(2), ..Flags::default() };
        let settings: Settings = resolve_settings(Some(&path), &flags, &[]).unwrap();
        assert_eq!(
            settings,
            Settings { name: "a".into(), steps: Some(3), packing: true, lora: Inner { r: 2, alpha: 8.0 } }
        );
        let settings: Settings = resolve_settings(None, &flags, &[]).unwrap();
        assert_eq!(settings.lora, Inner { r: 2, alpha: 16.0 });
        // A cleared setting goes back to its default before the flags apply.
        let settings: Settings = resolve_settings(Some(&path), &flags, &["lora"]).unwrap();
        assert_eq!((settings.name.as_str(), settings.lora), ("a", Inner { r: 2, alpha: 16.0 }));
    }

    #[test]
    fn an_unknown_key_names_its_file_line_and_closest_setting() {
        let (_dir, path) = file("name = \"a\"\n[lora]\nrr = 4\n");
        let error = resolve_settings::<Settings>(Some(&path), &Flags::default(), &[]).unwrap_err().to_string();
        assert!(error.ends_with("s.toml: line 3: unknown setting `lora.rr` (did you mean `r`?)"), "{error}");
        let error = parse_settings::<Settings>("packin = true\n", Path::new("x.toml")).unwrap_err().to_string();
        assert_eq!(error, "x.toml: line 1: unknown setting `packin` (did you mean `packing`?)");
        let error = parse_settings::<Settings>("steps = \"many\"\n", Path::new("x.toml")).unwrap_err().to_string();
        assert!(error.starts_with("x.toml: ") && error.contains("steps"), "{error}");
    }

    #[test]
    fn resolved_settings_are_written_and_read_back_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings { name: "b".into(), steps: Some(7), packing: false, lora: Inner { r: 1, alpha: 2.0 } };
        let path = write_settings(&settings, &dir.path().join("run")).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(parse_settings::<Settings>(&text, &path).unwrap(), settings);
    }
}
