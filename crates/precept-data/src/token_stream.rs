//! [`TokenStream`]: turns generated token ids into text as they arrive.
//!
//! Decoding each token alone garbles text: byte-level BPE splits one character over several
//! tokens ("🦀" can be four), and SentencePiece-style decoders drop a word's leading space when
//! it is decoded by itself. The stream decodes a short window of recent ids instead, hands out
//! only text that grew and does not end in an incomplete character (U+FFFD), then slides the
//! window so each step costs the same however long the generation runs.

use crate::error::{DataError, Result};
use crate::tokenizer::Tokenizer;

/// An incremental decoder, made by [`Tokenizer::stream`].
///
/// The fragments returned by [`step`](Self::step), followed by what [`finish`](Self::finish)
/// returns, concatenate to the decoding of all ids together.
#[derive(Debug)]
pub struct TokenStream<'a> {
    tokenizer: &'a Tokenizer,
    skip_special_tokens: bool,
    /// Recent ids: `ids[..emitted_len]` is context already handed out, the rest is pending.
    ids: Vec<u32>,
    /// The decoding of `ids[..emitted_len]`.
    emitted: String,
    emitted_len: usize,
}

impl<'a> TokenStream<'a> {
    pub(crate) fn new(tokenizer: &'a Tokenizer, skip_special_tokens: bool) -> Self {
        Self { tokenizer, skip_special_tokens, ids: Vec::new(), emitted: String::new(), emitted_len: 0 }
    }

    /// Adds the next generated id and returns the text it completes, or `None` while a
    /// character is still incomplete (or the token adds no text, like a skipped special token).
    ///
    /// # Errors
    /// [`DataError::Decode`] from the tokenizer, and [`DataError::StreamRewrite`] if a decoder
    /// changes text it already produced.
    pub fn step(&mut self, id: u32) -> Result<Option<String>> {
        self.ids.push(id);
        let text = self.tokenizer.decode(&self.ids, self.skip_special_tokens)?;
        if text.len() <= self.emitted.len() || text.ends_with(char::REPLACEMENT_CHARACTER) {
            return Ok(None);
        }
        let fragment = self.new_text(id, text)?;
        // Keep the ids just emitted as context for the next step, drop older ones.
        self.ids.drain(..self.emitted_len);
        self.emitted = self.tokenizer.decode(&self.ids, self.skip_special_tokens)?;
        self.emitted_len = self.ids.len();
        Ok(Some(fragment))
    }

    /// Ends the stream, returning any text still held back: an incomplete character comes out
    /// as U+FFFD, exactly as [`Tokenizer::decode`] would show it.
    pub fn finish(self) -> Result<Option<String>> {
        let Some(&last) = self.ids.last() else {
            return Ok(None);
        };
        let text = self.tokenizer.decode(&self.ids, self.skip_special_tokens)?;
        if text.len() <= self.emitted.len() {
            return Ok(None);
        }
        self.new_text(last, text).map(Some)
    }

    /// The part of `text` after what was already emitted.
    fn new_text(&self, id: u32, text: String) -> Result<String> {
        match text.strip_prefix(self.emitted.as_str()) {
            Some(fragment) => Ok(fragment.to_owned()),
            None => Err(DataError::StreamRewrite { id, emitted: self.emitted.clone(), decoded: text }),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokenizers::decoders::metaspace::Metaspace;
    use tokenizers::models::wordlevel::WordLevel;

    use super::*;
    use crate::tokenizer::tests::tiny_folder;

    /// Feeds `ids` one by one, returning every step's result and the final flush.
    fn stream_all(tokenizer: &Tokenizer, ids: &[u32], skip: bool) -> (Vec<Option<String>>, Option<String>) {
        let mut stream = tokenizer.stream(skip);
        let steps = ids.iter().map(|&id| stream.step(id).unwrap()).collect();
        (steps, stream.finish().unwrap())
    }

    #[test]
    fn a_character_split_across_byte_tokens_is_emitted_once_complete() {
        let dir = tiny_folder(&[]);
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        let ids = tokenizer.encode("é🦀", false).unwrap();
        assert_eq!(ids.len(), 6);
        let (steps, rest) = stream_all(&tokenizer, &ids, false);
        let some = |text: &str| Some(text.to_owned());
        assert_eq!(steps, [None, some("é"), None, None, None, some("🦀")]);
        assert_eq!(rest, None);
    }

    #[test]
    fn streamed_fragments_concatenate_to_the_full_decoding() {
        let dir = tiny_folder(&[]);
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        let text = "hello café — 你好，世界! 😀👍🏽 ∑∫√";
        let ids = tokenizer.encode(text, true).unwrap();
        for skip in [false, true] {
            let (steps, rest) = stream_all(&tokenizer, &ids, skip);
            let streamed: String = steps.into_iter().chain([rest]).flatten().collect();
            assert_eq!(streamed, tokenizer.decode(&ids, skip).unwrap());
        }
        assert!(tokenizer.decode(&ids, false).unwrap().starts_with("<s>hello"));
    }

    #[test]
    fn finish_flushes_an_incomplete_character_as_decode_shows_it() {
        let dir = tiny_folder(&[]);
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();
        let ids = tokenizer.encode("a🦀", false).unwrap();
        let cut = &ids[..3];
        let (steps, rest) = stream_all(&tokenizer, cut, false);
        assert_eq!(steps, [Some("a".to_owned()), None, None]);
        assert_eq!(rest.as_deref(), Some("\u{FFFD}"));
        assert_eq!(tokenizer.decode(cut, false).unwrap(), "a\u{FFFD}");
    }

    #[test]
    fn leading_spaces_survive_decoders_that_strip_them_from_a_lone_token() {
        let vocab = [("<unk>", 0), ("▁This", 1), ("▁is", 2)].into_iter().map(|(token, id)| (token.to_owned(), id));
        let model = WordLevel::builder().vocab(vocab.collect()).unk_token("<unk>".into()).build().unwrap();
        let mut hf = tokenizers::Tokenizer::new(model);
        hf.with_decoder(Some(Metaspace::default()));
        let dir = tempfile::tempdir().unwrap();
        hf.save(dir.path().join("tokenizer.json"), false).unwrap();
        let tokenizer = Tokenizer::from_dir(dir.path()).unwrap();

        assert_eq!(tokenizer.decode(&[2], false).unwrap(), "is");
        let (steps, _) = stream_all(&tokenizer, &[1, 2, 2], false);
        let texts: Vec<String> = steps.into_iter().flatten().collect();
        assert_eq!(texts, ["This", " is", " is"]);
    }
}
