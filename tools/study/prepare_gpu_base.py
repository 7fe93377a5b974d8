#!/usr/bin/env python3
"""Prepares, on a machine with apt and PyPI, what the GPU scale of the study
(issue 7) needs to pretrain its base model with dorac on the GPU machine:
a corpus of real English text, a tokenizer and a Llama config.

Sources (Debian packages; licences from their /usr/share/doc/*/copyright):
  - the King James Bible, `bible-kjv-text` (read with `bible`, `bible-kjv`):
    public domain ("The copyright for the King James Version text of the Bible
    is expired"); one document per chapter;
  - GCIDE 0.48, the GNU Collaborative International Dictionary of English
    (Webster's Revised Unabridged 1913 + WordNet 1.5 + its editors'
    additions), `dict-gcide`: GPL-2+; one document per entry;
  - WordNet 3.0, `dict-wn`: the WordNet 3.0 licence (permissive, keep the
    notice); one document per headword, a gloss already given under another
    headword (WordNet repeats a synset's gloss under each of its words) left out;
  - The Devil's Dictionary (Ambrose Bierce, 1911), `dict-devil`: public
    domain ("A Public Domain Text, Copyright Expired"); one document per entry.
  Not used: FOLDOC (it contains Jargon File text) and the Jargon File itself,
  the fine-tuning task. Every document sharing a 13-word sequence with any
  line of demo/data/jargon_{train,eval}.jsonl is dropped as well.

Every 100th document of each source is held out (corpus_eval). The tokenizer is
byte-level BPE with the construction of tools/demo/prepare_demo_data.py
(<|endoftext|> = id 0 = BOS = EOS, prepended to every text), trained on the
training split.

Writes into OUT (default .devstudy/, which .git/info/exclude ignores):
  config.json            Llama config (model_type llama), the model to pretrain
  tokenizer.json, tokenizer_config.json
  corpus_train.jsonl.xz  {"text": ...} per document, sources interleaved
  corpus_eval.jsonl.xz   the held-out documents
  MANIFEST.json          packages, versions, licences, documents, bytes, tokens,
                         the config's parameter count

Environment overrides (for a tiny test of the whole path): HIDDEN (768),
LAYERS (12), HEADS (12), KV_HEADS (4), HEAD_DIM (64), INTERMEDIATE (3072),
VOCAB (16384), MAX_POS (512), FRACTION (1.0: keep this share of every
source's documents).

usage: python3 tools/study/prepare_gpu_base.py [OUT]   (needs `tokenizers`;
       tools/study/prepare_gpu_base.sh installs everything and runs it)
"""
import gzip
import hashlib
import json
import lzma
import os
import random
import re
import subprocess
import sys
import unicodedata

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".devstudy")
DICTD = "/usr/share/dictd"
EVAL_EVERY = 100
NGRAM = 13

CFG = {k: int(os.environ.get(k, v)) for k, v in (("HIDDEN", 768), ("LAYERS", 12), ("HEADS", 12), ("KV_HEADS", 4),
                                                 ("HEAD_DIM", 64), ("INTERMEDIATE", 3072), ("VOCAB", 16384),
                                                 ("MAX_POS", 512))}
FRACTION = float(os.environ.get("FRACTION", "1"))


# ---------------------------------------------------------------------------
# dictd databases: NAME.index lines "headword<TAB>offset<TAB>length" (base 64)
B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}


def b64(s):
    n = 0
    for c in s:
        n = n * 64 + B64[c]
    return n


def dict_articles(name):
    """The articles of a dictd database in file order, each once (several
    headwords may point at one article), without the 00-database-* ones."""
    data = gzip.open(os.path.join(DICTD, name + ".dict.dz"), "rb").read()
    spans = set()
    for line in open(os.path.join(DICTD, name + ".index"), encoding="utf-8", errors="replace"):
        f = line.rstrip("\n").split("\t")
        if len(f) < 3 or f[0].startswith("00-database") or f[0].startswith("00database"):
            continue
        spans.add((b64(f[1]), b64(f[2])))
    for off, n in sorted(spans):
        yield data[off:off + n].decode("utf-8", errors="replace")


