#!/usr/bin/env python3
"""Loads a precept-written model folder in Hugging Face transformers and compares its logits with
`precept logits` on the same token ids. Needs torch and transformers (a peer environment, not CI).

Usage: check_transformers.py MODEL_DIR PRECEPT_BIN [FIXTURE.json ...]
Prints one JSON line per fixture: top-10 agreement, max |Δlogit| on transformers' top 50,
and both sequence log-probabilities."""
import json
import subprocess
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

model_dir, precept = sys.argv[1], sys.argv[2]
fixtures = sys.argv[3:]
model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
tokenizer = AutoTokenizer.from_pretrained(model_dir)
for path in fixtures:
    ref = json.load(open(path))
    hf_ids = tokenizer(ref["text"], add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ref["token_ids"]])).logits[0].double()
    logprobs = torch.log_softmax(logits, -1)
    ids = ref["token_ids"]
    seq_logprob = sum(logprobs[i - 1, ids[i]].item() for i in range(1, len(ids)))
    top = torch.topk(logits[-1], 50)
    out = subprocess.run(
        [precept, "logits", "--model", model_dir, "--ids", ",".join(map(str, ids)), "--top", "60", "--json", "-q"],
        check=True, capture_output=True, text=True).stdout
    ours = json.loads(out)
    our = dict(zip(ours["top_ids"], ours["top_logits"]))
    diffs = [abs(our[i] - v) for i, v in zip(top.indices.tolist(), top.values.tolist()) if i in our]
    print(json.dumps({
        "fixture": ref["name"],
        "hf_tokenizer_ids_equal_oracle": hf_ids == ids,
        "top10_equal": ours["top_ids"][:10] == top.indices.tolist()[:10],
        "top50_found": len(diffs),
        "max_abs_logit_diff_top50": max(diffs),
        "sequence_logprob_transformers": seq_logprob,
        "sequence_logprob_precept": ours["sequence_logprob"],
    }))
