#!/usr/bin/env python3
"""make_tokenizer_fixtures.py -- reference fixtures for dorac's tokenizer (issue 4).

Trains small BPE tokenizers of the model families dorac supports with the
Hugging Face `tokenizers` package (pip; written against 0.23), then records,
for every case text, the ids that `tokenizers` produces (with and without
special tokens) and the text that its decoder gives back. The C tests
(tests/test_tokenizer*.c) compare dorac against these files id for id, so CI
needs no Python.

Training text comes from Debian packages, installed with apt-get:
  - bible-kjv + bible-kjv-text: the King James Version of the Bible. The text
    is in the public domain (the translation dates from 1611); the `bible`
    program that unpacks it is GPL-2+ and is only run here, not shipped.
  - dict-jargon: the Jargon File 4.4.7, in the public domain.
Nothing from those packages is committed except short held-out paragraphs
quoted in the cases files.

Families (one tokenizer.json each, trained here):
  gpt2          byte-level BPE, ByteLevel pre-tokenizer with the GPT-2 regex,
                merges in the legacy "a b" string form, extra added tokens
                with lstrip / rstrip / single_word / normalized flags.
  llama3        Split with the Llama-3 regex, then ByteLevel(use_regex=false),
                ignore_merges, <|begin_of_text|> template (Sequence processor).
  qwen2         NFC normalizer, Split with the Qwen2 regex, ByteLevel.
  llama2        SentencePiece-style BPE: Prepend("▁") + Replace(" ", "▁")
                normalizer, byte_fallback, fuse_unk, <s> $A template,
                Replace/ByteFallback/Fuse/Strip decoder. Also written with a
                tokenizer_config.json (add_bos_token + add_eos_token).
  mistral       the same model with the newer Metaspace(prepend_scheme=first,
                split=false) pre-tokenizer instead of the normalizer.
  zoo_wordpiece NFKC + Lowercase, Split on " " (removed), Digits, punctuation
                Split, BPE with continuing_subword_prefix "##" and
                end_of_word_suffix "</w>", [UNK], BPEDecoder, [CLS] $A [SEP].
  zoo_metaspace NFD + Replace(regex \\p{Mn} -> ""), Metaspace(always, split),
                unk without byte fallback (fused), Metaspace decoder.
  zoo_split     NFKD + Lowercase, Split behaviours merged_with_previous /
                merged_with_next / contiguous / inverted, ByteLevel with
                add_prefix_space, RobertaProcessing, <mask> with lstrip.

Invalid UTF-8: a Python str cannot hold invalid UTF-8, so `tokenizers` never
sees it. Bytes reach it through a decode; the lossless convention that both
Python (bytes.decode("utf-8", "replace")) and Rust (String::from_utf8_lossy)
follow replaces each maximal invalid subsequence with U+FFFD. Cases with a
"hex" input record what `tokenizers` gives for that replaced text; dorac
applies the same replacement itself.

Usage:  /opt/refenv/bin/python tools/ref/make_tokenizer_fixtures.py
Writes: tests/fixtures/tokenizer/cases.json (the inputs) and, per tokenizer,
        <name>.tokenizer.json and <name>.expect.json
"""
import json
import os
import random
import subprocess
import sys

from tokenizers import (AddedToken, Regex, Tokenizer, decoders, models,
                        normalizers, pre_tokenizers, processors, trainers)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                   "tests", "fixtures", "tokenizer")

# The real patterns, copied from the tokenizer.json files of the models.
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
                  r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"
                 r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")


# --------------------------------------------------------------------------
# Training text
# --------------------------------------------------------------------------
def ensure_packages():
    need = [p for p in ("bible-kjv", "bible-kjv-text", "dict-jargon")
            if subprocess.run(["dpkg-query", "-W", "-f=${Status}", p],
                              capture_output=True, text=True).stdout.find("ok installed") < 0]
    if need:
        subprocess.run(["apt-get", "install", "-y", "-qq"] + need, check=True)


