#!/usr/bin/env bash
# Optional check: `precept constitute` and `precept eval` against llama.cpp's OpenAI-compatible
# server (llama-cpp-python[server]) on SmolLM2-135M-Instruct, including option probabilities read
# from its top_logprobs (AI feedback and the model judge).
#
#   PYTHON=path/to/python scripts/check-remote-llamacpp.sh
#
# Needs: target/release/precept, checkpoints/smollm2-135m-instruct, an F32 GGUF of the same
# weights in $GGUF, and llama-cpp-python[server] importable by $PYTHON.
set -euo pipefail
gguf=${GGUF:-$HOME/.cache/precept/SmolLM2-135M-Instruct.F32.gguf}
python=${PYTHON:-python3}
precept=target/release/precept
work=$(mktemp -d)
port=${PORT:-8091}
url=http://127.0.0.1:$port
# logits_all: llama-cpp-python returns logprobs only with it.
$python -m llama_cpp.server --model "$gguf" --model_alias smollm2 --host 127.0.0.1 --port "$port" \
  --n_ctx 2048 --n_threads "$(nproc)" --logits_all true >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 120); do curl -sf "$url/v1/models" >/dev/null && break; sleep 1; done

head -4 data/redteam/harmful.jsonl >"$work/prompts.jsonl"
$precept constitute --constitution constitutions/harmless.toml --prompts "$work/prompts.jsonl" \
  --remote "$url" --remote-model smollm2 --remote-concurrency 2 --feedback --max-new-tokens 64 \
  --out "$work/constitute"
python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); assert m["complete"] and m["counts"]["finished"] == 4, m' \
  "$work/constitute/manifest.json"

# Tuned side and model judge on the server, base side local: exit code 0 (pass) or 4
# (underpowered) are both fine here; 1 (an error) is not.
set +e
$precept eval --suite suites/harmful-direct.toml --remote "$url" --remote-model smollm2 \
  --remote-concurrency 2 --baseline checkpoints/smollm2-135m-instruct --no-cache --batch-size 16 \
  --judge model --judge-remote "$url" --judge-remote-model smollm2 --out "$work/eval"
code=$?
set -e
[ "$code" = 0 ] || [ "$code" = 4 ] || { echo "eval failed with exit code $code" >&2; exit 1; }
echo "constitute and eval against llama.cpp's server: ok"
