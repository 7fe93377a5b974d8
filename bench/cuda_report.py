#!/usr/bin/env python3
"""Tables for docs/PERF.md from one run of tools/device/cuda_run.sh bench.

usage: python3 bench/cuda_report.py BENCH.jsonl   (PEFT's and dorac's lines, one run)

MFU counts the FLOPs of one optimizer step: 4*N*tokens for the linear layers
of adapter training (forward, plus the input-gradient backward; frozen
weights need no weight gradient), 6*N*tokens for full fine-tuning, plus
causal attention (forward 2*T^2*D*H per layer and sequence, backward twice
that), divided by the H200's dense BF16 peak of 989 TFLOP/s (the
measured ceiling there is about 790, shared/DEVICE.md).
"""
import json, sys

SHAPES = {  # layers, heads, head dim, seq len, batch
    "gpt2": dict(L=12, H=12, D=64),
    "llama1b": dict(L=16, H=32, D=64),
}
PEAK = 989e12


def step_flops(arch, mode, params, B, T):
    s = SHAPES[arch]
    lin = (6 if mode == "full" else 4) * params * B * T
    att_fwd = 2 * T * T * s["D"] * s["H"] * s["L"] * B
    return lin + 3 * att_fwd


def main(path):
    recs = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    params = {r["arch"]: r["params"] for r in recs if r.get("case") == "model" and "params" in r}
    rows = {}
    for r in recs:
        if r.get("case") == "model" and "tok_s" in r:
            rows[(r["arch"], "PEFT", r["mode"])] = r
        elif r.get("engine") == "dorac" and r.get("tok_s"):
            rows[(r["arch"], "dorac", r["mode"])] = r
    print("| model | engine | method | tokens/s | peak GiB | TFLOP/s | MFU | DoRA/LoRA (same engine) | vs PEFT same method |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for arch in ("gpt2", "llama1b"):
        for eng in ("PEFT", "dorac"):
            for mode in ("lora", "dora", "full"):
                r = rows.get((arch, eng, mode))
                if not r:
                    continue
                tok = r["tok_s"]
                fl = step_flops(arch, mode, params[arch], r["B"], r["T"]) / (r["B"] * r["T"] / tok)
                ratio = ""
                if mode == "dora" and (arch, eng, "lora") in rows:
                    ratio = f"{tok / rows[(arch, eng, 'lora')]['tok_s']:.3f}"
                vs = ""
                if eng == "dorac" and (arch, "PEFT", mode) in rows:
                    vs = f"{tok / rows[(arch, 'PEFT', mode)]['tok_s']:.2f}x"
                print(f"| {arch} | {eng} | {mode} | {tok:,} | {r.get('peak_gib', '')} | {fl / 1e12:.0f} | "
                      f"{100 * fl / PEAK:.1f}% | {ratio} | {vs} |")


if __name__ == "__main__":
    main(sys.argv[1])