def load_text():
    ensure_packages()
    kjv = subprocess.run(["bible", "-l10000", "Ge1:1-Re22:21"], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, check=True).stdout
    verses = []
    for line in kjv.splitlines():
        line = line.strip()
        if not line or not line[0].isdigit():
            continue
        verses.append(line.split(" ", 1)[1] if " " in line else line)
    jargon = subprocess.run(["zcat", "/usr/share/dictd/jargon.dict.dz"], capture_output=True,
                            text=True, check=True).stdout
    paras = [" ".join(p.split()) for p in jargon.split("\n\n") if len(p.split()) > 8]
    # The last verses and paragraphs are held out of training.
    train = verses[:-400] + paras[:-200]
    held = [" ".join(verses[-400 + 40 * i: -400 + 40 * i + 6]) for i in range(3)]
    held += [paras[-200 + 50 * i] for i in range(3)]
    return train, held, verses[-400:], paras[-200:]


# --------------------------------------------------------------------------
# Cases: every category that issue 4 lists
# --------------------------------------------------------------------------
def make_cases(held, held_verses, held_paras):
    c = []

    def add(name, text):
        c.append((name, text))

    for i, p in enumerate(held):
        add(f"heldout_{i}", p)
    add("heldout_multiline", "\n".join(held_verses[100:108]) + "\n")
    add("heldout_long", " ".join(held_paras[100:104]))
    add("accented_latin", "Café déjà vu, naïve façade, Ærøskøbing, Dvořák, Łódź, São Paulo, Übermaß.")
    add("cjk", "日本語のテキストです。中文字符，汉字测试。한국어 텍스트입니다。")
    add("arabic", "مرحبا بالعالم، هذا اختبار للنص العربي ١٢٣.")
    add("hebrew", "שלום עולם, זוהי בדיקה של טקסט בעברית.")
    add("devanagari", "नमस्ते दुनिया, यह हिन्दी पाठ का परीक्षण है। क्षत्रिय")
    add("cyrillic", "Привет, мир! Съешь же ещё этих мягких французских булок.")
    add("greek", "Γειά σου Κόσμε! Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. ΣΊΣΥΦΟΣ")
    add("emoji_zwj", "family 👨‍👩‍👧‍👦 and 👩🏽‍💻 coder, ❤️‍🔥 heart, 👍🏿 thumbs")
    add("emoji_flags", "flags 🇺🇸🇯🇵🇩🇪 and 🏳️‍🌈 🏴󠁧󠁢󠁳󠁣󠁴󠁿")
    add("combining_marks", "e\u0301 a\u0308 n\u0303 Z\u0324\u0354\u0367\u0311\u0313 o\u0328\u0304 \u1100\u1161\u11a8 q\u0307\u0323")
    add("tabs", "a\tb\t\tc\t \td\t")
    add("space_runs", "word     word  word      \n  word")
    add("crlf", "line one\r\nline two\r\n\r\nline four\r\n")
    add("newlines_only", "\n\n\n")
    add("leading_spaces", "   leading spaces")
    add("trailing_spaces", "trailing spaces   ")
    add("both_spaces", "  both  ")
    add("one_space", " ")
    add("spaces_only", "      ")
    add("contractions_lower", "I'm sure you're right, he'll say we've done it, they'd know it's what we'd don't.")
    add("contractions_upper", "I'M SURE YOU'RE RIGHT, HE'LL SAY WE'VE DONE IT, THEY'D KNOW IT'S WHAT WE'D DON'T.")
    add("contractions_mixed", "It'S You'Re HE'll 'S 'T 're 'Ve 'D 'LL")
    add("contraction_long_s", "it'\u017f and 'K and 'ſt")
    add("digits", "1234567890 3.14159 1,000,000 007 2024-01-31 0x1F ½ ² ٣ ⅷ")
    add("code_python", "def f(x, y=2):\n    return x**2 + y  # comment\n\nprint(f(3))\n")
    add("code_c", "int main(void) {\n\tchar *s = \"hi\\n\";\n\treturn s[0] == 'h' ? 0 : -1;\n}\n")
    add("urls", "See https://example.com/path/to?q=1&r=two#frag or mailto:user@example.org, ftp://a.b/c.")
    add("empty", "")
    add("special_eot", "<|endoftext|>")
    add("special_in_text", "Hello<|endoftext|>world <|endoftext|> again")
    add("special_partial", "<|endoftext|")
    add("special_spaced", "< |endoftext|> <|endoftext |>")
    add("special_llama2", "<s>Hello</s> <unk> [INST] hi [/INST]")
    add("special_llama3", "<|begin_of_text|>hi<|end_of_text|><|eot_id|>")
    add("special_chatml", "<|im_start|>user\nhi<|im_end|>")
    add("added_flags", "A [SEP]  B [SEP]C<tag>   x helloworld xhelloworld helloworld. and thou art here")
    add("added_normalized", "Jerusalem and jerusalem,Jerusalem! JERUSALEM")
    add("mask", "The <mask> sat on the <mask>.   <mask>")
    add("unicode_spaces", "a\u00a0b\u3000c\u2028d\u2029e\u0085f\u180eg\u200bh\u2003i\u202fj")
    add("nul_and_controls", "a\x00b\x01c\x1bd\x7f")
    add("dotless_i", "İstanbul ıI ẞ Σίσυφος ΣΑΣ ﬁ ㎏")
    add("long_word", "a" * 700)
    add("long_spaces", " " * 300 + "x")
    add("long_digits", "9" * 257)
    add("repeat_ab", "ab" * 150)
    add("punct_runs", "!!!??? ... --- *** ((( ))) ''' \"\"\" ...\n\n!!")
    add("mixed_scripts", "Latin Ελληνικά Кириллица 漢字 العربية עברית हिन्दी 123 !")
    add("ignore_merges_words", "In Jerusalem, in the beginning, the hacker wrote a computer program "
        "for understanding.")
    add("hyphens", "well-known state-of-the-art e-mail -leading trailing- --double")
    add("private_use", "\ue000\uf8ff \U000f0000")
    add("noncharacters", "\ufffe\uffff\ufdd0")
    add("replacement_char", "\ufffd")
    return c


