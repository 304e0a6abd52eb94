//! [`LocalGenerator`]: the [`Generate`] trait served by a model on this machine.

use std::path::Path;

use burn::tensor::activation::log_softmax;

use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use precept_data::{
    normalise_log_probabilities, FinishReason as ReplyFinish, Generate, GenerateSettings, Message, Reply, ReplyText,
    Tokenizer,
};

use crate::backend::KernelBackend;
use crate::checkpoint::load_model;
use crate::continuation::ContinuationCache;
use crate::error::{ModelError, Result};
use crate::generate::{fill_shared_prefix, generate_continuing, FinishReason, GenerationConfig};
use crate::host::host_values;
use crate::inputs::AttentionInputs;
use crate::model::LlamaForCausalLM;
use crate::sampling::SamplingConfig;

/// Rows scored in one forward pass by [`Generate::option_probabilities`].
const SCORING_BATCH: usize = 16;

/// A model and its tokenizer, answering conversations through the chat template. Each call keeps
/// its rows' KV caches for later calls, so a conversation continued there (a critique's revision
/// request) prefills only its new turns, and one that starts like a kept one (the same system
/// message and examples) skips that start.
pub struct LocalGenerator<B: KernelBackend> {
    model: LlamaForCausalLM<B>,
    tokenizer: Tokenizer,
    continuation: ContinuationCache,
}

impl<B: KernelBackend> LocalGenerator<B> {
    /// Wraps a loaded model and its tokenizer.
    pub fn new(model: LlamaForCausalLM<B>, tokenizer: Tokenizer) -> Self {
        Self { model, tokenizer, continuation: ContinuationCache::default() }
    }

    /// Loads the model folder `dir` onto `device`, decoding with copies of its weights in
    /// `decode` ([`LlamaForCausalLM::with_decode_dtype`]; `None`: the weights themselves).
    pub fn open(dir: &Path, device: &B::Device, decode: Option<FloatDType>) -> Result<Self> {
        let tokenizer = Tokenizer::from_dir(dir)?;
        let (_, model) = load_model(dir, device)?;
        Ok(Self::new(model.with_decode_dtype(decode), tokenizer))
    }

    /// Prompt tokens of the last call taken from earlier calls' kept KV caches.
    pub fn last_reused(&self) -> usize {
        self.continuation.last_reused()
    }

    /// Drops the KV caches kept from earlier calls, so that the next call starts from nothing.
    pub fn forget_last_call(&mut self) {
        self.continuation = ContinuationCache::default();
    }

    /// Prompt ids of each conversation: the chat template with the generation prompt.
    fn prompt_ids(&self, conversations: &[Vec<Message>]) -> Result<Vec<Vec<u32>>> {
        let template = self.tokenizer.chat_template().ok_or(ModelError::NoChatTemplate)?;
        conversations
            .iter()
            .map(|messages| Ok(self.tokenizer.encode(&template.render(messages, true)?, false)?))
            .collect()
    }

