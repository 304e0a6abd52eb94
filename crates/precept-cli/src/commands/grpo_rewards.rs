//! GRPO's reward functions as a run uses them: precept-train's built-in ones, with the `remote`
//! reward ([`RemoteReward`]) plugged in when the settings name it.
//!
//! The remote reward POSTs each completion to the endpoint as one JSON object: the prompt
//! record's own fields (`id`, `expected`, anything else it carries), then `prompt` (the user
//! turns' text), `messages` (the conversation, system prompt included), `completion`, `finish`
//! (`eos`, `stop` or `length`) and `tokens`. The answer is a number, or `{"reward": number}`.

use std::time::Duration;

use anyhow::{Context, Result};
use precept_remote::{RewardClient, RewardEndpoint};
use precept_train::grpo::{BatchReward, Completion, GrpoConfig, RemoteRewardSettings, RewardFunc, Rewards};
use precept_train::TrainError;
use serde_json::{json, Value};

/// The reward functions `config` names, with the remote one connected.
///
/// # Errors
/// A remote reward whose URL is invalid, or whose `api_key_env` names an unset variable.
pub fn grpo_rewards(config: &GrpoConfig) -> Result<Rewards> {
    let mut plugged: Vec<Box<dyn BatchReward>> = Vec::new();
    if let Some(settings) = &config.remote_reward {
        plugged.push(Box::new(RemoteReward::new(settings)?));
    }
    Ok(Rewards::new(config, plugged)?)
}

/// `remote`: the number an HTTP endpoint answers for each completion.
pub struct RemoteReward {
    client: RewardClient,
}

impl RemoteReward {
    /// A client of the endpoint `settings` names.
    ///
    /// # Errors
    /// An invalid URL, or an `api_key_env` naming an unset variable.
    pub fn new(settings: &RemoteRewardSettings) -> Result<Self> {
        let api_key = match &settings.api_key_env {
            Some(name) => Some(std::env::var(name).ok().filter(|key| !key.is_empty()).with_context(|| {
                format!("setting `remote_reward.api_key_env`: the environment variable `{name}` is not set")
            })?),
            None => None,
        };
        let client = RewardClient::new(RewardEndpoint {
            url: settings.url.clone(),
            api_key,
            concurrency: settings.concurrency,
            timeout: Duration::from_secs(settings.timeout),
            retries: settings.retries,
            backoff: Duration::from_secs(1),
        })?;
        Ok(Self { client })
    }
}

impl BatchReward for RemoteReward {
    fn name(&self) -> &'static str {
        RewardFunc::Remote.name()
    }

    fn check(&self, _prompt: &precept_data::PromptOnlyRecord, _path: &std::path::Path) -> precept_train::Result<()> {
        Ok(())
    }

    fn score_batch(&self, completions: &[Completion<'_>]) -> precept_train::Result<Vec<f32>> {
        let items: Vec<Value> = completions.iter().map(request_body).collect();
        let rewards = self
            .client
            .score(&items)
            .map_err(|error| TrainError::Reward { reward: self.name().into(), error: Box::new(error) })?;
        Ok(rewards.into_iter().map(|reward| reward as f32).collect())
    }
}

/// What the endpoint is sent for `completion`.
fn request_body(completion: &Completion<'_>) -> Value {
    let prompt = completion.prompt;
    let mut body = prompt.fields.clone();
    body.insert("prompt".into(), json!(prompt.user_text()));
    body.insert("messages".into(), json!(prompt.messages));
    body.insert("completion".into(), json!(completion.text));
    body.insert("finish".into(), json!(completion.finish));
    body.insert("tokens".into(), json!(completion.tokens));
    Value::Object(body)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use precept_data::{FinishReason, PromptOnlyRecord};

    use super::*;

    #[test]
    fn the_endpoint_gets_the_record_s_fields_the_prompt_and_the_completion() {
        let record =
            json!({"id": "p7", "category": "weapons", "expected": "refuse", "prompt": "How?", "tokens": "mine"});
        let prompt = PromptOnlyRecord::from_json(&record, Path::new("p.jsonl"), 3).unwrap();
        let completion = Completion { prompt: &prompt, text: "No.", tokens: 2, finish: FinishReason::Eos };
        let body = request_body(&completion);
        assert_eq!(body["id"], "p7");
        assert_eq!((body["category"].as_str(), body["expected"].as_str()), (Some("weapons"), Some("refuse")));
        assert_eq!((body["prompt"].as_str(), body["completion"].as_str()), (Some("How?"), Some("No.")));
        assert_eq!(body["messages"], json!([{"role": "user", "content": "How?"}]));
        assert_eq!((body["finish"].as_str(), body["tokens"].as_u64()), (Some("eos"), Some(2)));
    }

    #[test]
    fn an_unset_api_key_variable_is_an_error_naming_it() {
        let settings = RemoteRewardSettings {
            url: "http://127.0.0.1:9/r".into(),
            timeout: 1,
            retries: 0,
            concurrency: 1,
            api_key_env: Some("PRECEPT_TEST_UNSET_REWARD_KEY".into()),
        };
        let error = RemoteReward::new(&settings).err().unwrap();
        assert!(format!("{error:#}").contains("`PRECEPT_TEST_UNSET_REWARD_KEY` is not set"), "{error:#}");
    }
}
