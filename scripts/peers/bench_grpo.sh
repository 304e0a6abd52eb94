#!/usr/bin/env bash
# A GRPO step of `precept grpo` beside TRL's GRPOTrainer (bench_grpo_trl.py) on SmolLM2, CPU, in
# one sitting: the two alternate (ABAB…) so that a shared machine's load falls on both, and each
# step is split into generation, scoring and training. The prompts are the first 4 `refuse`
# prompts of data/redteam/harmful-varied.jsonl and the first 4 of benign-contrast.jsonl.
#
# Usage: scripts/peers/bench_grpo.sh [ROUNDS] [STEPS] [PYTHON]   (prints one JSON line per step,
# then the medians over the steps after each run's first)
# PRECEPT_BIN and PRECEPT_MODEL override the binary and the model folder.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-2}"
steps="${2:-3}"
python="${3:-$HOME/peers/bin/python}"
bin="${PRECEPT_BIN:-target/release/precept}"
model="${PRECEPT_MODEL:-$PWD/checkpoints/smollm2-135m-instruct}"
work="$(mktemp -d)"   # kept: the run folders and TRL's step lines
echo "runs in $work" >&2

{ grep '"expected": "refuse"' data/redteam/harmful-varied.jsonl | head -n 4; head -n 4 data/redteam/benign-contrast.jsonl; } \
  >"$work/prompts.jsonl"
cat >"$work/grpo.toml" <<TOML
model = "$model"
data = "$work/prompts.jsonl"
num_generations = 4
per_device_train_batch_size = 8
gradient_accumulation_steps = 2
max_completion_length = 48
temperature = 1.0
top_p = 1.0
top_k = 0
reward_funcs = ["expectation"]
loss_type = "dapo"
beta = 0.0
tuning = "lora"
learning_rate = 2e-5
lr_scheduler_type = "constant"
max_grad_norm = 1.0
max_steps = $steps
seed = 42
save_steps = 1000
merge = false

[lora]
r = 16
alpha = 32.0
dropout = 0.0
target_modules = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
TOML

for round in $(seq 1 "$rounds"); do
  RAYON_NUM_THREADS=2 "$bin" grpo --config "$work/grpo.toml" --out "$work/precept-$round" -q
  "$python" scripts/peers/bench_grpo_trl.py "$model" "$work/prompts.jsonl" "$work/trl-$round.jsonl" \
    --steps "$steps" --threads 2 >&2
  echo "round $round done, load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
done

"$python" - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
steps = {"precept": [], "trl": []}
for r in range(1, rounds + 1):
    tokens = 0
    for i, m in enumerate(json.loads(line) for line in open(f"{work}/precept-{r}/metrics.jsonl")):
        # tokens_per_second covers the whole optimiser step: its wall time is the step's tokens over it.
        step_s = (m["num_tokens"] - tokens) / m["tokens_per_second"]
        tokens = m["num_tokens"]
        gen, score = m["time/generation"], m["time/scoring"]
        line = {"engine": "precept", "round": r, "step": m["step"], "step_s": step_s, "generation_s": gen,
                "scoring_s": score, "training_s": step_s - gen - score, "mean_length": m["completions/mean_length"]}
        print(json.dumps(line))
        if i:
            steps["precept"].append(line)
    for i, line in enumerate(json.loads(l) for l in open(f"{work}/trl-{r}.jsonl")):
        line = {"engine": "trl", "round": r, **line}
        print(json.dumps(line))
        if i:
            steps["trl"].append(line)
for engine, lines in steps.items():
    medians = {k: statistics.median(l[k] for l in lines) for k in
               ["step_s", "generation_s", "scoring_s", "training_s", "mean_length"]}
    print(json.dumps({"engine": engine, "steps": len(lines), "median": medians}))
PY
