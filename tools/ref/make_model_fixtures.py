"""Reference fixtures for whole models: transformers + PEFT on small trained models.

Writes tests/fixtures/models/ (layout, tensor names, shapes and the loss
definition are documented in tests/fixtures/models/README.md):

  tokenizer: one byte-level BPE (vocab 1024) trained with `tokenizers`
  models:    llama-gqa   llama, GQA 4/2, rope llama3, config in the OLD spelling
             llama-tied  llama, MHA 4/4, explicit head_dim 32, tied, rope linear
             qwen2       qwen2, q/k/v bias, GQA 4/2, 3 layers
             mistral     mistral, GQA 8/2, config in the OLD spelling (rope_theta only)
             gpt2        gpt2, Conv1D (in,out) weights, learned positions, gelu_new
           + llama-gqa-bf16-sharded, llama-tied-dora-merged, gpt2-dora-merged
  per model: cases.json (eval batch), expected.safetensors (logits + loss of
             base / dora / lora / rslora ...), adapters/<variant>/ (PEFT layout),
             grads_dora.safetensors, grads_lora.safetensors, [grads_full.safetensors]

Text source: the King James Version of the Bible from the Debian package
`bible-kjv-text` (the data file /usr/lib/bible.data, read with the `bible`
program of package `bible-kjv`, which apt installs with it). The KJV text is in
the public domain (translated 1611; see /usr/share/doc/bible-kjv-text/copyright:
"The copyright for the King James Version text of the Bible is expired").
The fixtures contain only token ids and model weights derived from the text,
plus the decoded eval sequences in cases.json.

  apt-get install -y bible-kjv-text          # pulls in bible-kjv (the reader)
  bible -f Gen1:1-Rev22:21                   # one verse per line: "Ge1:1 In the ..."

Everything is deterministic: fixed seeds, one CPU thread,
torch.use_deterministic_algorithms(True), TOKENIZERS_PARALLELISM=false. Two runs
write byte-identical files (the script prints a sha256 over the tree at the end).

Run (CPU, one thread, about two minutes):
  /opt/refenv/bin/python tools/ref/make_model_fixtures.py
needs torch, transformers 5.x, peft, tokenizers, safetensors. Versions used are
recorded in tests/fixtures/models/manifest.json.
"""
import copy
import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile

# str hashing feeds set order (PEFT stores target_modules from a set): fix it.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

import peft  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, PeftModel, get_peft_model  # noqa: E402
from peft.tuners.lora import LoraLayer  # noqa: E402
from peft.utils import get_peft_model_state_dict  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    PreTrainedTokenizerFast,
    Qwen2Config,
)

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "fixtures", "models")

VOCAB = 1024
EOT = "<|endoftext|>"
TRAIN_SEQ = 64          # training sequence length
TRAIN_BATCH = 16
TRAIN_STEPS = 400
LR = 3e-3
EVAL_B, EVAL_T = 2, 24  # eval batch shape
N_MASKED = 5            # labels[0, :N_MASKED] = -100
RANK, ALPHA = 4, 8
B_STD = 0.05            # lora_B ~ N(0, B_STD^2)
M_NOISE = 0.1           # m *= 1 + M_NOISE * N(0,1)
IGNORE = -100