    /// `Σ log p(option | prompt)` for every prompt and option, `[prompt][option]`. Each chunk of
    /// prompts is prefilled once (the prefix they all share once for all of them); every option
    /// (non-empty, as the caller checks) then continues from a copy of its KV cache.
    fn option_log_probs(&self, prompts: &[Vec<u32>], options: &[Vec<u32>]) -> Vec<Vec<f64>> {
        let device = self.model.model.embed_tokens.weight.device();
        let mut scores = Vec::with_capacity(prompts.len());
        for chunk in prompts.chunks(SCORING_BATCH) {
            let batch = chunk.len();
            let mut cache = self.model.new_cache();
            let rows: Vec<usize> = (0..batch).collect();
            let shared = fill_shared_prefix(&self.model, chunk, &rows, &mut cache);
            let longest = chunk.iter().map(Vec::len).max().unwrap_or(0);
            let pads: Vec<usize> = chunk.iter().map(|p| longest - p.len()).collect();
            let own = longest - shared;
            let mut ids = Vec::with_capacity(batch * own);
            for (prompt, &pad) in chunk.iter().zip(&pads) {
                ids.extend(std::iter::repeat_n(0i64, pad));
                ids.extend(prompt[shared..].iter().map(|&t| t as i64));
            }
            let tokens = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [batch, own]), &device);
            let starts = vec![shared; batch];
            let inputs = AttentionInputs::padded_after(&starts, &pads, own, shared, &device);
            let hidden = self.model.model.forward(tokens, &inputs, Some(&mut cache));
            let d_model = hidden.dims()[2];
            let last = self.log_probs(hidden.slice([0..batch, own - 1..own, 0..d_model]));
            let vocab = last.len() / batch;
            let mut chunk_scores = vec![vec![0.0; options.len()]; batch];
            for (o, option) in options.iter().enumerate() {
                for (row, score) in chunk_scores.iter_mut().enumerate() {
                    score[o] = f64::from(last[row * vocab + option[0] as usize]);
                }
                let rest = option.len() - 1;
                if rest == 0 {
                    continue;
                }
                // The option's tokens but the last, after each prompt, predict its tokens after the first.
                let fed: Vec<i64> = (0..batch).flat_map(|_| option[..rest].iter().map(|&t| t as i64)).collect();
                let fed = Tensor::<B, 2, Int>::from_data(TensorData::new(fed, [batch, rest]), &device);
                let inputs = AttentionInputs::padded_after(&starts, &pads, rest, longest, &device);
                let hidden = self.model.model.forward(fed, &inputs, Some(&mut cache.clone()));
                let log_probs = self.log_probs(hidden);
                for (row, score) in chunk_scores.iter_mut().enumerate() {
                    let row_log_probs = &log_probs[row * rest * vocab..(row + 1) * rest * vocab];
                    score[o] += option[1..]
                        .iter()
                        .enumerate()
                        .map(|(i, &token)| f64::from(row_log_probs[i * vocab + token as usize]))
                        .sum::<f64>();
                }
            }
            scores.extend(chunk_scores);
        }
        scores
    }

    /// Log-softmax of the logits of `hidden` states, flattened `[batch · seq · vocab]`.
    fn log_probs(&self, hidden: Tensor<B, 3>) -> Vec<f32> {
        // f32 conversion of backend data cannot fail for a float tensor.
        host_values(log_softmax(self.model.logits(hidden), 2))
    }
}

impl<B: KernelBackend> Generate for LocalGenerator<B> {
    type Error = ModelError;

    fn generate(&mut self, conversations: &[Vec<Message>], settings: &GenerateSettings) -> Result<Vec<Reply>> {
        let prompts = self.prompt_ids(conversations)?;
        let config = GenerationConfig {
            max_new_tokens: settings.max_new_tokens,
            sampling: SamplingConfig {
                temperature: settings.temperature,
                top_p: settings.top_p,
                seed: settings.seed,
                ..SamplingConfig::default()
            },
            eos_token_ids: self.tokenizer.eos_token_ids(),
        };
        let mut texts: Vec<ReplyText> =
            prompts.iter().map(|_| ReplyText::new(&self.tokenizer, &settings.stop)).collect();
        let started = std::time::Instant::now();
        let generations = generate_continuing(&self.model, &prompts, &config, &mut self.continuation, |row, token| {
            texts[row].push(token)
        })?;
        tracing::debug!(
            rows = prompts.len(),
            prompt_tokens = prompts.iter().map(Vec::len).sum::<usize>(),
            longest_prompt = prompts.iter().map(Vec::len).max().unwrap_or(0),
            new_tokens = generations.iter().map(|g| g.ids.len()).sum::<usize>(),
            longest = generations.iter().map(|g| g.ids.len()).max().unwrap_or(0),
            reused_tokens = self.last_reused(),
            seconds = started.elapsed().as_secs_f64(),
            "generated"
        );
        Ok(generations
            .into_iter()
            .zip(&texts)
            .map(|(generation, text)| Reply {
                text: text.final_text(),
                finish: match generation.finish {
                    FinishReason::Eos => ReplyFinish::Eos,
                    FinishReason::Stopped => ReplyFinish::Stop,
                    FinishReason::Length => ReplyFinish::Length,
                },
                token_ids: generation.ids,
            })
            .collect())
    }

