#!/usr/bin/env python3
"""bench_tokenizers.py -- dorac's tokenizer vs Hugging Face tokenizers, one core, one run.

Trains three realistic-size tokenizers (32k vocabulary; GPT-2 style, Llama-3
style, Llama-2 style with byte fallback) on the Debian-packaged texts that
make_tokenizer_fixtures.py uses (KJV Bible, Jargon File: public domain), then
encodes the same text with both libraries:
  - dorac: bench/bench_tokenizer (a C program), pinned to CPU 0;
  - tokenizers (pip): in this process, pinned to CPU 0, with
    TOKENIZERS_PARALLELISM=false; both Tokenizer.encode per chunk and
    encode_batch_fast over all chunks are timed, and the faster is the
    baseline.
Times are CPU seconds of the encoding thread (time.thread_time here,
CLOCK_THREAD_CPUTIME_ID in C): the machines are shared and wall time counts
other processes' slices.
The text is cut at line ends into ~4 KB chunks (records of a data loader),
identically on both sides. One warm-up pass fills both pre-token caches; the
best of --reps timed passes counts. The ids must agree: token counts and an id
checksum are compared, and a mismatch is reported.

Usage: /opt/refenv/bin/python tools/ref/bench_tokenizers.py --bench build/bench_tokenizer
Prints a Markdown table for docs/PERF.md.
"""
import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ["RAYON_NUM_THREADS"] = "1"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_fixtures as mk  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors  # noqa: E402
import tokenizers  # noqa: E402

VOCAB = 32000


def train_gpt2(train):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.train_from_iterator(train, mk.byte_level_trainer(VOCAB, ["<|endoftext|>"]))
    return tok.to_str()


def train_llama3(train):
    tok = Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(mk.LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(train, mk.byte_level_trainer(VOCAB, ["<|begin_of_text|>"]))
    return tok.to_str()


def train_llama2(train):
    import json
    vocab, merges = mk.sentencepiece_like_model(train, VOCAB)
    return json.dumps(mk.llama2_json(vocab, merges, False), ensure_ascii=False)


def chunks_of(data, size):
    out, pos = [], 0
    while pos < len(data):
        end = min(pos + size, len(data))
        while end < len(data) and data[end - 1] != 0x0A:
            end += 1
        out.append(data[pos:end].decode("utf-8"))
        pos = end
    return out


def checksum(ids_lists):
    s, n = 0, 0
    for ids in ids_lists:
        for i in ids:
            s = (s * 1000003 + i) & 0xFFFFFFFFFFFFFFFF
        n += len(ids)
    return n, s


def bench_hf(path, chunks, reps):
    tok = Tokenizer.from_file(path)
    encs = [tok.encode(c, add_special_tokens=False).ids for c in chunks]  # warm-up
    n, s = checksum(encs)
    best_enc = best_batch = 1e30
    for _ in range(reps):
        t0 = time.thread_time()
        for c in chunks:
            tok.encode(c, add_special_tokens=False)
        best_enc = min(best_enc, time.thread_time() - t0)
        t0 = time.thread_time()
        tok.encode_batch_fast(chunks, add_special_tokens=False)
        best_batch = min(best_batch, time.thread_time() - t0)
    return n, s, best_enc, best_batch


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", default="build/bench_tokenizer")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=4096)
    args = ap.parse_args()
    os.sched_setaffinity(0, {0})

    train, _, _, _ = mk.load_text()
    data = ("\n".join(train) + "\n").encode("utf-8")
    work = tempfile.mkdtemp(prefix="dorac_bench_")
    text_path = os.path.join(work, "text.txt")
    with open(text_path, "wb") as f:
        f.write(data)
    chunks = chunks_of(data, args.chunk)

    rows = []
    for name, fn in (("GPT-2 style (ByteLevel + GPT-2 regex)", train_gpt2),
                     ("Llama-3 style (Split + ByteLevel, ignore_merges)", train_llama3),
                     ("Llama-2 style (Prepend/Replace ▁, byte_fallback)", train_llama2)):
        path = os.path.join(work, name.split()[0] + ".json")
        with open(path, "w", encoding="utf-8") as f:
            f.write(fn(train))
        out = subprocess.run(["taskset", "-c", "0", args.bench, path, text_path, "--reps", str(args.reps),
                              "--chunk", str(args.chunk)], capture_output=True, text=True, check=True).stdout
        kv = dict(p.split("=") for p in out.split()[1:])
        n, s, t_enc, t_batch = bench_hf(path, chunks, args.reps)
        same = int(kv["tokens"]) == n and int(kv["checksum"]) == s
        mb = len(data) / 1e6
        hf_best = mb / min(t_enc, t_batch)
        rows.append((name, float(kv["mbps"]), mb / t_enc, mb / t_batch, float(kv["mbps"]) / hf_best, n, same))
        print(f"{name}: dorac {kv['mbps']} MB/s, tokenizers {mb / t_enc:.2f} / {mb / t_batch:.2f} MB/s, "
              f"ids {'identical' if same else 'DIFFERENT'}", file=sys.stderr)

    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    print(f"Text: {len(data) / 1e6:.2f} MB (KJV Bible + Jargon File, Debian packages), "
          f"{len(chunks)} chunks of ~{args.chunk} bytes; vocabulary {VOCAB}; best of {args.reps} "
          f"after a warm-up pass; one core ({cpu}), CPU time of the encoding thread; "
          f"tokenizers {tokenizers.__version__}.\n")
    print("| tokenizer | dorac MB/s | tokenizers encode MB/s | tokenizers encode_batch_fast MB/s "
          "| dorac / best tokenizers | tokens | ids identical |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.2f} | {r[2]:.2f} | {r[3]:.2f} | {r[4]:.2f}x | {r[5]} | {'yes' if r[6] else 'NO'} |")


if __name__ == "__main__":
    main()
