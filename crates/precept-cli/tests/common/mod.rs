//! Helpers shared by the end-to-end tests: run the built binary, locate the real model.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs `precept` with `args` and returns its output.
pub fn precept(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(args)
        .env("PRECEPT_LOG", "warn")
        .output()
        .expect("the precept binary runs")
}

/// Runs `precept pipeline --config config` with `extra` flags from the repository root, logging
/// at `info` (the stage decisions), and returns its output.
pub fn pipeline(config: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(["pipeline", "--config", config.to_str().expect("UTF-8 path")])
        .args(extra)
        .current_dir(repo_root())
        .env("PRECEPT_LOG", "info")
        .output()
        .expect("the precept binary runs")
}

/// Runs `precept` with its stdout a pipe whose reader has gone before the program starts
/// (`precept … | head -c 0`), and returns its output.
pub fn precept_with_closed_stdout(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(args)
        .env("PRECEPT_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the precept binary runs");
    drop(child.stdout.take());
    child.wait_with_output().expect("precept ends")
}

/// Runs `precept`, asserts success and parses stdout as one JSON value.
pub fn precept_json(args: &[&str]) -> serde_json::Value {
    let out = precept(args);
    assert!(out.status.success(), "precept {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

/// Runs `precept`, asserts a clean failure (exit code 1, not a panic) and returns stderr.
pub fn precept_error(args: &[&str]) -> String {
    let out = precept(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(1), "precept {args:?} should fail cleanly; stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "precept {args:?} panicked: {stderr}");
    stderr
}

/// The imported SmolLM2-135M-Instruct folder (`scripts/fetch-smollm2.sh` makes it).
pub fn smollm2_dir() -> PathBuf {
    let dir = std::env::var_os("PRECEPT_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| package_dir().join("../../checkpoints/smollm2-135m-instruct"));
    assert!(
        dir.join("model.safetensors").is_file(),
        "{} has no model.safetensors: run scripts/fetch-smollm2.sh first",
        dir.display()
    );
    dir
}

/// One reference figure set from `tests/fixtures/oracle/`.
pub fn oracle(name: &str) -> serde_json::Value {
    let path = package_dir().join(format!("tests/fixtures/oracle/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).expect("oracle fixture")).expect("oracle JSON")
}

/// A JSON array of numbers as `u32`s.
pub fn ids(value: &serde_json::Value) -> Vec<u32> {
    value.as_array().expect("array").iter().map(|v| v.as_u64().expect("id") as u32).collect()
}

/// A JSON array of numbers as `f64`s.
pub fn floats(value: &serde_json::Value) -> Vec<f64> {
    value.as_array().expect("array").iter().map(|v| v.as_f64().expect("number")).collect()
}

/// A random tiny model (2 layers, width 32) with SmolLM2's vocabulary, tokenizer and chat
/// template, written into `dir/tiny-chat` by `precept random-weights`.
pub fn tiny_chat_model(dir: &std::path::Path) -> PathBuf {
    let out = dir.join("tiny-chat");
    std::fs::create_dir_all(&out).expect("create the model folder");
    for file in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(smollm2_dir().join(file), out.join(file)).expect("copy SmolLM2's tokenizer files");
    }
    let config = r#"{"model_type":"llama","vocab_size":49152,"hidden_size":32,"intermediate_size":48,
      "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":512,
      "rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":true}"#;
    std::fs::write(out.join("config.json"), config).expect("write config.json");
    let path = out.to_str().expect("UTF-8 path");
    let made = precept(&["random-weights", "--config", &format!("{path}/config.json"), "--out", path]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    out
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    package_dir().join("../..")
}

/// Starts `precept args` in `dir`, waits until `ready` exists (a checkpoint folder), and kills the
/// process with SIGKILL.
///
/// # Panics
/// When `ready` does not appear within ten minutes or the run ends before it does.
pub fn kill_when_ready(args: &[String], dir: &std::path::Path, ready: &std::path::Path) {
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = Command::new(env!("CARGO_BIN_EXE_precept"))
        .args(args)
        .current_dir(dir)
        .env("PRECEPT_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the precept binary runs");
    let started = Instant::now();
    while !ready.exists() {
        assert!(started.elapsed() < Duration::from_secs(600), "{} did not appear", ready.display());
        assert!(child.try_wait().expect("the child's status").is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("the killed child is reaped");
}

/// A constitution in [`tiny_word_model`]'s vocabulary: two principles and one comparison.
pub const TINY_CONSTITUTION: &str = r#"
name = "tiny"
version = "1"
[[principle]]
id = "good"
critique = "is it good"
revision = "fix it"
[[principle]]
id = "why"
critique = "why is it bad"
revision = "fix why"
weight = 2
[[comparison]]
id = "better"
question = "is it good"
"#;

/// A random tiny model (2 layers, width 64) over a 16-word word-level vocabulary whose `<end>`
/// (id 0) ends a turn, written into `dir` by `precept random-weights --seed 5`.
pub fn tiny_word_model(dir: &std::path::Path) -> PathBuf {
    const CONFIG: &str = r#"{"model_type":"llama","vocab_size":16,"hidden_size":64,"intermediate_size":128,
      "num_hidden_layers":2,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":512,
      "rms_norm_eps":1e-5,"rope_theta":10000.0,"tie_word_embeddings":true}"#;
    const TOKENIZER: &str = r#"{"version":"1.0","truncation":null,"padding":null,
      "added_tokens":[{"id":0,"content":"<end>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],
      "normalizer":null,"pre_tokenizer":{"type":"Whitespace"},"post_processor":null,"decoder":null,
      "model":{"type":"WordLevel","vocab":{"<end>":0,"user":1,"assistant":2,"system":3,"yes":4,"no":5,"maybe":6,"is":7,
      "it":8,"good":9,"bad":10,"fix":11,"why":12,"(":13,")":14,"[UNK]":15},"unk_token":"[UNK]"}}"#;
    const TOKENIZER_CONFIG: &str = r#"{"chat_template":"{% for m in messages %}{{ m.role }} {{ m.content }} <end> {% endfor %}{% if add_generation_prompt %}assistant {% endif %}","eos_token":"<end>"}"#;
    std::fs::create_dir_all(dir).expect("create the model folder");
    std::fs::write(dir.join("config.json"), CONFIG).expect("write config.json");
    std::fs::write(dir.join("tokenizer.json"), TOKENIZER).expect("write tokenizer.json");
    std::fs::write(dir.join("tokenizer_config.json"), TOKENIZER_CONFIG).expect("write tokenizer_config.json");
    let path = dir.to_str().expect("UTF-8 path");
    let made = precept(&["random-weights", "--config", &format!("{path}/config.json"), "--out", path, "--seed", "5"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    dir.to_path_buf()
}

/// A running `precept serve` and its base URL; killed (SIGKILL) when dropped.
pub struct Served {
    /// The server process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Served {
    /// Starts `precept serve --model model --addr 127.0.0.1:0 --served-model-name name` and waits
    /// until it logs its address.
    ///
    /// # Panics
    /// When the server exits or logs no address within a minute.
    pub fn start(model: &std::path::Path, name: &str) -> Self {
        Self::start_with(model, name, &[])
    }

    /// [`Served::start`] with `extra` flags.
    pub fn start_with(model: &std::path::Path, name: &str, extra: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_precept"))
            .args(["serve", "--model", model.to_str().expect("UTF-8 path"), "--addr", "127.0.0.1:0"])
            .args(["--served-model-name", name])
            .args(extra)
            .env("PRECEPT_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the precept binary runs");
        let stderr = child.stderr.take().expect("piped stderr");
        let (found, url) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep reading so the server never blocks on a full pipe.
            for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(at) = line.find("http://") {
                    let address: String = line[at..].chars().take_while(|c| !c.is_whitespace()).collect();
                    let _ = found.send(address.trim_end_matches("/v1").to_owned());
                }
            }
        });
        let url = url.recv_timeout(std::time::Duration::from_secs(60)).expect("the server logs its address");
        Self { child, url }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// This package's folder, read when the test runs: a build shared by clones in other folders
/// (one cargo target directory for all of them) would otherwise read another clone's files.
pub fn package_dir() -> PathBuf {
    PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned()))
}