def paragraphs(body):
    """Joins the wrapped, indented lines of each blank-line-separated paragraph."""
    out = []
    for p in re.split(r"\n\s*\n", body):
        p = re.sub(r"\s+", " ", p).strip()
        if p:
            out.append(p)
    return out


# ---------------------------------------------------------------------------
# GCIDE
SOURCE_TAG = re.compile(r"^\s*\[[^\]\n]*(Webster|WordNet|PJC|Century|RDH|\bRP\b|\bGG\b|\bAS\b|MI\d|RHUD|Chambers)"
                        r"[^\]\n]*\]\s*$", re.M)
ACCENT = {"'": "\u0301", "`": "\u0300", "^": "\u0302", '"': "\u0308", "=": "\u0304", "~": "\u0303", ".": "\u0307",
          ",": "\u0327", "-": "\u0306", "*": "\u030a"}
NAMED = {"ae": "æ", "AE": "Æ", "oe": "œ", "OE": "Œ", "deg": "°", "eth": "ð", "th": "þ", "ng": "ŋ", "sec": "″",
         "min": "′", "bar": "|", "add": "", "asl": "", "aum": "ä", "udd": "", "?": "?", "imac": "ī", "root": "√",
         "thorn": "þ", "yogh": "ȝ", "sect": "§"}
INLINE_TAG = re.compile(r" ?\[(PJC|1913 Webster|Webster 1913 Suppl\.|WordNet [0-9.]+)[^\]\n]*\]")


def gcide_entity(m):
    s = m.group(1)
    if s in NAMED:
        return NAMED[s]
    try:  # Greek letters: [alpha], [Omega]
        case = "CAPITAL" if s[0].isupper() else "SMALL"
        return unicodedata.lookup(f"GREEK {case} LETTER {s.upper()}")
    except KeyError:
        pass
    m2 = re.fullmatch(r"([A-Za-z]{1,2})([\^])|([`'\"=~.,\-*^])([A-Za-z]{1,2})", s)
    if m2:  # [e^] breve-like, ['e] acute, [=a] macron ...
        letters = m2.group(1) or m2.group(4)
        mark = m2.group(2) or m2.group(3)
        mark = "\u0306" if m2.group(2) else ACCENT[mark]
        return unicodedata.normalize("NFC", letters[0] + mark + letters[1:])
    return m.group(0)  # [R.], [Obs.], [L.] ...: labels, kept


def gcide_docs():
    for art in dict_articles("gcide"):
        head, _, rest = art.partition("\n")
        head = re.sub(r"\\[^\\\n]*\\", "", head)  # the pronunciation \A*buse"\
        body = INLINE_TAG.sub("", SOURCE_TAG.sub("", head + "\n" + rest))
        body = re.sub(r"\[([A-Za-z`'\"=~.,\-*^?]{1,6})\]", gcide_entity, body)
        body = body.replace("{", "").replace("}", "").replace("\\", "")
        text = "\n".join(paragraphs(body))
        text = re.sub(r" ,", ",", text)
        if len(text) >= 40:
            yield text


# ---------------------------------------------------------------------------
# WordNet (dict-wn): "word\n    n 1: gloss; "example" [syn: {..}] [ant: {..}]\n    2: ..."
POS = {"n": "noun", "v": "verb", "adj": "adjective", "adv": "adverb"}


def wordnet_docs():
    seen = set()
    for art in dict_articles("wn"):
        head, _, rest = art.partition("\n")
        head = head.strip()
        body = re.sub(r"\s+", " ", rest).strip()
        # senses: "n 1: ..." / "2: ..." at the start or after the previous sense
        parts = re.split(r"(?:^|\s)(?:(n|v|adj|adv) )?(\d+): ", " " + body)
        senses, pos = [], None
        for i in range(1, len(parts) - 2, 3):
            pos = parts[i] or pos
            gloss = parts[i + 2]
            gloss = re.sub(r"\[(syn|ant|also|see also|pertainym|derivation):[^\]]*\]", "", gloss)
            gloss = re.sub(r"\s+", " ", gloss.replace("{", "").replace("}", "")).strip(" ;")
            key = gloss.lower()
            if len(gloss) < 3 or key in seen:
                continue
            seen.add(key)
            senses.append(f"({POS.get(pos, pos)}) {gloss}")
        if not senses:
            continue
        text = head + ": " + senses[0] if len(senses) == 1 else head + "\n" + "\n".join(
            f"{k}. {s}" for k, s in enumerate(senses, 1))
        if len(text) >= 40:
            yield text


