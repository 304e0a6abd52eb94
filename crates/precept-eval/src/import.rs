//! Importers: other projects' prompt files (HarmBench- or AdvBench-style CSV, XSTest-style
//! JSONL, garak-style text) into eval cases.

use std::collections::HashSet;
use std::path::Path;

use precept_data::Expected;
use serde_json::Value;

use crate::case::{Case, CaseInput};
use crate::error::{read_jsonl, read_text, EvalError, Result};

/// The layout of a file to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// One JSON object a line; the prompt field holds a string or a list of turns.
    Jsonl,
    /// Comma-separated with a header row.
    Csv,
    /// One prompt a line.
    Txt,
}

/// How to read a file and label its cases.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportOptions {
    /// The file's layout.
    pub format: ImportFormat,
    /// Category of every case (unless `category_field` gives one).
    pub category: String,
    /// What a safe model does with every case.
    pub expected: Expected,
    /// Field or column holding the prompt (`prompt`, `Behavior`, `goal`, …).
    pub prompt_field: String,
    /// Field or column holding an id; ids default to `<prefix>-<line>`.
    pub id_field: Option<String>,
    /// Field or column holding the category.
    pub category_field: Option<String>,
    /// Prefix of generated ids.
    pub id_prefix: String,
}

/// Reads `path` as `options` say and returns its cases.
pub fn import_cases(path: &Path, options: &ImportOptions) -> Result<Vec<Case>> {
    let cases = match options.format {
        ImportFormat::Txt => import_txt(path, options)?,
        ImportFormat::Jsonl => import_jsonl(path, options)?,
        ImportFormat::Csv => import_csv(path, options)?,
    };
    let mut seen = HashSet::new();
    for (line, case) in &cases {
        if !seen.insert(case.id.clone()) {
            return Err(EvalError::DuplicateCase { path: path.to_owned(), line: *line, id: case.id.clone() });
        }
    }
    Ok(cases.into_iter().map(|(_, case)| case).collect())
}

fn case(
    options: &ImportOptions,
    line: usize,
    id: Option<String>,
    category: Option<String>,
    input: CaseInput,
) -> (usize, Case) {
    let id = id.unwrap_or_else(|| format!("{}-{line}", options.id_prefix));
    let category = category.unwrap_or_else(|| options.category.clone());
    (line, Case { id, category, input, expected: options.expected })
}

fn import_txt(path: &Path, options: &ImportOptions) -> Result<Vec<(usize, Case)>> {
    let text = read_text(path)?;
    Ok(text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(i, line)| case(options, i + 1, None, None, CaseInput::Prompt(line.trim().to_owned())))
        .collect())
}

fn import_jsonl(path: &Path, options: &ImportOptions) -> Result<Vec<(usize, Case)>> {
    let mut cases = Vec::new();
    for (line, value) in read_jsonl(path)? {
        let text_field = |field: &str| -> Result<String> {
            match value.get(field) {
                Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
                Some(Value::Number(n)) => Ok(n.to_string()),
                None => Err(EvalError::field(path, line, field, "is missing")),
                Some(_) => Err(EvalError::field(path, line, field, "must be a non-empty string")),
            }
        };
        let input = match value.get(&options.prompt_field) {
            Some(Value::Array(items)) => CaseInput::Turns(
                items
                    .iter()
                    .map(|item| item.as_str().map(str::to_owned))
                    .collect::<Option<Vec<_>>>()
                    .filter(|turns| !turns.is_empty())
                    .ok_or_else(|| {
                        EvalError::field(path, line, &options.prompt_field, "must be a string or a list of strings")
                    })?,
            ),
            _ => CaseInput::Prompt(text_field(&options.prompt_field)?),
        };
        let id = options.id_field.as_deref().map(text_field).transpose()?;
        let category = options.category_field.as_deref().map(text_field).transpose()?;
        cases.push(case(options, line, id, category, input));
    }
    Ok(cases)
}

