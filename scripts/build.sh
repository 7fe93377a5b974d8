#!/usr/bin/env bash
# Configures and builds dorac into build/ (Release, warnings as errors).
# Usage: scripts/build.sh [extra cmake -D options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DDORAC_WERROR=ON "$@" >/dev/null
cmake --build build -j"$(nproc)"
