//! A safetensors file of arbitrary bytes: opening it and reading each tensor as float32 is an
//! error or a success, never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use precept_model::checkpoint::SafetensorsFiles;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("model.safetensors");
    if std::fs::write(&path, data).is_err() {
        return;
    }
    let Ok(files) = SafetensorsFiles::open_file(&path) else { return };
    let keys: Vec<String> = files.keys().map(str::to_owned).collect();
    for key in keys {
        let _ = files.read_f32(&key, &[]);
    }
    let _ = files.layer_count();
});
