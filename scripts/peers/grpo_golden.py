#!/usr/bin/env python3
"""Golden values for precept's GRPO objective (crates/precept-train/src/loss/grpo.rs and
advantages.rs), from TRL 1.16 itself: `pip install torch trl==1.16.0`.

The losses run TRL's own `GRPOTrainer._compute_loss` and `RLOOTrainer._compute_loss` on a
stand-in trainer that hands them fixed per-token log-probabilities; the advantages and RLOO's KL
reward penalty repeat the lines of the trainers' `_generate_and_score_completions`, which sample
and so cannot run here, with TRL's own `nanstd`.
Everything in float64; prints the values pasted into the tests."""
from collections import defaultdict
from types import SimpleNamespace

import torch
import trl
from trl.trainer.grpo_trainer import GRPOTrainer
from trl.trainer.utils import nanstd

assert trl.__version__ == "1.16.0", trl.__version__
torch.set_default_dtype(torch.float64)
t = torch.tensor

# --- Advantages: 3 prompts x 4 generations; the middle group's rewards are all equal. ---
rewards = t([1.0, 0.0, 0.5, 0.25, 0.7, 0.7, 0.7, 0.7, -1.0, 2.0, 0.0, 3.0])
num_generations = 4


def grpo_advantages(rewards, scale_rewards):
    # trl/trainer/grpo_trainer.py, `_generate_and_score_completions`, sum_then_normalize
    mean_grouped_rewards = torch.nanmean(rewards.view(-1, num_generations), dim=1)
    mean_grouped_rewards = mean_grouped_rewards.repeat_interleave(num_generations, dim=0)
    if scale_rewards in ["group", "none"]:
        std_rewards = nanstd(rewards.view(-1, num_generations), dim=1)
        std_rewards = std_rewards.repeat_interleave(num_generations, dim=0)
    else:  # "batch"
        std_rewards = nanstd(rewards).expand_as(rewards)
    advantages = rewards - mean_grouped_rewards
    if scale_rewards != "none":
        advantages = advantages / (std_rewards + 1e-4)
    is_std_zero = torch.isclose(std_rewards, torch.zeros_like(std_rewards))
    return advantages.tolist(), is_std_zero.float().mean().item()


def rloo_advantages(rewards, normalize_advantages):
    # trl/trainer/rloo_trainer.py, `_generate_and_score_completions` (beta's reward penalty aside)
    grouped_rewards = rewards.view(-1, num_generations)
    std_rewards = nanstd(grouped_rewards, dim=1)
    scorable_counts = (~torch.isnan(grouped_rewards)).sum(dim=1, keepdim=True)
    grouped_sum = torch.nansum(grouped_rewards, dim=1, keepdim=True)
    baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1)
    advantages = rewards - baselines.view(-1)
    if normalize_advantages:
        advantages = (advantages - torch.nanmean(advantages)) / (nanstd(advantages) + 1e-4)
    is_std_zero = torch.isclose(std_rewards, torch.zeros_like(std_rewards))
    return advantages.tolist(), is_std_zero.float().mean().item()


for scale in ["group", "batch", "none"]:
    print("grpo advantages", scale, *grpo_advantages(rewards, scale))
for normalize in [False, True]:
    print("rloo advantages normalize", normalize, *rloo_advantages(rewards, normalize))

# --- The loss: 4 completions of up to 5 tokens, lengths 5, 3, 4, 2. ---
logps = t([[-0.5, -1.2, -0.3, -2.0, -0.8], [-1.0, -0.4, -0.9, -1.5, -0.2],
           [-0.7, -2.2, -0.1, -0.6, -1.1], [-0.3, -0.8, -1.7, -0.5, -0.9]])
log_ratio = t([[0.3, -0.1, 0.0, 0.5, 0.05], [-0.4, 0.2, 0.1, -0.25, 0.0],
               [0.22, -0.3, 0.35, 0.0, -0.05], [-0.5, 0.25, 0.05, 0.1, -0.2]])
old_logps = logps - log_ratio
ref_logps = logps + t([[0.1, -0.2, 0.3, 0.0, -0.1], [0.05, 0.4, -0.3, 0.2, 0.0],
                       [-0.15, 0.1, 0.25, -0.05, 0.3], [0.2, -0.35, 0.0, 0.1, -0.2]])
mask = t([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 1, 1, 0], [1, 1, 0, 0, 0]])
advantages = t([1.2, -0.8, 0.5, -0.6])
max_completion_length = 8


