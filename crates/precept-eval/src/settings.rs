//! [`EvalSettings`]: every setting of a gate run, as a settings file (or the pipeline's `[eval]`
//! table) spells them; `precept eval`'s flags have the same names. [`EvalSettings::resolve`]
//! loads the suite and applies the overrides, giving the [`GateSettings`] that [`run_gate`]
//! runs.
//!
//! [`run_gate`]: crate::run_gate

use std::path::{Path, PathBuf};

use precept_data::{Connection, ModelSource, RemoteSpec};
use serde::{Deserialize, Serialize};

use crate::error::{EvalError, Result};
use crate::gate::{GateSettings, SideSettings};
use crate::judge::JudgeConfig;
use crate::suite::Suite;

/// Which judge labels the replies, when the settings override the suite's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum JudgeKind {
    /// Refusal phrases.
    Keywords,
    /// A local model answering REFUSAL / COMPLIANCE / PARTIAL, read from option probabilities.
    Model,
    /// A Llama Guard-style classifier (`safe` / `unsafe` + category codes).
    Llamaguard,
}

/// The settings of `precept eval` (the gate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EvalSettings {
    /// The suite file (TOML).
    pub suite: PathBuf,
    /// The tuned model folder (or `remote`).
    pub model: Option<PathBuf>,
    /// The tuned model behind OpenAI-compatible servers instead: their base URLs.
    pub remote: Option<Vec<String>>,
    /// The model name the `remote` servers serve.
    pub remote_model: Option<String>,
    /// The base model folder; without it (or `baseline_remote`) the base is the tuned model with
    /// the suite's system prompt.
    pub baseline: Option<PathBuf>,
    /// The base model behind OpenAI-compatible servers: their base URLs.
    pub baseline_remote: Option<Vec<String>>,
    /// The model name the `baseline_remote` servers serve.
    pub baseline_remote_model: Option<String>,
    /// System prompt for the tuned side only (the base keeps the suite's).
    pub tuned_system: Option<String>,
    /// Also compare both models with no system prompt, as a second condition (overrides the
    /// suite's `without_system_prompt`).
    pub without_system_prompt: Option<bool>,
    /// Folder for the settings and the reports.
    pub out: Option<PathBuf>,
    /// Folder of cached baseline results.
    pub cache_dir: PathBuf,
    /// Regenerate the baseline even when it is cached.
    pub no_cache: bool,
    /// Conversations generated together (overrides the suite).
    pub batch_size: Option<usize>,
    /// Most new tokens per reply (overrides the suite).
    pub max_new_tokens: Option<usize>,
    /// Judge (overrides the suite; `model` and `llamaguard` need `judge_model`).
    pub judge: Option<JudgeKind>,
    /// The judge's model folder.
    pub judge_model: Option<PathBuf>,
    /// A model judge behind OpenAI-compatible servers instead: their base URLs.
    pub judge_remote: Option<Vec<String>>,
    /// The model name the `judge_remote` servers serve.
    pub judge_remote_model: Option<String>,
    /// How remote servers are reached.
    #[serde(flatten)]
    pub connection: Connection,
}

impl Default for EvalSettings {
    fn default() -> Self {
        Self {
            suite: PathBuf::new(),
            model: None,
            remote: None,
            remote_model: None,
            baseline: None,
            baseline_remote: None,
            baseline_remote_model: None,
            tuned_system: None,
            without_system_prompt: None,
            out: None,
            cache_dir: PathBuf::from(".precept-cache/eval"),
            no_cache: false,
            batch_size: None,
            max_new_tokens: None,
            judge: None,
            judge_model: None,
            judge_remote: None,
            judge_remote_model: None,
            connection: Connection::default(),
        }
    }
}

