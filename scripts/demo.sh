#!/usr/bin/env bash
# The main job: installs what is missing, builds dorac, and runs a DoRA
# fine-tune of the embedded demo model end to end on the CPU, in about two
# minutes of training on 2 cores:
#   demo/base  a 5.5M-parameter Llama-architecture model that dorac itself
#              pretrained from random init on the King James Bible
#              (tools/make_demo_model.sh reproduces it);
#   demo/data  the Jargon File (hacker slang), a different real text, as the
#              fine-tuning set, with every 20th entry held out for eval.
# It prints the held-out loss before and after, merges the adapter into the
# model, and generates from the base model and from the merged one with the
# same prompt and seed, so the change of style shows.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
D=./build/dorac
OUT=${DORAC_DEMO_OUT:-out/demo}
STEPS=${DORAC_DEMO_STEPS:-200}
rm -rf "$OUT"
echo
echo "== dorac demo: DoRA fine-tune of demo/base (KJV) on the Jargon File =="
$D inspect --model demo/base | head -n 5
echo
$D train --model demo/base --data demo/data/jargon_train.jsonl --eval-data demo/data/jargon_eval.jsonl \
  --out "$OUT" --method dora --rank 8 --alpha 16 --lr 2e-3 --steps "$STEPS" --batch-size 8 --seq-len 128 \
  --eval-every 100 --save-every 100 --merge-at-end
$D plot "$OUT" >/dev/null && echo "loss curve: $OUT/loss.svg"
PROMPT="The program"
for model in demo/base "$OUT/merged"; do
  echo
  echo "== generate from $model: \"$PROMPT\" =="
  $D generate --model "$model" --prompt "$PROMPT" --max-new-tokens 60 --temperature 0.8 --top-p 0.95 --seed 3
  echo
done
