#!/usr/bin/env python3
"""Golden values for precept's preference losses: TRL 1.16's formulas (dpo_trainer.py
`_compute_loss`, experimental/cpo simpo, experimental/orpo `odds_ratio_loss`) evaluated in
PyTorch float64 on fixed log-probabilities. Prints one line per loss, pasted into
crates/precept-train/src/loss/preference.rs."""
import torch
import torch.nn.functional as F

t = lambda v: torch.tensor(v, dtype=torch.float64)
chosen, rejected = t([-12.5, -30.0, -8.25]), t([-15.0, -28.5, -20.0])
ref_chosen, ref_rejected = t([-13.0, -29.0, -9.0]), t([-14.0, -29.5, -18.5])
chosen_len, rejected_len = t([10.0, 24.0, 6.0]), t([12.0, 20.0, 15.0])
beta, eps, gamma = 0.1, 0.1, 0.5

cr, rr = chosen - ref_chosen, rejected - ref_rejected
delta = cr - rr
avg_delta = cr / chosen_len.clamp(min=1.0) - rr / rejected_len.clamp(min=1.0)
losses = {
    "Sigmoid": -F.logsigmoid(beta * delta),
    "Hinge": torch.relu(1 - beta * delta),
    "Ipo": (avg_delta - 1 / (2 * beta)) ** 2,
    "Robust": (-(1 - eps) * F.logsigmoid(beta * delta) - (-eps * F.logsigmoid(-beta * delta))) / (1 - 2 * eps),
    "BcoPair": -F.logsigmoid(beta * cr) - F.logsigmoid(-beta * rr),
    "SppoHard": (cr - 0.5 / beta) ** 2 + (rr + 0.5 / beta) ** 2,
    "NcaPair": -F.logsigmoid(beta * cr) - 0.5 * F.logsigmoid(-beta * cr) - 0.5 * F.logsigmoid(-beta * rr),
    "ApoZero": 1 - torch.sigmoid(beta * cr) + torch.sigmoid(beta * rr),
    "ApoDown": torch.sigmoid(beta * cr) + 1 - torch.sigmoid(beta * (cr - rr)),
    "SigmoidNorm": -F.logsigmoid(beta * avg_delta),
    "Sft": (-chosen.sum() / chosen_len.sum()).expand(3),
}
for name, value in losses.items():
    print(name, value.tolist())
c_avg, r_avg = chosen / chosen_len, rejected / rejected_len
logits = (c_avg - r_avg) - gamma / beta
print("simpo", (-F.logsigmoid(beta * logits) * (1 - eps) - F.logsigmoid(-beta * logits) * eps).tolist())
log1mexp = lambda x: torch.log1p(-torch.exp(x))
log_odds = (c_avg - r_avg) - (log1mexp(c_avg) - log1mexp(r_avg))
print("orpo", (-beta * F.logsigmoid(log_odds)).tolist())
