"""Sums GPU time by kernel from `ncu --csv --print-units base --metrics
gpu__time_duration.sum` output, for two runs (e.g. LoRA and DoRA), and
prints each kernel's total in both and the difference, largest first.

usage: python3 bench/ncu_kernels.py A.csv B.csv   (labels: the file names)
"""
import csv
import os
import re
import sys


def load(path):
    totals, counts = {}, {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("Metric Name") != "gpu__time_duration.sum":
                continue
            name = re.sub(r"\(.*", "", row["Kernel Name"]).strip()[:70]
            ns = float(row["Metric Value"].replace(",", ""))
            totals[name] = totals.get(name, 0.0) + ns
            counts[name] = counts.get(name, 0) + 1
    return totals, counts


def main():
    a_path, b_path = sys.argv[1], sys.argv[2]
    la, lb = (os.path.splitext(os.path.basename(p))[0] for p in (a_path, b_path))
    (ta, ca), (tb, cb) = load(a_path), load(b_path)
    names = sorted(set(ta) | set(tb), key=lambda n: -(abs(tb.get(n, 0) - ta.get(n, 0))))
    print(f"total GPU time: {la} {sum(ta.values()) / 1e6:.2f} ms ({sum(ca.values())} kernels), "
          f"{lb} {sum(tb.values()) / 1e6:.2f} ms ({sum(cb.values())} kernels)")
    print(f"{'kernel':70s} {la + ' ms':>10s} {'n':>5s} {lb + ' ms':>10s} {'n':>5s} {'diff ms':>9s}")
    for n in names[:40]:
        print(f"{n:70s} {ta.get(n, 0) / 1e6:10.3f} {ca.get(n, 0):5d} {tb.get(n, 0) / 1e6:10.3f} "
              f"{cb.get(n, 0):5d} {(tb.get(n, 0) - ta.get(n, 0)) / 1e6:9.3f}")
    print()
    print("largest kernels of", lb)
    for n in sorted(tb, key=lambda n: -tb[n])[:25]:
        print(f"{n:70s} {tb[n] / 1e6:10.3f} {cb[n]:5d}")


if __name__ == "__main__":
    main()
