#!/usr/bin/env bash
# bench_train.sh — training throughput of dorac on the CPU: LoRA, DoRA
# (detach and exact) and full fine-tuning, same settings, one process each,
# run back to back; tokens/s is the mean over the steps after the first;
# peak RSS from /usr/bin/time. Also eval and KV-cache decoding tokens/s.
# Prints a markdown table.
#
# usage: bench/bench_train.sh [THREADS]   (from the repo root, after a build)
#   models: demo/base (the embedded demo model), and a GPT-2-small-shaped
#   model with random weights built here from bench/configs/gpt2-small.json.
set -euo pipefail
T=${1:-$(nproc)}
D=./build/dorac
TMP=$(mktemp -d /tmp/dorac-bench-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
# pre-tokenized random data so no tokenizer is involved (ids < 4096 fit both vocabularies)
awk 'BEGIN { srand(1); for (l = 0; l < 64; l++) { printf "{\"input_ids\": ["; for (i = 0; i < 1024; i++) printf "%s%d", (i ? ", " : ""), int(rand() * 4000); print "]}" } }' >"$TMP/data.jsonl"
# a GPT-2-small-shaped folder with random weights (one full step at a tiny lr writes it)
$D train --init random --config bench/configs/gpt2-small.json --method full --data "$TMP/data.jsonl" \
  --out "$TMP/g" --steps 1 --batch-size 1 --seq-len 16 --lr 1e-12 --threads "$T" >/dev/null 2>&1
mean_tps() { tail -n +2 "$1/metrics.jsonl" | sed -E 's/.*"tokens_per_s": ([0-9.]+).*/\1/' | awk '{s += $1} END {printf "%.0f", s / NR}'; }
echo "| model | method | B x T | steps | tokens/s | / LoRA | peak RSS MiB |"
echo "|---|---|---|---|---|---|---|"
for spec in "demo/base 8 128 30" "$TMP/g/model 1 512 6"; do
  set -- $spec
  model=$1 B=$2 S=$3 N=$4
  name=$([ "$model" = demo/base ] && echo "demo (5.5M)" || echo "GPT-2 small shape (124M)")
  lora_tps=
  for m in lora dora dora-exact full; do
    args=(--method "${m%-exact}")
    [ "$m" = dora-exact ] && args+=(--norm-grad exact)
    [ "$m" = full ] || args+=(--rank 16)
    rm -rf "$TMP/run"
    /usr/bin/time -f "%M" -o "$TMP/rss" $D train --model "$model" --data "$TMP/data.jsonl" --out "$TMP/run" \
      "${args[@]}" --steps "$N" --batch-size "$B" --seq-len "$S" --threads "$T" --lr 1e-4 >/dev/null 2>&1
    tps=$(mean_tps "$TMP/run")
    [ "$m" = lora ] && lora_tps=$tps
    ratio=$(awk -v a="$lora_tps" -v b="$tps" 'BEGIN { printf "%.3f", a / b }') # DoRA/LoRA time ratio
    echo "| $name | $m | $B x $S | $N | $tps | $ratio | $(( $(cat "$TMP/rss") / 1024 )) |"
  done
done
echo
echo "'/ LoRA' is the step-time ratio (LoRA tokens/s divided by this method's)."
head -n 8 "$TMP/data.jsonl" >"$TMP/eval.jsonl"
for spec in "demo/base demo" "$TMP/g/model gpt2-small"; do
  set -- $spec
  s=$(date +%s.%N)
  out=$($D eval --model "$1" --data "$TMP/eval.jsonl" --batch-size 4 --max-len 1024 --threads "$T" --json 2>/dev/null)
  e=$(date +%s.%N)
  tok=$(echo "$out" | sed -E 's/.*"tokens": ([0-9]+).*/\1/')
  echo "eval $2: $(awk -v t="$tok" -v a="$s" -v b="$e" 'BEGIN { printf "%.0f tokens/s (%d tokens, %.1f s, including load)", t / (b - a), t, b - a }')"
done
echo
# decoding with the KV cache (the demo's tokenizer serves the random GPT-2 model: its ids fit)
cp demo/base/tokenizer.json demo/base/tokenizer_config.json "$TMP/g/model/"
for spec in "demo/base demo" "$TMP/g/model gpt2-small"; do
  set -- $spec
  for t in 1 "$T"; do
    line=$($D generate --model "$1" --prompt "And" --max-new-tokens 64 --ignore-eos --seed 1 --threads "$t" 2>&1 >/dev/null | tail -n 1)
    echo "generate $2, $t thread(s): $(echo "$line" | sed -E 's/.*new tokens at ([0-9.]+) tokens\/s.*/\1/') tokens/s decoding"
  done
done
