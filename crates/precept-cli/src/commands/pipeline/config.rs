//! The pipeline's settings file: the base model, the run folder, and one table per stage, each
//! holding that stage's settings as its own settings file would (`[constitute]` those of
//! `precept constitute`, `[sft]` of `precept sft`, …). The pipeline fills in every model, data
//! and output path itself. `[grpo]` is optional: with it, GRPO trains DPO's merged model on
//! prompts (its own `prompts`, else the constitution loop's) and the gate evaluates GRPO's.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use precept_constitution::ConstituteSettings;
use precept_data::{parse_settings, DecontaminateSettings};
use precept_eval::EvalSettings;
use precept_train::dpo::DpoConfig;
use precept_train::grpo::GrpoConfig;
use precept_train::trainer::MERGED_DIR;
use precept_train::TrainConfig;
use serde::Deserialize;

use super::stage::Stage;

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PipelineFile {
    model: PathBuf,
    out: PathBuf,
    constitute: toml::Table,
    #[serde(default)]
    sft: toml::Table,
    #[serde(default)]
    dpo: toml::Table,
    grpo: Option<toml::Table>,
    eval: toml::Table,
    #[serde(default)]
    decontaminate: toml::Table,
}

/// Every stage's settings, resolved and validated before any stage runs.
#[derive(Debug)]
pub struct PipelineConfig {
    /// The run folder.
    pub out: PathBuf,
    /// Prompt files of the constitution loop (concatenated into the run folder).
    pub prompts: Vec<PathBuf>,
    /// The constitution loop's settings.
    pub constitute: ConstituteSettings,
    /// SFT's settings.
    pub sft: TrainConfig,
    /// DPO's settings.
    pub dpo: DpoConfig,
    /// GRPO's settings and prompt files, when the settings have a `[grpo]` table.
    pub grpo: Option<GrpoStage>,
    /// The gate's settings.
    pub eval: EvalSettings,
    /// Benchmark files the prompts are also checked against (`[decontaminate] benchmarks`).
    pub benchmarks: Vec<PathBuf>,
    /// The decontamination rule (`[decontaminate]`: `ngram`, `min_overlap`).
    pub decontaminate: DecontaminateSettings,
}

/// The optional GRPO stage.
#[derive(Debug)]
pub struct GrpoStage {
    /// Prompt files (concatenated into the run folder); the constitution loop's by default.
    pub prompts: Vec<PathBuf>,
    /// GRPO's settings.
    pub config: GrpoConfig,
}

/// Stage folders inside the run folder.
pub fn stage_dir(out: &Path, stage: Stage) -> PathBuf {
    out.join(stage.name())
}

impl PipelineConfig {
    /// Reads and resolves the settings file at `path`.
    ///
    /// # Errors
    /// Unreadable or invalid TOML, unknown keys and invalid settings of any stage, each
    /// naming the file and the stage's table.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let file: PipelineFile =
            toml::from_str(&text).with_context(|| format!("{}: invalid settings", path.display()))?;
        let at = |table: &str| format!("{} [{table}]", path.display());
        let (out, model) = (file.out.clone(), file.model.clone());
        let dir = |stage| stage_dir(&out, stage);

        let mut constitute_table = file.constitute;
        let Some(prompts) = path_list(constitute_table.remove("prompts"), "prompts", &at("constitute"))? else {
            bail!("{}: `prompts` (a file or a list of files) is required", at("constitute"));
        };
        let mut constitute: ConstituteSettings =
            parse_table(constitute_table, &at("constitute"), &["model", "remote", "remote_model", "out"])?;
        constitute.prompts = prompts_file(&out);
        constitute.model = Some(model.clone());
        constitute.out = dir(Stage::Constitute);
        constitute.run_config().with_context(|| at("constitute"))?;

