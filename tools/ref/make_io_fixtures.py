#!/usr/bin/env python3
"""Makes the file-format fixtures under tests/fixtures/io/ with the reference
libraries (safetensors, transformers, peft), so the C tests check dorac's
readers and writers against what those libraries write and read.

Run from the repository root:
    python tools/ref/make_io_fixtures.py            # (re)write the fixtures
    python tools/ref/make_io_fixtures.py --verify-adapter-dir DIR
        # check that PEFT loads an adapter folder dorac wrote (DIR holds
        # adapter_config.json, and adapter_model.safetensors or none, in which
        # case the fixture's weights are copied in), on the fixture's tiny model

Needs torch, safetensors, transformers (5.x) and peft (0.21.x). Every
expected value in the *.json files below is read back from those libraries,
never typed in by hand. Also refreshes the fuzz seed corpora.
"""
import argparse
import json
import os
import shutil
import sys

import torch
from safetensors.torch import save_file, load_file

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "fixtures", "io")
CORPUS = os.path.join(ROOT, "fuzz", "corpus")


def values_f64(t):
    return [float(x) for x in t.to(torch.float64).flatten().tolist()]


def dump(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=True)
        f.write("\n")


# ---- safetensors ------------------------------------------------------------

def make_safetensors():
    g = torch.Generator().manual_seed(1234)
    tensors = {
        # names chosen so that name order and the reference's dtype-then-name
        # order differ
        "b.f32": torch.randn(2, 3, generator=g),
        "a.bf16": torch.randn(4, generator=g).to(torch.bfloat16),
        "c.f16": torch.randn(3, 2, generator=g).to(torch.float16),
        "d.f64": torch.randn(2, generator=g, dtype=torch.float64),
        "e.scalar": torch.tensor(3.25),
        "f.empty": torch.zeros(0, 3),
        "g.\u00e9t\u00e9 \"quoted\"": torch.tensor([1.0, -2.0]),
        "h.control\n\x01\x7f\\": torch.tensor([0.5]),  # JSON escapes as serde_json writes them
    }
    path = os.path.join(OUT, "st_ref.safetensors")
    save_file(tensors, path, metadata={"format": "pt"})
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    order = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"])
    back = load_file(path)
    f32 = back["b.f32"]
    dump(os.path.join(OUT, "st_ref.json"), {
        # torch's rounding of the F32 tensor to 16-bit types, as bit patterns
        "b.f32_as_bf16_bits": [int(x) & 0xFFFF for x in f32.to(torch.bfloat16).view(torch.int16).flatten().tolist()],
        "b.f32_as_f16_bits": [int(x) & 0xFFFF for x in f32.to(torch.float16).view(torch.int16).flatten().tolist()],
        "metadata": header["__metadata__"],
        "order": order,
        "tensors": {k: {"dtype": header[k]["dtype"], "shape": header[k]["shape"],
                        "values": values_f64(back[k])} for k in order},
    })

    mixed = {
        "position_ids": torch.arange(6, dtype=torch.int64).reshape(1, 6),
        "mask": torch.tensor([1, 0, 1], dtype=torch.uint8),
        "flag": torch.tensor([True, False]),
        "w": torch.tensor([[0.5, -1.5], [2.0, 4.0]]),
    }
    save_file(mixed, os.path.join(OUT, "st_mixed.safetensors"))


# ---- a tiny llama, sharded --------------------------------------------------

def tiny_llama():
    from transformers import LlamaConfig, LlamaForCausalLM
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                      tie_word_embeddings=False)
    return LlamaForCausalLM(cfg).eval()


def make_sharded():
    from huggingface_hub import split_torch_state_dict_into_shards
    model = tiny_llama().to(torch.bfloat16)
    d = os.path.join(OUT, "tiny_llama_sharded")
    shutil.rmtree(d, ignore_errors=True)
    max_shard = 3000
    model.save_pretrained(d, max_shard_size=max_shard)
    state = model.state_dict()
    split = split_torch_state_dict_into_shards(state, max_shard_size=max_shard)
    with open(os.path.join(d, "model.safetensors.index.json")) as f:
        index = json.load(f)
    assert split.tensor_to_filename == index["weight_map"], "split replay disagrees with save_pretrained"
    assert len(split.filename_to_tensors) > 2
    for name in os.listdir(d):  # keep the fixture minimal
        if name not in index["weight_map"].values() and name not in ("model.safetensors.index.json", "config.json"):
            os.remove(os.path.join(d, name))
    dump(os.path.join(OUT, "tiny_llama_sharded.json"), {
        "max_shard_size": max_shard,
        "state_dict_order": list(state.keys()),
        # sum in float64, in storage order, plus the first values: enough to
        # catch a wrong offset, dtype or shard without committing every value
        "tensors": {k: {"dtype": "BF16", "shape": list(v.shape), "sum": sum(values_f64(v)),
                        "first": values_f64(v)[:4]} for k, v in state.items()},
    })