impl EvalSettings {
    /// Loads the suite and applies these settings to it: the gate's resolved settings.
    ///
    /// # Errors
    /// [`EvalError::Setting`] for a missing or out-of-range setting, a half-given remote pair
    /// or a model judge without a model; the suite's own errors.
    pub fn resolve(&self) -> Result<GateSettings> {
        if self.suite.as_os_str().is_empty() {
            return Err(setting("suite", "is required"));
        }
        let tuned_remote = RemoteSpec::from_pair("remote", self.remote.as_deref(), self.remote_model.as_deref())?;
        let tuned_model = match (tuned_remote, &self.model) {
            (Some(spec), _) => ModelSource::Remote(spec),
            (None, Some(dir)) => ModelSource::Folder(dir.clone()),
            (None, None) => {
                return Err(setting("model", "is required (a model folder), unless `remote` names servers"))
            }
        };
        let baseline_remote = RemoteSpec::from_pair(
            "baseline_remote",
            self.baseline_remote.as_deref(),
            self.baseline_remote_model.as_deref(),
        )?;
        let judge_remote =
            RemoteSpec::from_pair("judge_remote", self.judge_remote.as_deref(), self.judge_remote_model.as_deref())?;
        let mut suite = Suite::load(&self.suite)?;
        for (field, value, target) in [
            ("batch_size", self.batch_size, &mut suite.generation.batch_size),
            ("max_new_tokens", self.max_new_tokens, &mut suite.generation.max_new_tokens),
        ] {
            match value {
                Some(0) => return Err(setting(field, "must be at least 1")),
                Some(value) => *target = value,
                None => {}
            }
        }
        if let Some(without) = self.without_system_prompt {
            suite.generation.without_system_prompt = without;
        }
        // A remote judge's model is named, not loaded: the name stands where a folder would.
        let judge_model =
            self.judge_model.clone().or_else(|| judge_remote.as_ref().map(|s| format!("remote:{}", s.model).into()));
        suite.judge = suite.judge.overridden(self.judge, judge_model)?;
        if judge_remote.is_some() && suite.judge.model_dir().is_none() {
            return Err(setting("judge_remote", "needs a model-based judge (`judge` = model or llamaguard)"));
        }
        let base_model = match (baseline_remote, &self.baseline) {
            (Some(spec), _) => ModelSource::Remote(spec),
            (None, Some(dir)) => ModelSource::Folder(dir.clone()),
            (None, None) => tuned_model.clone(),
        };
        let base = SideSettings { model: base_model, system_prompt: suite.generation.system_prompt.clone() };
        let tuned = SideSettings {
            model: tuned_model,
            system_prompt: self.tuned_system.clone().or_else(|| suite.generation.system_prompt.clone()),
        };
        let cache_dir = (!self.no_cache).then(|| self.cache_dir.clone());
        Ok(GateSettings { suite, base, tuned, judge_remote, cache_dir, out: self.out.clone() })
    }
}

fn setting(field: &str, message: &str) -> EvalError {
    EvalError::Setting { field: field.to_owned(), message: message.to_owned() }
}

impl JudgeConfig {
    /// This judge (a suite's) with a settings file's or command line's `judge` and
    /// `judge_model` applied.
    ///
    /// # Errors
    /// [`EvalError::Setting`] when a model judge is asked for without a model folder.
    pub fn overridden(self, kind: Option<JudgeKind>, model: Option<PathBuf>) -> Result<JudgeConfig> {
        override_judge(self, kind, model)
    }
}

