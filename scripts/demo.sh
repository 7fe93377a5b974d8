#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the DoRA demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
./build/dorac layer-demo