        let mut sft: TrainConfig = parse_table(file.sft, &at("sft"), &["model", "data", "out"])?;
        sft.model.clone_from(&model);
        sft.data = dir(Stage::Constitute).join("sft.jsonl");
        sft.out = dir(Stage::Sft);
        sft.merge = true;
        sft.validate().with_context(|| at("sft"))?;

        let mut dpo: DpoConfig = parse_table(file.dpo, &at("dpo"), &["model", "data", "out"])?;
        dpo.train.model = dir(Stage::Sft).join(MERGED_DIR);
        dpo.train.data = dir(Stage::Constitute).join("prefs.jsonl");
        dpo.train.out = dir(Stage::Dpo);
        dpo.train.merge = true;
        dpo.validate().with_context(|| at("dpo"))?;

        let grpo = match file.grpo {
            Some(table) => Some(grpo_stage(table, &out, &prompts, &at("grpo"))?),
            None => None,
        };
        let last_trained = if grpo.is_some() { Stage::Grpo } else { Stage::Dpo };

        let reserved =
            ["model", "remote", "remote_model", "baseline", "baseline_remote", "baseline_remote_model", "out"];
        let mut eval: EvalSettings = parse_table(file.eval, &at("eval"), &reserved)?;
        eval.model = Some(dir(last_trained).join(MERGED_DIR));
        eval.baseline = Some(model);
        eval.out = Some(dir(Stage::Eval));

        let mut decontaminate_table = file.decontaminate;
        let benchmarks = path_list(decontaminate_table.remove("benchmarks"), "benchmarks", &at("decontaminate"))?
            .unwrap_or_default();
        let decontaminate: DecontaminateSettings = parse_table(decontaminate_table, &at("decontaminate"), &[])?;
        decontaminate.validate().with_context(|| at("decontaminate"))?;

        Ok(Self { out, prompts, constitute, sft, dpo, grpo, eval, benchmarks, decontaminate })
    }

    /// Every prompt file that trains, each once: the constitution loop's and GRPO's.
    pub fn training_prompts(&self) -> Vec<PathBuf> {
        let mut files = self.prompts.clone();
        for file in self.grpo.iter().flat_map(|grpo| &grpo.prompts) {
            if !files.contains(file) {
                files.push(file.clone());
            }
        }
        files
    }
}

/// The `[grpo]` table as GRPO's settings: DPO's merged model trained on `prompts` (its own, else
/// `constitute_prompts`), into the `grpo` stage folder.
fn grpo_stage(mut table: toml::Table, out: &Path, constitute_prompts: &[PathBuf], at: &str) -> Result<GrpoStage> {
    let prompts = path_list(table.remove("prompts"), "prompts", at)?.unwrap_or_else(|| constitute_prompts.to_vec());
    if prompts.is_empty() {
        bail!("{at}: `prompts` lists no files");
    }
    let mut config: GrpoConfig = parse_table(table, at, &["model", "data", "out"])?;
    config.train.model = stage_dir(out, Stage::Dpo).join(MERGED_DIR);
    config.train.data = grpo_prompts_file(out);
    config.train.out = stage_dir(out, Stage::Grpo);
    config.train.merge = true;
    config.validate().with_context(|| at.to_owned())?;
    Ok(GrpoStage { prompts, config })
}

/// The paths of `key`, a path or a list of paths; `None` when absent.
fn path_list(value: Option<toml::Value>, key: &str, at: &str) -> Result<Option<Vec<PathBuf>>> {
    match value {
        None => Ok(None),
        Some(toml::Value::String(one)) => Ok(Some(vec![PathBuf::from(one)])),
        Some(toml::Value::Array(many)) => many
            .into_iter()
            .map(|v| v.as_str().map(PathBuf::from).with_context(|| format!("{at}: `{key}` must list paths")))
            .collect::<Result<_>>()
            .map(Some),
        Some(_) => bail!("{at}: `{key}` must be a path or a list of paths"),
    }
}