fn override_judge(suite: JudgeConfig, kind: Option<JudgeKind>, model: Option<PathBuf>) -> Result<JudgeConfig> {
    let model_for = |kind: &str, suite_model: Option<&Path>| -> Result<PathBuf> {
        match model.clone().or_else(|| suite_model.map(Path::to_path_buf)) {
            Some(path) => Ok(path),
            None => Err(setting("judge_model", &format!("is required by the {kind} judge (a model folder)"))),
        }
    };
    Ok(match (kind, suite) {
        (None, suite) => match (suite, &model) {
            (JudgeConfig::Model { rubric, min_confidence, .. }, Some(path)) => {
                JudgeConfig::Model { model: path.clone(), rubric, min_confidence }
            }
            (JudgeConfig::Llamaguard { max_new_tokens, .. }, Some(path)) => {
                JudgeConfig::Llamaguard { model: path.clone(), max_new_tokens }
            }
            (suite, _) => suite,
        },
        (Some(JudgeKind::Keywords), suite @ JudgeConfig::Keywords { .. }) => suite,
        (Some(JudgeKind::Keywords), _) => JudgeConfig::default(),
        (Some(JudgeKind::Model), suite) => match suite {
            JudgeConfig::Model { model: m, rubric, min_confidence } => {
                JudgeConfig::Model { model: model_for("model", Some(&m))?, rubric, min_confidence }
            }
            _ => JudgeConfig::Model { model: model_for("model", None)?, rubric: None, min_confidence: 0.5 },
        },
        (Some(JudgeKind::Llamaguard), suite) => match suite {
            JudgeConfig::Llamaguard { model: m, max_new_tokens } => {
                JudgeConfig::Llamaguard { model: model_for("llamaguard", Some(&m))?, max_new_tokens }
            }
            _ => JudgeConfig::Llamaguard { model: model_for("llamaguard", None)?, max_new_tokens: 16 },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judges_in_the_settings_override_the_suite_and_model_judges_need_a_folder() {
        let suite = JudgeConfig::default();
        assert_eq!(override_judge(suite.clone(), None, None).unwrap(), suite);
        let err = override_judge(suite.clone(), Some(JudgeKind::Model), None).unwrap_err();
        assert_eq!(err.to_string(), "setting `judge_model`: is required by the model judge (a model folder)");
        let config = override_judge(suite, Some(JudgeKind::Llamaguard), Some("guard".into())).unwrap();
        assert_eq!(config, JudgeConfig::Llamaguard { model: "guard".into(), max_new_tokens: 16 });
        let suite_model = JudgeConfig::Model { model: "a".into(), rubric: Some("r".into()), min_confidence: 0.7 };
        let config = override_judge(suite_model, None, Some("b".into())).unwrap();
        assert_eq!(config, JudgeConfig::Model { model: "b".into(), rubric: Some("r".into()), min_confidence: 0.7 });
    }

    /// Settings naming model `m` and the suite `text` of one case, written in `dir`.
    fn settings_with_suite(dir: &Path, text: &str) -> EvalSettings {
        let suite = dir.join("s.toml");
        std::fs::write(dir.join("c.jsonl"), r#"{"id":"a","prompt":"hi","expected":"comply","category":"x"}"#).unwrap();
        std::fs::write(&suite, text).unwrap();
        EvalSettings { suite, model: Some("m".into()), ..EvalSettings::default() }
    }

    #[test]
    fn missing_and_out_of_range_settings_are_errors_naming_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let given = settings_with_suite(dir.path(), "name = \"s\"\ncases = [\"c.jsonl\"]\n");
        let resolved = given.resolve().unwrap();
        assert_eq!(resolved.base.model, ModelSource::Folder("m".into()));
        assert_eq!(resolved.cache_dir, Some(PathBuf::from(".precept-cache/eval")));
        let cases = [
            (EvalSettings { suite: PathBuf::new(), ..given.clone() }, "setting `suite`: is required"),
            (EvalSettings { model: None, ..given.clone() }, "setting `model`"),
            (EvalSettings { batch_size: Some(0), ..given.clone() }, "setting `batch_size`: must be at least 1"),
            (EvalSettings { remote_model: Some("x".into()), ..given.clone() }, "setting `remote`"),
            (EvalSettings { judge_remote: Some(vec!["http://h".into()]), ..given }, "setting `judge_remote_model`"),
        ];
        for (settings, expected) in cases {
            let error = settings.resolve().unwrap_err().to_string();
            assert!(error.starts_with(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn the_setting_without_system_prompt_overrides_the_suites_either_way() {
        let dir = tempfile::tempdir().unwrap();
        let given = settings_with_suite(dir.path(), "cases = [\"c.jsonl\"]\n[generation]\nsystem_prompt = \"S\"\n");
        let conditions = |settings: &EvalSettings| settings.resolve().unwrap().conditions().len();
        assert_eq!(conditions(&given), 1, "off unless asked for");
        let on = EvalSettings { without_system_prompt: Some(true), ..given.clone() };
        assert_eq!(conditions(&on), 2);
        std::fs::write(
            &given.suite,
            "cases = [\"c.jsonl\"]\n[generation]\nsystem_prompt = \"S\"\nwithout_system_prompt = true\n",
        )
        .unwrap();
        assert_eq!(conditions(&given), 2);
        assert_eq!(conditions(&EvalSettings { without_system_prompt: Some(false), ..given }), 1);
    }
}
