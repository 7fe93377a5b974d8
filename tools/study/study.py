#!/usr/bin/env python3
"""Helpers for tools/study/run_study.sh (Python 3 standard library only).

The study itself is run by dorac's CLI (train, eval, analyze, plot); this file
only prepares one derived data file, records each run's numbers, picks the
best learning rate per method, and turns the results into CSV and Markdown
tables. It computes nothing that dorac does not also compute, except two
things stated in docs/EXPERIMENTS.md: Pearson r recomputed from dorac
analyze's decomposition.csv (checked against the r dorac prints), and the
same r within one checkpoint (across layers only).

subcommands:
  defs IN.jsonl OUT.jsonl DORAC TOKENIZER   {"text": "TERM: def"} -> {"prompt": "TERM:", "completion": " def"}
  record RUN_DIR KEY=VALUE...                write RUN_DIR/result.json
  next-lr OUT VARIANT SEED GRID MAX_EXT      print the next learning rate to try for VARIANT, or nothing
  best OUT VARIANT SEED                      print the best learning rate of VARIANT at SEED
  report OUT DOCS SEED0                      write DOCS/results.csv, summary.csv, correlations.csv, tables.md
"""
import csv
import glob
import json
import math
import os
import statistics
import struct
import subprocess
import sys

# the learning-rate ladder: grids are consecutive entries, extensions the next one out
LADDER = [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
VARIANTS = ["full", "lora_r8", "lora_r16", "dora_r4", "dora_r8", "dora_r16"]
LABEL = {"full": "Full FT", "lora_r8": "LoRA r8", "lora_r16": "LoRA r16", "dora_r4": "DoRA r4",
         "dora_r8": "DoRA r8", "dora_r16": "DoRA r16"}
PAPER_R = {"full": -0.62, "lora": +0.83, "dora": -0.31}


def lr_str(x):
    return f"{x:.0e}".replace("e-0", "e-")


# ---------------------------------------------------------------------------
def cmd_defs(src, dst, dorac, tokenizer):
    """Splits every "TERM: definition" line at its first ": " into a prompt
    ("TERM:") and a completion (" definition"); dorac then scores only the
    completion (and the EOS after it). Checks with `dorac tokenize` that the
    split falls on a token boundary, i.e. ids(prompt) + ids(completion) equal
    ids(text), so the definition tokens are exactly those of the text eval."""
    rows = []
    for line in open(src, encoding="utf-8"):
        t = json.loads(line)["text"]
        i = t.index(": ")
        rows.append((t, t[: i + 1], t[i + 1:]))

    def encode(texts):
        inp = "".join(json.dumps({"text": x}, ensure_ascii=False) + "\n" for x in texts)
        out = subprocess.run([dorac, "tokenize", "--tokenizer", tokenizer, "--jsonl"], input=inp.encode(),
                             capture_output=True, check=True).stdout.decode()
        return [json.loads(l)["ids"] for l in out.splitlines()]

    full, pr, co = encode([r[0] for r in rows]), encode([r[1] for r in rows]), encode([r[2] for r in rows])
    bad = sum(1 for f, p, c in zip(full, pr, co) if p + c != f)
    if bad:
        sys.exit(f"defs: {bad} of {len(rows)} lines do not split on a token boundary")
    tmp = dst + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        for _, p, c in rows:
            f.write(json.dumps({"prompt": p, "completion": c}, ensure_ascii=False) + "\n")
    os.replace(tmp, dst)
    n_def = sum(len(c) for c in co)
    print(f"defs: {len(rows)} entries, {n_def} definition tokens (+{len(rows)} EOS), "
          f"{sum(len(p) for p in pr)} term tokens; split checked on every line")


# ---------------------------------------------------------------------------
def safetensors_numel(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        hdr = json.loads(f.read(n))
    return sum(math.prod(v["shape"]) for k, v in hdr.items() if k != "__metadata__")


def cmd_record(run, kv):
    r = dict(a.split("=", 1) for a in kv)
    for k in ("rank", "seed", "steps"):
        if k in r:
            r[k] = int(r[k])
    for k in ("lr", "wall_s"):
        if k in r:
            r[k] = float(r[k])
    for k in ("eval", "defs"):  # dorac eval --json outputs
        p = r.pop(k, None)
        if p and os.path.exists(p) and os.path.getsize(p):
            e = json.load(open(p))
            r[f"{k}_loss"], r[f"{k}_tokens"] = e["loss"], e["tokens"]
    recs = []
    mp = os.path.join(run, "metrics.jsonl")
    if os.path.exists(mp):
        for line in open(mp):
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
    if recs:
        last = recs[-20:]
        r["train_loss_last20"] = sum(x["loss"] for x in last) / len(last)
        r["train_s"] = recs[-1].get("elapsed_s")
        r["steps_done"] = recs[-1]["step"]
        r["eval128_curve"] = [[x["step"], x["eval_loss"]] for x in recs if "eval_loss" in x]
    ad = os.path.join(run, "adapter", "adapter_model.safetensors")
    md = os.path.join(run, "model", "model.safetensors")
    if os.path.exists(ad):
        r["trainable"] = safetensors_numel(ad)
    elif os.path.exists(md):
        r["trainable"] = safetensors_numel(md)
    tmp = os.path.join(run, "result.json.tmp")
    with open(tmp, "w") as f:
        json.dump(r, f, indent=1)
    os.replace(tmp, os.path.join(run, "result.json"))


def load_results(out):
    res = []
    for p in sorted(glob.glob(os.path.join(out, "runs", "*", "result.json"))):
        r = json.load(open(p))
        r["dir"] = os.path.dirname(p)
        res.append(r)
    return res


def score(r):
    x = r.get("eval_loss")
    return x if (r.get("status") == "ok" and x is not None and math.isfinite(x)) else math.inf


def grid_runs(out, variant, seed):
    return [r for r in load_results(out) if r["variant"] == variant and r["seed"] == seed]


def best_run(out, variant, seed):
    runs = grid_runs(out, variant, seed)
    return min(runs, key=score) if runs else None


def cmd_next_lr(out, variant, seed, grid, max_ext):
    grid = [float(x) for x in grid.split()]
    runs = grid_runs(out, variant, int(seed))
    tried = sorted({r["lr"] for r in runs})
    missing = [g for g in grid if not any(math.isclose(g, t) for t in tried)]
    if missing:
        print(lr_str(missing[0]))
        return
    n_ext = len(tried) - len(grid)
    if n_ext >= int(max_ext):
        return
    b = min(runs, key=score)
    idx = [i for i, x in enumerate(LADDER) if math.isclose(x, b["lr"])][0]
    if math.isclose(b["lr"], tried[-1]) and idx + 1 < len(LADDER):
        print(lr_str(LADDER[idx + 1]))
    elif math.isclose(b["lr"], tried[0]) and idx > 0:
        print(lr_str(LADDER[idx - 1]))


def cmd_best(out, variant, seed):
    b = best_run(out, variant, int(seed))
    print(lr_str(b["lr"]))


# ---------------------------------------------------------------------------
def pearson(xs, ys):
    n = len(xs)
    if n < 3:
        return float("nan")
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else float("nan")


def read_decomp(path):
    """decomposition.csv -> {run basename: [(step, layer, dM, dD)]}"""
    d = {}
    if not os.path.exists(path):
        return d
    for row in csv.DictReader(open(path)):
        d.setdefault(os.path.basename(row["run"].rstrip("/")), []).append(
            (int(row["step"]), row["layer"], float(row["delta_m"]), float(row["delta_d"])))
    return d


def r_pooled(pts):
    return pearson([p[3] for p in pts], [p[2] for p in pts])


def r_within(pts):
    """mean over checkpoints of r across the layers of one checkpoint"""
    by = {}
    for p in pts:
        by.setdefault(p[0], []).append(p)
    rs = [pearson([p[3] for p in v], [p[2] for p in v]) for v in by.values()]
    rs = [x for x in rs if math.isfinite(x)]
    return sum(rs) / len(rs) if rs else float("nan")


def ms(xs, nd=3, sign=False):
    xs = [x for x in xs if x is not None and math.isfinite(x)]
    if not xs:
        return "—"
    f = f"{{:{'+' if sign else ''}.{nd}f}}"
    if len(xs) == 1:
        return f.format(xs[0])
    return f"{f.format(statistics.mean(xs))} ± {statistics.stdev(xs):.{nd}f}"


def fmt(x, nd=4, sign=False):
    if x is None or not math.isfinite(x):
        return "—"
    return f"{x:{'+' if sign else ''}.{nd}f}"


def cmd_report(out, docs, seed0):
    seed0 = int(seed0)
    res = load_results(out)
    base = json.load(open(os.path.join(out, "base_eval.json")))
    base_def = json.load(open(os.path.join(out, "base_defs.json")))
    dq = read_decomp(os.path.join(out, "analysis", "qv_all", "decomposition.csv"))
    da = read_decomp(os.path.join(out, "analysis", "all_all", "decomposition.csv"))
    best = {v: best_run(out, v, seed0) for v in VARIANTS}
    os.makedirs(docs, exist_ok=True)

    def rrow(r):
        name = os.path.basename(r["dir"])
        q, a = dq.get(name, []), da.get(name, [])
        return r_pooled(q), r_within(q), r_pooled(a), r_within(a)

    # every run
    cols = ["run", "variant", "method", "rank", "lr", "seed", "steps", "status", "trainable", "eval_loss",
            "defs_loss", "train_loss_last20", "train_s", "wall_s", "r_qv", "r_qv_within", "r_all", "r_all_within",
            "best_lr_of_grid"]
    rows = []
    for r in sorted(res, key=lambda r: (VARIANTS.index(r["variant"]), r["seed"] != seed0, r["seed"], r["lr"])):
        rq, rqw, ra, raw = rrow(r)
        b = best[r["variant"]]
        rows.append({"run": os.path.basename(r["dir"]), "variant": r["variant"], "method": r["method"],
                     "rank": r.get("rank", ""), "lr": lr_str(r["lr"]), "seed": r["seed"], "steps": r.get("steps_done"),
                     "status": r["status"], "trainable": r.get("trainable"),
                     "eval_loss": fmt(r.get("eval_loss"), 5), "defs_loss": fmt(r.get("defs_loss"), 5),
                     "train_loss_last20": fmt(r.get("train_loss_last20"), 4),
                     "train_s": fmt(r.get("train_s"), 1), "wall_s": fmt(r.get("wall_s"), 1),
                     "r_qv": fmt(rq, 3, True), "r_qv_within": fmt(rqw, 3, True), "r_all": fmt(ra, 3, True),
                     "r_all_within": fmt(raw, 3, True),
                     "best_lr_of_grid": int(b is not None and math.isclose(b["lr"], r["lr"]))})
    with open(os.path.join(docs, "results.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)

    # summary per variant at its best lr, over seeds
    md = []
    md.append(f"Base model (no fine-tuning): held-out loss {base['loss']:.4f} "
              f"({base['tokens']} tokens), definition loss {base_def['loss']:.4f} ({base_def['tokens']} tokens).\n")
    md.append("### Learning-rate grid (seed %d): held-out loss / definition loss\n" % seed0)
    lrs = sorted({r["lr"] for r in res})
    md.append("| method | trainable params | " + " | ".join(lr_str(x) for x in lrs) + " | best lr |")
    md.append("|---|---:|" + "---:|" * len(lrs) + "---|")
    for v in VARIANTS:
        g = {r["lr"]: r for r in grid_runs(out, v, seed0)}
        if not g:
            continue
        cells = []
        for x in lrs:
            r = g.get(x)
            if r is None:
                cells.append("")
            elif r["status"] != "ok":
                cells.append(r["status"])
            else:
                s = f"{r['eval_loss']:.4f} / {r['defs_loss']:.4f}"
                cells.append(f"**{s}**" if math.isclose(x, best[v]["lr"]) else s)
        tr = next(iter(g.values())).get("trainable")
        tried = sorted(g)
        edge = ""
        if math.isclose(best[v]["lr"], tried[0]) or math.isclose(best[v]["lr"], tried[-1]):
            edge = " (edge of grid)"
        md.append(f"| {LABEL[v]} | {tr:,} | " + " | ".join(cells) + f" | {lr_str(best[v]['lr'])}{edge} |")
    md.append("")

    summ = []
    md.append("### Best learning rate per method, over seeds (mean ± sample standard deviation)\n")
    md.append("| method | lr | seeds | held-out loss | definition loss | train loss (last 20 steps) | "
              "r q,v (pooled) | r all modules (pooled) | r q,v (within checkpoint) |")
    md.append("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for v in VARIANTS:
        b = best[v]
        if b is None:
            continue
        runs = [r for r in res if r["variant"] == v and math.isclose(r["lr"], b["lr"]) and r["status"] == "ok"]
        runs.sort(key=lambda r: r["seed"])
        rr = [rrow(r) for r in runs]
        e = [r["eval_loss"] for r in runs]
        d = [r["defs_loss"] for r in runs]
        t = [r["train_loss_last20"] for r in runs]
        summ.append({"variant": v, "lr": lr_str(b["lr"]), "seeds": " ".join(str(r["seed"]) for r in runs),
                     "eval_loss_mean": fmt(statistics.mean(e), 5),
                     "eval_loss_sd": fmt(statistics.stdev(e), 5) if len(e) > 1 else "",
                     "defs_loss_mean": fmt(statistics.mean(d), 5),
                     "defs_loss_sd": fmt(statistics.stdev(d), 5) if len(d) > 1 else "",
                     "r_qv": " ".join(fmt(x[0], 3, True) for x in rr),
                     "r_all": " ".join(fmt(x[2], 3, True) for x in rr),
                     "r_qv_within": " ".join(fmt(x[1], 3, True) for x in rr)})
        md.append(f"| {LABEL[v]} | {lr_str(b['lr'])} | {len(runs)} | {ms(e, 4)} | {ms(d, 4)} | {ms(t, 4)} | "
                  f"{ms([x[0] for x in rr], 3, True)} | {ms([x[2] for x in rr], 3, True)} | "
                  f"{ms([x[1] for x in rr], 3, True)} |")
    md.append("")
    with open(os.path.join(docs, "summary.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(summ[0].keys()))
        w.writeheader()
        w.writerows(summ)

    # paired differences, same seed (same data order; LoRA and DoRA of one rank also share A's init)
    md.append("### Paired differences at the best learning rates (same seed; negative = first is better)\n")
    seed_order = ", ".join(str(s) for s in sorted({r["seed"] for r in res if r["status"] == "ok"}))
    md.append(f"| comparison | held-out loss, per seed ({seed_order}) | mean | "
              f"definition loss, per seed ({seed_order}) | mean |")
    md.append("|---|---|---:|---|---:|")

    def at_best(v):
        b = best[v]
        if b is None:
            return {}
        return {r["seed"]: r for r in res if r["variant"] == v and math.isclose(r["lr"], b["lr"]) and r["status"] == "ok"}

    for a, b in [("dora_r8", "lora_r8"), ("dora_r16", "lora_r16"), ("dora_r4", "lora_r8"), ("dora_r8", "lora_r16"),
                 ("dora_r16", "dora_r8"), ("lora_r16", "lora_r8"), ("dora_r8", "full"), ("lora_r8", "full")]:
        A, B = at_best(a), at_best(b)
        seeds = sorted(set(A) & set(B))
        if not seeds:
            continue
        de = [A[s]["eval_loss"] - B[s]["eval_loss"] for s in seeds]
        dd = [A[s]["defs_loss"] - B[s]["defs_loss"] for s in seeds]
        md.append(f"| {LABEL[a]} − {LABEL[b]} | " + ", ".join(f"{x:+.4f}" for x in de) + f" | {statistics.mean(de):+.4f} | "
                  + ", ".join(f"{x:+.4f}" for x in dd) + f" | {statistics.mean(dd):+.4f} |")
    md.append("")

    # correlations: per method at best lr, pooled over its runs (as dorac analyze pools), and per lr
    corr = []
    md.append("### Pearson r of ΔD vs ΔM, every run (pooled over its checkpoints and layers)\n")
    md.append("| method | lr | seed | r q,v | r q,v within ckpt | r all modules | r all within ckpt | paper |")
    md.append("|---|---|---|---:|---:|---:|---:|---:|")
    for r in sorted(res, key=lambda r: (VARIANTS.index(r["variant"]), r["lr"], r["seed"])):
        if r["status"] != "ok":
            continue
        rq, rqw, ra, raw = rrow(r)
        corr.append({"run": os.path.basename(r["dir"]), "variant": r["variant"], "lr": lr_str(r["lr"]),
                     "seed": r["seed"], "r_qv": fmt(rq, 4, True), "r_qv_within": fmt(rqw, 4, True),
                     "r_all": fmt(ra, 4, True), "r_all_within": fmt(raw, 4, True),
                     "paper": f"{PAPER_R[r['method']]:+.2f}"})
        star = "**" if math.isclose(r["lr"], best[r["variant"]]["lr"]) else ""
        md.append(f"| {LABEL[r['variant']]} | {star}{lr_str(r['lr'])}{star} | {r['seed']} | {fmt(rq, 3, True)} | "
                  f"{fmt(rqw, 3, True)} | {fmt(ra, 3, True)} | {fmt(raw, 3, True)} | {PAPER_R[r['method']]:+.2f} |")
    md.append("")
    with open(os.path.join(docs, "correlations.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(corr[0].keys()))
        w.writeheader()
        w.writerows(corr)

    # cross-check the recomputed pooled r against what dorac analyze printed for the main figure
    chk = []
    for name in ("qv_best", "all_best"):
        p = os.path.join(out, "analysis", name, "stdout.txt")
        if not os.path.exists(p):
            continue
        dd = read_decomp(os.path.join(out, "analysis", name, "decomposition.csv"))
        for line in open(p):
            f = line.split()
            if len(f) == 5 and f[0] in dd:
                mine = r_pooled(dd[f[0]])
                chk.append(abs(mine - float(f[4])))
    md.append(f"(r recomputed from decomposition.csv agrees with `dorac analyze`'s printed r on {len(chk)} runs, "
              f"largest difference {max(chk) if chk else float('nan'):.1e}, the print's rounding.)\n")
    md.append(f"Wall time of all runs: {sum(r.get('wall_s', 0) for r in res) / 60:.1f} min "
              f"({len(res)} runs).\n")
    with open(os.path.join(docs, "tables.md"), "w") as f:
        f.write("\n".join(md))
    print("\n".join(md))


def main():
    a = sys.argv[1:]
    if not a:
        sys.exit(__doc__)
    cmd, rest = a[0], a[1:]
    if cmd == "defs":
        cmd_defs(*rest)
    elif cmd == "record":
        cmd_record(rest[0], rest[1:])
    elif cmd == "next-lr":
        cmd_next_lr(*rest)
    elif cmd == "best":
        cmd_best(*rest)
    elif cmd == "report":
        cmd_report(*rest)
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
