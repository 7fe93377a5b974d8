#!/usr/bin/env bash
# prepare.sh — builds, on this (GPU-less) machine, what tools/device/cuda_run.sh
# runs on the GPU machine, and gathers what it needs, into folders that
# .git/info/exclude ignores and the device tool's `carry` names:
#   .devbin/    bins.txz: dorac, test_backend_ops, test_cuda_model, test_dist, bench_lowrank,
#               probe_lt_epilogue
#               (CUDA build, sm_90), unpacked by cuda_run.sh / gpu_study.sh
#   .devrt/     Debian runtime packages the GPU machine lacks (OpenBLAS for
#               OpenMP, jansson, PCRE2, utf8proc), unpacked there privately
#   .devbench/  PEFT's anchor benchmark (../shared/anchors/peft_bench.py)
set -euo pipefail
cd "$(dirname "$0")/../.."
for d in .devbin .deps .devrt .devbench; do
  grep -qx "/$d/" .git/info/exclude 2>/dev/null || echo "/$d/" >> .git/info/exclude
done
mkdir -p .deps .devbin .devrt .devbench
if ! ls .deps/libopenblas0-openmp_*.deb >/dev/null 2>&1; then
  (cd .deps && apt-get download libopenblas0-openmp libjansson4 libpcre2-8-0 libutf8proc2 libgfortran5)
fi
rm -rf .devrt && mkdir -p .devrt
for p in libopenblas0-openmp libjansson4 libpcre2-8-0 libutf8proc2 libgfortran5; do cp .deps/${p}_*.deb .devrt/; done
cmake -S . -B build-cuda -DDORAC_CUDA=ON -DDORAC_WERROR=ON >/dev/null
cmake --build build-cuda -j"$(nproc)" --target dorac_cli test_backend_ops test_cuda_model test_dist bench_lowrank probe_lt_epilogue
rm -f .devbin/*
cp build-cuda/dorac build-cuda/test_backend_ops build-cuda/test_cuda_model build-cuda/test_dist build-cuda/bench_lowrank \
  build-cuda/probe_lt_epilogue .devbin/
strip .devbin/* 2>/dev/null || true
# packed (about 8 MB instead of 31) so that the tracked tree plus the carried
# folders stay under the device tool's 64 MiB; cuda_run.sh unpacks it
(cd .devbin && tar cJf bins.txz dorac test_backend_ops test_cuda_model test_dist bench_lowrank probe_lt_epilogue &&
  rm -f dorac test_backend_ops test_cuda_model test_dist bench_lowrank probe_lt_epilogue)
cp ../shared/anchors/peft_bench.py .devbench/
du -sh .devbin .devrt .devbench
