//! Building the judge a suite or the command line names.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use precept_data::{hash_json, hash_model_dir};
use precept_eval::{Judge, JudgeConfig, LlamaGuardJudge, ModelJudge};
use precept_model::LocalGenerator;
use precept_train::TrainKernels;

use super::args::JudgeKind;
use crate::commands::remote::{Generator, RemoteConnection, RemoteSpec};

/// The suite's judge with the command line's `--judge` / `--judge-model` applied.
pub fn resolve(suite: JudgeConfig, kind: Option<JudgeKind>, model: Option<PathBuf>) -> Result<JudgeConfig> {
    let model_for = |kind: &str, suite_model: Option<&Path>| -> Result<PathBuf> {
        match model.clone().or_else(|| suite_model.map(Path::to_path_buf)) {
            Some(path) => Ok(path),
            None => bail!("the {kind} judge needs --judge-model (a model folder)"),
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

/// Where a model-based judge runs: its folder on this machine, or servers.
#[derive(Clone, Copy)]
pub enum JudgeHost<'a> {
    /// The folder the judge config names, loaded onto the device.
    Local,
    /// OpenAI-compatible servers, reached with these settings.
    Remote(&'a RemoteSpec, &'a RemoteConnection),
}

/// Loads the judge (its model onto `device`, or a client of its servers, for model-based judges).
pub fn build<B: TrainKernels>(config: &JudgeConfig, host: JudgeHost, device: &B::Device) -> Result<Box<dyn Judge>> {
    let open = |dir: &Path| -> Result<Generator<B>> {
        match host {
            JudgeHost::Local => Ok(Generator::Local(Box::new(
                // A judge reads option probabilities after a prefill: no decoding steps.
                LocalGenerator::<B>::open(dir, device, None)
                    .with_context(|| format!("loading the judge model in {}", dir.display()))?,
            ))),
            JudgeHost::Remote(spec, connection) => Ok(Generator::Remote(connection.client(spec)?)),
        }
    };
    Ok(match config {
        JudgeConfig::Keywords { .. } => Box::new(config.keyword_judge()),
        JudgeConfig::Model { model, rubric, min_confidence } => {
            Box::new(ModelJudge::new(open(model)?, rubric.clone(), *min_confidence))
        }
        JudgeConfig::Llamaguard { model, max_new_tokens } => {
            Box::new(LlamaGuardJudge::new(open(model)?, *max_new_tokens))
        }
    })
}

/// Hash of the judge's settings and, for model-based judges, of its model's files (or, for a
/// remote judge, of the model name its servers serve).
pub fn hash(config: &JudgeConfig, remote: Option<&RemoteSpec>) -> Result<String> {
    let model = match remote {
        Some(spec) => config.model_dir().map(|_| hash_json(&("remote", &spec.model))),
        None => config.model_dir().map(hash_model_dir).transpose()?,
    };
    let settings = match config {
        // The path is where the model is, not what it is: the model's hash stands for it.
        JudgeConfig::Model { rubric, min_confidence, .. } => hash_json(&("model", rubric, min_confidence)),
        JudgeConfig::Llamaguard { max_new_tokens, .. } => hash_json(&("llamaguard", max_new_tokens)),
        keywords => hash_json(keywords),
    };
    Ok(hash_json(&(settings, model)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_judges_override_the_suite_and_model_judges_need_a_folder() {
        let suite = JudgeConfig::default();
        assert_eq!(resolve(suite.clone(), None, None).unwrap(), suite);
        let err = resolve(suite.clone(), Some(JudgeKind::Model), None).unwrap_err();
        assert_eq!(err.to_string(), "the model judge needs --judge-model (a model folder)");
        let config = resolve(suite, Some(JudgeKind::Llamaguard), Some("guard".into())).unwrap();
        assert_eq!(config, JudgeConfig::Llamaguard { model: "guard".into(), max_new_tokens: 16 });
        let suite_model = JudgeConfig::Model { model: "a".into(), rubric: Some("r".into()), min_confidence: 0.7 };
        let config = resolve(suite_model, None, Some("b".into())).unwrap();
        assert_eq!(config, JudgeConfig::Model { model: "b".into(), rubric: Some("r".into()), min_confidence: 0.7 });
    }
}
