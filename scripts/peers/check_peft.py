#!/usr/bin/env python3
"""Loads a precept-trained LoRA adapter with PEFT onto the transformers base model and compares
its logits with `precept logits` on precept's merged model, on the same token ids. Needs torch,
transformers and peft (a peer environment, not CI).

Usage: check_peft.py BASE_DIR ADAPTER_DIR MERGED_DIR PRECEPT_BIN
Prints one JSON line: whether PEFT loaded every adapter tensor, how far the adapter moved the
logits, and the max |Δlogit| between PEFT and precept over the last position's top 50."""
import json
import subprocess
import sys

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

base_dir, adapter_dir, merged_dir, precept = sys.argv[1:5]
tokenizer = AutoTokenizer.from_pretrained(base_dir)
text = tokenizer.apply_chat_template([{"role": "user", "content": "Give me one tip for learning to cook."}],
                                     tokenize=False, add_generation_prompt=True)
ids = tokenizer(text, add_special_tokens=False)["input_ids"]
base = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32).eval()
with torch.no_grad():
    base_logits = base(torch.tensor([ids])).logits[0, -1].double()
peft_model = PeftModel.from_pretrained(base, adapter_dir).eval()
adapter_tensors = sum(1 for name, _ in peft_model.named_parameters() if "lora_" in name)
with torch.no_grad():
    peft_logits = peft_model(torch.tensor([ids])).logits[0, -1].double()
out = subprocess.run([precept, "logits", "--model", merged_dir, "--ids", ",".join(map(str, ids)), "--top", "80",
                      "--json", "-q"], check=True, capture_output=True, text=True).stdout
ours = json.loads(out)
our = dict(zip(ours["top_ids"], ours["top_logits"]))
top = torch.topk(peft_logits, 50)
diffs = [abs(our[i] - v) for i, v in zip(top.indices.tolist(), top.values.tolist()) if i in our]
print(json.dumps({
    "prompt_tokens": len(ids),
    "peft_adapter_tensors": adapter_tensors,
    "adapter_moved_logits_max": (peft_logits - base_logits).abs().max().item(),
    "top10_equal": ours["top_ids"][:10] == top.indices.tolist()[:10],
    "top50_found": len(diffs),
    "max_abs_logit_diff_peft_vs_precept_top50": max(diffs),
}))