# ----------------------------------------------------------------------------- text
def load_kjv():
    """Returns a list of (book, chapter, verse, text) for all 31102 verses."""
    exe = shutil.which("bible")
    if exe is None or not os.path.exists("/usr/lib/bible.data"):
        sys.exit("needs the KJV text: apt-get install -y bible-kjv-text  (brings the `bible` reader)")
    out = subprocess.run([exe, "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True,
                         env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C"}).stdout
    text = out.decode("ascii")
    verses = []
    for line in text.splitlines():
        mt = re.fullmatch(r"(\d?[A-Za-z]+)(\d+):(\d+) (.*)", line)
        if mt is None:
            sys.exit(f"unexpected line from bible: {line!r}")
        verses.append((mt.group(1), int(mt.group(2)), int(mt.group(3)), mt.group(4).strip()))
    if len(verses) != 31102:
        sys.exit(f"expected 31102 verses, got {len(verses)}")
    return verses, hashlib.sha256(out).hexdigest()


# ----------------------------------------------------------------------------- tokenizer
def train_tokenizer(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, min_frequency=2, special_tokens=[EOT],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(lines, trainer=trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    assert tok.token_to_id(EOT) == 0
    return tok


def save_tokenizer_files(tok, tmpdir):
    """tokenizer.json + tokenizer_config.json as transformers writes them."""
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT,
                                   model_max_length=TRAIN_SEQ)
    d = os.path.join(tmpdir, "tok")
    fast.save_pretrained(d)
    with open(os.path.join(d, "tokenizer.json"), "rb") as f:
        files = {"tokenizer.json": f.read()}
    with open(os.path.join(d, "tokenizer_config.json")) as f:
        tc = json.load(f)
    # transformers 5 writes "TokenizersBackend", which older versions do not know; checkpoints
    # in the wild say "PreTrainedTokenizerFast" (v5 maps it to the same class).
    tc.pop("backend", None)
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    files["tokenizer_config.json"] = (json.dumps(tc, indent=2, sort_keys=True) + "\n").encode()
    return files


# ----------------------------------------------------------------------------- models
def model_configs():
    common = dict(vocab_size=VOCAB, bos_token_id=0, eos_token_id=0)
    return {
        # GQA 4/2, llama3 rope scaling whose three frequency bands all occur at head_dim 16:
        # wavelengths 2*pi*theta^(2i/16) = 6.3 (<8: kept), 19.9 (8..32: smoothed), >=62.8 (>32: /8).
        "llama-gqa": LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
            tie_word_embeddings=False,
            rope_parameters={"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0,
                             "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                             "original_max_position_embeddings": 32},
            **common),
        # explicit head_dim 32 != hidden/heads = 16 (q_proj is 64 -> 128), tied lm_head, linear rope.
        "llama-tied": LlamaConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=4, head_dim=32, max_position_embeddings=128, rms_norm_eps=1e-6,
            tie_word_embeddings=True,
            rope_parameters={"rope_type": "linear", "rope_theta": 10000.0, "factor": 2.0},
            **common),
        "qwen2": Qwen2Config(
            hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-6,
            tie_word_embeddings=False, use_sliding_window=False,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            **common),
        "mistral": MistralConfig(
            hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=8,
            num_key_value_heads=2, max_position_embeddings=128, rms_norm_eps=1e-5,
            tie_word_embeddings=False, sliding_window=None,
            rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
            **common),
        "gpt2": GPT2Config(
            n_embd=64, n_layer=2, n_head=4, n_positions=64, n_inner=None,
            activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            layer_norm_epsilon=1e-5, tie_word_embeddings=True, **common),
    }


# Rewrites of saved config.json files to the spelling older checkpoints use.
OLD_SPELLING = {
    # as Llama-3.1 checkpoints write it
    "llama-gqa": {"rope_theta": 10000.0,
                  "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                                   "original_max_position_embeddings": 32, "rope_type": "llama3"}},
    # as Mistral / Qwen2 checkpoints write it
    "mistral": {"rope_theta": 1000000.0, "rope_scaling": None},
}

FULL_GRADS = ("llama-tied", "gpt2")
MERGED = ("llama-tied", "gpt2")
SHARDED = "llama-gqa"
PATTERN_MODEL = "llama-gqa"   # gets the rank_pattern/alpha_pattern and the regex adapters


def new_model(cfg):
    return AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)


def load_model(path, dtype=torch.float32):
    return AutoModelForCausalLM.from_pretrained(path, attn_implementation="eager", dtype=dtype)


def train(model, stream, seed):
    """AdamW, warmup + cosine, random windows of TRAIN_SEQ+1 tokens from the train stream."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=LR, betas=(0.9, 0.95), weight_decay=0.01)
    warm = 20

    def lr_at(step):
        if step < warm:
            return LR * (step + 1) / warm
        p = (step - warm) / (TRAIN_STEPS - warm)
        return LR * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))

    model.train()
    hist = []
    for step in range(TRAIN_STEPS):
        starts = torch.randint(0, stream.numel() - TRAIN_SEQ - 1, (TRAIN_BATCH,), generator=g)
        x = torch.stack([stream[s:s + TRAIN_SEQ] for s in starts.tolist()])
        for pg in opt.param_groups:
            pg["lr"] = lr_at(step)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        hist.append(loss.item())
    model.eval()
    return hist


# ----------------------------------------------------------------------------- eval helpers
def ref_loss(logits, labels):
    """Token-weighted mean next-token CE: position t predicts labels[:, t+1]."""
    lg = logits[:, :-1, :].double()
    tg = labels[:, 1:]
    keep = tg != IGNORE
    lp = torch.log_softmax(lg, dim=-1)
    nll = -lp.gather(-1, tg.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (nll[keep].sum() / keep.sum()).item()


def run_eval(model, ids, labels):
    with torch.no_grad():
        out = model(input_ids=ids, labels=labels)
    logits = out.logits.float().contiguous()
    loss = out.loss.float()
    assert abs(loss.item() - ref_loss(logits, labels)) < 1e-5, (loss.item(), ref_loss(logits, labels))
    return logits, loss.reshape(1).contiguous()


def rope_tensors(model):
    """inv_freq (head_dim/2) after rope scaling, as transformers uses it: a debugging aid."""
    rot = getattr(getattr(model, "model", None), "rotary_emb", None)
    if rot is None:
        return {}
    return {"rope.inv_freq": rot.inv_freq.float().clone(),
            "rope.attention_scaling": torch.tensor([float(rot.attention_scaling)])}


def max_diff(a, b):
    return (a - b).abs().max().item()


# ----------------------------------------------------------------------------- adapters
def peft_adapter(base, seed, **kw):
    """PEFT model on a copy of `base` with non-zero B and (for DoRA) a perturbed magnitude."""
    torch.manual_seed(seed)
    cfg = LoraConfig(r=kw.pop("r", RANK), lora_alpha=kw.pop("lora_alpha", ALPHA),
                     lora_dropout=0.0, bias="none", task_type="CAUSAL_LM", **kw)
    pm = get_peft_model(copy.deepcopy(base), cfg)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, mod in pm.named_modules():
            if not isinstance(mod, LoraLayer) or "default" not in mod.lora_B:
                continue
            w = mod.lora_B["default"].weight
            w.copy_(torch.randn(w.shape, generator=g) * B_STD)
            if mod.use_dora.get("default", False):
                mag = mod.lora_magnitude_vector["default"].weight
                mag.mul_(1.0 + M_NOISE * torch.randn(mag.shape, generator=g))
    pm.eval()
    return pm


def adapter_grads(pm, ids, labels):
    for p in pm.parameters():
        p.grad = None
    out = pm(input_ids=ids, labels=labels)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in pm.named_parameters() if p.requires_grad}
    keyed = get_peft_model_state_dict(pm, state_dict=grads)
    return {k: v.float().contiguous() for k, v in keyed.items()}


def tidy_adapter_dir(ad):
    """Sort target_modules (PEFT writes a set as a list) and drop PEFT's generated model card."""
    p = os.path.join(ad, "adapter_config.json")
    with open(p) as f:
        ac = json.load(f)
    if isinstance(ac["target_modules"], list):
        ac["target_modules"] = sorted(ac["target_modules"])
    with open(p, "w") as f:
        json.dump(ac, f, indent=2, sort_keys=True)
        f.write("\n")
    if os.path.exists(os.path.join(ad, "README.md")):
        os.remove(os.path.join(ad, "README.md"))


def pattern_key(patterns, module):
    """PEFT's get_pattern_key: first key K with re.match(rf"(.*\\.)?({K})$", module)."""
    for k in patterns:
        if re.match(rf"(.*\.)?({k})$", module):
            return k
    return None


def dense_merge(base, adapter_dir, is_conv1d):
    """Independent re-computation from the SAVED adapter files (float64):
    W' = W0 + s B A (LoRA) or diag(m / ||W0 + s B A||_row) (W0 + s B A) (DoRA),
    W0 in (out, in); GPT-2 Conv1D weights are (in, out) and transposed around it."""
    with open(os.path.join(adapter_dir, "adapter_config.json")) as f:
        ac = json.load(f)
    ad = load_file(os.path.join(adapter_dir, "adapter_model.safetensors"))
    model = copy.deepcopy(base)
    sd = model.state_dict()
    prefix = "base_model.model."
    n_mod = 0
    for key in sorted(ad):
        if not key.endswith(".lora_A.weight"):
            continue
        mod = key[len(prefix):-len(".lora_A.weight")]
        A = ad[key].double()
        B = ad[f"{prefix}{mod}.lora_B.weight"].double()
        r = A.shape[0]
        assert B.shape[1] == r
        ak = pattern_key(ac.get("alpha_pattern") or {}, mod)
        alpha = ac["alpha_pattern"][ak] if ak is not None else ac["lora_alpha"]
        rk = pattern_key(ac.get("rank_pattern") or {}, mod)
        assert r == (ac["rank_pattern"][rk] if rk is not None else ac["r"])
        s = alpha / math.sqrt(r) if ac["use_rslora"] else alpha / r
        W0 = sd[mod + ".weight"].double()
        if is_conv1d:
            assert ac["fan_in_fan_out"] is True
            W0 = W0.t()
        assert A.shape[1] == W0.shape[1] and B.shape[0] == W0.shape[0]
        W = W0 + s * (B @ A)
        if ac["use_dora"]:
            m = ad[f"{prefix}{mod}.lora_magnitude_vector"].double()
            W = (m / W.norm(dim=1))[:, None] * W
        if is_conv1d:
            W = W.t()
        sd[mod + ".weight"].copy_(W.float())
        n_mod += 1
    assert n_mod > 0
    return model


# ----------------------------------------------------------------------------- io helpers
def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def write_cases(path, cases):
    """JSON with one line per sequence (json.dumps with indent would put every int on a line)."""
    lines = []
    for k, v in cases.items():
        if isinstance(v, list):
            rows = ",\n".join("    " + json.dumps(r) for r in v)
            lines.append(f'  {json.dumps(k)}: [\n{rows}\n  ]')
        else:
            lines.append(f"  {json.dumps(k)}: {json.dumps(v)}")
    text = "{\n" + ",\n".join(lines) + "\n}\n"
    assert json.loads(text) == cases
    with open(path, "w") as f:
        f.write(text)


def write_tok(d, tokfiles):
    for name, data in tokfiles.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def save_hf(model, d, tokfiles, **kw):
    model.save_pretrained(d, safe_serialization=True, **kw)
    write_tok(d, tokfiles)


def save_st(path, tensors, about):
    """F32 safetensors with one __metadata__ key: safetensors serialises the metadata map in
    hash order, so several keys would make the header differ from run to run."""
    save_file({k: tensors[k].float().contiguous() for k in sorted(tensors)}, path,
              metadata={"about": about})


def rewrite_config_old_spelling(d, fields):
    p = os.path.join(d, "config.json")
    with open(p) as f:
        cfg = json.load(f)
    cfg.pop("rope_parameters")
    cfg.update(fields)
    write_json(p, dict(sorted(cfg.items())))


def tree_digest(root):
    h = hashlib.sha256()
    for dp, dn, fn in sorted(os.walk(root)):
        dn.sort()
        for name in sorted(fn):
            p = os.path.join(dp, name)
            rel = os.path.relpath(p, root)
            if rel in ("README.md",):
                continue
            with open(p, "rb") as f:
                h.update(rel.encode() + b"\0" + hashlib.sha256(f.read()).digest())
    return h.hexdigest()


def tree_size(root):
    return sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(root) for f in fs)


# ----------------------------------------------------------------------------- main
def main():
    os.makedirs(OUT, exist_ok=True)
    # Remove what this script wrote before (keep README.md, which is written by hand).
    for name in os.listdir(OUT):
        p = os.path.join(OUT, name)
        if name == "README.md":
            continue
        shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)

    verses, text_sha = load_kjv()
    held = [v for v in verses if v[0] == "Rev"]
    train_v = [v for v in verses if v[0] != "Rev"]
    train_lines = [v[3] + "\n" for v in train_v]
    held_lines = [v[3] + "\n" for v in held]
    print(f"KJV: {len(verses)} verses, train {len(train_v)}, held-out (Revelation) {len(held)}")

    tok = train_tokenizer(train_lines)
    train_ids = [i for e in tok.encode_batch(train_lines) for i in e.ids]
    held_ids = [i for e in tok.encode_batch(held_lines) for i in e.ids]
    stream = torch.tensor(train_ids, dtype=torch.long)
    print(f"tokens: train {len(train_ids)}, held-out {len(held_ids)}, "
          f"{sum(len(l) for l in train_lines) / len(train_ids):.2f} bytes/token")

    # Eval batch: two windows of held-out text; labels = ids, first N_MASKED labels of row 0 ignored.
    starts = [0, len(held_ids) // 2]
    ids = torch.tensor([held_ids[s:s + EVAL_T] for s in starts], dtype=torch.long)
    labels = ids.clone()
    labels[0, :N_MASKED] = IGNORE
    n_targets = int((labels[:, 1:] != IGNORE).sum())
    cases = {
        "input_ids": ids.tolist(),
        "labels": labels.tolist(),
        "ignore_index": IGNORE,
        "n_target_tokens": n_targets,
        "text": [tok.decode(r) for r in ids.tolist()],
    }
    with open(os.path.join(OUT, "eval.jsonl"), "w") as f:
        for r in range(EVAL_B):
            f.write(json.dumps({"input_ids": cases["input_ids"][r], "labels": cases["labels"][r]}) + "\n")

    with tempfile.TemporaryDirectory() as tmp:
        tokfiles = save_tokenizer_files(tok, tmp)
    # the saved tokenizer must reproduce the ids
    chk = Tokenizer.from_str(tokfiles["tokenizer.json"].decode())
    assert chk.encode(held_lines[0]).ids == tok.encode(held_lines[0]).ids

    manifest = {
        "generator": "tools/ref/make_model_fixtures.py",
        "versions": {"python": sys.version.split()[0], "torch": torch.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__,
                     "tokenizers": tokenizers.__version__, "safetensors": safetensors.__version__},
        "text": {"package": "bible-kjv-text (Debian), read with `bible -f Gen1:1-Rev22:21`",
                 "licence": "King James Version text: public domain",
                 "sha256_of_bible_output": text_sha, "verses": len(verses),
                 "train": "all books except Revelation", "held_out": "Revelation"},
        "tokenizer": {"type": "byte-level BPE", "vocab_size": VOCAB, "special": {EOT: 0}},
        "training": {"steps": TRAIN_STEPS, "batch": TRAIN_BATCH, "seq_len": TRAIN_SEQ, "lr": LR,
                     "optimizer": "AdamW(betas=(0.9,0.95), wd=0.01), 20 warmup, cosine to 0.1*lr, clip 1.0"},
        "eval": {"B": EVAL_B, "T": EVAL_T, "masked_labels": f"labels[0, :{N_MASKED}] = -100",
                 "n_target_tokens": n_targets},
        "adapters": {"r": RANK, "lora_alpha": ALPHA, "lora_B": f"N(0, {B_STD}^2)",
                     "magnitude": f"PEFT init * (1 + {M_NOISE} * N(0,1))"},
        "models": {},
    }

    for mi, (name, cfg) in enumerate(model_configs().items()):
        seed = 1000 + 17 * mi
        is_gpt2 = cfg.model_type == "gpt2"
        d = os.path.join(OUT, name)
        torch.manual_seed(seed)
        model = new_model(cfg)
        hist = train(model, stream, seed)
        for p in model.parameters():
            p.requires_grad_(False)
        n_params = sum(p.numel() for p in model.parameters())
        tensors = {}
        info = {"model_type": cfg.model_type, "params": n_params,
                "train_loss_first": round(hist[0], 4),
                "train_loss_last20_mean": round(sum(hist[-20:]) / 20, 4)}

        # --- base
        save_hf(model, d, tokfiles)
        write_cases(os.path.join(d, "cases.json"), cases)
        at = AutoTokenizer.from_pretrained(d)
        assert at(cases["text"][1])["input_ids"] == cases["input_ids"][1] and at.eos_token_id == 0
        tensors["base.logits"], tensors["base.loss"] = run_eval(model, ids, labels)
        tensors.update(rope_tensors(model))
        info["loss"] = {"base": tensors["base.loss"].item()}
        reloaded = load_model(d)
        assert torch.equal(run_eval(reloaded, ids, labels)[0], tensors["base.logits"]), name
        if name in OLD_SPELLING:
            rewrite_config_old_spelling(d, OLD_SPELLING[name])
            old = load_model(d)
            lg = run_eval(old, ids, labels)[0]
            assert torch.equal(lg, tensors["base.logits"]), (name, max_diff(lg, tensors["base.logits"]))
            assert old.config.rope_parameters == model.config.rope_parameters, \
                (old.config.rope_parameters, model.config.rope_parameters)
            info["config_spelling"] = "old: rope_theta + rope_scaling"
        else:
            info["config_spelling"] = "new: rope_parameters" if not is_gpt2 else "n/a (no rope)"

        # --- full fine-tuning gradients
        if name in FULL_GRADS:
            ft = copy.deepcopy(model)
            for p in ft.parameters():
                p.requires_grad_(True)
            ft(input_ids=ids, labels=labels).loss.backward()
            gf = {n: p.grad.float().contiguous() for n, p in ft.named_parameters()}
            with safe_open(os.path.join(d, "model.safetensors"), "pt") as f:
                keys = set(f.keys())
            assert set(gf) == keys, (set(gf) ^ keys)
            save_st(os.path.join(d, "grads_full.safetensors"), gf,
                    "full fine-tuning: d(base.loss)/d(weight) for every weight; tied lm_head folded into the embedding")

        # --- adapters
        variants = [
            ("dora", dict(use_dora=True, target_modules="all-linear")),
            ("lora", dict(use_dora=False, target_modules="all-linear")),
            ("rslora", dict(use_dora=False, use_rslora=True, target_modules="all-linear")),
        ]
        if name == PATTERN_MODEL:
            variants += [
                ("dora_pattern", dict(use_dora=True,
                                      target_modules=["q_proj", "k_proj", "v_proj", "o_proj",
                                                      "gate_proj", "up_proj", "down_proj"],
                                      rank_pattern={"model.layers.0.self_attn.q_proj": 8, "down_proj": 2},
                                      alpha_pattern={"v_proj": 4, "model.layers.1.mlp.up_proj": 32})),
                ("dora_regex", dict(use_dora=True,
                                    target_modules=r".*\.layers\.1\.self_attn\.(q_proj|v_proj)|.*\.mlp\.down_proj")),
            ]
        for vi, (vname, kw) in enumerate(variants):
            pm = peft_adapter(model, seed + 100 * (vi + 1), **kw)
            ad = os.path.join(d, "adapters", vname)
            pm.save_pretrained(ad, safe_serialization=True)
            tidy_adapter_dir(ad)
            lg, ls = run_eval(pm, ids, labels)
            tensors[f"{vname}.logits"], tensors[f"{vname}.loss"] = lg, ls
            info["loss"][vname] = ls.item()
            info.setdefault("max_abs_logit_diff_vs_base", {})[vname] = round(max_diff(lg, tensors["base.logits"]), 4)
            # PEFT reload gives the same logits
            re_pm = PeftModel.from_pretrained(copy.deepcopy(model), ad)
            re_pm.eval()
            assert torch.equal(run_eval(re_pm, ids, labels)[0], lg), (name, vname)
            # independent dense merge from the saved files matches PEFT's forward
            dm = dense_merge(model, ad, is_gpt2)
            dd = max_diff(run_eval(dm, ids, labels)[0], lg)
            assert dd < 2e-5, (name, vname, dd)
            with open(os.path.join(ad, "adapter_config.json")) as f:
                ac = json.load(f)
            if is_gpt2:
                assert ac["fan_in_fan_out"] is True
            if vname in ("dora", "lora"):
                gr = adapter_grads(pm, ids, labels)
                with safe_open(os.path.join(ad, "adapter_model.safetensors"), "pt") as f:
                    keys = set(f.keys())
                    for k in keys:
                        assert f.get_tensor(k).shape == gr[k].shape, k
                assert set(gr) == keys, (set(gr) ^ keys)
                save_st(os.path.join(d, f"grads_{vname}.safetensors"), gr,
                        f"d({vname}.loss)/d(adapter tensor), PEFT key names"
                        + ("; DoRA norm detached as PEFT does (norm_grad=detach)" if vname == "dora" else ""))
            if vname == "dora" and name in MERGED:
                merged = copy.deepcopy(pm).merge_and_unload()
                md = os.path.join(OUT, f"{name}-dora-merged")
                save_hf(merged, md, tokfiles)
                write_cases(os.path.join(md, "cases.json"), cases)
                mlg, mls = run_eval(load_model(md), ids, labels)
                info["merged_vs_adapter_max_abs_logit_diff"] = max_diff(mlg, lg)
                assert max_diff(mlg, lg) < 2e-5
                save_st(os.path.join(md, "expected.safetensors"), {"base.logits": mlg, "base.loss": mls, **rope_tensors(merged)},
                        f"merged DoRA model = {name} + adapters/dora, PEFT merge_and_unload(); B={EVAL_B} T={EVAL_T} V={VOCAB}")
                info["loss"]["dora_merged"] = mls.item()

        # --- bf16 sharded copy
        if name == SHARDED:
            sd_dir = os.path.join(OUT, f"{name}-bf16-sharded")
            save_hf(copy.deepcopy(model).to(torch.bfloat16), sd_dir, tokfiles, max_shard_size="150KB")
            with open(os.path.join(sd_dir, "model.safetensors.index.json")) as f:
                n_shards = len(set(json.load(f)["weight_map"].values()))
            assert n_shards >= 2, n_shards
            write_cases(os.path.join(sd_dir, "cases.json"), cases)
            blg, bls = run_eval(load_model(sd_dir, torch.float32), ids, labels)
            save_st(os.path.join(sd_dir, "expected.safetensors"), {"base.logits": blg, "base.loss": bls, **rope_tensors(model)},
                    f"{name} rounded to bf16, upcast to f32 at load, computed in f32; B={EVAL_B} T={EVAL_T} V={VOCAB}")
            info["bf16_sharded"] = {"shards": n_shards, "loss": bls.item(),
                                    "max_abs_logit_diff_vs_f32": max_diff(blg, tensors["base.logits"])}

        save_st(os.path.join(d, "expected.safetensors"), tensors,
                f"B={EVAL_B} T={EVAL_T} V={VOCAB}; <variant>.loss = token-weighted mean CE of "
                "logits[:, t] vs labels[:, t+1] over labels != -100")
        info["loss"] = {k: round(v, 6) for k, v in info["loss"].items()}
        manifest["models"][name] = info
        print(f"{name:12s} params {n_params:7d}  train loss {hist[0]:.3f} -> {info['train_loss_last20_mean']:.3f}  "
              + "  ".join(f"{k} {v:.4f}" for k, v in info["loss"].items()), flush=True)

    write_json(os.path.join(OUT, "manifest.json"), manifest)
    print(f"total size {tree_size(OUT) / 1e6:.2f} MB; tree sha256 {tree_digest(OUT)}")


if __name__ == "__main__":
    main()