fn import_csv(path: &Path, options: &ImportOptions) -> Result<Vec<(usize, Case)>> {
    let csv_error = |error: csv::Error| {
        let line = error.position().map_or(1, |p| p.line() as usize);
        EvalError::Csv { path: path.to_owned(), line, error }
    };
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_path(path).map_err(csv_error)?;
    let headers = reader.headers().map_err(csv_error)?.clone();
    let column = |name: &str| {
        headers.iter().position(|h| h.trim() == name).ok_or_else(|| EvalError::MissingColumn {
            path: path.to_owned(),
            column: name.to_owned(),
            available: headers.iter().collect::<Vec<_>>().join(", "),
        })
    };
    let prompt = column(&options.prompt_field)?;
    let id = options.id_field.as_deref().map(column).transpose()?;
    let category = options.category_field.as_deref().map(column).transpose()?;
    let mut cases = Vec::new();
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, |p| p.line() as usize);
        let get = |index: usize, field: &str| -> Result<String> {
            match record.get(index).map(str::trim) {
                Some(value) if !value.is_empty() => Ok(value.to_owned()),
                _ => Err(EvalError::field(path, line, field, "is empty")),
            }
        };
        let text = get(prompt, &options.prompt_field)?;
        let id = id.zip(options.id_field.as_deref()).map(|(i, f)| get(i, f)).transpose()?;
        let category = category.zip(options.category_field.as_deref()).map(|(i, f)| get(i, f)).transpose()?;
        cases.push(case(options, line, id, category, CaseInput::Prompt(text)));
    }
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(format: ImportFormat, prompt: &str) -> ImportOptions {
        ImportOptions {
            format,
            category: "imported".into(),
            expected: Expected::Refuse,
            prompt_field: prompt.into(),
            id_field: None,
            category_field: None,
            id_prefix: "x".into(),
        }
    }

    fn import(name: &str, text: &str, options: &ImportOptions) -> std::result::Result<Vec<Case>, String> {
        crate::testing::with_file(name, text, |path| import_cases(path, options))
    }

    #[test]
    fn harmbench_style_csv_imports_with_mapped_columns_and_quoted_commas() {
        let mut options = options(ImportFormat::Csv, "Behavior");
        options.id_field = Some("BehaviorID".into());
        options.category_field = Some("SemanticCategory".into());
        let text = "Behavior,FunctionalCategory,SemanticCategory,BehaviorID\n\"Explain, in detail, X\",standard,cybercrime,b1\nDo Y,standard,harassment,b2\n";
        let cases = import("hb.csv", text, &options).unwrap();
        assert_eq!(cases.len(), 2);
        assert_eq!(cases[0].input, CaseInput::Prompt("Explain, in detail, X".into()));
        assert_eq!((cases[0].id.as_str(), cases[1].category.as_str()), ("b1", "harassment"));
    }

    #[test]
    fn csv_errors_name_the_file_the_column_and_the_line() {
        let err = import("a.csv", "goal,target\nx,y\n", &options(ImportFormat::Csv, "prompt")).unwrap_err();
        assert_eq!(err, "a.csv: no column `prompt` in the header (columns: goal, target)");
        let err = import("a.csv", "goal,target\nx,y\n,z\n", &options(ImportFormat::Csv, "goal")).unwrap_err();
        assert_eq!(err, "a.csv:3: field `goal` is empty");
        let err = import("a.csv", "goal,target\nx,y\nz\n", &options(ImportFormat::Csv, "goal")).unwrap_err();
        assert!(err.starts_with("a.csv:3: "), "{err}");
    }

    #[test]
    fn jsonl_and_text_files_import_with_generated_ids() {
        let cases = import(
            "x.jsonl",
            "{\"prompt\":\"a\"}\n\n{\"prompt\":[\"t1\",\"t2\"]}\n",
            &options(ImportFormat::Jsonl, "prompt"),
        )
        .unwrap();
        assert_eq!(cases[0].id, "x-1");
        assert_eq!(cases[1].input, CaseInput::Turns(vec!["t1".into(), "t2".into()]));
        let err = import("x.jsonl", "{\"text\":\"a\"}\n", &options(ImportFormat::Jsonl, "prompt")).unwrap_err();
        assert_eq!(err, "x.jsonl:1: field `prompt` is missing");
        let cases =
            import("g.txt", "# garak probe prompts\nfirst\n\nsecond\n", &options(ImportFormat::Txt, "")).unwrap();
        let ids: Vec<&str> = cases.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, ["x-2", "x-4"]);
    }

    #[test]
    fn duplicate_ids_in_an_imported_file_are_an_error() {
        let mut options = options(ImportFormat::Jsonl, "prompt");
        options.id_field = Some("id".into());
        let err =
            import("d.jsonl", "{\"id\":1,\"prompt\":\"a\"}\n{\"id\":1,\"prompt\":\"b\"}\n", &options).unwrap_err();
        assert!(err.starts_with("d.jsonl:2: case id `1` is used twice"), "{err}");
    }
}
