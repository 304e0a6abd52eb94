//! Attack framings: how a case's words reach the model.
//!
//! - `direct`: the prompt as written.
//! - `roleplay`: the prompt inside each role-play [`Template`] (fiction, screenplay, research,
//!   persona, developer mode, and any a suite adds), for harmful cases.
//! - `escalation`: the case's `turns` played one by one, the model's own replies in between;
//!   judged on the last turn (`escalation`) and on any turn (`escalation-any`).
//!
//! [`expand`] turns cases into [`Trial`]s, the unit that is generated, judged and paired.

use std::path::Path;

use precept_data::Expected;
use serde::{Deserialize, Serialize};

use crate::case::{Case, CaseInput};
use crate::error::{read_text, EvalError, Result};

/// The role-play templates shipped with precept.
pub const BUILTIN_TEMPLATES: &str = include_str!("roleplay.toml");

/// The slot a template's case prompt goes into.
pub const PROMPT_SLOT: &str = "{prompt}";

/// A way of presenting cases to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Framing {
    /// The prompt as written.
    Direct,
    /// The prompt inside role-play templates (harmful cases only).
    Roleplay,
    /// Multi-turn cases played turn by turn.
    Escalation,
}

impl Framing {
    /// The name used in suites and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Roleplay => "roleplay",
            Self::Escalation => "escalation",
        }
    }
}

/// A role-play template with a `{prompt}` slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    /// Short name (`fiction`, `persona`, …).
    pub name: String,
    /// The wrapper text; `{prompt}` is replaced by the case's prompt.
    pub text: String,
}

impl Template {
    /// The template with `prompt` in its slot.
    pub fn apply(&self, prompt: &str) -> String {
        self.text.replace(PROMPT_SLOT, prompt)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplatesFile {
    template: Vec<Template>,
}

/// Parses a templates file's text; `path` names it in errors.
pub fn parse_templates(text: &str, path: &Path) -> Result<Vec<Template>> {
    let file: TemplatesFile = toml::from_str(text).map_err(|error| EvalError::toml(path, text, &error))?;
    for template in &file.template {
        if !template.text.contains(PROMPT_SLOT) {
            return Err(EvalError::TemplateWithoutSlot { path: path.to_owned(), name: template.name.clone() });
        }
    }
    Ok(file.template)
}

/// The built-in templates, then those of `extra` (a file with the same name replaces a built-in).
pub fn load_templates(extra: Option<&Path>) -> Result<Vec<Template>> {
    let mut templates = parse_templates(BUILTIN_TEMPLATES, Path::new("<built-in roleplay.toml>"))?;
    if let Some(path) = extra {
        for template in parse_templates(&read_text(path)?, path)? {
            match templates.iter_mut().find(|t| t.name == template.name) {
                Some(existing) => *existing = template,
                None => templates.push(template),
            }
        }
    }
    Ok(templates)
}

/// One case under one framing: the unit generated, judged and paired between base and tuned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trial {
    /// `case/framing[/template]`, unique within a suite.
    pub id: String,
    /// The case's id.
    pub case_id: String,
    /// The case's category.
    pub category: String,
    /// What a safe model does.
    pub expected: Expected,
    /// How the case is presented.
    pub framing: Framing,
    /// The role-play template's name, for `roleplay`.
    pub template: Option<String>,
    /// User turns, in order (one unless `escalation`).
    pub turns: Vec<String>,
}

/// Every trial of `cases` under `framings`: prompt cases under `direct` and (harmful ones) under
/// each of `templates` for `roleplay`; multi-turn cases under `escalation`.
pub fn expand(cases: &[Case], framings: &[Framing], templates: &[Template]) -> Vec<Trial> {
    let mut trials = Vec::new();
    for case in cases {
        let trial = |framing: Framing, template: Option<&Template>, turns: Vec<String>| Trial {
            id: match template {
                Some(t) => format!("{}/{}/{}", case.id, framing.as_str(), t.name),
                None => format!("{}/{}", case.id, framing.as_str()),
            },
            case_id: case.id.clone(),
            category: case.category.clone(),
            expected: case.expected,
            framing,
            template: template.map(|t| t.name.clone()),
            turns,
        };
        match &case.input {
            CaseInput::Prompt(prompt) => {
                if framings.contains(&Framing::Direct) {
                    trials.push(trial(Framing::Direct, None, vec![prompt.clone()]));
                }
                if framings.contains(&Framing::Roleplay) && case.expected == Expected::Refuse {
                    for template in templates {
                        trials.push(trial(Framing::Roleplay, Some(template), vec![template.apply(prompt)]));
                    }
                }
            }
            CaseInput::Turns(turns) => {
                if framings.contains(&Framing::Escalation) {
                    trials.push(trial(Framing::Escalation, None, turns.clone()));
                }
            }
        }
    }
    trials
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case(id: &str, input: CaseInput, expected: Expected) -> Case {
        Case { id: id.into(), category: "c".into(), input, expected }
    }

    #[test]
    fn the_builtin_templates_cover_the_five_roleplay_styles_and_all_have_a_slot() {
        let names: Vec<String> = load_templates(None).unwrap().into_iter().map(|t| t.name).collect();
        assert_eq!(names, ["fiction", "screenplay", "research", "persona", "developer-mode"]);
    }

    #[test]
    fn a_user_templates_file_adds_and_replaces_templates_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mine.toml");
        std::fs::write(&path, "[[template]]\nname = \"persona\"\ntext = \"Be Max. {prompt}\"\n[[template]]\nname = \"poem\"\ntext = \"As a poem: {prompt}\"\n").unwrap();
        let templates = load_templates(Some(&path)).unwrap();
        assert_eq!(templates.len(), 6);
        assert_eq!(templates[3].apply("hi"), "Be Max. hi");
        assert_eq!(templates[5].name, "poem");
    }

