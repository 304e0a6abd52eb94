#!/usr/bin/env bash
# Seed corpora for the cargo-fuzz targets (fuzz/), from the repository's own fixtures:
# fuzz/corpus/<target>/ holds a few valid inputs each target starts mutating from.
set -euo pipefail
cd "$(dirname "$0")/.."
corpus=fuzz/corpus
seed() { # seed TARGET FILE…
  local target=$1
  shift
  mkdir -p "$corpus/$target"
  for file in "$@"; do
    [ -f "$file" ] && head -c 65536 "$file" >"$corpus/$target/$(basename "$file")"
  done
}
seed jsonl data/sft/*.jsonl data/prefs/*.jsonl crates/precept-data/tests/fixtures/degenerate_replies.jsonl
seed settings_toml configs/*.toml
seed constitution constitutions/*.toml
seed chat_template crates/precept-data/tests/fixtures/*.jinja
seed safetensors_header crates/precept-train/tests/fixtures/tiny-llama/model.safetensors
# No GGUF file is checked in; a real one (`precept import gguf`'s input) makes a good seed.
for gguf in "${PRECEPT_FUZZ_GGUF:-}" checkpoints/*.gguf; do
  [ -n "$gguf" ] && [ -f "$gguf" ] && seed gguf "$gguf"
done
mkdir -p "$corpus/gguf"
printf 'GGUF\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00' >"$corpus/gguf/empty-v3.gguf"
echo "seeded $(find "$corpus" -type f | wc -l) files under $corpus/"
