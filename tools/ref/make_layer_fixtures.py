"""Reference fixtures for one adapted linear layer, made by PEFT itself.

For each case, builds a torch.nn.Linear wrapped by PEFT's LoraConfig (use_dora
on or off, use_rslora on or off), sets lora_A, lora_B and the magnitude to
random non-zero values, runs forward and backward in float32 with a random
upstream gradient dy, and saves everything dorac needs to compare against:

    x (N,in)  W0 (out,in)  bias (out)  A (r,in)  B (out,r)  m (out)  dy (N,out)
    y (N,out) dx (N,in)    dA (r,in)   dB (out,r)  dm (out)
    meta: r, alpha, scale, use_dora, use_rslora   (safetensors __metadata__)

to tests/fixtures/layer/<case>.safetensors. PEFT detaches the DoRA norm in
its backward, so these fixtures check dorac's default norm_grad = detach.

Versions used for the committed files: see the __metadata__ of each file.
Run:  python tools/ref/make_layer_fixtures.py   (needs torch, peft, safetensors)
"""
import os

import peft
import torch
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "layer")


class One(torch.nn.Module):
    def __init__(self, d_in, d_out, bias):
        super().__init__()
        self.lin = torch.nn.Linear(d_in, d_out, bias=bias)

    def forward(self, x):
        return self.lin(x)


def make(name, d_in, d_out, n, r, alpha, use_dora, use_rslora, bias, seed):
    torch.manual_seed(seed)
    base = One(d_in, d_out, bias)
    cfg = LoraConfig(r=r, lora_alpha=alpha, target_modules=["lin"], lora_dropout=0.0,
                     use_dora=use_dora, use_rslora=use_rslora)
    model = get_peft_model(base, cfg).float()
    layer = model.base_model.model.lin
    with torch.no_grad():
        layer.lora_A["default"].weight.copy_(torch.randn(r, d_in) / d_in ** 0.5)
        layer.lora_B["default"].weight.copy_(torch.randn(d_out, r) * 0.3)
        if use_dora:
            mag = layer.lora_magnitude_vector["default"].weight
            mag.mul_(1.0 + 0.3 * (2 * torch.rand(d_out) - 1))
    x = torch.randn(n, d_in, requires_grad=True)
    dy = torch.randn(n, d_out)
    y = model(x)
    y.backward(dy)
    t = {
        "x": x.detach(), "W0": layer.base_layer.weight.detach(),
        "A": layer.lora_A["default"].weight.detach(), "B": layer.lora_B["default"].weight.detach(),
        "dy": dy, "y": y.detach(), "dx": x.grad,
        "dA": layer.lora_A["default"].weight.grad, "dB": layer.lora_B["default"].weight.grad,
    }
    if bias:
        t["bias"] = layer.base_layer.bias.detach()
    if use_dora:
        t["m"] = layer.lora_magnitude_vector["default"].weight.detach()
        t["dm"] = layer.lora_magnitude_vector["default"].weight.grad
    scale = layer.scaling["default"]
    meta = {"r": str(r), "alpha": str(alpha), "scale": repr(float(scale)), "use_dora": str(int(use_dora)),
            "use_rslora": str(int(use_rslora)), "torch": torch.__version__, "peft": peft.__version__}
    save_file({k: v.contiguous().float() for k, v in t.items()}, os.path.join(OUT, name + ".safetensors"), metadata=meta)
    print(name, "scale", scale, "max|y|", float(y.detach().abs().max()))


if __name__ == "__main__":
    os.makedirs(OUT, exist_ok=True)
    torch.set_num_threads(1)
    make("dora_bias", 13, 7, 5, 3, 5, True, False, True, 1)
    make("dora_r1_nobias", 13, 7, 6, 1, 2, True, False, False, 2)
    make("dora_rslora", 24, 17, 9, 4, 8, True, True, True, 3)
    make("dora_chunked", 40, 33, 300, 5, 10, True, False, True, 4)
    make("lora_bias", 13, 7, 5, 3, 5, False, False, True, 5)
    make("lora_rslora", 24, 17, 9, 4, 8, False, True, False, 6)