/// The constitution loop's prompts, all files together.
pub fn prompts_file(out: &Path) -> PathBuf {
    out.join("prompts.jsonl")
}

/// GRPO's prompts, all files together.
pub fn grpo_prompts_file(out: &Path) -> PathBuf {
    out.join("grpo-prompts.jsonl")
}

/// Parses a stage table as that stage's settings, over their defaults; `reserved` keys are the
/// pipeline's to set.
fn parse_table<T: serde::de::DeserializeOwned + serde::Serialize + Default>(
    table: toml::Table,
    at: &str,
    reserved: &[&str],
) -> Result<T> {
    if let Some(key) = reserved.iter().find(|key| table.contains_key(**key)) {
        bail!("{at}: `{key}` is set by the pipeline; remove it");
    }
    let text = toml::to_string(&table).with_context(|| at.to_string())?;
    Ok(parse_settings(&text, Path::new(at))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, text: &str) -> PathBuf {
        let path = dir.join("pipeline.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    const GOOD: &str = r#"
model = "base"
out = "run"
[constitute]
constitution = "c.toml"
prompts = ["a.jsonl", "b.jsonl"]
feedback = true
max_new_tokens = 32
clamp = [0.4, 0.6]
[sft]
max_steps = 3
[sft.lora]
r = 4
[dpo]
beta = 0.2
max_steps = 2
[eval]
suite = "s.toml"
batch_size = 4
[decontaminate]
benchmarks = ["harmbench.csv"]
ngram = 10
"#;

    #[test]
    fn stage_tables_become_each_stage_s_settings_with_the_paths_filled_in() {
        let dir = tempfile::tempdir().unwrap();
        let config = PipelineConfig::read(&write(dir.path(), GOOD)).unwrap();
        assert_eq!(config.prompts, [PathBuf::from("a.jsonl"), PathBuf::from("b.jsonl")]);
        assert!(config.constitute.feedback && config.constitute.max_new_tokens == 32);
        assert_eq!(config.constitute.clamp, Some([0.4, 0.6]));
        assert_eq!(config.constitute.prompts, PathBuf::from("run/prompts.jsonl"));
        assert_eq!(config.constitute.out, PathBuf::from("run/constitute"));
        assert_eq!((config.sft.max_steps, config.sft.lora.r, config.sft.merge), (Some(3), 4, true));
        assert_eq!(config.sft.data, PathBuf::from("run/constitute/sft.jsonl"));
        assert_eq!(config.dpo.train.model, PathBuf::from("run/sft/merged"));
        assert_eq!((config.dpo.beta, config.dpo.train.learning_rate), (0.2, 1e-6));
        assert_eq!(config.eval.model, Some(PathBuf::from("run/dpo/merged")));
        assert_eq!(config.eval.batch_size, Some(4));
        assert_eq!(config.eval.baseline, Some(PathBuf::from("base")));
        assert_eq!(config.benchmarks, [PathBuf::from("harmbench.csv")]);
        assert_eq!((config.decontaminate.ngram, config.decontaminate.min_overlap), (10, 0.0));
    }

    #[test]
    fn the_shipped_pipeline_settings_resolve() {
        let configs =
            Path::new(&std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
                .join("../../configs");
        for name in ["quickstart.toml", "full.toml"] {
            let config = PipelineConfig::read(&configs.join(name)).unwrap();
            assert!(config.sft.merge && config.dpo.train.merge, "{name}");
            assert!(
                config.constitute.draws > 0,
                "{name}: the shipped prompts expect something, and draws help keep to it"
            );
            assert!(!config.eval.suite.as_os_str().is_empty(), "{name}");
        }
    }

    #[test]
    fn the_commented_grpo_example_of_the_full_settings_resolves_after_dpo() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let shipped = std::fs::read_to_string(configs.join("full.toml")).unwrap();
        assert!(PipelineConfig::read(&configs.join("full.toml")).unwrap().grpo.is_none(), "GRPO is opt-in");
        let start = shipped.find("# [grpo]\n").unwrap();
        let end = start + shipped[start..].find("\n\n").unwrap();
        let uncommented: String = shipped[start..end].lines().map(|line| format!("{}\n", &line[2..])).collect();
        let text = format!("{}{uncommented}{}", &shipped[..start], &shipped[end..]);
        let dir = tempfile::tempdir().unwrap();
        // Paths in the shipped file are relative to the repository root.
        let text = text.replace("\"data/", &format!("\"{}/data/", configs.join("..").display()));
        let config = PipelineConfig::read(&write(dir.path(), &text)).unwrap();
        let grpo = config.grpo.unwrap();
        assert_eq!(grpo.config.train.model, PathBuf::from("runs/full/dpo/merged"));
        assert_eq!(grpo.config.train.data, PathBuf::from("runs/full/grpo-prompts.jsonl"));
        assert_eq!((grpo.config.num_generations, grpo.config.train.lora.r, grpo.config.train.merge), (8, 32, true));
        assert_eq!(grpo.prompts.len(), 2);
        assert_eq!(config.eval.model, Some(PathBuf::from("runs/full/grpo/merged")));
    }

    #[test]
    fn a_grpo_table_without_prompts_trains_on_the_constitution_loop_s() {
        let dir = tempfile::tempdir().unwrap();
        let text = GOOD.replace("[eval]", "[grpo]\nnum_generations = 2\nper_device_train_batch_size = 4\n[eval]");
        let config = PipelineConfig::read(&write(dir.path(), &text)).unwrap();
        let grpo = config.grpo.as_ref().unwrap();
        assert_eq!(grpo.prompts, config.prompts);
        assert_eq!(config.training_prompts(), config.prompts, "each file once");
        assert_eq!(config.eval.model, Some(PathBuf::from("run/grpo/merged")));
        let cases = [
            ("model = \"x\"", "[grpo]: `model` is set by the pipeline"),
            ("num_generation = 2", "unknown setting `num_generation`"),
            ("num_generations = 3", "setting `per_device_train_batch_size`"),
            ("prompts = 3", "`prompts` must be a path or a list of paths"),
        ];
        for (line, expected) in cases {
            let bad = text.replace("num_generations = 2", line);
            let error = format!("{:#}", PipelineConfig::read(&write(dir.path(), &bad)).unwrap_err());
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn unknown_and_reserved_keys_are_errors_naming_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            (GOOD.replace("feedback = true", "feedbak = true"), "[constitute]: "),
            (GOOD.replace("feedback = true", "feedbak = true"), "unknown setting `feedbak` (did you mean `feedback`?)"),
            (GOOD.replace("max_new_tokens = 32", "out = \"elsewhere\""), "`out` is set by the pipeline"),
            (GOOD.replace("max_steps = 3", "max_step = 3"), "unknown setting `max_step`"),
            (GOOD.replace("beta = 0.2", "beta = -1.0"), "setting `beta`"),
            (GOOD.replace("batch_size = 4", "model = \"x\""), "`model` is set by the pipeline"),
            (GOOD.replace("out = \"run\"", "out = \"run\"\nextra = 1"), "extra"),
            (GOOD.replace("prompts = [\"a.jsonl\", \"b.jsonl\"]", ""), "`prompts`"),
            (
                GOOD.replace("ngram = 10", "ngrams = 10"),
                "[decontaminate]: line 1: unknown setting `ngrams` (did you mean `ngram`?)",
            ),
            (GOOD.replace("ngram = 10", "ngram = 0"), "setting `ngram`: must be at least 1"),
            (GOOD.replace("[\"harmbench.csv\"]", "3"), "`benchmarks` must be a path or a list of paths"),
        ];
        for (text, expected) in cases {
            let error = format!("{:#}", PipelineConfig::read(&write(dir.path(), &text)).unwrap_err());
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }
}