# Raw byte inputs that are not valid UTF-8.
INVALID = [
    ("invalid_ff", "ff"),
    ("invalid_lone_continuation", "61626380646566"),
    ("invalid_truncated_3byte", "e697"),
    ("invalid_truncated_then_ascii", "e69761"),
    ("invalid_surrogate", "eda080"),
    ("invalid_overlong", "c0af"),
    ("invalid_above_max", "f4908080"),
    ("invalid_mixed", "48656c6c6ffe20e4b8ad20f09f988020f09f98"),
    ("invalid_f5", "f5808080"),
    ("invalid_e0_80", "e080af"),
]


# --------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------
def byte_level_trainer(vocab, specials=()):
    return trainers.BpeTrainer(vocab_size=vocab, min_frequency=2, special_tokens=list(specials),
                               initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                               show_progress=False)


def make_gpt2(train):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(train, byte_level_trainer(1000, ["<|endoftext|>"]))
    tok.add_tokens([
        AddedToken("[SEP]", special=True, lstrip=True, rstrip=True, normalized=False),
        AddedToken("helloworld", single_word=True, normalized=True, special=False),
        AddedToken(" thou art", normalized=False, special=False),
        AddedToken("<tag>", rstrip=True, normalized=False, special=False),
    ])
    j = json.loads(tok.to_str())
    # GPT-2's own file uses the legacy "a b" merges form: keep one family in it.
    j["model"]["merges"] = [" ".join(m) for m in j["model"]["merges"]]
    return j


