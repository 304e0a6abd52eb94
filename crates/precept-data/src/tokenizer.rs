//! [`Tokenizer`]: a Hugging Face `tokenizer.json` plus what the rest of the model folder says
//! about special tokens, stop tokens and the chat template.

use std::path::Path;

use crate::chat_template::ChatTemplate;
use crate::error::{snippet, DataError, Result};
use crate::hf_config::{read_bounded, GenerationConfig, TokenizerConfig, MAX_TOKENIZER_BYTES};
use crate::special_tokens::SpecialTokens;
use crate::token_stream::TokenStream;

/// A model's tokenizer: text ↔ token ids, its special tokens and its chat template.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    special_tokens: SpecialTokens,
    bos_token_id: Option<u32>,
    eos_token_ids: Vec<u32>,
    chat_template: Option<ChatTemplate>,
}

impl Tokenizer {
    /// Loads the tokenizer of a Hugging Face model folder.
    ///
    /// Reads `tokenizer.json` (required), and if present `tokenizer_config.json` (special
    /// tokens, `chat_template`), `chat_template.jinja` (overrides the config's template) and
    /// `generation_config.json` (`bos_token_id`, `eos_token_id`). Truncation and padding saved in
    /// `tokenizer.json` are switched off, as transformers does, so texts encode whole.
    ///
    /// # Errors
    /// [`DataError::MissingTokenizer`] without `tokenizer.json`,
    /// [`DataError::InvalidTokenizer`] when it does not load, and the config errors of
    /// malformed JSON, mistyped fields or a chat template that does not parse; each names its file.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        let bytes = read_bounded(&path, MAX_TOKENIZER_BYTES)?
            .ok_or_else(|| DataError::MissingTokenizer { dir: dir.to_owned() })?;
        let mut inner = tokenizers::Tokenizer::from_bytes(&bytes)
            .map_err(|error| DataError::InvalidTokenizer { path: path.clone(), error })?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|error| DataError::InvalidTokenizer { path, error })?;

        let config = TokenizerConfig::load(dir)?;
        let generation = GenerationConfig::load(dir)?;
        let special_tokens = config.special_tokens;
        let chat_template = match config.chat_template {
            Some((source, origin)) => Some(ChatTemplate::new(&source, origin, special_tokens.clone())?),
            None => None,
        };
        let id_of = |token: &Option<String>| token.as_deref().and_then(|token| inner.token_to_id(token));
        let bos_token_id = id_of(&special_tokens.bos).or(generation.bos_token_id);
        let mut eos_token_ids = generation.eos_token_ids;
        if let Some(id) = id_of(&special_tokens.eos) {
            if !eos_token_ids.contains(&id) {
                eos_token_ids.push(id);
            }
        }
        Ok(Self { inner, special_tokens, bos_token_id, eos_token_ids, chat_template })
    }

    /// Token ids of `text`; `add_special_tokens` applies the tokenizer's post-processor
    /// (for example a leading BOS).
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode_fast(text, add_special_tokens)
            .map_err(|error| DataError::Encode { snippet: snippet(text), error })?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`; `skip_special_tokens` leaves out tokens such as `<|im_end|>`.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|error| DataError::Decode { ids: ids.to_vec(), error })
    }

    /// An incremental decoder for streaming generated ids as text; see [`TokenStream`].
    pub fn stream(&self, skip_special_tokens: bool) -> TokenStream<'_> {
        TokenStream::new(self, skip_special_tokens)
    }

    /// The id of `token` (vocabulary or added token), if it exists.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token string of `id`, if it exists.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Every id that ends generation: `generation_config.json`'s `eos_token_id` (one or many),
    /// then `tokenizer_config.json`'s `eos_token` if it is in the vocabulary and not yet listed.
    pub fn eos_token_ids(&self) -> Vec<u32> {
        self.eos_token_ids.clone()
    }

    /// The id of the beginning-of-sequence token, from `tokenizer_config.json`'s `bos_token` or
    /// else `generation_config.json`'s `bos_token_id`.
    pub fn bos_token_id(&self) -> Option<u32> {
        self.bos_token_id
    }

    /// The beginning-of-sequence token text, if declared.
    pub fn bos_token(&self) -> Option<&str> {
        self.special_tokens.bos.as_deref()
    }

    /// The end-of-sequence token text, if declared.
    pub fn eos_token(&self) -> Option<&str> {
        self.special_tokens.eos.as_deref()
    }

    /// The padding token text, if declared.
    pub fn pad_token(&self) -> Option<&str> {
        self.special_tokens.pad.as_deref()
    }

    /// All declared special-token texts.
    pub fn special_tokens(&self) -> &SpecialTokens {
        &self.special_tokens
    }

    /// The model's chat template, if the folder has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Bytes of the longest entry of the vocabulary (added tokens included), at least 1: in a
    /// BPE or Unigram tokenizer no token stands for more input than about this much.
    pub fn longest_token_bytes(&self) -> usize {
        self.inner.get_vocab(true).keys().map(String::len).max().unwrap_or(1).max(1)
    }

    /// The underlying Hugging Face tokenizer, for what this type does not wrap.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;

    use tokenizers::models::bpe::BPE;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::processors::template::TemplateProcessing;
    use tokenizers::AddedToken;

    use super::*;
    use crate::message::Message;

    /// A byte-level BPE tokenizer: one token per byte (ids 0–255 in byte-level alphabet order),
    /// then one token per merge (the pair joined) and the `special` tokens, in the order given.
    pub(crate) fn byte_level_bpe(merges: &[(&str, &str)], special: &[&str]) -> tokenizers::Tokenizer {
        let mut alphabet: Vec<char> = ByteLevel::alphabet().into_iter().collect();
        alphabet.sort_unstable();
        let mut vocab: tokenizers::models::bpe::Vocab =
            alphabet.iter().enumerate().map(|(id, c)| (c.to_string(), id as u32)).collect();
        for (i, (a, b)) in merges.iter().enumerate() {
            vocab.insert(format!("{a}{b}"), 256 + i as u32);
        }
        let merges = merges.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let bpe = BPE::builder().vocab_and_merges(vocab, merges).build().unwrap();
        let mut tokenizer = tokenizers::Tokenizer::new(bpe);
        tokenizer.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
        tokenizer.with_decoder(Some(ByteLevel::default()));
        let special: Vec<AddedToken> = special.iter().map(|t| AddedToken::from(t.to_string(), true)).collect();
        tokenizer.add_special_tokens(&special);
        tokenizer
    }

    /// Writes a tiny byte-level BPE `tokenizer.json` into `dir`: merges for `"he"` and `"ll"`,
    /// special tokens `<s>` and `<|im_end|>`, and a post-processor that prepends `<s>`.
    pub(crate) fn write_tiny_tokenizer(dir: &Path) {
        let mut tokenizer = byte_level_bpe(&[("h", "e"), ("l", "l")], &["<s>", "<|im_end|>"]);
        let post =
            TemplateProcessing::builder().try_single("<s> $A").unwrap().special_tokens(vec![("<s>", 258)]).build();
        tokenizer.with_post_processor(Some(post.unwrap()));
        tokenizer.save(dir.join("tokenizer.json"), false).unwrap();
    }

    /// A model folder with the tiny tokenizer and the given extra files.
    pub(crate) fn tiny_folder(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        write_tiny_tokenizer(dir.path());
        for (name, text) in files {
            fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_tiny_tokenizer_round_trips_multi_byte_text() {
        let dir = tiny_folder(&[]);
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tokenizer.vocab_size(), 260);
        let text = "hello café 你好 🦀";
        let ids = tokenizer.encode(text, false).unwrap();
        // "é" is two bytes, "你" three and "🦀" four: each byte is its own token.
        assert_eq!(ids.len(), text.len() - 2);
        assert_eq!(&ids[..2], [256, 257]);
        assert_eq!(tokenizer.decode(&ids, false).unwrap(), text);
    }

    #[test]
    fn special_tokens_are_added_and_skipped_on_request() {
        let dir = tiny_folder(&[]);
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        let with = tokenizer.encode("he<|im_end|>", true).unwrap();
        assert_eq!(with, [258, 256, 259]);
        assert_eq!(tokenizer.decode(&with, false).unwrap(), "<s>he<|im_end|>");
        assert_eq!(tokenizer.decode(&with, true).unwrap(), "he");
        assert_eq!(tokenizer.token_to_id("<|im_end|>"), Some(259));
        assert_eq!(tokenizer.id_to_token(256).as_deref(), Some("he"));
    }

    #[test]
    fn eos_ids_are_the_union_of_generation_config_and_tokenizer_config() {
        let dir = tiny_folder(&[
            ("tokenizer_config.json", r#"{"bos_token": {"content": "<s>"}, "eos_token": "<|im_end|>"}"#),
            ("generation_config.json", r#"{"eos_token_id": [7, 259]}"#),
        ]);
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tokenizer.eos_token_ids(), [7, 259]);
        assert_eq!(tokenizer.bos_token(), Some("<s>"));
        assert_eq!(tokenizer.bos_token_id(), Some(258));
        assert_eq!(tokenizer.eos_token(), Some("<|im_end|>"));

        let only_config = tiny_folder(&[("tokenizer_config.json", r#"{"eos_token": "<|im_end|>"}"#)]);
        assert_eq!(Tokenizer::from_dir(only_config.path()).unwrap().eos_token_ids(), [259]);
    }

    #[test]
    fn the_chat_template_sees_the_configured_special_tokens() {
        let config = r#"{"eos_token": "<|im_end|>",
            "chat_template": "{% for m in messages %}{{ m.content + eos_token }}{% endfor %}"}"#;
        let dir = tiny_folder(&[("tokenizer_config.json", config)]);
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        let template = tokenizer.chat_template().unwrap();
        assert_eq!(template.path(), dir.path().join("tokenizer_config.json"));
        assert_eq!(template.render(&[Message::user("hello")], true).unwrap(), "hello<|im_end|>");
    }

    #[test]
    fn tokenizers_and_templates_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Tokenizer>();
        shareable::<ChatTemplate>();
    }

    #[test]
    fn a_folder_without_tokenizer_json_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = Tokenizer::from_dir(dir.path()).unwrap_err();
        assert_eq!(err.to_string(), format!("{}: no tokenizer.json found", dir.path().display()));
    }

    #[test]
    fn a_corrupt_tokenizer_json_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("tokenizer.json"), r#"{"model": {"type": "BPE", "vocab": "#).unwrap();
        let err = Tokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, DataError::InvalidTokenizer { .. }), "{err:?}");
        let prefix = format!("{}: not a valid tokenizer: ", dir.path().join("tokenizer.json").display());
        assert!(err.to_string().starts_with(&prefix), "{err}");
    }

    #[test]
    fn a_broken_chat_template_fails_loading_with_the_config_path() {
        let dir = tiny_folder(&[("tokenizer_config.json", r#"{"chat_template": "{% if messages %}"}"#)]);
        let err = Tokenizer::from_dir(dir.path()).unwrap_err();
        let prefix = format!("chat template of {}: syntax error", dir.path().join("tokenizer_config.json").display());
        assert!(err.to_string().starts_with(&prefix), "{err}");
    }

    #[test]
    fn ids_outside_the_vocabulary_decode_to_nothing_as_in_transformers() {
        let dir = tiny_folder(&[]);
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tokenizer.decode(&[256, 1_000_000, 257], false).unwrap(), "hell");
    }
}
