#!/usr/bin/env bash
# bench_dist_overlap.sh — data-parallel training on the CPU with the
# gradient all-reduce overlapped with the backward (the default) and after
# it (DORAC_DIST_OVERLAP=0), runs interleaved so that machine drift hits
# both alike. Each run: demo/base, 2 processes of 1 thread
# (--nproc-per-node 2), batch 4 per process, seq 128, 16 steps; tokens/s is
# the mean over steps 2-16 of rank 0's metrics. Prints one line per run and
# the means.
#
# usage: bench/bench_dist_overlap.sh [REPEATS (4)] [METHOD (dora)]   (from the repo root, after a build)
#   METHOD full runs --method full --zero 0 (ZeRO-1 is never overlapped).
set -euo pipefail
REPS=${1:-4}
METHOD=${2:-dora}
D=./build/dorac
TMP=$(mktemp -d /tmp/dorac-bench-dist-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
args=(--method "$METHOD")
if [ "$METHOD" = full ]; then args+=(--zero 0); else args+=(--rank 16 --targets all-linear); fi
mean_tps() { tail -n +2 "$1/metrics.jsonl" | grep -o '"tokens_per_s": [0-9.]*' | awk '{s += $2} END {printf "%.0f", s / NR}'; }
declare -A sum=([1]=0 [0]=0)
for r in $(seq 1 "$REPS"); do
  for ov in 1 0; do
    out=$TMP/run-$r-$ov
    DORAC_DIST_OVERLAP=$ov $D train --model demo/base --data demo/data/jargon_train.jsonl --out "$out" "${args[@]}" \
      --nproc-per-node 2 --threads 1 --device cpu --batch-size 4 --seq-len 128 --steps 16 --lr 1e-4 \
      --log-every 100 >/dev/null 2>&1
    tps=$(mean_tps "$out")
    sum[$ov]=$((sum[$ov] + tps))
    echo "run $r overlap $ov: $tps tokens/s"
  done
done
echo "mean over $REPS runs ($METHOD): overlap on $((sum[1] / REPS)), off $((sum[0] / REPS)) tokens/s"
