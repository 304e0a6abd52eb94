//! [`ConstituteSettings`]: every setting of a constitution run, as a settings file (or the
//! pipeline's `[constitute]` table) spells them; `precept constitute`'s flags have the same names.
//! [`ConstituteSettings::run_config`] turns them into the loop's [`RunConfig`].

use std::path::PathBuf;

use precept_data::{Connection, GenerateSettings, ModelSource, RemoteSpec};
use serde::{Deserialize, Serialize};

use crate::driver::{RunConfig, RunSettings};
use crate::error::{ConstitutionError, Result};
use crate::expected::DrawConfig;
use crate::feedback::FeedbackConfig;

/// The settings of `precept constitute`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConstituteSettings {
    /// The constitution (TOML).
    pub constitution: PathBuf,
    /// Prompts JSONL: `{"id":…,"prompt":"…"}` or `{"id":…,"messages":[…]}` per line.
    pub prompts: PathBuf,
    /// Model folder (Hugging Face layout); not needed with `remote`.
    pub model: Option<PathBuf>,
    /// Generate with OpenAI-compatible servers instead: their base URLs.
    pub remote: Option<Vec<String>>,
    /// The model name the `remote` servers serve.
    pub remote_model: Option<String>,
    /// How the servers are reached.
    #[serde(flatten)]
    pub connection: Connection,
    /// Output folder; a rerun into it resumes.
    pub out: PathBuf,
    /// Critique → revision rounds per prompt (0: none, the records come from the answer, the
    /// AI-feedback samples and the draws).
    pub rounds: usize,
    /// Also label preference pairs by AI feedback (two sampled answers, compared in both orders).
    pub feedback: bool,
    /// Seed of principle sampling and generation.
    pub seed: u64,
    /// Prompts generated together.
    pub batch: usize,
    /// Most new tokens per reply.
    pub max_new_tokens: usize,
    /// Temperature of answers, critiques and revisions (0 = greedy).
    pub temperature: f32,
    /// Temperature of the two answers sampled for AI feedback.
    pub feedback_temperature: f32,
    /// Most new tokens of each answer sampled for AI feedback (default: `max_new_tokens`).
    pub feedback_max_new_tokens: Option<usize>,
    /// Clamp AI-feedback labels to `[low, high]` (the paper's chain-of-thought variant: 0.4, 0.6).
    pub clamp: Option<[f64; 2]>,
    /// Keep AI-feedback pairs whose label is at least this (0.5 keeps all).
    pub threshold: f64,
    /// Extra short answers drawn per prompt that has an `expected` behaviour (0 = none).
    pub draws: usize,
    /// Most new tokens of each drawn answer.
    pub draw_max_new_tokens: usize,
    /// Temperature of the drawn answers.
    pub draw_temperature: f32,
    /// Leave the constitution's examples out of the conversation.
    pub no_few_shot: bool,
    /// A system message for every prompt that has none (it is kept in the outputs, unless
    /// `record_systems` says otherwise).
    pub system: Option<String>,
    /// The system messages the records carry instead, one per prompt in turn (`""` for none).
    pub record_systems: Vec<String>,
    /// A refusal for the gaps the replies leave (for prompts with an `expected` behaviour): the
    /// target of a prompt to refuse that no reply refuses, the rejected side of a prompt to answer
    /// that every reply answers.
    pub refusal: Option<String>,
    /// Eval suites and benchmark files the prompts are checked against before the loop starts:
    /// a prompt that copies one of their prompts stops the run (see
    /// [`precept_data::decontaminate()`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub decontaminate_against: Vec<PathBuf>,
}

impl Default for ConstituteSettings {
    fn default() -> Self {
        Self {
            constitution: PathBuf::new(),
            prompts: PathBuf::new(),
            model: None,
            remote: None,
            remote_model: None,
            connection: Connection::default(),
            out: PathBuf::new(),
            rounds: 1,
            feedback: false,
            seed: 0,
            batch: 8,
            max_new_tokens: 256,
            temperature: 0.0,
            feedback_temperature: 1.0,
            feedback_max_new_tokens: None,
            clamp: None,
            threshold: 0.5,
            draws: 0,
            draw_max_new_tokens: 64,
            draw_temperature: 0.7,
            no_few_shot: false,
            system: None,
            record_systems: Vec::new(),
            refusal: None,
            decontaminate_against: Vec::new(),
        }
    }
}

