#!/usr/bin/env bash
# check_then_bench.sh — the correctness checks of the current binaries
# (.devbin), then cuda_run.sh's targets given as arguments (default: bench,
# the benchmark side by side with PEFT). When a check fails, the targets run
# the last verified binaries instead (.devbin_old/bins.txz, built by the
# caller from the last commit verified on the device), so that the recorded
# numbers are of code that passed; the log says which.
#   device run: carry [.devbin, .devrt, .devbench, .devbin_old], command:
#     bash tools/device/check_then_bench.sh [targets...]
# Logs: $OUT/check/ (cuda_run.sh check, without the ring-depth reruns),
# $OUT/bench/ (the targets' logs), $OUT/which.txt, all packed in $OUT/all.tgz.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT0=${OUT:-/tmp/dorac-out}
mkdir -p "$OUT0/check" "$OUT0/bench"
OUT=$OUT0/check CHECK_DEPTHS=0 bash tools/device/cuda_run.sh check 2>&1 | grep -v "^step\|^dorac:\|^trained" | tail -20
ops_ok=$(tail -1 "$OUT0/check/ops.log" | grep -c " 0 FAIL")
model_ok=$(tail -1 "$OUT0/check/model.log" | grep -c " 0 FAIL")
if [ "$ops_ok" = 1 ] && [ "$model_ok" = 1 ]; then
  echo "bench: current binaries (checks passed)" | tee "$OUT0/which.txt"
else
  echo "bench: LAST VERIFIED binaries (.devbin_old): the current ones failed a check" | tee "$OUT0/which.txt"
  cp .devbin_old/bins.txz .devbin/bins.txz
  # and their checks too, when the caller asks (the old set may be unverified
  # itself, e.g. a commit of this session without the failing change)
  if [ "${CHECK_OLD:-0}" = 1 ]; then
    mkdir -p "$OUT0/check_old"
    OUT=$OUT0/check_old CHECK_DEPTHS=0 bash tools/device/cuda_run.sh check 2>&1 | grep -v "^step\|^dorac:\|^trained" | tail -12
  fi
fi
OUT=$OUT0/bench bash tools/device/cuda_run.sh "${@:-bench}" 2>&1 | tail -16
(cd "$OUT0" && tar czf all.tgz which.txt check bench $(ls -d check_old 2>/dev/null))