def make_llama3(train):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(train, byte_level_trainer(1200))
    j = json.loads(tok.to_str())
    # Whole words that are in the vocabulary but that the merges would not
    # build: only ignore_merges reaches them (tiktoken-converted vocabularies
    # have such entries).
    vocab = j["model"]["vocab"]
    nxt = max(vocab.values()) + 1
    for w in ["ĠJerusalem", "Ġbeginning", "Ġunderstanding", "Ġhacker", "Ġcomputer", "Ġprogram"]:
        if w not in vocab:
            vocab[w] = nxt
            nxt += 1
    j["model"]["ignore_merges"] = True
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>",
                "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    j["added_tokens"] = [{"id": nxt + i, "content": s, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, s in enumerate(specials)]
    j["post_processor"] = {"type": "Sequence", "processors": [
        {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True},
        {"type": "TemplateProcessing",
         "single": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                    {"Sequence": {"id": "A", "type_id": 0}}],
         "pair": [{"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                  {"Sequence": {"id": "A", "type_id": 0}},
                  {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 1}},
                  {"Sequence": {"id": "B", "type_id": 1}}],
         "special_tokens": {"<|begin_of_text|>": {"id": "<|begin_of_text|>", "ids": [nxt],
                                                  "tokens": ["<|begin_of_text|>"]}}}]}
    return j


def make_qwen2(train):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(QWEN2_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(train, byte_level_trainer(900))
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False),
                            AddedToken("<|im_start|>", special=True, normalized=False),
                            AddedToken("<|im_end|>", special=True, normalized=False)])
    return json.loads(tok.to_str())


def sentencepiece_like_model(train, vocab_size):
    """Trains word-internal merges on ▁-marked words, then lays the vocabulary
    out as Llama-2's is: <unk> <s> </s>, the 256 byte tokens, the rest."""
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    tr = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=2, limit_alphabet=90,
                             show_progress=False)
    tok.train_from_iterator(train, tr)
    m = json.loads(tok.to_str())["model"]
    old = sorted(m["vocab"].items(), key=lambda kv: kv[1])
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for k, _ in old:
        if k not in vocab:
            vocab[k] = len(vocab)
    return vocab, m["merges"]


def llama2_json(vocab, merges, metaspace, cross_word=False):
    """cross_word adds a merge ("e", "▁") that joins across words: dorac then
    cannot cut the input into words and takes its general path."""
    vocab, merges = dict(vocab), list(merges)
    if not metaspace:
        # Real Llama-2 vocabularies have runs of "▁" built by merges such as
        # ("▁", "▁"); those never join two words.
        extra = [["▁", "▁"], ["▁▁", "▁▁"]] + ([["e", "▁"]] if cross_word else [])
        for a, b in extra:
            if a + b not in vocab:
                vocab[a + b] = len(vocab)
        merges += extra
    specials = [("<unk>", 0), ("<s>", 1), ("</s>", 2)]
    added = [{"id": i, "content": s, "single_word": False, "lstrip": False, "rstrip": False,
              "normalized": False, "special": True} for s, i in specials]
    added.append({"id": len(vocab), "content": "[INST]", "single_word": False, "lstrip": False,
                  "rstrip": False, "normalized": False, "special": True})
    added.append({"id": len(vocab) + 1, "content": "Jerusalem", "single_word": False,
                  "lstrip": False, "rstrip": False, "normalized": True, "special": False})
    j = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
         "normalizer": {"type": "Sequence", "normalizers": [
             {"type": "Prepend", "prepend": "▁"},
             {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}]},
         "pre_tokenizer": None,
         "post_processor": {
             "type": "TemplateProcessing",
             "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                        {"Sequence": {"id": "A", "type_id": 0}}],
             "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                      {"Sequence": {"id": "A", "type_id": 0}},
                      {"SpecialToken": {"id": "<s>", "type_id": 1}},
                      {"Sequence": {"id": "B", "type_id": 1}}],
             "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
         "decoder": {"type": "Sequence", "decoders": [
             {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
             {"type": "ByteFallback"}, {"type": "Fuse"},
             {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
         "model": {"type": "BPE", "dropout": None, "unk_token": "<unk>",
                   "continuing_subword_prefix": None, "end_of_word_suffix": None,
                   "fuse_unk": True, "byte_fallback": True, "ignore_merges": False,
                   "vocab": vocab, "merges": merges}}
    if metaspace:
        j["normalizer"] = None
        j["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁",
                              "prepend_scheme": "first", "split": False}
    return j


def make_zoo_wordpiece(train):
    tok = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##",
                               end_of_word_suffix="</w>", fuse_unk=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(" ", behavior="removed"),
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.Split(Regex(r"[\p{P}\p{S}]"), behavior="isolated")])
    tok.decoder = decoders.BPEDecoder(suffix="</w>")
    tr = trainers.BpeTrainer(vocab_size=500, min_frequency=2, limit_alphabet=60,
                             special_tokens=["[UNK]", "[CLS]", "[SEP]"],
                             continuing_subword_prefix="##", end_of_word_suffix="</w>",
                             show_progress=False)
    tok.train_from_iterator(train, tr)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    return json.loads(tok.to_str())


def make_zoo_metaspace(train):
    tok = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.NFD(),
                                           normalizers.Replace(Regex(r"\p{Mn}"), "")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tr = trainers.BpeTrainer(vocab_size=400, min_frequency=2, limit_alphabet=70,
                             special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(train, tr)
    return json.loads(tok.to_str())


def make_zoo_split(train):
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.Sequence([normalizers.NFKD(), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"\s+"), behavior="merged_with_previous"),
        pre_tokenizers.Split("-", behavior="merged_with_next"),
        pre_tokenizers.Split(Regex(r"\p{P}"), behavior="contiguous"),
        pre_tokenizers.Split(Regex(r"[aeiou]+"), behavior="merged_with_previous", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(train, byte_level_trainer(500, ["<s>", "<pad>", "</s>", "<unk>"]))
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, special=True, normalized=False)])
    tok.post_processor = processors.RobertaProcessing(("</s>", tok.token_to_id("</s>")),
                                                      ("<s>", tok.token_to_id("<s>")),
                                                      trim_offsets=True, add_prefix_space=True)
    return json.loads(tok.to_str())


