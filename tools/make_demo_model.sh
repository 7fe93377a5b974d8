#!/usr/bin/env bash
# Reproduces the embedded demo (demo/base and demo/data) from Debian packages:
#   1. text: the King James Bible (bible-kjv-text, public domain) for the base
#      model, the Jargon File (dict-jargon, public domain) for fine-tuning;
#   2. a byte-level BPE tokenizer (4096) trained on the KJV with `tokenizers`;
#   3. the base model, pretrained by dorac itself: --method full --init random
#      (tools/demo/pretrain.sh). The committed model had 299 steps of 16 x 256
#      tokens (1.2M tokens) on the 16 CPU cores of the GPU machine
#      (tools/demo/pretrain_device.sh ran it, with the time budget deciding the
#      steps); on 2 cores the same takes about 15 minutes.
# usage: tools/make_demo_model.sh [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS=${1:-299}
bash scripts/deps.sh bible-kjv bible-kjv-text dict-jargon python3-venv
if ! python3 -c "import tokenizers" 2>/dev/null; then
  python3 -m venv .venv-demo && . .venv-demo/bin/activate && pip install -q tokenizers==0.23.3
fi
python3 tools/demo/prepare_demo_data.py demo
bash scripts/build.sh
rm -rf out/pretrain
bash tools/demo/pretrain.sh ./build/dorac "$STEPS" out/pretrain
cp out/pretrain/model/model.safetensors demo/base/model.safetensors
cp out/pretrain/metrics.jsonl demo/base/pretrain_metrics.jsonl
echo "demo/base rebuilt; eval loss on Revelation in demo/base/pretrain_metrics.jsonl"
