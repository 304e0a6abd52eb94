#!/usr/bin/env python3
"""Golden values for one GRPO step through the whole decoder on the tiny checkpoint
(crates/precept-train/tests/golden_grpo_step.rs), from TRL 1.16 itself:
`pip install torch transformers trl==1.16.0`, then `python3 grpo_step_golden.py FIXTURE_DIR`
with FIXTURE_DIR = crates/precept-train/tests/fixtures/tiny-llama.

Each loss runs TRL's own `GRPOTrainer._compute_loss` on a stand-in trainer and transformers'
LlamaForCausalLM in float64, with the prompts left-padded and the completions right-padded as TRL
batches them; the old and reference log-probabilities and the advantages are fixed. The stand-in's
per-token log-probabilities are TRL's `selective_log_softmax` of the model's float64 logits over
the temperature: TRL 1.16's own `_get_per_token_logps_and_entropies` goes through its fused LM
head, which accumulates the softmax in float32, so it is run once beside them as a cross-check.
Prints the values pasted into the test."""
import sys
from collections import defaultdict
from contextlib import nullcontext
from types import MethodType, SimpleNamespace

import torch
import transformers
import trl
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import add_fused_lm_head, selective_log_softmax

assert trl.__version__ == "1.16.0", trl.__version__
torch.set_default_dtype(torch.float64)
t = torch.tensor

model = transformers.LlamaForCausalLM.from_pretrained(
    sys.argv[1], dtype=torch.float64, attn_implementation="sdpa"
)
temperature = 0.9

# Two prompts (5 and 3 tokens), two completions each (6, 4, 5 and 2 tokens).
prompts = [[(i * 7 + 3) % 97 for i in range(5)], [(i * 11 + 40) % 97 for i in range(3)]]
lengths = [6, 4, 5, 2]
completions = [[(j * 13 + r * 29 + 5) % 97 for j in range(n)] for r, n in enumerate(lengths)]
rows, width, prompt_width = 4, max(lengths), max(map(len, prompts))
prompt_ids = torch.zeros(rows, prompt_width, dtype=torch.long)
prompt_mask = torch.zeros(rows, prompt_width, dtype=torch.long)
completion_ids = torch.zeros(rows, width, dtype=torch.long)
completion_mask = torch.zeros(rows, width, dtype=torch.long)
for r, completion in enumerate(completions):
    prompt = prompts[r // 2]
    prompt_ids[r, prompt_width - len(prompt):] = t(prompt)  # left-padded
    prompt_mask[r, prompt_width - len(prompt):] = 1
    completion_ids[r, :len(completion)] = t(completion)  # right-padded
    completion_mask[r, :len(completion)] = 1
mask = completion_mask.double()
# Fixed sampling-policy and reference log-probabilities (0 on padding, as the model's are there).
old_logps = t([[-4.6 + 0.25 * (((r * 5 + j * 3) % 5) - 2) for j in range(width)] for r in range(rows)]) * mask
ref_logps = t([[-4.6 + 0.2 * (((r * 3 + j * 7) % 5) - 2) for j in range(width)] for r in range(rows)]) * mask
advantages = t([0.9, -0.9, 1.3, -0.4])
beta, max_completion_length, window = 0.04, 8, 40


def float64_logps_and_entropies(model, input_ids, attention_mask, logits_to_keep, **kwargs):
    """The completion tokens' log-probabilities in float64 (0 on padding), no entropies."""
    logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1][:, -logits_to_keep:]
    completion_mask = attention_mask[:, -logits_to_keep:]
    logps = selective_log_softmax(logits, input_ids[:, -logits_to_keep:], temperature, row_mask=completion_mask)
    return logps * completion_mask, torch.zeros_like(logps), None


def stand_in_trainer(loss_type, logps_and_entropies):
    """What `GRPOTrainer._compute_loss` reads of its trainer: one process, one micro-batch per step."""
    return SimpleNamespace(
        _get_per_token_logps_and_entropies=logps_and_entropies,
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
        beta=beta, loss_type=loss_type, epsilon_low=0.2, epsilon_high=0.28, use_vllm=False,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
        max_completion_length=max_completion_length, _entropy_bonus_enabled=False, aux_loss_enabled=False,
        accelerator=SimpleNamespace(num_processes=1, reduce=lambda x, reduction: x, gather=lambda x: x,
                                    autocast=nullcontext),
        _metrics={"train": defaultdict(list)},
    )


inputs = {
    "prompt_ids": prompt_ids, "prompt_mask": prompt_mask,
    "completion_ids": completion_ids, "completion_mask": completion_mask,
    "advantages": advantages, "old_per_token_logps": old_logps, "ref_per_token_logps": ref_logps,
    # `dapo`: the active tokens of a whole generation batch of which this is one micro-batch.
    "num_items_in_batch": t(float(window)),
}


def trl_loss(loss_type):
    """TRL's loss, its gradient norm over every parameter and its metrics."""
    model.zero_grad(set_to_none=True)
    stand_in = stand_in_trainer(loss_type, float64_logps_and_entropies)
    loss = GRPOTrainer._compute_loss(stand_in, model, inputs)
    loss.backward()
    grad_norm = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in model.parameters() if p.grad is not None))
    metrics = {k: v[0] for k, v in stand_in._metrics["train"].items()
               if k in ["kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"]}
    return loss.item(), grad_norm.item(), metrics


print("transformers", transformers.__version__, "torch", torch.__version__, "trl", trl.__version__)
for loss_type in ["grpo", "bnpo", "dr_grpo", "dapo"]:
    loss, grad_norm, metrics = trl_loss(loss_type)
    print(f"{loss_type}: loss {loss!r} grad norm {grad_norm!r} {metrics}")
with torch.no_grad():
    logps = float64_logps_and_entropies(model, torch.cat([prompt_ids, completion_ids], 1),
                                        torch.cat([prompt_mask, completion_mask], 1), width)[0]
print("per-token log-probs", [row[:n] for row, n in zip(logps.tolist(), lengths)])
print("ratios to the old policy", [[round(x, 3) for x in row[:n]] for row, n in zip((logps - old_logps).exp().tolist(), lengths)])

# The cross-check: TRL's own method through the fused head that `GRPOTrainer.__init__` adds.
add_fused_lm_head(model, temperature=temperature, outputs=("log_probs", "entropy"))
stand_in = stand_in_trainer("dapo", None)
with torch.no_grad():
    # `__wrapped__`: the method without its profiling decorator, which wants a real trainer.
    fused = GRPOTrainer._get_per_token_logps_and_entropies.__wrapped__(
        stand_in, model, torch.cat([prompt_ids, completion_ids], 1), torch.cat([prompt_mask, completion_mask], 1),
        width, compute_entropy=True)[0]
print("TRL's fused head (float32 softmax) differs by at most", ((fused - logps) * mask).abs().max().item())