    fn option_probabilities(&mut self, conversations: &[Vec<Message>], options: &[String]) -> Result<Vec<Vec<f64>>> {
        let prompts = self.prompt_ids(conversations)?;
        let option_ids: Vec<Vec<u32>> =
            options.iter().map(|option| Ok(self.tokenizer.encode(option, false)?)).collect::<Result<_>>()?;
        if let Some(empty) = options.iter().zip(&option_ids).find(|(_, ids)| ids.is_empty()) {
            return Err(ModelError::EmptyOption { option: empty.0.clone() });
        }
        let started = std::time::Instant::now();
        let scores = self.option_log_probs(&prompts, &option_ids);
        tracing::debug!(
            rows = prompts.len(),
            prompt_tokens = prompts.iter().map(Vec::len).sum::<usize>(),
            seconds = started.elapsed().as_secs_f64(),
            "scored options"
        );
        Ok(scores.iter().map(|scores| normalise_log_probabilities(scores)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    use crate::config::LlamaConfig;

    const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
      "added_tokens":[{"id":0,"content":"<end>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
      "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
      "model":{"type":"WordLevel","vocab":{"<end>":0,"user":1,"assistant":2,"yes":3,"no":4,"maybe":5,"is":6,"it":7,"?":8,"[UNK]":9},"unk_token":"[UNK]"}}"#;
    const CONFIG: &str = r#"{"chat_template":"{% for m in messages %}{{ m.role }} {{ m.content }} <end> {% endfor %}{% if add_generation_prompt %}assistant {% endif %}","eos_token":"<end>"}"#;

    fn generator() -> LocalGenerator<Flex> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), TOKENIZER).unwrap();
        std::fs::write(dir.path().join("tokenizer_config.json"), CONFIG).unwrap();
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        <Flex as burn::tensor::backend::Backend>::seed(&Default::default(), 3);
        let config = LlamaConfig { vocab_size: 10, ..LlamaConfig::tiny() };
        LocalGenerator::new(config.init(&Default::default()), tokenizer)
    }

    fn ask(text: &str) -> Vec<Message> {
        vec![Message::user(text)]
    }

    #[test]
    fn option_probabilities_are_the_normalised_sequence_probabilities_of_each_option() {
        let _rng = crate::lock_backend_rng();
        let mut generator = generator();
        let options = vec!["yes".to_string(), "no maybe".to_string()];
        // Without a common prefix, and with a system message long enough to be filled once.
        let system = || Message::system("is it yes no maybe is it yes no maybe");
        let plain = [ask("is it ?"), ask("yes")];
        let with_system = [vec![system(), Message::user("is it ?")], vec![system(), Message::user("yes")]];
        for conversations in [plain, with_system] {
            assert_option_probabilities_match_full_forward_passes(&mut generator, &conversations, &options);
        }
    }

    /// Checks `option_probabilities` against the full-sequence logits of prompt+option, computed
    /// one row at a time.
    fn assert_option_probabilities_match_full_forward_passes(
        generator: &mut LocalGenerator<Flex>,
        conversations: &[Vec<Message>],
        options: &[String],
    ) {
        let probabilities = generator.option_probabilities(conversations, options).unwrap();
        let device = Default::default();
        for (conversation, got) in conversations.iter().zip(&probabilities) {
            let prompt = generator.prompt_ids(std::slice::from_ref(conversation)).unwrap().remove(0);
            let log_probs: Vec<f64> = options
                .iter()
                .map(|option| {
                    let continuation = generator.tokenizer.encode(option, false).unwrap();
                    let ids: Vec<i64> = prompt.iter().chain(&continuation).map(|&t| t as i64).collect();
                    let len = ids.len();
                    let tokens = Tensor::<Flex, 2, Int>::from_data(TensorData::new(ids.clone(), [1, len]), &device);
                    let logits = generator.model.forward(tokens, &AttentionInputs::causal(1, len, 0, &device), None);
                    let log_softmax = log_softmax(logits, 2).into_data().to_vec::<f32>().unwrap();
                    (prompt.len()..len).map(|i| log_softmax[(i - 1) * 10 + ids[i] as usize] as f64).sum()
                })
                .collect();
            let expected = normalise_log_probabilities(&log_probs);
            assert!((got.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            for (g, e) in got.iter().zip(&expected) {
                assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
            }
        }
    }

    #[test]
    fn batched_replies_equal_replies_one_at_a_time() {
        let _rng = crate::lock_backend_rng();
        let mut generator = generator();
        let conversations = vec![
            ask("is it ?"),
            ask("yes"),
            vec![Message::user("no"), Message::assistant("maybe"), Message::user("?")],
        ];
        let settings = GenerateSettings { max_new_tokens: 5, ..Default::default() };
        let together = generator.generate(&conversations, &settings).unwrap();
        for (conversation, reply) in conversations.iter().zip(&together) {
            let alone = generator.generate(std::slice::from_ref(conversation), &settings).unwrap();
            assert_eq!(alone[0], *reply);
        }
    }

    #[test]
    fn a_model_without_a_chat_template_and_empty_options_are_errors() {
        let _rng = crate::lock_backend_rng();
        let mut generator = generator();
        let err = generator.option_probabilities(&[ask("yes")], &["".to_string()]).unwrap_err();
        assert_eq!(err.to_string(), "option `` has no tokens");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tokenizer.json"), TOKENIZER).unwrap();
        generator.tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        let err = generator.generate(&[ask("yes")], &GenerateSettings::default()).unwrap_err();
        assert!(err.to_string().contains("no chat template"), "{err}");
    }
}
