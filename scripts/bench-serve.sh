#!/usr/bin/env bash
# Load test: `precept serve` and llama.cpp's OpenAI-compatible server (llama-cpp-python[server])
# on SmolLM2-135M-Instruct, same machine, same requests, one after the other.
#
#   scripts/bench-serve.sh [CLIENTS] [REQUESTS] [MAX_TOKENS]
#
# Needs: target/release/precept, checkpoints/smollm2-135m-instruct (scripts/fetch-smollm2.sh),
# an F32 GGUF of the same weights in $GGUF, and python with llama-cpp-python[server] in $PYTHON.
set -euo pipefail
clients=${1:-8}
requests=${2:-32}
max_tokens=${3:-64}
model=${MODEL:-checkpoints/smollm2-135m-instruct}
gguf=${GGUF:-$HOME/.cache/precept/SmolLM2-135M-Instruct.F32.gguf}
python=${PYTHON:-python3}
precept=target/release/precept
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true' EXIT

wait_for() { # URL
  for _ in $(seq 1 120); do curl -sf "$1/v1/models" >/dev/null && return 0; sleep 1; done
  echo "no server at $1" >&2; return 1
}

$precept serve --model "$model" --addr 127.0.0.1:8090 --served-model-name smollm2 --quiet &
pids+=($!)
wait_for http://127.0.0.1:8090
echo "precept serve:"
$precept bench serve --url http://127.0.0.1:8090 --model smollm2 --clients "$clients" \
  --requests "$requests" --max-tokens "$max_tokens" --json
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true

$python -m llama_cpp.server --model "$gguf" --model_alias smollm2 --host 127.0.0.1 --port 8091 \
  --n_ctx 2048 --n_threads "$(nproc)" >/dev/null 2>&1 &
pids+=($!)
wait_for http://127.0.0.1:8091
echo "llama.cpp server:"
$precept bench serve --url http://127.0.0.1:8091 --model smollm2 --clients "$clients" \
  --requests "$requests" --max-tokens "$max_tokens" --json