# ---- config.json ------------------------------------------------------------

def config_expect(c):
    """What transformers itself reads from a config, in dorac_hf_config terms."""
    gpt2 = c.model_type == "gpt2"
    rp = {} if gpt2 else dict(c.rope_parameters)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    eos = c.eos_token_id
    eos = [] if eos is None else (list(eos) if isinstance(eos, (list, tuple)) else [eos])
    inter = (c.n_inner or 4 * c.n_embd) if gpt2 else c.intermediate_size
    return {
        "model_type": c.model_type,
        "vocab_size": c.vocab_size,
        "hidden_size": c.hidden_size,
        "intermediate_size": inter,
        "num_hidden_layers": c.num_hidden_layers,
        "num_attention_heads": c.num_attention_heads,
        "num_key_value_heads": c.num_attention_heads if gpt2 else c.num_key_value_heads,
        "head_dim": head_dim,
        "max_position_embeddings": c.max_position_embeddings,
        "norm_eps": c.layer_norm_epsilon if gpt2 else c.rms_norm_eps,
        "hidden_act": c.activation_function if gpt2 else c.hidden_act,
        "tie_word_embeddings": bool(c.tie_word_embeddings),
        "attention_bias": bool(getattr(c, "attention_bias", False)),
        "sliding_window": getattr(c, "sliding_window", None),
        "rope_type": rp.get("rope_type", "none"),
        "rope_theta": rp.get("rope_theta"),
        "rope_factor": rp.get("factor"),
        "rope_low_freq_factor": rp.get("low_freq_factor"),
        "rope_high_freq_factor": rp.get("high_freq_factor"),
        "rope_original_max_position_embeddings": rp.get("original_max_position_embeddings"),
        "bos_token_id": c.bos_token_id,
        "eos_token_ids": eos,
        "dtype": str(c.dtype).replace("torch.", "") if c.dtype is not None else None,
    }


def to_old_spelling(path_new, path_old, type_key):
    """Rewrites a transformers-5 config.json in the older spelling: top-level
    rope_theta, rope_scaling with type_key ("type" or "rope_type"), and
    torch_dtype. transformers must read both the same (checked by caller)."""
    with open(path_new) as f:
        d = json.load(f)
    rp = d.pop("rope_parameters", None) or {}
    d["rope_theta"] = rp.pop("rope_theta", 10000.0)
    rtype = rp.pop("rope_type", "default")
    d["rope_scaling"] = None if rtype == "default" else {type_key: rtype, **rp}
    if "dtype" in d:
        d["torch_dtype"] = d.pop("dtype")
    with open(path_old, "w") as f:
        json.dump(d, f, indent=2, sort_keys=True)
        f.write("\n")


