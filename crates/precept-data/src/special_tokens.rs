//! The special-token strings a model folder declares in `tokenizer_config.json`.

/// Special tokens as text (`"<|im_end|>"`), the way chat templates see them as
/// `bos_token`, `eos_token`, `unk_token` and `pad_token`.
///
/// A token that is `None` is left undefined in templates, as transformers does.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpecialTokens {
    /// Beginning-of-sequence token.
    pub bos: Option<String>,
    /// End-of-sequence token.
    pub eos: Option<String>,
    /// Unknown-token placeholder.
    pub unk: Option<String>,
    /// Padding token.
    pub pad: Option<String>,
}

impl SpecialTokens {
    /// The tokens under the names templates use, skipping absent ones.
    pub(crate) fn template_variables(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [("bos_token", &self.bos), ("eos_token", &self.eos), ("unk_token", &self.unk), ("pad_token", &self.pad)]
            .into_iter()
            .filter_map(|(name, token)| token.as_deref().map(|token| (name, token)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_tokens_are_not_template_variables() {
        let tokens = SpecialTokens { eos: Some("</s>".into()), ..SpecialTokens::default() };
        assert_eq!(tokens.template_variables().collect::<Vec<_>>(), [("eos_token", "</s>")]);
    }
}
