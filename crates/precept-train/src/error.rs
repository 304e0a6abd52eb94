//! The one error type of precept-train.

use std::path::PathBuf;

/// Everything that can stop a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Loading or saving a model or adapter failed.
    #[error(transparent)]
    Model(#[from] precept_model::ModelError),
    /// Reading, templating or tokenising data failed.
    #[error(transparent)]
    Data(#[from] precept_data::DataError),
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A run setting is invalid.
    #[error("setting `{field}`: {message}")]
    Setting {
        /// The setting's name in the config file.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A training checkpoint is incomplete or inconsistent with the run.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The checkpoint file or folder.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Rewards cannot be split into groups of `num_generations` completions of one prompt, or
    /// the group statistic that the advantages need is undefined for them.
    #[error("{rewards} rewards in groups of {num_generations}: {reason}")]
    RewardGroups {
        /// How many rewards were given.
        rewards: usize,
        /// Completions sampled per prompt.
        num_generations: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A reward function computed outside this crate (an HTTP endpoint) failed.
    #[error("reward `{reward}`: {error}")]
    Reward {
        /// The reward function's name.
        reward: String,
        /// What went wrong.
        error: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A reward function answered a batch with the wrong number of rewards.
    #[error("reward `{reward}` gave {got} rewards for {expected} completions")]
    RewardCount {
        /// The reward function's name.
        reward: String,
        /// Completions scored.
        expected: usize,
        /// Rewards received.
        got: usize,
    },
    /// A reward function that precept-train does not compute was named but not supplied.
    #[error("setting `reward_funcs`: `{reward}` is computed by the caller, which supplied none")]
    RewardMissing {
        /// The reward function's name.
        reward: &'static str,
    },
    /// The loss or the gradients stopped being finite.
    #[error("step {step}: {what} is {value}; stopped, the last checkpoint is kept")]
    NonFinite {
        /// The optimiser step (counting from one) whose update was refused.
        step: u64,
        /// `loss` or `grad_norm`.
        what: &'static str,
        /// The offending value.
        value: f64,
    },
    /// A [`Monitor`](crate::monitor::Monitor) could not check the weights.
    #[error("step {step}: checking the weights: {error}")]
    Monitor {
        /// The optimiser step (counting from one) whose weights were being checked.
        step: u64,
        /// The monitor's error.
        error: crate::monitor::MonitorError,
    },
    /// A [`Monitor`](crate::monitor::Monitor) stopped the run.
    #[error("step {step}: {reason}; stopped, {}", .best.as_ref().map_or_else(
        || "no checkpoint has passed".to_owned(),
        |best| format!("the last checkpoint that passed is {}", best.display())))]
    Stopped {
        /// The optimiser step (counting from one) whose weights failed the check.
        step: u64,
        /// What the monitor said.
        reason: String,
        /// The copy of the last checkpoint that passed, if one did.
        best: Option<PathBuf>,
    },
}

impl TrainError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// An invalid setting.
    pub fn setting(field: &str, message: impl Into<String>) -> Self {
        Self::Setting { field: field.into(), message: message.into() }
    }
}

/// Results of precept-train.
pub type Result<T> = std::result::Result<T, TrainError>;
