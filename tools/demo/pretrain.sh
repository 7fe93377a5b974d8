#!/usr/bin/env bash
# The demo base model's pretraining: dorac itself, full training from random
# init on the KJV chapters (demo/data/kjv_train.jsonl, made by
# prepare_demo_data.py), evaluated on Revelation.
# usage: tools/demo/pretrain.sh DORAC_BINARY STEPS OUT_DIR [THREADS]
set -euo pipefail
D=$1 STEPS=$2 OUT=$3 T=${4:-$(nproc)}
"$D" train --init random --config demo/base/config.json --method full --tokenizer demo/base \
  --data demo/data/kjv_train.jsonl --eval-data demo/data/kjv_eval.jsonl --out "$OUT" \
  --batch-size 16 --seq-len 256 --threads "$T" --seed 1 --steps "$STEPS" --lr 1.5e-3 --schedule cosine \
  --warmup 30 --weight-decay 0.1 --eval-every 100 --save-dtype bf16 --log-every 50
