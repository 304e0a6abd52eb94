#!/usr/bin/env python3
"""TRL's GRPOTrainer on a Hugging Face model folder, CPU, with `precept grpo`'s benchmark
settings (BENCHMARKS.md, "GRPO step"): LoRA r 16, alpha 32 on every projection, 4 prompts x 4
completions per step (micro-batches of 8, accumulation 2), 48-token completions, temperature 1,
TRL's defaults otherwise (DAPO aggregation, no KL term, one update per batch), and the
expectation reward as a plain keyword check. Each step is split into generation (TRL's
`_generate`), scoring (the rest of `_generate_and_score_completions`: decoding, rewards,
advantages) and training (the rest of the optimiser step: forward, backward, optimiser).

`pip install torch transformers peft trl==1.16.0`, then
`python3 bench_grpo_trl.py MODEL_DIR PROMPTS.jsonl OUT.jsonl [--steps 5] [--threads 2]`;
PROMPTS.jsonl holds `{"prompt": ..., "expected": "refuse" | "comply"}` lines, as `precept grpo`
reads them. Writes one JSON line per step to OUT.jsonl and prints it."""
import argparse
import json
import re
import tempfile
import time

import torch
import transformers
import trl
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import GRPOConfig, GRPOTrainer

# precept's default refusal phrases (crates/precept-data/src/refusal/keywords.rs).
REFUSAL_PHRASES = [
    "i'm sorry", "i am sorry", "i apologize", "i apologise", "i can't", "i cannot", "i can not", "i won't",
    "i will not", "i'm not able to", "i am not able to", "i'm unable to", "i am unable to", "i must decline",
    "i must refuse", "i refuse", "i'd rather not", "i don't have the ability", "as an ai", "as a language model",
    "not able to provide", "cannot provide", "can't provide", "cannot assist", "can't assist", "cannot help",
    "can't help", "is not appropriate", "isn't appropriate", "against my guidelines", "against my programming",
    "illegal and unethical", "i'm not comfortable", "i am not comfortable",
]


def refuses(text):
    text = text.strip().lower().replace("\u2019", "'")
    return not text or any(phrase in text for phrase in REFUSAL_PHRASES)


def first_sentence(text):
    text = text.lstrip()
    match = re.search(r"\n|[.!?](\s|$)", text)
    return text[: match.start() + 1] if match else text


def expectation(completions, expected, **kwargs):
    """1 when the reply keeps to the prompt's `expected` (a refusal in its first sentence for
    `refuse`, none anywhere for `comply`), else 0: precept's `expectation` reward."""
    replies = [c[0]["content"] if isinstance(c, list) else c for c in completions]
    return [float(refuses(first_sentence(r)) if e == "refuse" else not refuses(r)) for r, e in zip(replies, expected)]


class TimedGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with wall-clock time added up around generation and generation + scoring."""

    phase = {"generation": 0.0, "generate_and_score": 0.0}

    def _generate(self, prompts):
        started = time.perf_counter()
        out = super()._generate(prompts)
        self.phase["generation"] += time.perf_counter() - started
        return out

    def _generate_and_score_completions(self, inputs):
        started = time.perf_counter()
        out = super()._generate_and_score_completions(inputs)
        self.phase["generate_and_score"] += time.perf_counter() - started
        return out


class StepTimes(TrainerCallback):
    """One line per optimiser step: its wall time split into the three phases, and the mean
    completion length TRL logs for it."""

    def __init__(self, out):
        self.out, self.started, self.line = out, None, None

    def on_step_begin(self, args, state, control, **kwargs):
        TimedGRPOTrainer.phase.update(generation=0.0, generate_and_score=0.0)
        self.started = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        total = time.perf_counter() - self.started
        phase = TimedGRPOTrainer.phase
        self.line = {
            "step": state.global_step, "step_s": total, "generation_s": phase["generation"],
            "scoring_s": phase["generate_and_score"] - phase["generation"],
            "training_s": total - phase["generate_and_score"],
        }

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.line is None or "completions/mean_length" not in (logs or {}):
            return
        self.line["mean_length"] = float(logs["completions/mean_length"])
        print(json.dumps(self.line), flush=True)
        with open(self.out, "a") as f:
            f.write(json.dumps(self.line) + "\n")
        self.line = None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("prompts")
    parser.add_argument("out")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("torch", torch.__version__, "transformers", transformers.__version__, "trl", trl.__version__, flush=True)

    with open(args.prompts) as f:
        records = [json.loads(line) for line in f if line.strip()]
    dataset = Dataset.from_list(
        [{"prompt": [{"role": "user", "content": r["prompt"]}], "expected": r["expected"]} for r in records]
    )
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, task_type="CAUSAL_LM",
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
    )
    with tempfile.TemporaryDirectory() as output_dir:
        config = GRPOConfig(
            output_dir=output_dir, use_cpu=True, bf16=False, gradient_checkpointing=False,
            per_device_train_batch_size=8, gradient_accumulation_steps=2, num_generations=4,
            max_completion_length=48, temperature=1.0, top_p=1.0, top_k=0,
            learning_rate=2e-5, lr_scheduler_type="constant", max_grad_norm=1.0,
            max_steps=args.steps, seed=42, logging_steps=1, report_to="none", save_strategy="no",
            dataloader_num_workers=0,
        )
        trainer = TimedGRPOTrainer(
            model=model, reward_funcs=expectation, args=config, train_dataset=dataset,
            processing_class=tokenizer, peft_config=lora, callbacks=[StepTimes(args.out)],
        )
        trainer.train()


if __name__ == "__main__":
    main()
