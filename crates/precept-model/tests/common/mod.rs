//! What the real-model tests share.

use std::path::PathBuf;

use burn::backend::Flex;
use precept_model::LocalGenerator;

/// SmolLM2-135M-Instruct from `$PRECEPT_SMOLLM2`, else the folder `scripts/fetch-smollm2.sh`
/// imports.
pub fn smollm2() -> LocalGenerator<Flex> {
    let dir = std::env::var_os("PRECEPT_SMOLLM2").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
            .join("../../checkpoints/smollm2-135m-instruct")
    });
    assert!(dir.join("model.safetensors").is_file(), "{}: run scripts/fetch-smollm2.sh first", dir.display());
    LocalGenerator::open(&dir, &Default::default(), None).unwrap()
}
