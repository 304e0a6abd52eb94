#!/usr/bin/env bash
# GPU checks for a machine with a GPU and no registry access. Build the binary beforehand
# (`cargo build --release -p precept-cli --features cuda,wgpu`, stripped) and pass its path.
#
# 1. agree: the same forward on CPU, CUDA and wgpu for a tiny random model and a random model of
#    SmolLM2's shape (top ids, logits, sequence log-probability), and the same greedy tokens.
# 2. generate: bench generate on CUDA and wgpu (batch 1 and 16) for random-weight models of
#    SmolLM2's shape, and on CUDA of a 1B Llama shape.
# 3. train: bench train on CUDA (LoRA, full, DPO with a live reference; LoRA on the 1B shape),
#    and 12 steps of `precept sft` on the shipped data.
# Results go to $OUT (default ./gpu-results): agreement.jsonl, generate.jsonl, train.jsonl and
# log.txt (everything printed). The greedy check and the SFT run need SmolLM2's tokenizer files
# (tokenizer.json, tokenizer_config.json) in $TOKENIZER_DIR (default
# checkpoints/smollm2-135m-instruct); without them they are skipped.
#
# Usage: scripts/gpu-check.sh PRECEPT_BIN [agree] [generate] [train]   (default: all three)
set -uo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:?path to a precept binary built with --features cuda,wgpu}")"
shift
parts=" ${*:-agree generate train} "
out="${OUT:-gpu-results}"
work="$(mktemp -d)"
mkdir -p "$out"
exec > >(tee -a "$out/log.txt") 2>&1

# Runs a precept command that prints one JSON object and appends it to $out/$1 with `tags`.
record() {
  local file="$1" tags="$2" json
  shift 2
  echo "## precept $*"
  if ! json="$("$bin" "$@" --json)"; then
    echo "## failed"
    return 1
  fi
  python3 -c "import json,sys; d=json.load(sys.stdin); d.update($tags); d.pop('first_row_ids',None); print(json.dumps(d))" \
    <<<"$json" | tee -a "$out/$file"
}

tiny="$work/tiny"
mkdir -p "$tiny"
cat > "$tiny/config.json" <<'JSON'
{"model_type":"llama","vocab_size":512,"hidden_size":128,"intermediate_size":256,"num_hidden_layers":2,
 "num_attention_heads":8,"num_key_value_heads":2,"max_position_embeddings":256,"rope_theta":10000.0,
 "tie_word_embeddings":false,"rms_norm_eps":1e-5}
JSON
"$bin" random-weights --config "$tiny/config.json" --out "$tiny" --seed 1 -q
smol="$work/smollm2-135m"
"$bin" random-weights --config configs/shapes/smollm2-135m.json --out "$smol" --seed 1 -q
tokenizer_dir="${TOKENIZER_DIR:-checkpoints/smollm2-135m-instruct}"
if cp "$tokenizer_dir"/{tokenizer.json,tokenizer_config.json} "$smol"/ 2>/dev/null; then tokenizer=yes; else
  tokenizer=""; echo "no tokenizer files in $tokenizer_dir: skipping the greedy check and the SFT run"; fi

if [[ "$parts" == *" agree "* ]]; then
  for device in cpu cuda wgpu; do
    record logits.jsonl "{'device':'$device','model':'tiny'}" logits --model "$tiny" --ids "$(seq -s, 1 7 200)" --top 64 --device "$device"
    record logits.jsonl "{'device':'$device','model':'smollm2-135m'}" logits --model "$smol" \
      --ids "$(seq -s, 11 389 37000)" --top 64 --device "$device"
    [ -n "$tokenizer" ] && record logits.jsonl "{'device':'$device','model':'smollm2-135m','greedy':True}" \
      generate --model "$smol" --prompt "The safest way to store chemicals at home is" --max-new-tokens 48 \
      --temperature 0 --device "$device"
  done
  python3 - "$out/logits.jsonl" <<'PY' | tee "$out/agreement.jsonl"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for model in ["tiny", "smollm2-135m"]:
    for greedy in [False, True]:
        same = [r for r in rows if r["model"] == model and r.get("greedy", False) == greedy]
        cpu = next((r for r in same if r["device"] == "cpu"), None)
        for r in same:
            if cpu is None or r is cpu:
                continue
            if greedy:
                print(json.dumps({"model": model, "device": r["device"], "greedy_ids_equal": r["generated_ids"] == cpu["generated_ids"]}))
                continue
            ref, got = dict(zip(cpu["top_ids"], cpu["top_logits"])), dict(zip(r["top_ids"], r["top_logits"]))
            shared = [i for i in got if i in ref]
            print(json.dumps({"model": model, "device": r["device"], "top10_equal": r["top_ids"][:10] == cpu["top_ids"][:10],
                              "shared_top64": len(shared), "max_abs_diff_top64": max(abs(ref[i] - got[i]) for i in shared),
                              "largest_logit": max(abs(v) for v in ref.values()),
                              "logprob_diff": abs(r["sequence_logprob"] - cpu["sequence_logprob"])}))
PY
fi

llama1b="$work/llama-3.2-1b"
if [[ "$parts" == *" generate "* || "$parts" == *" train "* ]]; then
  "$bin" random-weights --config configs/shapes/llama-3.2-1b.json --out "$llama1b" --seed 1 -q
fi

if [[ "$parts" == *" generate "* ]]; then
  for batch in 1 16; do
    for device in cuda wgpu; do
      record generate.jsonl "{'device':'$device','shape':'smollm2-135m'}" bench generate --model "$smol" \
        --device "$device" --batch "$batch" --prompt-tokens 32 --new-tokens 128
    done
    record generate.jsonl "{'device':'cuda','shape':'llama-3.2-1b'}" bench generate --model "$llama1b" \
      --device cuda --batch "$batch" --prompt-tokens 32 --new-tokens 128
  done
fi

if [[ "$parts" == *" train "* ]]; then
  record train.jsonl "{'device':'cuda','shape':'smollm2-135m'}" bench train --model "$smol" --device cuda --tuning lora --repeat 5
  record train.jsonl "{'device':'cuda','shape':'smollm2-135m'}" bench train --model "$smol" --device cuda --tuning full --repeat 5
  record train.jsonl "{'device':'cuda','shape':'smollm2-135m'}" bench train --model "$smol" --device cuda --tuning lora --dpo --repeat 5
  record train.jsonl "{'device':'cuda','shape':'llama-3.2-1b'}" bench train --model "$llama1b" --device cuda \
    --tuning lora --repeat 3
  [ -n "$tokenizer" ] && echo "## precept sft on CUDA" && "$bin" sft --config configs/sft.toml --model "$smol" --out "$work/sft" --steps 12 --save-steps 6 --device cuda \
    && tail -n 2 "$work/sft/metrics.jsonl"
fi
rm -rf "$work"
