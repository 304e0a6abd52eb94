//! `precept eval import`: other projects' prompt files into eval cases JSONL.

use anyhow::{Context, Result};
use precept_data::{write_atomic, Expected};
use precept_eval::{cases_to_jsonl, import_cases, ImportFormat, ImportOptions};

use super::args::{ExpectedArg, ImportArgs, ImportFrom};

/// Imports `args.file` into `args.out`.
pub fn run(args: &ImportArgs) -> Result<()> {
    let options = ImportOptions {
        format: match args.from {
            ImportFrom::Jsonl => ImportFormat::Jsonl,
            ImportFrom::Csv => ImportFormat::Csv,
            ImportFrom::Txt => ImportFormat::Txt,
        },
        category: args.category.clone(),
        expected: match args.expected {
            ExpectedArg::Refuse => Expected::Refuse,
            ExpectedArg::Comply => Expected::Comply,
        },
        prompt_field: args.prompt_column.clone(),
        id_field: args.id_column.clone(),
        category_field: args.category_column.clone(),
        id_prefix: args.file.file_stem().unwrap_or_default().to_string_lossy().into_owned(),
    };
    let cases = import_cases(&args.file, &options)?;
    write_atomic(&args.out, cases_to_jsonl(&cases).as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    tracing::info!("wrote {} cases to {}", cases.len(), args.out.display());
    Ok(())
}