def make_configs():
    from transformers import AutoConfig, GPT2Config, LlamaConfig, MistralConfig, Qwen2Config
    d = os.path.join(OUT, "configs")
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    made = {
        # Llama-3.2-1B's shape, llama3 RoPE scaling, GQA, tied, eos as a list
        "llama3": LlamaConfig(vocab_size=128256, hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                              num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                              max_position_embeddings=131072, rms_norm_eps=1e-5, tie_word_embeddings=True,
                              bos_token_id=128000, eos_token_id=[128001, 128008, 128009], dtype="bfloat16",
                              rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0,
                                               "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                               "original_max_position_embeddings": 8192}),
        # linear scaling, attention and mlp bias
        "llama_linear": LlamaConfig(vocab_size=32000, hidden_size=4096, intermediate_size=11008,
                                    num_hidden_layers=32, num_attention_heads=32, attention_bias=True,
                                    mlp_bias=True, max_position_embeddings=4096,
                                    rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0}),
        # Qwen2.5-0.5B's shape
        "qwen2": Qwen2Config(vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                             num_attention_heads=14, num_key_value_heads=2, max_position_embeddings=32768,
                             rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=151643,
                             eos_token_id=151643, dtype="bfloat16",
                             rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        # Mistral-7B-v0.3's shape
        "mistral": MistralConfig(vocab_size=32768, hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
                                 num_attention_heads=32, num_key_value_heads=8, max_position_embeddings=32768,
                                 rms_norm_eps=1e-5, sliding_window=None, dtype="bfloat16",
                                 rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}),
        # GPT-2 small: every field at the class default
        "gpt2": GPT2Config(),
    }
    expect = {}
    for name, c in made.items():
        new = os.path.join(d, f"{name}.json")
        c.to_json_file(new)  # use_diff=True, as save_pretrained writes config.json
        loaded = AutoConfig.from_pretrained(new)
        expect[f"{name}.json"] = config_expect(loaded)
        if name == "gpt2":
            continue
        for type_key in ("rope_type", "type"):
            old = os.path.join(d, f"{name}_old_{type_key}.json")
            to_old_spelling(new, old, type_key)
            back = AutoConfig.from_pretrained(old)
            # transformers keeps the legacy "type" key next to the "rope_type" it derives
            rp_back = {k: v for k, v in dict(back.rope_parameters).items() if k != "type"}
            assert rp_back == dict(loaded.rope_parameters), (name, type_key)
            expect[os.path.basename(old)] = config_expect(back)
            assert expect[os.path.basename(old)] == expect[f"{name}.json"], (name, type_key)
    # Minimal files: only the fields dorac requires, so every other value is
    # the config class's default as transformers applies it.
    minimal = {
        "llama_minimal": {"model_type": "llama", "vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512,
                          "num_hidden_layers": 2, "num_attention_heads": 32},
        "mistral_minimal": {"model_type": "mistral", "vocab_size": 1000, "hidden_size": 256,
                            "intermediate_size": 512, "num_hidden_layers": 2, "num_attention_heads": 32},
        "qwen2_minimal": {"model_type": "qwen2", "vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512,
                          "num_hidden_layers": 2, "num_attention_heads": 32},
        "gpt2_minimal": {"model_type": "gpt2", "vocab_size": 1000, "n_embd": 256, "n_layer": 2, "n_head": 8},
    }
    for name, d_min in minimal.items():
        path = os.path.join(d, f"{name}.json")
        with open(path, "w") as f:
            json.dump(d_min, f, indent=2)
            f.write("\n")
        expect[f"{name}.json"] = config_expect(AutoConfig.from_pretrained(path))
    dump(os.path.join(OUT, "configs_expected.json"), expect)


# ---- PEFT adapters ----------------------------------------------------------

PEFT_CASES = {
    "peft_list": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"], use_dora=True,
                      lora_dropout=0.05, rank_pattern={"layers.1.self_attn.q_proj": 2, "v_proj": 6},
                      alpha_pattern={"down_proj": 3.5}, task_type="CAUSAL_LM"),
    "peft_regex": dict(r=8, lora_alpha=16, target_modules=r".*\.(q_proj|k_proj|up_proj|o_proj)",
                       exclude_modules=["layers.0.mlp.up_proj"], use_rslora=True, use_dora=False,
                       rank_pattern={"o_proj": 3}, task_type="CAUSAL_LM"),
}


def make_peft():
    from peft import LoraConfig, get_peft_model
    from peft.tuners.lora import LoraLayer
    expect = {}
    for name, kw in PEFT_CASES.items():
        base = tiny_llama()
        linear_names = [n for n, m in base.named_modules() if isinstance(m, torch.nn.Linear)]
        model = get_peft_model(base, LoraConfig(**kw))
        # non-trivial weights, so the saved tensors are not all zero
        torch.manual_seed(1)
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.data.normal_()
        d = os.path.join(OUT, name)
        shutil.rmtree(d, ignore_errors=True)
        model.save_pretrained(d)
        os.remove(os.path.join(d, "README.md"))  # the model card is not part of the format
        modules = {}
        for n in linear_names:
            m = model.base_model.model.get_submodule(n)
            if isinstance(m, LoraLayer):
                modules[n] = {"targeted": True, "r": m.r["default"], "alpha": float(m.lora_alpha["default"]),
                              "scaling": float(m.scaling["default"])}
            else:
                modules[n] = {"targeted": False}
        saved = load_file(os.path.join(d, "adapter_model.safetensors"))
        expect[name] = {"modules": modules, "keys": {k: list(v.shape) for k, v in saved.items()}}
    expect["matching"] = peft_matching_table()
    dump(os.path.join(OUT, "peft_expected.json"), expect)


