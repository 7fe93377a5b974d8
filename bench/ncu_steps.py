"""GPU time per training step from `ncu --csv --print-units base --metrics
gpu__time_duration.sum` output of a `dorac train` run: the kernels in launch
order, cut into optimizer steps at the AdamW launches (a run of consecutive
AdamW kernels ends a step). Prints each step's kernel count and summed GPU
time, then the last step's kernels by total time.

Run ncu with --cache-control none --clock-control none so that each kernel
sees a warm L2 and the GPU's own clocks, as in a normal run; the sum is then
the step's GPU busy time, to compare with its wall time.

usage: python3 bench/ncu_steps.py RUN.csv [kernels to list, default 30; the rest on one line]
"""
import collections
import csv
import re
import sys


def main():
    path = sys.argv[1]
    top = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("Metric Name") != "gpu__time_duration.sum":
                continue
            name = re.sub(r"\(.*", "", row["Kernel Name"]).strip()[:70]
            rows.append((int(row["ID"]), name, float(row["Metric Value"].replace(",", ""))))
    rows.sort()
    steps, cur, prev_adamw = [], [], False
    for _, name, ns in rows:
        is_adamw = "adamw" in name.lower()
        if prev_adamw and not is_adamw:
            steps.append(cur)
            cur = []
        cur.append((name, ns))
        prev_adamw = is_adamw
    if prev_adamw:
        steps.append(cur)
        cur = []
    print(f"{path}: {len(rows)} kernels, {len(steps)} optimizer steps (+{len(cur)} kernels after the last)")
    for i, s in enumerate(steps):
        print(f"step {i}: {len(s)} kernels, GPU time {sum(ns for _, ns in s) / 1e6:.3f} ms"
              + ("  (includes loading and warm-up)" if i == 0 else ""))
    if not steps:
        return
    last = steps[-1]
    tot, cnt = collections.Counter(), collections.Counter()
    for name, ns in last:
        tot[name] += ns
        cnt[name] += 1
    total = sum(tot.values())
    print(f"\nlast step by kernel ({total / 1e6:.3f} ms):")
    print(f"{'kernel':70s} {'n':>5s} {'ms':>8s} {'%':>6s} {'us each':>8s}")
    listed = tot.most_common(top)
    for name, ns in listed:
        print(f"{name:70s} {cnt[name]:5d} {ns / 1e6:8.3f} {100 * ns / total:6.1f} {ns / cnt[name] / 1e3:8.1f}")
    rest_ns = total - sum(ns for _, ns in listed)
    rest_n = sum(cnt.values()) - sum(cnt[name] for name, _ in listed)
    if rest_n:
        label = f"({len(tot) - len(listed)} other kernels)"
        print(f"{label:70s} {rest_n:5d} {rest_ns / 1e6:8.3f} {100 * rest_ns / total:6.1f}")


if __name__ == "__main__":
    main()
