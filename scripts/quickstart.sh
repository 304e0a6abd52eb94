#!/usr/bin/env bash
# From a fresh clone to a safer SmolLM2-135M-Instruct on this CPU: builds precept, fetches the
# model, and runs constitute → sft → dpo → eval (configs/quickstart.toml) into runs/quickstart.
# Rerunning skips the finished stages and resumes a killed one. Extra arguments go to
# `precept pipeline` (e.g. --from dpo, or --config configs/full.toml on a GPU with --device cuda).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release --locked -p precept-cli
target_dir="$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
export PRECEPT_BIN="$target_dir/release/precept"
bash scripts/fetch-smollm2.sh
status=0
"$PRECEPT_BIN" pipeline --config configs/quickstart.toml "$@" || status=$?
# 0: the gate passed; 2, 3, 4: it ran and reports a regression or too little data.
case "$status" in
  0|2|3|4) echo "report: runs/quickstart/report.html" ;;
esac
exit "$status"
