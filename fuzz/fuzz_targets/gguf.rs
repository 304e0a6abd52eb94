//! A GGUF file of arbitrary bytes: opening it, exporting its config and reading every tensor is
//! an error or a success, never a panic or an unbounded allocation.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("model.gguf");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(file) = precept_gguf::GgufFile::open(&path) else { return };
    let _ = precept_gguf::config_json(&file);
    let _ = precept_gguf::tokenizer_json(file.metadata());
    for tensor in file.tensors() {
        if file.check_supported(tensor).is_ok() {
            let _ = file.tensor_bytes(tensor);
        }
    }
});
