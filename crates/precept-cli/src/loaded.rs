//! A model folder opened for inference: weights on a device plus its tokenizer.

use std::path::Path;

use anyhow::{Context, Result};
use burn::tensor::FloatDType;
use precept_data::{Message, Tokenizer};
use precept_model::checkpoint::load_model;
use precept_model::{KernelBackend, LlamaConfig, LlamaForCausalLM};

/// The tokenizer of a model folder, and text prepared for it.
pub struct TextModel {
    /// The folder's tokenizer (with its chat template, if any).
    pub tokenizer: Tokenizer,
}

impl TextModel {
    /// Opens `dir`'s tokenizer files.
    pub fn open(dir: &Path) -> Result<Self> {
        let tokenizer =
            Tokenizer::from_dir(dir).with_context(|| format!("loading the tokenizer of {}", dir.display()))?;
        Ok(Self { tokenizer })
    }

    /// The exact string to tokenise: `text` as is, or wrapped as one user message with the
    /// generation prompt when `chat`.
    pub fn prompt_text(&self, text: &str, chat: bool) -> Result<String> {
        if !chat {
            return Ok(text.to_owned());
        }
        let template = self.tokenizer.chat_template().context("--chat: the model folder has no chat template")?;
        Ok(template.render(&[Message::user(text)], true)?)
    }

    /// Token ids of `text` (special-token strings in it are recognised; none are added).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self.tokenizer.encode(text, false)?)
    }
}

/// Loads the weights of `dir` onto `device`, for training or for inference that decodes with
/// copies of its weights in `decode` (`None`: the weights themselves).
pub fn load_weights<B: KernelBackend>(
    dir: &Path,
    device: &B::Device,
    decode: Option<FloatDType>,
) -> Result<(LlamaConfig, LlamaForCausalLM<B>)> {
    let (config, model) = load_model(dir, device).with_context(|| format!("loading the model in {}", dir.display()))?;
    Ok((config, model.with_decode_dtype(decode)))
}