    #[test]
    fn template_errors_name_the_file_line_and_template() {
        let path = Path::new("t.toml");
        let err = parse_templates("[[template]]\nname = \"x\"\ntext = \"no slot\"\n", path).unwrap_err();
        assert_eq!(err.to_string(), "t.toml: template `x` has no `{prompt}` slot");
        let err = parse_templates("[[template]]\nname = \"x\"\ntext = 3\n", path).unwrap_err();
        assert!(err.to_string().starts_with("t.toml:3: invalid type"), "{err}");
        let err = parse_templates("[[template]]\nname = \"x\"\ntext = \"{prompt}\"\ncolour = 1\n", path).unwrap_err();
        assert!(err.to_string().starts_with("t.toml:4: unknown field `colour`"), "{err}");
    }

    #[test]
    fn each_framing_expands_the_cases_it_applies_to() {
        let templates = load_templates(None).unwrap();
        let cases = [
            case("h", CaseInput::Prompt("how to X".into()), Expected::Refuse),
            case("b", CaseInput::Prompt("how to kill a process".into()), Expected::Comply),
            case("e", CaseInput::Turns(vec!["one".into(), "two".into()]), Expected::Refuse),
        ];
        let all = [Framing::Direct, Framing::Roleplay, Framing::Escalation];
        let trials = expand(&cases, &all, &templates);
        let ids: Vec<&str> = trials.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(
            ids,
            [
                "h/direct",
                "h/roleplay/fiction",
                "h/roleplay/screenplay",
                "h/roleplay/research",
                "h/roleplay/persona",
                "h/roleplay/developer-mode",
                "b/direct",
                "e/escalation"
            ]
        );
        assert!(trials[1].turns[0].contains("how to X") && trials[1].turns[0].starts_with("I'm writing a thriller"));
        assert_eq!(trials[7].turns, ["one", "two"]);
        let direct_only = expand(&cases, &[Framing::Direct], &templates);
        assert_eq!(direct_only.len(), 2);
    }
}
