//! The judge a suite and the command line name together.

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use precept_eval::JudgeConfig;

use super::args::JudgeKind;

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