def trl_loss(loss_type, beta, off_policy, epsilon_high=0.28, num_items_in_batch=None):
    """TRL's `GRPOTrainer._compute_loss` on one process, one micro-batch per step."""
    policy = logps.clone().requires_grad_()
    stand_in = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (policy, torch.zeros_like(policy), None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token",
        beta=beta, loss_type=loss_type, epsilon_low=0.2, epsilon_high=epsilon_high, use_vllm=False,
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1),
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
        max_completion_length=max_completion_length, _entropy_bonus_enabled=False, aux_loss_enabled=False,
        accelerator=SimpleNamespace(num_processes=1, reduce=lambda x, reduction: x, gather=lambda x: x),
        _metrics={"train": defaultdict(list)},
    )
    rows = logps.size(0)
    inputs = {
        "prompt_ids": torch.zeros(rows, 0, dtype=torch.long), "prompt_mask": torch.zeros(rows, 0, dtype=torch.long),
        "completion_ids": torch.zeros(rows, 5, dtype=torch.long), "completion_mask": mask,
        "advantages": advantages, "ref_per_token_logps": ref_logps,
        "num_items_in_batch": t(num_items_in_batch if num_items_in_batch is not None else mask.sum().item()),
    }
    if off_policy:
        inputs["old_per_token_logps"] = old_logps
    loss = GRPOTrainer._compute_loss(stand_in, None, inputs)
    loss.backward()
    metrics = {k: v[0] for k, v in stand_in._metrics["train"].items() if k in
               ["kl", "clip_ratio/low_mean", "clip_ratio/high_mean", "clip_ratio/region_mean"]}
    return loss.item(), policy.grad, metrics


for beta, off_policy in [(0.0, False), (0.0, True), (0.04, True)]:
    for loss_type in ["grpo", "bnpo", "dr_grpo", "dapo"]:
        loss, grad, metrics = trl_loss(loss_type, beta, off_policy)
        print(f"loss {loss_type} beta={beta} off_policy={off_policy}: {loss!r} {metrics}")
        if beta:
            print("  grad", grad.tolist())
loss, grad, _ = trl_loss("dapo", 0.04, True, num_items_in_batch=30)
print(f"dapo over a window of 30 tokens: {loss!r}\n  grad", grad.tolist())
# TRL's `epsilon_high` when unset: `epsilon`.
loss, _, metrics = trl_loss("bnpo", 0.0, True, epsilon_high=0.2)
print(f"bnpo with epsilon_high = epsilon = 0.2: {loss!r} {metrics}")

# --- RLOO: its own `RLOOTrainer._compute_loss` on the same completions, and its KL reward penalty. ---
from trl.trainer.rloo_trainer import RLOOTrainer  # noqa: E402

policy = logps.clone().requires_grad_()
stand_in = SimpleNamespace(
    _get_per_token_logps_and_entropies=lambda *args, **kwargs: (policy, torch.zeros_like(policy), None),
    epsilon_low=0.2, epsilon_high=0.28, model=SimpleNamespace(training=True), aux_loss_enabled=False,
    accelerator=SimpleNamespace(reduce=lambda x, reduction: x, gather=lambda x: x), _metrics={"train": defaultdict(list)},
)
inputs = {
    "prompt_ids": torch.zeros(4, 0, dtype=torch.long), "prompt_mask": torch.zeros(4, 0, dtype=torch.long),
    "completion_ids": torch.zeros(4, 5, dtype=torch.long), "completion_mask": mask,
    # rloo_trainer.py, `_generate_and_score_completions`: old_logps = (old_per_token_logps * completion_mask).sum(1)
    "old_logps": (old_logps * mask).sum(1), "advantages": advantages,
}
loss = RLOOTrainer._compute_loss(stand_in, None, inputs)
loss.backward()
metrics = {k: v[0] for k, v in stand_in._metrics["train"].items() if k.endswith("_mean")}
print(f"rloo loss: {loss.item()!r} {metrics}\n  grad", policy.grad.tolist())

# rloo_trainer.py, `_generate_and_score_completions`, with beta = 0.05 (RLOOConfig's default)
beta, rloo_rewards, completion_mask = 0.05, t([1.0, 0.0, 0.5, 0.25]), mask
per_token_kl = old_logps - ref_logps
kl = (per_token_kl * completion_mask).sum(-1)
rloo_rewards = rloo_rewards - beta * kl
kl_stats = torch.stack([(per_token_kl * completion_mask).sum(), completion_mask.sum().float()])
print("rloo penalised rewards", rloo_rewards.tolist(), "kl", (kl_stats[0] / kl_stats[1].clamp(min=1.0)).item())
