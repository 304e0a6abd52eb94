//! The constitution linter: walks the TOML document with its spans, reports every problem with
//! its line, and builds the [`Constitution`] when there are none.
//!
//! It reports syntax errors, unknown keys (with the nearest known key as a suggestion), missing or
//! mistyped fields, duplicate ids, empty or over-long requests, examples missing a part and
//! examples naming a principle that does not exist.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use crate::constitution::{Comparison, Constitution, Example, Principle};

/// The longest critique, revision or comparison request accepted, in characters: a request is an
/// instruction, and one much longer than this crowds the answer out of a small model's context.
pub const MAX_REQUEST_CHARS: usize = 1000;

/// Top-level keys.
const TOP_KEYS: &[&str] = &["name", "version", "description", "principle", "example", "comparison"];
/// Keys of a `[[principle]]`.
const PRINCIPLE_KEYS: &[&str] = &["id", "critique", "revision", "tags", "weight"];
/// Keys of an `[[example]]`.
const EXAMPLE_KEYS: &[&str] = &["principle", "prompt", "response", "critique", "revision"];
/// Keys of a `[[comparison]]`.
const COMPARISON_KEYS: &[&str] = &["id", "question", "tags", "weight"];

/// One problem in a constitution file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file.
    pub path: PathBuf,
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

/// Lints `text`: the constitution (when it could be built) and every problem, in line order.
/// The constitution is only usable when the list is empty.
pub fn lint(text: &str, path: &Path) -> (Option<Constitution>, Vec<Diagnostic>) {
    let mut linter = Linter { text, path, diagnostics: Vec::new() };
    let root = match DeTable::parse(text) {
        Ok(root) => root,
        Err(error) => {
            let span = error.span().unwrap_or(0..0);
            linter.report(span, format!("invalid TOML: {}", error.message()));
            return (None, linter.diagnostics);
        }
    };
    let constitution = linter.constitution(root.get_ref(), root.span());
    let mut diagnostics = linter.diagnostics;
    diagnostics.sort_by_key(|d| d.line);
    (Some(constitution), diagnostics)
}

/// A table being linted: its entries, its span and its name in messages.
struct Section<'t, 'i> {
    table: &'t DeTable<'i>,
    span: Range<usize>,
    name: String,
}

impl<'t, 'i> Section<'t, 'i> {
    fn get(&self, key: &str) -> Option<&'t Spanned<DeValue<'i>>> {
        self.table.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v)
    }
}

struct Linter<'a> {
    text: &'a str,
    path: &'a Path,
    diagnostics: Vec<Diagnostic>,
}

