//! `precept import gguf`: a GGUF file into a Hugging Face folder.

use std::path::Path;

use anyhow::{Context, Result};

/// Imports `file` into `out`.
pub fn gguf(file: &Path, out: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    let summary = precept_gguf::import_gguf(file, out)
        .with_context(|| format!("importing {} into {}", file.display(), out.display()))?;
    tracing::info!("imported {} in {:.1}s: {summary}", file.display(), started.elapsed().as_secs_f64());
    Ok(())
}
