#!/usr/bin/env bash
# The test command: builds precept, makes sure the real model is imported, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p precept-cli
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
PRECEPT_BIN="$target_dir/release/precept" bash scripts/fetch-smollm2.sh
cargo test --release --locked --workspace
