"""PEFT loads what dorac saves, and computes the same loss.

Trains nothing itself: give it a base HF folder, an adapter folder written by
`dorac train` (or `dorac` in any way), and a JSONL of {"input_ids", "labels"}
or {"text"}; it loads the adapter with peft.PeftModel.from_pretrained,
computes the token-weighted mean next-token loss exactly as `dorac eval`
defines it, runs `dorac eval` on the same inputs, and fails unless the two
agree to --tol (1e-4).

usage: python tools/ref/peft_roundtrip.py --dorac build/dorac --model DIR --adapter DIR --data FILE.jsonl
Needs torch, transformers, peft (the GPU machine has them; or pip install).
"""
import argparse
import json
import subprocess
import sys

import peft
import torch
import transformers
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dorac", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--tol", type=float, default=1e-4)
    a = ap.parse_args()

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(a.model, dtype=torch.float32, attn_implementation="eager")
    model = PeftModel.from_pretrained(base, a.adapter).eval()
    cfg = model.peft_config["default"]
    tok = None
    total, count = 0.0, 0
    with open(a.data) as f:
        for line in f:
            if not line.strip():
                continue
            ex = json.loads(line)
            if "input_ids" in ex:
                ids = ex["input_ids"]
                labels = ex.get("labels") or ids
            else:
                tok = tok or AutoTokenizer.from_pretrained(a.model)
                ids = tok(ex["text"])["input_ids"]
                labels = ids
            with torch.no_grad():
                logits = model(torch.tensor([ids])).logits[0].double()
            lab = torch.tensor(labels[1:])
            keep = lab != -100
            lp = torch.log_softmax(logits[:-1], dim=-1)
            total += float(-lp[keep, lab[keep]].sum())
            count += int(keep.sum())
    peft_loss = total / count
    out = subprocess.run([a.dorac, "eval", "--model", a.model, "--adapter", a.adapter, "--data", a.data, "--json",
                          "--batch-size", "1"], check=True, capture_output=True, text=True).stdout
    d = json.loads(out)
    print(json.dumps({"peft": peft.__version__, "transformers": transformers.__version__, "use_dora": cfg.use_dora,
                      "r": cfg.r, "peft_loss": peft_loss, "dorac_loss": d["loss"], "tokens": count,
                      "abs_diff": abs(peft_loss - d["loss"])}))
    if d["tokens"] != count or abs(peft_loss - d["loss"]) > a.tol:
        sys.exit(f"MISMATCH: PEFT {peft_loss} ({count} tokens) vs dorac {d['loss']} ({d['tokens']} tokens)")


if __name__ == "__main__":
    main()
