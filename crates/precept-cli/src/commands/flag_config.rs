//! `--config FILE` for the commands whose settings are flags (`precept constitute`, `precept eval`):
//! the file's `key = value` pairs become the flags they name (`max_new_tokens = 96` is
//! `--max-new-tokens 96`), placed before the command line's own flags, which override them.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{bail, Context, Result};
use clap::CommandFactory;

use crate::args::Cli;

/// Commands that take their flags from `--config`.
const FLAG_COMMANDS: [&str; 2] = ["constitute", "eval"];

/// `argv` with a flag command's `--config FILE` replaced by the flags the file holds.
///
/// # Errors
/// An unreadable or invalid file, and a key that is not a flag of the command (naming the file).
pub fn expand(argv: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(command) = argv.get(1).and_then(|a| a.to_str()).filter(|c| FLAG_COMMANDS.contains(c)) else {
        return Ok(argv);
    };
    let position = argv.iter().position(|a| a == "--config" || a.to_str().is_some_and(|a| a.starts_with("--config=")));
    let Some(position) = position else { return Ok(argv) };
    let (path, taken) = match argv[position].to_str().and_then(|a| a.strip_prefix("--config=")) {
        Some(path) => (OsString::from(path), 1),
        None => (argv.get(position + 1).cloned().context("--config needs a file")?, 2),
    };
    let path = Path::new(&path);
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text).with_context(|| format!("{}: invalid settings", path.display()))?;
    let cli = Cli::command();
    let known: Vec<String> = cli
        .find_subcommand(command)
        .map(|c| c.get_arguments().filter_map(|a| a.get_long().map(|l| l.replace('-', "_"))).collect())
        .unwrap_or_default();
    if let Some(unknown) = table.keys().find(|key| !known.contains(key)) {
        bail!(
            "{}: `{unknown}` is not a setting of `precept {command}` (its settings: {})",
            path.display(),
            known.join(", ")
        );
    }
    let flags = table_flags(&table, &path.display().to_string(), &[])?;
    let mut expanded: Vec<OsString> = argv[..2].to_vec();
    expanded.extend(flags.into_iter().map(OsString::from));
    expanded.extend(argv[2..position].iter().cloned());
    expanded.extend(argv[position + taken..].iter().cloned());
    Ok(expanded)
}

/// `key = value` pairs as command-line flags: `--key value`, `--key` for `true`, nothing for
/// `false`, lists joined by commas. `reserved` keys are
/// set elsewhere (the pipeline sets models and folders).
pub fn table_flags(table: &toml::Table, at: &str, reserved: &[&str]) -> Result<Vec<String>> {
    let mut flags = Vec::new();
    for (key, value) in table {
        if reserved.contains(&key.as_str()) {
            bail!("{at}: `{key}` is set by the pipeline; remove it");
        }
        let flag = format!("--{}", key.replace('_', "-"));
        let scalar = |value: &toml::Value| match value {
            toml::Value::String(s) => Ok(s.clone()),
            toml::Value::Integer(i) => Ok(i.to_string()),
            toml::Value::Float(f) => Ok(f.to_string()),
            other => bail!("{at}: `{key}` = {other} is not a string, number or list of them"),
        };
        match value {
            toml::Value::Boolean(true) => flags.push(flag),
            toml::Value::Boolean(false) => {}
            toml::Value::Array(items) => {
                let items: Vec<String> = items.iter().map(scalar).collect::<Result<_>>()?;
                flags.extend([flag, items.join(",")]);
            }
            other => flags.extend([flag, scalar(other)?]),
        }
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_settings_file_becomes_flags_that_the_command_line_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "constitution = \"c.toml\"\nmax_new_tokens = 96\nfeedback = true\nclamp = [0.4, 0.6]\n")
            .unwrap();
        let config = file.to_str().unwrap();
        let expanded = expand(args(&["precept", "constitute", "--config", config, "--max-new-tokens", "8"])).unwrap();
        let expected = args(&[
            "precept",
            "constitute",
            "--clamp",
            "0.4,0.6",
            "--constitution",
            "c.toml",
            "--feedback",
            "--max-new-tokens",
            "96",
            "--max-new-tokens",
            "8",
        ]);
        assert_eq!(expanded, expected);
        let untouched = args(&["precept", "sft", "--config", config]);
        assert_eq!(expand(untouched.clone()).unwrap(), untouched);
    }

    #[test]
    fn a_key_that_is_not_a_flag_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, "feedbak = true\n").unwrap();
        let error = expand(args(&["precept", "constitute", &format!("--config={}", file.display())])).unwrap_err();
        assert!(error.to_string().contains("c.toml: `feedbak` is not a setting of `precept constitute`"), "{error}");
    }
}