impl ConstituteSettings {
    /// The generator: the `remote` servers, else the `model` folder.
    ///
    /// # Errors
    /// [`ConstitutionError::Setting`] when neither is given, or a remote half is missing.
    pub fn source(&self) -> Result<ModelSource> {
        match RemoteSpec::from_pair("remote", self.remote.as_deref(), self.remote_model.as_deref())? {
            Some(spec) => Ok(ModelSource::Remote(spec)),
            None => self.model.clone().map(ModelSource::Folder).ok_or(ConstitutionError::Setting {
                setting: "model",
                problem: "is required (a model folder), unless `remote` names servers".into(),
            }),
        }
    }

    /// The loop's settings; check them with [`RunConfig::validate`].
    ///
    /// # Errors
    /// As [`ConstituteSettings::source`], and a missing `constitution`, `prompts` or `out`.
    pub fn run_config(&self) -> Result<RunConfig> {
        for (setting, path) in [("constitution", &self.constitution), ("prompts", &self.prompts), ("out", &self.out)] {
            if path.as_os_str().is_empty() {
                return Err(ConstitutionError::Setting { setting, problem: "is required".into() });
            }
        }
        let sampled = |max_new_tokens, temperature| GenerateSettings {
            max_new_tokens,
            temperature,
            top_p: 0.95,
            seed: self.seed,
            stop: Vec::new(),
        };
        let feedback = self.feedback.then(|| FeedbackConfig {
            samples: sampled(self.feedback_max_new_tokens.unwrap_or(self.max_new_tokens), self.feedback_temperature),
            clamp: self.clamp.map(|[low, high]| (low, high)),
            threshold: self.threshold,
            seed: self.seed,
        });
        let draws = (self.draws > 0).then(|| DrawConfig {
            count: self.draws,
            settings: sampled(self.draw_max_new_tokens, self.draw_temperature),
        });
        Ok(RunConfig {
            out: self.out.clone(),
            model: self.source()?.identity(),
            prompts_file: self.prompts.display().to_string(),
            batch: self.batch,
            settings: RunSettings {
                rounds: self.rounds,
                seed: self.seed,
                few_shot: !self.no_few_shot,
                generation: GenerateSettings {
                    max_new_tokens: self.max_new_tokens,
                    temperature: self.temperature,
                    seed: self.seed,
                    ..GenerateSettings::default()
                },
                feedback,
                system: self.system.clone(),
                record_systems: self.record_systems.clone(),
                refusal: self.refusal.clone(),
                draws,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use precept_data::parse_settings;

    use super::*;

    #[test]
    fn a_settings_file_gives_the_loop_its_settings() {
        let text = "constitution = \"c.toml\"\nprompts = \"p.jsonl\"\nmodel = \"m\"\nout = \"o\"\nfeedback = true\n\
                    max_new_tokens = 96\nfeedback_max_new_tokens = 48\nclamp = [0.4, 0.6]\ndraws = 2\n\
                    remote_timeout = 5\n";
        let settings: ConstituteSettings = parse_settings(text, Path::new("c.toml")).unwrap();
        assert_eq!(settings.connection.remote_timeout, 5);
        let run = settings.run_config().unwrap();
        assert_eq!((run.model.as_str(), run.batch, run.settings.generation.max_new_tokens), ("m", 8, 96));
        let feedback = run.settings.feedback.unwrap();
        assert_eq!((feedback.samples.max_new_tokens, feedback.clamp), (48, Some((0.4, 0.6))));
        assert_eq!(run.settings.draws.unwrap().count, 2);
        assert!(run.settings.few_shot);
    }

    #[test]
    fn missing_and_half_given_settings_are_errors_naming_the_setting() {
        let given = ConstituteSettings {
            constitution: "c".into(),
            prompts: "p".into(),
            out: "o".into(),
            ..ConstituteSettings::default()
        };
        let error = given.run_config().unwrap_err().to_string();
        assert!(error.starts_with("setting `model`"), "{error}");
        let half = ConstituteSettings { remote: Some(vec!["http://h".into()]), ..given.clone() };
        assert!(half.run_config().unwrap_err().to_string().contains("`remote_model`"));
        let no_out = ConstituteSettings { model: Some("m".into()), out: PathBuf::new(), ..given };
        assert_eq!(no_out.run_config().unwrap_err().to_string(), "setting `out` is required");
        let error = parse_settings::<ConstituteSettings>("clamp = [0.4]\n", Path::new("c.toml")).unwrap_err();
        assert!(error.to_string().contains("clamp"), "{error}");
    }
}
