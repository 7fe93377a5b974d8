"""Builds the demo's text, tokenizer and fine-tuning data from Debian packages.

Sources (both public domain):
  - the King James Bible, package `bible-kjv-text` (read with `bible` from
    package `bible-kjv`); /usr/share/doc/bible-kjv-text/copyright: "The
    copyright for the King James Version text of the Bible is expired";
  - the Jargon File 4.4.7, package `dict-jargon`
    (/usr/share/dictd/jargon.dict.dz); its copyright file: "This document
    (the Jargon File) is in the public domain".

Writes, under OUT (default demo/):
  data/kjv_train.jsonl   one {"text"} per chapter, every book but Revelation
  data/kjv_eval.jsonl    Revelation's chapters
  base/tokenizer.json    byte-level BPE (vocab 4096) trained on kjv_train with
                         `tokenizers`; every text starts with <|endoftext|>
                         (id 0), the model's BOS/EOS
  base/tokenizer_config.json
  data/jargon_train.jsonl  {"text": "<term>: <definition>"} per Jargon entry
  data/jargon_eval.jsonl   every 20th entry, held out

usage: python3 tools/demo/prepare_demo_data.py [OUT]   (needs the `tokenizers` package)
"""
import gzip
import json
import os
import re
import subprocess
import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "demo")


def kjv_chapters():
    text = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, capture_output=True, text=True).stdout
    chapters = {}
    order = []
    for line in text.splitlines():
        m = re.match(r"^(\w+?)(\d+):(\d+) (.*)$", line.strip())
        if not m:
            continue
        key = (m.group(1), int(m.group(2)))
        if key not in chapters:
            chapters[key] = []
            order.append(key)
        chapters[key].append(m.group(4).strip())
    return [(k[0], "\n".join(chapters[k])) for k in order]


def jargon_entries():
    raw = gzip.open("/usr/share/dictd/jargon.dict.dz", "rt", encoding="utf-8").read()
    entries, head, body = [], None, []
    for line in raw.splitlines():
        if line and not line.startswith(" "):  # a headword starts an entry
            if head is not None:
                entries.append((head, body))
            head, body = line.strip(), []
        elif head is not None:
            body.append(line.strip())
    if head is not None:
        entries.append((head, body))
    out = []
    for head, body in entries:
        if head.startswith("00-database"):
            continue
        # drop the pronunciation / part-of-speech line (" //, n."), join paragraphs
        lines = [l for l in body if l and not l.startswith("//") and not re.match(r"^/.*/,", l)]
        text = re.sub(r"\s+", " ", " ".join(lines)).replace("{", "").replace("}", "").strip()
        if len(text) >= 40:
            out.append(f"{head}: {text}")
    return out


def write_jsonl(path, texts):
    with open(path, "w", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t}, ensure_ascii=False) + "\n")


def main():
    os.makedirs(os.path.join(OUT, "data"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "base"), exist_ok=True)
    chapters = kjv_chapters()
    train = [t for book, t in chapters if book != "Rev"]
    held = [t for book, t in chapters if book == "Rev"]
    write_jsonl(os.path.join(OUT, "data", "kjv_train.jsonl"), train)
    write_jsonl(os.path.join(OUT, "data", "kjv_eval.jsonl"), held)

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=4096, min_frequency=2, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(train, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<|endoftext|> $A", pair="<|endoftext|> $A <|endoftext|> $B",
                                                       special_tokens=[("<|endoftext|>", 0)])
    tok.save(os.path.join(OUT, "base", "tokenizer.json"))
    with open(os.path.join(OUT, "base", "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>",
                   "eos_token": "<|endoftext|>", "model_max_length": 512}, f, indent=2)

    jargon = jargon_entries()
    write_jsonl(os.path.join(OUT, "data", "jargon_train.jsonl"), [t for i, t in enumerate(jargon) if i % 20])
    write_jsonl(os.path.join(OUT, "data", "jargon_eval.jsonl"), [t for i, t in enumerate(jargon) if i % 20 == 0])
    n_tok = sum(len(tok.encode(t).ids) for t in train)
    print(json.dumps({"kjv_chapters": len(train), "kjv_eval_chapters": len(held), "kjv_train_tokens": n_tok,
                      "jargon_entries": len(jargon), "vocab": tok.get_vocab_size()}))


if __name__ == "__main__":
    main()
