#!/usr/bin/env bash
# Builds precept, fetches SmolLM2-135M-Instruct and asks it a question.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p precept-cli
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
export PRECEPT_BIN="$target_dir/release/precept"
bash scripts/fetch-smollm2.sh
"$PRECEPT_BIN" generate --model checkpoints/smollm2-135m-instruct --chat \
  --prompt "${1:-Give me three tips for writing clear commit messages.}" --max-new-tokens 200
