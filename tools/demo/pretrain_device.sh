#!/usr/bin/env bash
# Pretrains the demo base model with dorac itself (--method full --init random)
# on the CPUs of a bigger machine (the GPU machine's 16 cores), in one call:
# builds dorac from carried Debian packages (shared/DEVICE.md), times a few
# steps, picks the number of steps that fits the time budget, trains, and
# leaves the bf16 model and the metrics under $OUT.
# usage (there): bash tools/demo/pretrain_device.sh [SECONDS_OF_TRAINING]
set -euo pipefail
BUDGET=${1:-360}
OUT=${OUT:-/tmp/out}
P=/tmp/deps
for f in .deps/*.deb; do dpkg -x "$f" $P; done
export CPATH=$P/usr/include:$P/usr/include/x86_64-linux-gnu/openblas-openmp
export LIBRARY_PATH=$P/usr/lib/x86_64-linux-gnu:$P/usr/lib/x86_64-linux-gnu/openblas-openmp
export LD_LIBRARY_PATH=$LIBRARY_PATH
cmake -S . -B build-dev -DDORAC_DEPS_PREFIX=$P -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1
cmake --build build-dev -j"$(nproc)" --target dorac_cli >>"$OUT/build.log" 2>&1
D=./build-dev/dorac
T=$(nproc)
ARGS=(--init random --config demo/base/config.json --method full --tokenizer demo/base
      --data demo/data/kjv_train.jsonl --batch-size 16 --seq-len 256 --threads "$T" --seed 1)
$D train "${ARGS[@]}" --out /tmp/probe --steps 6 --lr 1e-3 >"$OUT/probe.log" 2>&1
tps=$(tail -n 4 /tmp/probe/metrics.jsonl | sed -E 's/.*"tokens_per_s": ([0-9.]+).*/\1/' | awk '{s += $1} END {print s / NR}')
steps=$(awk -v t="$tps" -v b="$BUDGET" 'BEGIN { s = int(t * b / 4096); if (s > 1500) s = 1500; print s }')
echo "probe: $tps tokens/s on $T threads -> $steps steps" | tee "$OUT/plan.txt"
bash tools/demo/pretrain.sh "$D" "$steps" /tmp/pt "$T" >"$OUT/pretrain.log" 2>&1
mkdir -p "$OUT/model"
cp /tmp/pt/model/* "$OUT/model/"
cp /tmp/pt/metrics.jsonl "$OUT/metrics.jsonl"
tail -n 3 "$OUT/pretrain.log"
