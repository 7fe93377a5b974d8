"""Reference values for dorac's optimizer and learning-rate schedules, made by
torch.optim.AdamW, torch.nn.utils.clip_grad_norm_ and transformers'
get_{linear,cosine,constant}_schedule_with_warmup.

Writes tests/fixtures/optim/adamw.safetensors:
    p0_init (3,5), p1_init (1,7)            initial parameters
    g{k}_0 (3,5), g{k}_1 (1,7)              raw gradients of step k = 0..5
    p{k}_0, p{k}_1                           parameters after step k
    lr (6)                                   learning rate used at step k
    grad_norm (6)                            pre-clip global norm at step k
and schedules.safetensors: linear, cosine, constant (each (20,)): the LR
factor at steps 0..19 with warmup 4, total 20.
Settings: AdamW lr 1e-2, betas (0.9, 0.95), eps 1e-8, weight decay 0.1 on p0
only, clip max norm 0.5, linear schedule with warmup 2 of 6 steps.
Run: python tools/ref/make_optim_fixtures.py (needs torch, transformers, safetensors)
"""
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import (get_constant_schedule_with_warmup, get_cosine_schedule_with_warmup,
                          get_linear_schedule_with_warmup)

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "optim")


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    p0 = torch.nn.Parameter(torch.randn(3, 5))
    p1 = torch.nn.Parameter(torch.randn(1, 7))
    t = {"p0_init": p0.detach().clone(), "p1_init": p1.detach().clone()}
    opt = torch.optim.AdamW([{"params": [p0], "weight_decay": 0.1}, {"params": [p1], "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    sched = get_linear_schedule_with_warmup(opt, num_warmup_steps=2, num_training_steps=6)
    lrs, norms = [], []
    for k in range(6):
        g0, g1 = torch.randn(3, 5) * (k + 1), torch.randn(1, 7)
        p0.grad, p1.grad = g0.clone(), g1.clone()
        t[f"g{k}_0"], t[f"g{k}_1"] = g0, g1
        norms.append(float(torch.nn.utils.clip_grad_norm_([p0, p1], 0.5)))
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
        t[f"p{k}_0"], t[f"p{k}_1"] = p0.detach().clone(), p1.detach().clone()
    t["lr"] = torch.tensor(lrs, dtype=torch.float32)
    t["grad_norm"] = torch.tensor(norms, dtype=torch.float32)
    meta = {"about": f"torch {torch.__version__}, transformers {transformers.__version__}"}
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, "adamw.safetensors"), metadata=meta)

    s = {}
    for name, fn in [("linear", get_linear_schedule_with_warmup), ("cosine", get_cosine_schedule_with_warmup),
                     ("constant", None)]:
        o = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        sc = get_constant_schedule_with_warmup(o, 4) if fn is None else fn(o, 4, 20)
        vals = []
        for _ in range(20):
            vals.append(o.param_groups[0]["lr"])
            o.step()
            sc.step()
        s[name] = torch.tensor(vals, dtype=torch.float64)
    save_file(s, os.path.join(OUT, "schedules.safetensors"), metadata=meta)
    print("lrs", lrs, "norms", norms)


if __name__ == "__main__":
    main()
