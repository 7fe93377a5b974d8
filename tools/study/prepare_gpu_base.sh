#!/usr/bin/env bash
# Builds .devstudy/ (corpus, tokenizer, config of the GPU-scale base model; see
# tools/study/prepare_gpu_base.py) on this machine: installs the Debian text
# packages and `tokenizers` (in .venv-demo, as tools/make_demo_model.sh does).
# usage: bash tools/study/prepare_gpu_base.sh [OUT_DIR]   (default .devstudy;
#        HIDDEN, LAYERS, ..., FRACTION in the environment make a tiny variant)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUTDIR=${1:-.devstudy}
case $OUTDIR in
  /*) ;;
  *) d=/${OUTDIR%/}/; grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >> .git/info/exclude ;;
esac
bash scripts/deps.sh bible-kjv bible-kjv-text dict-gcide dict-wn dict-devil python3-venv
if ! python3 -c "import tokenizers" 2>/dev/null; then
  [ -x .venv-demo/bin/python3 ] || python3 -m venv .venv-demo
  .venv-demo/bin/python3 -c "import tokenizers" 2>/dev/null || .venv-demo/bin/pip install -q tokenizers==0.23.3
  PYTHON=.venv-demo/bin/python3
fi
${PYTHON:-python3} tools/study/prepare_gpu_base.py "$OUTDIR"
du -sh "$OUTDIR"
