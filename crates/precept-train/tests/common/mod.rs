//! Helpers of the training tests: a tiny model with SmolLM2's tokenizer, the serial lock,
//! metrics files, folder copies.

#![allow(dead_code)] // each test file uses its own subset
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test

pub mod golden;

use std::path::{Path, PathBuf};

use burn::backend::{Autodiff, Flex};
use precept_model::checkpoint::{load_model, save_model, SaveOptions};
use precept_model::lora::Trainable;
use precept_model::{LlamaConfig, LlamaForCausalLM};
use serde_json::Value;

/// The training backend of the tests.
pub type A = Autodiff<Flex>;

/// The backend's random generator is global: tests that seed it and draw from it (weight init,
/// LoRA init, dropout) run one at a time so each sees only its own draws.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

pub fn root() -> PathBuf {
    package_dir().join("../..")
}

/// A tiny random model (2 layers, width 32) with SmolLM2's vocabulary, tokenizer and template.
pub fn tiny_model_dir(dir: &Path) -> PathBuf {
    let smollm2 = std::env::var_os("PRECEPT_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or(root().join("checkpoints/smollm2-135m-instruct"));
    assert!(smollm2.join("tokenizer.json").is_file(), "{}: run scripts/fetch-smollm2.sh first", smollm2.display());
    let config = LlamaConfig { vocab_size: 49152, ..LlamaConfig::tiny() }.with_tie_word_embeddings(true);
    <Flex as burn::tensor::backend::Backend>::seed(&Default::default(), 3);
    let model = config.init::<Flex>(&Default::default());
    let out = dir.join("tiny");
    save_model(&model, &config, &out, &SaveOptions { copy_from: Some(&smollm2), ..SaveOptions::default() }).unwrap();
    out
}

pub fn metrics(run: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// Metrics without the wall-clock field, which differs between runs.
pub fn comparable(records: Vec<Value>) -> Vec<Value> {
    records
        .into_iter()
        .map(|mut record| {
            record.as_object_mut().unwrap().remove("tokens_per_second");
            record
        })
        .collect()
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// The checkpoint of the golden tests (`tests/fixtures/tiny-llama`), every weight trainable.
pub fn tiny_llama() -> LlamaForCausalLM<A> {
    let dir = package_dir().join("tests/fixtures/tiny-llama");
    load_model::<A>(&dir, &Default::default()).unwrap().1.set_trainable(Trainable::All)
}

/// This package's folder, read when the test runs: a build shared by clones in other folders
/// (one cargo target directory for all of them) would otherwise read another clone's files.
pub fn package_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
}