impl Linter<'_> {
    /// The 1-based line of byte `offset`.
    fn line(&self, offset: usize) -> usize {
        let offset = offset.min(self.text.len());
        self.text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
    }

    fn report(&mut self, span: Range<usize>, message: String) {
        let line = self.line(span.start);
        self.diagnostics.push(Diagnostic { path: self.path.to_owned(), line, message });
    }

    fn constitution(&mut self, root: &DeTable<'_>, span: Range<usize>) -> Constitution {
        let top = Section { table: root, span, name: "the top level".into() };
        self.unknown_keys(&top, TOP_KEYS);
        let name = self.text_field(&top, "name", true).unwrap_or_default();
        let version = self.text_field(&top, "version", false).unwrap_or_default();
        let description = self.text_field(&top, "description", false).unwrap_or_default();
        let principles: Vec<Principle> =
            self.tables(&top, "principle").iter().filter_map(|s| self.principle(s)).collect();
        if top.get("principle").is_none() {
            self.report(0..0, "the constitution has no [[principle]]".into());
        }
        let examples: Vec<Example> = self.tables(&top, "example").iter().filter_map(|s| self.example(s)).collect();
        let comparisons: Vec<Comparison> =
            self.tables(&top, "comparison").iter().filter_map(|s| self.comparison(s)).collect();
        self.example_references(&top, &principles);
        self.duplicate_ids(&top, "principle");
        self.duplicate_ids(&top, "comparison");
        Constitution {
            name,
            version,
            description,
            principles,
            examples,
            comparisons,
            hash: String::new(),
            path: PathBuf::new(),
        }
    }

    /// The tables of the array `key` (`[[key]]`), each named `[[key]] #n` or by its id.
    fn tables<'t, 'i>(&mut self, parent: &Section<'t, 'i>, key: &str) -> Vec<Section<'t, 'i>> {
        let Some(value) = parent.get(key) else { return Vec::new() };
        let DeValue::Array(items) = value.get_ref() else {
            self.report(value.span(), format!("`{key}` must be an array of tables, written [[{key}]]"));
            return Vec::new();
        };
        let mut sections = Vec::new();
        for (index, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::Table(table) => {
                    let id = table.iter().find(|(k, _)| k.get_ref() == "id").and_then(|(_, v)| match v.get_ref() {
                        DeValue::String(s) => Some(s.to_string()),
                        _ => None,
                    });
                    let name = match id {
                        Some(id) => format!("[[{key}]] `{id}`"),
                        None => format!("[[{key}]] #{}", index + 1),
                    };
                    sections.push(Section { table, span: item.span(), name });
                }
                _ => self.report(item.span(), format!("`{key}` entries must be tables, written [[{key}]]")),
            }
        }
        sections
    }

    fn principle(&mut self, s: &Section<'_, '_>) -> Option<Principle> {
        self.unknown_keys(s, PRINCIPLE_KEYS);
        let id = self.id(s);
        let critique = self.request(s, "critique");
        let revision = self.request(s, "revision");
        let tags = self.tags(s);
        let weight = self.weight(s);
        Some(Principle { id: id?, critique: critique?, revision: revision?, tags, weight })
    }

    fn example(&mut self, s: &Section<'_, '_>) -> Option<Example> {
        self.unknown_keys(s, EXAMPLE_KEYS);
        let principle = self.text_field(s, "principle", false);
        let mut parts = EXAMPLE_KEYS[1..].iter().map(|key| self.text_field(s, key, true));
        let (prompt, response, critique, revision) = (parts.next()??, parts.next()??, parts.next()??, parts.next()??);
        Some(Example { principle, prompt, response, critique, revision })
    }

    fn comparison(&mut self, s: &Section<'_, '_>) -> Option<Comparison> {
        self.unknown_keys(s, COMPARISON_KEYS);
        let id = self.id(s);
        let question = self.request(s, "question");
        let tags = self.tags(s);
        let weight = self.weight(s);
        Some(Comparison { id: id?, question: question?, tags, weight })
    }

    /// Every example's `principle` must name a principle that exists.
    fn example_references(&mut self, top: &Section<'_, '_>, principles: &[Principle]) {
        for s in self.tables(top, "example") {
            if let Some(value) = s.get("principle") {
                if let DeValue::String(id) = value.get_ref() {
                    if !principles.iter().any(|p| p.id == id.as_ref()) {
                        self.report(value.span(), format!("{}: no [[principle]] has id `{id}`", s.name));
                    }
                }
            }
        }
    }

    /// Reports every `[[kind]]` whose id an earlier one already has.
    fn duplicate_ids(&mut self, top: &Section<'_, '_>, kind: &str) {
        let mut first: HashMap<String, usize> = HashMap::new();
        for s in self.tables(top, kind) {
            let Some(value) = s.get("id") else { continue };
            let DeValue::String(id) = value.get_ref() else { continue };
            let line = self.line(value.span().start);
            match first.get(id.as_ref()) {
                Some(&earlier) => {
                    self.report(value.span(), format!("duplicate [[{kind}]] id `{id}` (first on line {earlier})"))
                }
                None => {
                    first.insert(id.to_string(), line);
                }
            }
        }
    }

    /// Reports keys of `s` not in `known`, suggesting the nearest known key.
    fn unknown_keys(&mut self, s: &Section<'_, '_>, known: &[&str]) {
        for (key, _) in s.table.iter() {
            let key_text = key.get_ref().as_ref();
            if known.contains(&key_text) {
                continue;
            }
            let nearest = known
                .iter()
                .map(|k| (strsim::jaro_winkler(k, key_text), *k))
                .filter(|(score, _)| *score >= 0.8)
                .max_by(|a, b| a.0.total_cmp(&b.0));
            let hint = match nearest {
                Some((_, k)) => format!("; did you mean `{k}`?"),
                None => format!(" (expected one of {})", known.join(", ")),
            };
            self.report(key.span(), format!("{}: unknown key `{key_text}`{hint}", s.name));
        }
    }

    /// A string field; `None` (with a report when `required` or mistyped) when absent or bad.
    /// Required fields must not be blank.
    fn text_field(&mut self, s: &Section<'_, '_>, key: &str, required: bool) -> Option<String> {
        let Some(value) = s.get(key) else {
            if required {
                self.report(s.span.clone(), format!("{}: field `{key}` is missing", s.name));
            }
            return None;
        };
        let DeValue::String(text) = value.get_ref() else {
            self.report(value.span(), format!("{}: field `{key}` must be a string", s.name));
            return None;
        };
        if required && text.trim().is_empty() {
            self.report(value.span(), format!("{}: field `{key}` is empty", s.name));
            return None;
        }
        Some(text.to_string())
    }

    /// A request: a required string no longer than [`MAX_REQUEST_CHARS`].
    fn request(&mut self, s: &Section<'_, '_>, key: &str) -> Option<String> {
        let text = self.text_field(s, key, true)?;
        let chars = text.chars().count();
        if chars > MAX_REQUEST_CHARS {
            let span = s.get(key).map(Spanned::span).unwrap_or(s.span.clone());
            let message =
                format!("{}: field `{key}` is {chars} characters, over the {MAX_REQUEST_CHARS} limit", s.name);
            self.report(span, message);
            return None;
        }
        Some(text)
    }

    /// An id: letters, digits, `-`, `_` and `.`, unique within its kind.
    fn id(&mut self, s: &Section<'_, '_>) -> Option<String> {
        let id = self.text_field(s, "id", true)?;
        let span = s.get("id").map(Spanned::span).unwrap_or(s.span.clone());
        if !id.chars().all(|c| c.is_alphanumeric() || "-_.".contains(c)) {
            self.report(span, format!("{}: id may hold only letters, digits, `-`, `_` and `.`", s.name));
            return None;
        }
        Some(id)
    }

    fn tags(&mut self, s: &Section<'_, '_>) -> Vec<String> {
        let Some(value) = s.get("tags") else { return Vec::new() };
        match value.get_ref() {
            DeValue::Array(items) if items.iter().all(|t| matches!(t.get_ref(), DeValue::String(_))) => items
                .iter()
                .filter_map(|t| match t.get_ref() {
                    DeValue::String(tag) => Some(tag.to_string()),
                    _ => None,
                })
                .collect(),
            _ => {
                self.report(value.span(), format!("{}: field `tags` must be a list of strings", s.name));
                Vec::new()
            }
        }
    }

    fn weight(&mut self, s: &Section<'_, '_>) -> f64 {
        let Some(value) = s.get("weight") else { return 1.0 };
        let number = match value.get_ref() {
            DeValue::Integer(i) if i.radix() == 10 => i.as_str().replace('_', "").parse::<f64>().ok(),
            DeValue::Float(f) => f.as_str().replace('_', "").parse::<f64>().ok(),
            _ => None,
        };
        match number {
            Some(w) if w.is_finite() && w > 0.0 => w,
            _ => {
                self.report(value.span(), format!("{}: field `weight` must be a positive number", s.name));
                1.0
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        lint(text, Path::new("c.toml")).1.iter().map(ToString::to_string).collect()
    }

    const GOOD_PRINCIPLE: &str = "[[principle]]\nid = \"a\"\ncritique = \"Is it bad?\"\nrevision = \"Fix it.\"\n";

    #[test]
    fn a_valid_file_has_no_problems() {
        assert_eq!(problems(&format!("name = \"x\"\n{GOOD_PRINCIPLE}")), Vec::<String>::new());
    }

    #[test]
    fn each_problem_is_reported_with_file_and_line() {
        let long = "x".repeat(MAX_REQUEST_CHARS + 1);
        let cases: Vec<(String, &str)> = vec![
            ("name = \"x\"\nnmae = 1\n".to_owned() + GOOD_PRINCIPLE, "c.toml:2: the top level: unknown key `nmae`; did you mean `name`?"),
            (format!("name = \"x\"\n{GOOD_PRINCIPLE}critic = \"y\"\n"), "c.toml:6: [[principle]] `a`: unknown key `critic`; did you mean `critique`?"),
            (format!("name = \"x\"\n{GOOD_PRINCIPLE}colour = \"y\"\n"), "c.toml:6: [[principle]] `a`: unknown key `colour` (expected one of id, critique, revision, tags, weight)"),
            (format!("name = \"x\"\n{GOOD_PRINCIPLE}{GOOD_PRINCIPLE}"), "c.toml:7: duplicate [[principle]] id `a` (first on line 3)"),
            ("name = \"x\"\n[[principle]]\nid = \"a\"\ncritique = \"  \"\nrevision = \"r\"\n".to_owned(), "c.toml:4: [[principle]] `a`: field `critique` is empty"),
            (format!("name = \"x\"\n[[principle]]\nid = \"a\"\ncritique = \"c\"\nrevision = \"{long}\"\n"), "c.toml:5: [[principle]] `a`: field `revision` is 1001 characters, over the 1000 limit"),
            ("name = \"x\"\n[[principle]]\nid = \"a\"\ncritique = \"c\"\n".to_owned(), "c.toml:2: [[principle]] `a`: field `revision` is missing"),
            (format!("name = \"x\"\n{GOOD_PRINCIPLE}weight = -1\n"), "c.toml:6: [[principle]] `a`: field `weight` must be a positive number"),
            (format!("name = \"x\"\n{GOOD_PRINCIPLE}tags = [1]\n"), "c.toml:6: [[principle]] `a`: field `tags` must be a list of strings"),
            (format!("name = \"x\"\n{GOOD_PRINCIPLE}[[example]]\nprompt = \"p\"\nresponse = \"r\"\ncritique = \"c\"\n"), "c.toml:6: [[example]] #1: field `revision` is missing"),
            (format!("name = \"x\"\n{GOOD_PRINCIPLE}[[example]]\nprinciple = \"b\"\nprompt = \"p\"\nresponse = \"r\"\ncritique = \"c\"\nrevision = \"v\"\n"), "c.toml:7: [[example]] #1: no [[principle]] has id `b`"),
            (format!("name = \"x\"\n{GOOD_PRINCIPLE}[[comparison]]\nid = \"q\"\nquestoin = \"Which?\"\n"), "c.toml:8: [[comparison]] `q`: unknown key `questoin`; did you mean `question`?"),
            ("name = \"x\"\n".to_owned(), "c.toml:1: the constitution has no [[principle]]"),
            (format!("name = \"x\"\nname = \"y\"\n{GOOD_PRINCIPLE}"), "c.toml:2: invalid TOML: duplicate key"),
            (GOOD_PRINCIPLE.to_string(), "c.toml:1: the top level: field `name` is missing"),
            ("name = \"x\"\n[[principle]]\nid = \"a b\"\ncritique = \"c\"\nrevision = \"r\"\n".to_string(), "c.toml:3: [[principle]] `a b`: id may hold only letters, digits, `-`, `_` and `.`"),
        ];
        for (text, expected) in cases {
            let got = problems(&text);
            assert!(got.iter().any(|p| p == expected), "expected {expected:?} in {got:?} for\n{text}");
        }
    }

    #[test]
    fn all_problems_of_a_file_are_reported_at_once_in_line_order() {
        let text = "name = \"x\"\n[[principle]]\nid = \"a\"\ncritque = \"c\"\nrevision = \"\"\n";
        let got = problems(text);
        assert_eq!(got.len(), 3, "{got:?}");
        let lines: Vec<&str> = got.iter().map(|p| p.split(':').nth(1).unwrap()).collect();
        assert_eq!(lines, ["2", "4", "5"], "{got:?}");
    }
}