# --------------------------------------------------------------------------
# Recording
# --------------------------------------------------------------------------
def record(name, tj, cases, rng, config=None, config_template=None):
    """Writes <name>.tokenizer.json and <name>.expect.json. To keep the files
    small, a decoded string equal to the case's input text is left out (the
    test then compares with the text), and ids_special, which is always
    prefix + ids + suffix for one sequence, is kept only for some cases."""
    path = os.path.join(OUT, f"{name}.tokenizer.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(tj, f, ensure_ascii=False, separators=(",", ":"))
    tok = Tokenizer.from_file(path)
    tok_cfg = None
    if config is not None:
        with open(os.path.join(OUT, f"{name}.tokenizer_config.json"), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False, indent=1)
        # What dorac does with add_bos_token / add_eos_token (what transformers
        # 4.x's LlamaTokenizerFast.update_post_processor does): the template
        # becomes [bos] $A [eos].
        tok_cfg = Tokenizer.from_file(path)
        tok_cfg.post_processor = config_template

    lines = []
    for i, (cname, text, hexs) in enumerate(cases):
        lines.append(encode_case(tok, tok_cfg, i, cname, text, hexs))

    n = tok.get_vocab_size(with_added_tokens=True)
    decode_lines = []
    for _ in range(24):
        ids = [rng.randrange(0, n + 3) for _ in range(rng.randrange(0, 24))]
        decode_lines.append(decode_case(tok, ids))
    # runs of single bytes that do not form UTF-8 (byte tokens, byte-level chars)
    for s in ("<0xE6>", "<0x97>", "<0xA5>", "<0xFF>", "Ġ", "Ã", "¦", "ä¸"):
        i = tok.token_to_id(s)
        if i is not None:
            decode_lines.append(decode_case(tok, [i, i]))
    head = {"tokenizer": f"{name}.tokenizer.json",
            "tokenizer_config": f"{name}.tokenizer_config.json" if config is not None else None,
            "vocab_size": n,
            "model_vocab_size": tok.get_vocab_size(with_added_tokens=False),
            "token_probes": {t: tok.token_to_id(t) for t in
                             ("<|endoftext|>", "<s>", "</s>", "<unk>", "[UNK]", "Ġthe", "▁the",
                              "the</w>", "<|begin_of_text|>", "<mask>")
                             if tok.token_to_id(t) is not None}}
    with open(os.path.join(OUT, f"{name}.expect.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(head, ensure_ascii=False)[:-1] + ',\n"cases":[\n')
        f.write(",\n".join(lines) + '],\n"decode_cases":[\n' + ",\n".join(decode_lines) + "]}\n")
    print(f"{name}: vocab {n}, {len(lines)} cases, {len(decode_lines)} decode cases",
          file=sys.stderr)


def dump(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


KEEP_SPECIAL = ("heldout_0", "empty", "special_", "added_", "mask", "one_space", "invalid_mixed")


def encode_case(tok, tok_cfg, index, cname, text, hexs):
    ids = tok.encode(text, add_special_tokens=False).ids
    ids_sp = tok.encode(text, add_special_tokens=True).ids
    case = {"name": cname, "ids": ids}
    if cname.startswith(KEEP_SPECIAL):
        case["ids_special"] = ids_sp
        if tok_cfg is not None:
            case["ids_special_config"] = tok_cfg.encode(text, add_special_tokens=True).ids
    dec = tok.decode(ids, skip_special_tokens=False)
    dec_sp = tok.decode(ids_sp, skip_special_tokens=False)
    dec_sp_skip = tok.decode(ids_sp, skip_special_tokens=True)
    if dec != text:
        case["decoded"] = dec
    if dec_sp != dec:
        case["decoded_special"] = dec_sp
    if dec_sp_skip != dec:
        case["decoded_special_skip"] = dec_sp_skip
    return dump(case)


def decode_case(tok, ids):
    return dump({"ids": ids, "text": tok.decode(ids, skip_special_tokens=False),
                 "text_skip": tok.decode(ids, skip_special_tokens=True)})


def write_cases(cases):
    """cases.json: the inputs, shared by every tokenizer, one per line."""
    out = []
    for cname, text, hexs in cases:
        # a hex case also carries its U+FFFD-repaired text, what tokenizers saw
        out.append(dump({"name": cname, "hex": hexs, "repaired": text} if hexs
                        else {"name": cname, "text": text}))
    with open(os.path.join(OUT, "cases.json"), "w", encoding="utf-8") as f:
        f.write("[\n" + ",\n".join(out) + "]\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    train, held, held_verses, held_paras = load_text()
    cases = [(n, t, None) for n, t in make_cases(held, held_verses, held_paras)]
    cases += [(n, bytes.fromhex(h).decode("utf-8", "replace"), h) for n, h in INVALID]
    for old in os.listdir(OUT):
        if old.endswith(".json"):
            os.remove(os.path.join(OUT, old))
    write_cases(cases)
    rng = random.Random(4)

    record("gpt2", make_gpt2(train), cases, rng)
    record("llama3", make_llama3(train), cases, rng)
    record("qwen2", make_qwen2(train), cases, rng)
    vocab, merges = sentencepiece_like_model(train, 900)
    cfg = {"add_bos_token": True, "add_eos_token": True,
           "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False,
                         "normalized": False, "rstrip": False, "single_word": False},
           "eos_token": "</s>", "unk_token": "<unk>",
           "tokenizer_class": "LlamaTokenizer"}
    tmpl = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> <s> $B </s>",
                                         special_tokens=[("<s>", 1), ("</s>", 2)])
    # llama2 takes dorac's general BPE path (cross_word), mistral the word-cut one
    record("llama2", llama2_json(vocab, merges, False, cross_word=True), cases, rng, cfg, tmpl)
    record("mistral", llama2_json(vocab, merges, True), cases, rng)
    record("zoo_wordpiece", make_zoo_wordpiece(train), cases, rng)
    record("zoo_metaspace", make_zoo_metaspace(train), cases, rng)
    record("zoo_split", make_zoo_split(train), cases, rng)


if __name__ == "__main__":
    main()