# ---------------------------------------------------------------------------
def devil_docs():
    for art in dict_articles("devil"):
        text = "\n".join(paragraphs(art))
        if len(text) >= 40:
            yield text


def kjv_docs():
    """One document per chapter, as tools/demo/prepare_demo_data.py reads them."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "demo"))
    from prepare_demo_data import kjv_chapters
    for _book, text in kjv_chapters():
        yield text


SOURCES = [  # name, package(s), licence line from the package's copyright file, generator
    ("kjv", ["bible-kjv-text", "bible-kjv"],
     "public domain: \"The copyright for the King James Version text of the Bible is expired\" (Crown letters patent "
     "in the UK)", kjv_docs),
    ("gcide", ["dict-gcide"],
     "GPL-2+: \"GCIDE is free software; you can redistribute it and/or modify it under the terms of the GNU General "
     "Public License ... either version 2, or (at your option) any later version\"", gcide_docs),
    ("wordnet", ["dict-wn"],
     "WordNet 3.0 licence: \"Permission to use, copy, modify and distribute this software and database ... for any "
     "purpose and without fee or royalty is hereby granted\" (WordNet 3.0 Copyright 2006 by Princeton University)",
     wordnet_docs),
    ("devil", ["dict-devil"],
     "public domain: \"The Devil's Dictionary is in the public domain, its copyright has expired\"", devil_docs),
]


# ---------------------------------------------------------------------------
def words(t):
    return re.findall(r"[a-z0-9]+", t.lower())


def ngram_hashes(t):
    w = words(t)
    return {hashlib.blake2b(" ".join(w[i:i + NGRAM]).encode(), digest_size=8).digest()
            for i in range(len(w) - NGRAM + 1)}


def jargon_ngrams():
    h = set()
    for f in ("jargon_train.jsonl", "jargon_eval.jsonl"):
        for line in open(os.path.join(ROOT, "demo", "data", f), encoding="utf-8"):
            h |= ngram_hashes(json.loads(line)["text"])
    return h


def pkg_version(p):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Version}", p], capture_output=True, text=True)
    return r.stdout.strip() or None


def params(c):
    h, L, V, I = c["HIDDEN"], c["LAYERS"], c["VOCAB"], c["INTERMEDIATE"]
    q, kv = c["HEADS"] * c["HEAD_DIM"], c["KV_HEADS"] * c["HEAD_DIM"]
    attn = h * q + 2 * h * kv + q * h
    mlp = 3 * h * I
    per_layer = attn + mlp + 2 * h
    return {"embedding (tied with lm_head)": V * h, "per layer": per_layer, "layers": L * per_layer, "final norm": h,
            "total": V * h + L * per_layer + h, "non-embedding": L * per_layer + h}


def write_xz(path, texts):
    tmp = path + ".tmp"
    with lzma.open(tmp, "wt", encoding="utf-8", preset=9 | lzma.PRESET_EXTREME) as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def main():
    os.makedirs(OUT, exist_ok=True)
    jn = jargon_ngrams()
    train, held, man_src = [], [], []
    for name, pkgs, lic, gen in SOURCES:
        docs = list(gen())
        n_all = len(docs)
        if FRACTION < 1:
            docs = docs[::max(1, round(1 / FRACTION))]
        kept, dropped = [], 0
        for t in docs:
            if ngram_hashes(t) & jn:
                dropped += 1
            else:
                kept.append(t)
        tr = [t for i, t in enumerate(kept) if i % EVAL_EVERY != EVAL_EVERY - 1]
        ev = [t for i, t in enumerate(kept) if i % EVAL_EVERY == EVAL_EVERY - 1]
        train += [(name, t) for t in tr]
        held += [(name, t) for t in ev]
        man_src.append({"source": name, "packages": {p: pkg_version(p) for p in pkgs}, "licence": lic,
                        "documents_parsed": n_all, "documents_used": len(kept),
                        "dropped_jargon_overlap": dropped, "train_documents": len(tr), "eval_documents": len(ev),
                        "train_bytes": sum(len(t.encode()) for t in tr), "eval_bytes": sum(len(t.encode()) for t in ev)})
        print(f"{name}: {n_all} documents, {dropped} dropped for a {NGRAM}-word overlap with the Jargon File, "
              f"{len(tr)} train / {len(ev)} eval, {man_src[-1]['train_bytes'] / 1e6:.1f} MB", flush=True)
    random.Random(1).shuffle(train)  # interleave the sources (dorac shuffles too, per epoch)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=CFG["VOCAB"], min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator((t for _, t in train), trainer)
    tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A",
                                                       pair="<|endoftext|> $A <|endoftext|> $B",
                                                       special_tokens=[("<|endoftext|>", 0)])
    assert tok.token_to_id("<|endoftext|>") == 0
    tok.save(os.path.join(OUT, "tokenizer.json"))
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
                   "eos_token": "<|endoftext|>", "model_max_length": CFG["MAX_POS"]}, f, indent=2)

    def ntok(texts):  # with the BOS every text gets
        return sum(len(e.ids) for e in tok.encode_batch(texts))

    for s in man_src:
        s["train_tokens"] = ntok([t for n, t in train if n == s["source"]])
        s["eval_tokens"] = ntok([t for n, t in held if n == s["source"]])
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": tok.get_vocab_size(),
              "hidden_size": CFG["HIDDEN"], "intermediate_size": CFG["INTERMEDIATE"],
              "num_hidden_layers": CFG["LAYERS"], "num_attention_heads": CFG["HEADS"],
              "num_key_value_heads": CFG["KV_HEADS"], "head_dim": CFG["HEAD_DIM"],
              "max_position_embeddings": CFG["MAX_POS"], "rms_norm_eps": 1e-05, "hidden_act": "silu",
              "tie_word_embeddings": True, "rope_theta": 10000.0, "attention_bias": False, "mlp_bias": False,
              "bos_token_id": 0, "eos_token_id": 0, "dtype": "bfloat16"}
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    write_xz(os.path.join(OUT, "corpus_train.jsonl.xz"), [t for _, t in train])
    write_xz(os.path.join(OUT, "corpus_eval.jsonl.xz"), [t for _, t in held])
    p = params(dict(CFG, VOCAB=tok.get_vocab_size()))
    man = {"purpose": "pretraining corpus, tokenizer and config of the GPU-scale base model of the study (issue 7)",
           "made_by": "tools/study/prepare_gpu_base.py", "sources": man_src,
           "excluded": "FOLDOC and the Jargon File (dict-foldoc, dict-jargon); documents sharing a 13-word sequence "
                       "with demo/data/jargon_{train,eval}.jsonl",
           "eval_split": f"every {EVAL_EVERY}th document of each source",
           "train_documents": len(train), "eval_documents": len(held),
           "train_tokens": sum(s["train_tokens"] for s in man_src),
           "eval_tokens": sum(s["eval_tokens"] for s in man_src),
           "tokenizer": {"type": "byte-level BPE (tokenizers 0.23.3)", "vocab": tok.get_vocab_size(),
                         "bos_eos": "<|endoftext|> = 0, prepended to every text"},
           "config": config, "parameters": p,
           "files": {f: os.path.getsize(os.path.join(OUT, f)) for f in
                     ("corpus_train.jsonl.xz", "corpus_eval.jsonl.xz", "tokenizer.json", "config.json")}}
    with open(os.path.join(OUT, "MANIFEST.json"), "w") as f:
        json.dump(man, f, indent=1)
    print(json.dumps({k: man[k] for k in ("train_documents", "eval_documents", "train_tokens", "eval_tokens",
                                          "parameters", "files")}, indent=1))


if __name__ == "__main__":
    main()
