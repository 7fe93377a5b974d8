"""Where a training step's wall time goes, from an nsys profile exported to
SQLite (`nsys export --type sqlite`, or the .sqlite `nsys stats` leaves):
per optimizer step, the GPU's busy time (the union of kernel, memcpy and
memset intervals), its idle gaps and what the host was doing during the
largest of them, the CUDA API calls the host made (count, total, mean) and
the GPU time by kernel.

Steps are cut at the AdamW kernels (the last launch of a cluster of them
ends a step); the first step (warm-up, allocation) is left out.

usage: python3 bench/nsys_steps.py PROFILE.sqlite [steps to report, default 4]
"""
import collections
import sqlite3
import sys

SYNC_CALLS = ("Synchronize", "cudaMemcpy", "cuMemcpy", "cudaFree", "cuMemFree")


def table_exists(db, name):
    return db.execute("select count(*) from sqlite_master where type='table' and name=?", (name,)).fetchone()[0] > 0


def columns(db, name):
    return {r[1] for r in db.execute(f"pragma table_info({name})")}


def load(path):
    db = sqlite3.connect(path)
    strings = dict(db.execute("select id, value from StringIds"))
    kcols = columns(db, "CUPTI_ACTIVITY_KIND_KERNEL")
    name_col = "shortName" if "shortName" in kcols else "demangledName"
    kernels = [(s, e, strings.get(n, str(n)), c) for s, e, n, c in db.execute(
        f"select start, end, {name_col}, correlationId from CUPTI_ACTIVITY_KIND_KERNEL order by start")]
    gpu = [(s, e, "kernel") for s, e, _, _ in kernels]
    for t, label in (("CUPTI_ACTIVITY_KIND_MEMCPY", "memcpy"), ("CUPTI_ACTIVITY_KIND_MEMSET", "memset")):
        if table_exists(db, t):
            gpu += [(s, e, label) for s, e in db.execute(f"select start, end from {t}")]
    gpu.sort()
    runtime = []
    if table_exists(db, "CUPTI_ACTIVITY_KIND_RUNTIME"):
        runtime = [(s, e, strings.get(n, str(n)), c) for s, e, n, c in db.execute(
            "select start, end, nameId, correlationId from CUPTI_ACTIVITY_KIND_RUNTIME order by start")]
    return kernels, gpu, runtime


def step_bounds(kernels):
    ends = [e for s, e, n, _ in kernels if "adamw" in n.lower()]
    bounds = []
    for e in ends:  # a cluster of AdamW launches (within 2 ms) ends one step
        if bounds and e - bounds[-1] < 2_000_000:
            bounds[-1] = e
        else:
            bounds.append(e)
    return bounds


def busy_and_gaps(gpu, t0, t1):
    busy, gaps, cur = 0, [], t0
    for s, e, _ in gpu:
        if e <= t0 or s >= t1:
            continue
        s, e = max(s, t0), min(e, t1)
        if s > cur:
            gaps.append((cur, s))
        if e > cur:
            busy += e - max(s, cur)
            cur = e
    if cur < t1:
        gaps.append((cur, t1))
    return busy, gaps


def main():
    path = sys.argv[1]
    nrep = int(sys.argv[2]) if len(sys.argv) > 2 else 4
    kernels, gpu, runtime = load(path)
    bounds = step_bounds(kernels)
    if len(bounds) < 3:
        print(f"{path}: fewer than 3 optimizer steps found ({len(bounds)} AdamW clusters)")
        return
    windows = list(zip(bounds[:-1], bounds[1:]))[1:][-nrep:]
    kern_time, kern_n = collections.Counter(), collections.Counter()
    api_time, api_n, api_max = collections.Counter(), collections.Counter(), collections.Counter()
    tot_wall = tot_busy = 0
    for i, (t0, t1) in enumerate(windows):
        busy, gaps = busy_and_gaps(gpu, t0, t1)
        nk = 0
        for s, e, n, _ in kernels:
            if t0 <= s < t1:
                kern_time[n] += e - s
                kern_n[n] += 1
                nk += 1
        calls = [(s, e, n, c) for s, e, n, c in runtime if t0 <= s < t1]
        for s, e, n, _ in calls:
            api_time[n] += e - s
            api_n[n] += 1
            api_max[n] = max(api_max[n], e - s)
        wait = sum(e - s for s, e, n, _ in calls if any(k in n for k in SYNC_CALLS))
        idle = [g for g in gaps if g[1] - g[0] >= 5_000]
        tot_wall += t1 - t0
        tot_busy += busy
        print(f"step {i}: wall {(t1 - t0) / 1e6:.3f} ms, GPU busy {busy / 1e6:.3f} ms "
              f"({100 * busy / (t1 - t0):.1f}%), {nk} kernels, {len(calls)} API calls, "
              f"host in sync/copy/free calls {wait / 1e6:.3f} ms; idle gaps >= 5 us: {len(idle)}, "
              f"{sum(b - a for a, b in idle) / 1e6:.3f} ms")
        if i == len(windows) - 1:
            print("  largest idle gaps of this step (us from step start: length; host calls overlapping it):")
            for a, b in sorted(idle, key=lambda g: g[0] - g[1])[:12]:
                over = collections.Counter(n for s, e, n, _ in calls if s < b and e > a)
                print(f"    {(a - t0) / 1e3:9.1f}: {(b - a) / 1e3:8.1f}  " +
                      ", ".join(f"{n} x{k}" for n, k in over.most_common(4)))
    nw = len(windows)
    print(f"\nmean over {nw} steps: wall {tot_wall / nw / 1e6:.3f} ms, GPU busy {tot_busy / nw / 1e6:.3f} ms "
          f"({100 * tot_busy / tot_wall:.1f}%)")
    print(f"\nCUDA API calls per step (mean over {nw} steps):")
    print(f"{'call':40s} {'n':>7s} {'total ms':>9s} {'mean us':>8s} {'max us':>8s}")
    for n, t in api_time.most_common(20):
        print(f"{n[:40]:40s} {api_n[n] / nw:7.1f} {t / nw / 1e6:9.3f} {t / api_n[n] / 1e3:8.2f} {api_max[n] / 1e3:8.1f}")
    print(f"\nGPU time by kernel per step (mean over {nw} steps):")
    for n, t in kern_time.most_common(30):
        print(f"{n[:60]:60s} {kern_n[n] / nw:6.1f} {t / nw / 1e6:8.3f} ms {t / kern_n[n] / 1e3:8.1f} us")


if __name__ == "__main__":
    main()
