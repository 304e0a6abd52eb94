//! `precept tokenize`: token ids of a text, as the model sees it.

use anyhow::Result;
use serde::Serialize;

use crate::args::TokenizeArgs;
use crate::loaded::TextModel;
use crate::output::{outln, print_json};

#[derive(Serialize)]
struct Tokenized<'a> {
    text: &'a str,
    ids: &'a [u32],
    tokens: Vec<String>,
}

/// Prints the ids (and token strings) of `--text`.
pub fn run(args: &TokenizeArgs) -> Result<()> {
    let text_model = TextModel::open(&args.common.model)?;
    let text = text_model.prompt_text(&args.text, args.common.chat)?;
    let ids = text_model.encode(&text)?;
    let tokens = ids.iter().map(|&id| text_model.tokenizer.id_to_token(id).unwrap_or_default()).collect();
    let result = Tokenized { text: &text, ids: &ids, tokens };
    if args.common.json {
        return print_json(&result);
    }
    for (id, token) in result.ids.iter().zip(&result.tokens) {
        outln!("{id:>8}  {token}")?;
    }
    outln!("{} tokens", result.ids.len())?;
    Ok(())
}