def peft_matching_table():
    """PEFT's own answers for target matching and pattern lookup, on paths
    chosen to hit the edge cases (suffix vs substring, full vs partial
    regex match, exclusion, first pattern wins)."""
    from peft import LoraConfig
    from peft.tuners.tuners_utils import check_target_module_exists
    from peft.utils.other import get_pattern_key
    paths = ["model.layers.0.self_attn.q_proj", "model.layers.10.self_attn.q_proj", "model.layers.0.self_attn.xq_proj",
             "q_proj", "lm_head", "model.layers.1.mlp.down_proj", "transformer.h.0.attn.c_attn",
             "transformer.h.11.mlp.c_proj", "model.layers.0.self_attn.q_proj.base", "model.embed_tokens"]
    selectors = [
        {"target_modules": ["q_proj", "c_attn"]},
        {"target_modules": ["self_attn.q_proj"]},
        {"target_modules": ["lm_head", "down_proj"], "exclude_modules": ["layers.1.mlp.down_proj"]},
        {"target_modules": r".*\.(q|k)_proj"},
        {"target_modules": r"model\.layers\.\d\..*"},
        {"target_modules": r"q_proj"},
        {"target_modules": r".*(c_attn|c_proj)", "exclude_modules": r".*\.11\..*"},
        {"target_modules": r"transformer\.h\.[0-9]+\.attn\.c_attn|lm_head"},
    ]
    targets = []
    for sel in selectors:
        cfg = LoraConfig(**sel)
        targets.append({"selector": {k: (sorted(v) if isinstance(v, (list, set)) else v) for k, v in sel.items()},
                        "matches": {p: bool(check_target_module_exists(cfg, p)) for p in paths}})
    patterns = [
        {"q_proj": 2, "layers.1.mlp.down_proj": 5},
        {"layers\\.0\\..*": 3, "q_proj": 7},
        {"model.layers.0.self_attn.q_proj": 9},
        {"proj": 4},
        {"h\\.(0|11)\\.(attn|mlp)\\.c_(attn|proj)": 6},
    ]
    ranks = []
    for pat in patterns:
        out = {}
        for p in paths:
            key = get_pattern_key(pat.keys(), p)
            out[p] = pat.get(key, 8)  # as LoraModel: rank_pattern.get(key, r) with r = 8
        ranks.append({"rank_pattern": pat, "r": 8, "ranks": out})
    return {"paths": paths, "targets": targets, "patterns": ranks}


def verify_adapter_dir(d):
    """PEFT must load an adapter folder written by dorac."""
    from peft import PeftConfig, PeftModel
    cfg = PeftConfig.from_pretrained(d)
    weights = os.path.join(d, "adapter_model.safetensors")
    if not os.path.exists(weights):
        case = "peft_list" if cfg.use_dora else "peft_regex"
        shutil.copy(os.path.join(OUT, case, "adapter_model.safetensors"), weights)
    from peft import get_peft_model_state_dict
    model = PeftModel.from_pretrained(tiny_llama(), d)
    loaded = get_peft_model_state_dict(model)
    on_disk = load_file(weights)
    assert set(loaded) == set(on_disk), sorted(set(loaded) ^ set(on_disk))
    for k, v in on_disk.items():
        assert torch.equal(loaded[k].cpu(), v), k
    n = sum(1 for n, _ in model.named_parameters() if "lora_" in n)
    print(f"PEFT loaded {d}: {type(cfg).__name__} r={cfg.r} alpha={cfg.lora_alpha} use_dora={cfg.use_dora} "
          f"targets={cfg.target_modules}; {n} adapter parameters")


# ---- fuzz seeds -------------------------------------------------------------

def make_corpora():
    for sub in ("safetensors", "hf_config", "peft_config"):
        os.makedirs(os.path.join(CORPUS, sub), exist_ok=True)
    for f in ("st_ref.safetensors", "st_mixed.safetensors"):
        shutil.copy(os.path.join(OUT, f), os.path.join(CORPUS, "safetensors", f))
    shard_dir = os.path.join(OUT, "tiny_llama_sharded")
    first = sorted(f for f in os.listdir(shard_dir) if f.endswith(".safetensors"))[0]
    shutil.copy(os.path.join(shard_dir, first), os.path.join(CORPUS, "safetensors", "shard1.safetensors"))
    for f in sorted(os.listdir(os.path.join(OUT, "configs"))):
        shutil.copy(os.path.join(OUT, "configs", f), os.path.join(CORPUS, "hf_config", f))
    for case in PEFT_CASES:
        shutil.copy(os.path.join(OUT, case, "adapter_config.json"),
                    os.path.join(CORPUS, "peft_config", f"{case}.json"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--verify-adapter-dir")
    a = ap.parse_args()
    if a.verify_adapter_dir:
        verify_adapter_dir(a.verify_adapter_dir)
        return
    os.makedirs(OUT, exist_ok=True)
    make_safetensors()
    make_sharded()
    make_configs()
    make_peft()
    make_corpora()
    print("fixtures written to", os.path.relpath(OUT, ROOT))


if __name__ == "__main__":
    sys.exit(main())
