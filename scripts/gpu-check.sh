#!/usr/bin/env bash
# GPU checks for a machine with a GPU and no registry access. Build the binary beforehand
# (`cargo build --release -p precept-cli --features cuda,wgpu`, stripped) and pass its path.
#
# 1. The same forward on CPU, CUDA and wgpu for a tiny random model: top ids and logits agree.
# 2. bench generate on CUDA for random-weight models of SmolLM2's shape and of a 1B Llama shape.
# Results go to $OUT (default ./gpu-results) as JSON lines.
#
# Usage: scripts/gpu-check.sh PRECEPT_BIN
set -uo pipefail
cd "$(dirname "$0")/.."
bin="${1:?path to a precept binary built with --features cuda,wgpu}"
out="${OUT:-gpu-results}"
work="$(mktemp -d)"
mkdir -p "$out"

tiny="$work/tiny"
mkdir -p "$tiny"
cat > "$tiny/config.json" <<'JSON'
{"model_type":"llama","vocab_size":512,"hidden_size":128,"intermediate_size":256,"num_hidden_layers":2,
 "num_attention_heads":8,"num_key_value_heads":2,"max_position_embeddings":256,"rope_theta":10000.0,
 "tie_word_embeddings":false,"rms_norm_eps":1e-5}
JSON
"$bin" random-weights --config "$tiny/config.json" --out "$tiny" --seed 1 -q
ids="$(seq -s, 1 7 200)"
for device in cpu cuda wgpu; do
  "$bin" logits --model "$tiny" --ids "$ids" --top 20 --json -q --device "$device" \
    | python3 -c "import json,sys; d=json.load(sys.stdin); d['device']='$device'; print(json.dumps(d))" \
    >> "$out/tiny_logits.jsonl" || echo "{\"device\": \"$device\", \"error\": true}" >> "$out/tiny_logits.jsonl"
done
python3 - "$out/tiny_logits.jsonl" <<'PY' | tee "$out/tiny_agreement.json"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = next(r for r in rows if r["device"] == "cpu")
ref = dict(zip(cpu["top_ids"], cpu["top_logits"]))
for r in rows:
    if r is cpu:
        print(json.dumps({"device": "cpu", "reference": True})); continue
    if r.get("error"):
        print(json.dumps({"device": r["device"], "error": True})); continue
    diffs = [abs(ref[i] - v) for i, v in zip(r["top_ids"], r["top_logits"]) if i in ref]
    print(json.dumps({"device": r["device"], "top10_equal": r["top_ids"][:10] == cpu["top_ids"][:10],
                      "max_abs_diff_top20": max(diffs) if diffs else None,
                      "logprob_diff": abs(r["sequence_logprob"] - cpu["sequence_logprob"])}))
PY

for shape in smollm2-135m llama-3.2-1b; do
  model="$work/$shape"
  "$bin" random-weights --config "configs/shapes/$shape.json" --out "$model" --device cuda -q
  for batch in 1 16; do
    "$bin" bench generate --model "$model" --device cuda --batch "$batch" --prompt-tokens 32 --new-tokens 128 --json -q \
      | python3 -c "import json,sys; d=json.load(sys.stdin); d['shape']='$shape'; d.pop('first_row_ids'); print(json.dumps(d))" \
      >> "$out/bench_cuda.jsonl"
  done
  rm -rf "$model"
done
cat "$out/bench_cuda.jsonl"
