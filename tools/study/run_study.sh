#!/usr/bin/env bash
# The DoRA vs LoRA vs full fine-tuning study of issue 7, at the CPU (demo) scale.
# One command, from the repository root:
#
#     bash tools/study/run_study.sh
#
# Model: demo/base, the 5.5M-parameter Llama-architecture model dorac pretrained on
# the King James Bible. Task: the Jargon File entries ("TERM: definition"), train
# demo/data/jargon_train.jsonl, held out demo/data/jargon_eval.jsonl (every 20th
# entry). Both texts are public domain (tools/demo/prepare_demo_data.py).
#
# Methods: full fine-tuning, LoRA r8/r16, DoRA r4/r8/r16; all with the same steps,
# batch, sequence length, schedule, warmup, data order and seed, alpha = 2r,
# all-linear targets, dropout 0. Only the learning rate differs: each method gets
# a 3-point grid (extended by one point when the best is at an edge), and the lr
# with the lowest held-out loss is re-run with more seeds. Then `dorac analyze`
# (ΔM/ΔD, the paper's §3.2) on every run, `dorac plot` for the loss curves, and
# tools/study/study.py for the tables.
#
# Everything goes under out/study/ (gitignored); the small artefacts are copied to
# docs/study/. A finished run leaves runs/NAME/result.json and is not run again,
# so the command can be restarted after an interruption; FRESH=1 starts over.
# Knobs (environment): STEPS (200), SEEDS ("42 1 2": the first is the grid's),
# BASE (demo/base), TRAIN, EVAL (the Jargon File jsonl files; the definition-loss metric
# expects that format), THREADS (2), DEVICE (cpu, the scale reported in docs/EXPERIMENTS.md),
# VARIANTS, FULL_GRID,
# ADAPTER_GRID, MAX_EXT (1), OUT (out/study), DOCS (docs/study), SAVE_EVERY (25),
# and for the GPU scale (tools/study/gpu_study.sh; the defaults change nothing):
# PARALLEL (1: runs at once; >1 runs each variant's grid, then each extra-seed run,
# as background jobs, PARALLEL at a time, so wall_s then includes contention),
# STOP_AT (epoch seconds: no run starts after it; the analysis and tables then use
# the variants that have a run), DROP_OPTIMIZER (0; 1 deletes each finished run's
# checkpoint-*/optimizer.safetensors, which only --resume reads).
set -euo pipefail
cd "$(dirname "$0")/../.."

D=${DORAC:-./build/dorac}
[ -x "$D" ] || bash scripts/build.sh >/dev/null
OUT=${OUT:-out/study}
DOCS=${DOCS:-docs/study}
THREADS=${THREADS:-2}
DEVICE=${DEVICE:-cpu}
STEPS=${STEPS:-200}
BATCH=8
SEQ=128
WARMUP=$((STEPS / 10))
SAVE_EVERY=${SAVE_EVERY:-25}
EVAL_EVERY=${EVAL_EVERY:-100}
SEEDS=(${SEEDS:-42 1 2})
SEED0=${SEEDS[0]}
FULL_GRID=${FULL_GRID:-"1e-3 3e-3 1e-2"}
ADAPTER_GRID=${ADAPTER_GRID:-"3e-3 1e-2 3e-2"}
MAX_EXT=${MAX_EXT:-1}
VARIANTS=(${VARIANTS:-full lora_r8 lora_r16 dora_r4 dora_r8 dora_r16})
PARALLEL=${PARALLEL:-1}
STOP_AT=${STOP_AT:-}
DROP_OPTIMIZER=${DROP_OPTIMIZER:-0}
BASE=${BASE:-demo/base}
TRAIN=${TRAIN:-demo/data/jargon_train.jsonl}
EVAL=${EVAL:-demo/data/jargon_eval.jsonl}
PY="python3 tools/study/study.py"

if [ ! -x "$D" ]; then
  if [ -d build ]; then cmake --build build -j2 --target dorac_cli; else bash scripts/build.sh; fi
fi
[ "${FRESH:-0}" = 1 ] && rm -rf "$OUT"
mkdir -p "$OUT/runs" "$OUT/data" "$OUT/analysis" "$DOCS"
T0=$(date +%s)
log() { echo "[study $(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*"; }
stopped() { [ -n "$STOP_AT" ] && [ "$(date +%s)" -ge "$STOP_AT" ]; }
spawn() {  # spawn CMD...: runs CMD, in the background when PARALLEL > 1 (PARALLEL jobs at most)
  if [ "$PARALLEL" -le 1 ]; then "$@"; return; fi
  while [ "$(jobs -rp | wc -l)" -ge "$PARALLEL" ]; do wait -n || true; done
  "$@" &
}

# the definition-only metric: the same held-out entries as prompt "TERM:" and
# completion " definition", so `dorac eval` scores the definition tokens (and EOS) only
DEFS=$OUT/data/jargon_eval_defs.jsonl
[ -s "$DEFS" ] || $PY defs "$EVAL" "$DEFS" "$D" "$BASE/tokenizer.json"

evaljson() {  # evaljson OUT.json MODEL [ADAPTER] -- DATA
  local out=$1 model=$2 adapter=$3 data=$4 a=()
  [ -n "$adapter" ] && a=(--adapter "$adapter")
  "$D" eval --model "$model" "${a[@]}" --data "$data" --batch-size 1 --threads "$THREADS" --json \
    >"$out.tmp" 2>>"$out.log" && mv "$out.tmp" "$out"
}
[ -s "$OUT/base_eval.json" ] || evaljson "$OUT/base_eval.json" "$BASE" "" "$EVAL"
[ -s "$OUT/base_defs.json" ] || evaljson "$OUT/base_defs.json" "$BASE" "" "$DEFS"

method_args() {  # the only per-method flags
  case $1 in
    full) echo "--method full" ;;
    lora_r*) local r=${1#lora_r}; echo "--method lora --rank $r --alpha $((2 * r)) --targets all-linear --dropout 0" ;;
    dora_r*) local r=${1#dora_r}; echo "--method dora --rank $r --alpha $((2 * r)) --targets all-linear --dropout 0" ;;
  esac
}

run_one() {  # run_one VARIANT LR SEED
  local v=$1 lr=$2 seed=$3
  local name=${v}_lr${lr}_s${seed}
  local dir=$OUT/runs/$name
  if [ -s "$dir/result.json" ]; then log "$name: done before, kept"; return; fi
  if stopped; then log "$name: not run, past STOP_AT"; return; fi
  rm -rf "$dir"
  log "$name: training"
  local t=$(date +%s.%N) status=ok
  # shellcheck disable=SC2046
  if ! "$D" train --model "$BASE" --data "$TRAIN" --eval-data "$EVAL" --out "$dir" $(method_args "$v") \
      --lr "$lr" --steps "$STEPS" --batch-size "$BATCH" --seq-len "$SEQ" --schedule linear --warmup "$WARMUP" \
      --seed "$seed" --threads "$THREADS" --device "$DEVICE" --eval-every "$EVAL_EVERY" --save-every "$SAVE_EVERY" --keep 0 \
      --log-every 50 >"$OUT/runs/$name.log" 2>&1; then
    status=failed
    log "$name: training FAILED (see $OUT/runs/$name.log)"
    mkdir -p "$dir"
  fi
  if [ $status = ok ]; then
    if [ "$v" = full ]; then
      evaljson "$dir/eval.json" "$dir/model" "" "$EVAL" && evaljson "$dir/defs.json" "$dir/model" "" "$DEFS" || status=eval_failed
    else
      evaljson "$dir/eval.json" "$BASE" "$dir/adapter" "$EVAL" && evaljson "$dir/defs.json" "$BASE" "$dir/adapter" "$DEFS" || status=eval_failed
    fi
  fi
  [ "$DROP_OPTIMIZER" = 1 ] && rm -f "$dir"/checkpoint-*/optimizer.safetensors
  local wall method=${v%%_*} rank=0
  wall=$(awk -v a="$t" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
  [ "$v" = full ] || rank=${v#*_r}
  $PY record "$dir" variant="$v" method="$method" rank="$rank" lr="$lr" seed="$seed" status=$status \
    steps="$STEPS" wall_s="$wall" eval="$dir/eval.json" defs="$dir/defs.json"
  log "$name: $status in ${wall%.*} s, held-out $(grep -o '"eval_loss": [0-9.]*' "$dir/result.json" | cut -d' ' -f2)," \
      "definitions $(grep -o '"defs_loss": [0-9.]*' "$dir/result.json" | cut -d' ' -f2)"
}

# 1. the learning-rate grid, seed SEED0, extended past an edge optimum (MAX_EXT points at most)
grid_variant() {
  local v=$1 grid lr
  if [ "$v" = full ]; then grid=$FULL_GRID; else grid=$ADAPTER_GRID; fi
  while ! stopped && lr=$($PY next-lr "$OUT" "$v" "$SEED0" "$grid" "$MAX_EXT") && [ -n "$lr" ]; do
    run_one "$v" "$lr" "$SEED0"
  done
  log "$v: best lr $($PY best "$OUT" "$v" "$SEED0" 2>/dev/null)"
}
for v in "${VARIANTS[@]}"; do spawn grid_variant "$v"; done
wait

# without STOP_AT every variant has its grid; after it, only those with a run go on
have=()
for v in "${VARIANTS[@]}"; do
  ls "$OUT/runs/${v}_lr"*"_s$SEED0/result.json" >/dev/null 2>&1 && have+=("$v")
done
[ ${#have[@]} = ${#VARIANTS[@]} ] || log "past STOP_AT: going on with ${have[*]:-no variant}"
VARIANTS=("${have[@]}")

# 2. the best lr of every method with the other seeds
for seed in "${SEEDS[@]:1}"; do
  for v in "${VARIANTS[@]}"; do spawn run_one "$v" "$($PY best "$OUT" "$v" "$SEED0")" "$seed"; done
done
wait

# 3. magnitude/direction analysis (paper §3.2): the main figure on the best run of each
#    method at SEED0, and every run for the tables; q,v (the paper's) and all modules
ALLMOD=q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj
best_runs=() all_runs=()
for v in "${VARIANTS[@]}"; do best_runs+=("$OUT/runs/${v}_lr$($PY best "$OUT" "$v" "$SEED0")_s$SEED0"); done
for f in "$OUT"/runs/*/result.json; do
  grep -q '"status": "ok"' "$f" && all_runs+=("$(dirname "$f")")
done
analyze() {  # analyze NAME MODULES RUNS... (kept when done before)
  local name=$1 mods=$2; shift 2
  [ -s "$OUT/analysis/$name/stdout.txt" ] && return
  "$D" analyze --base "$BASE" --runs "$@" --modules "$mods" --out "$OUT/analysis/$name" --threads "$THREADS" \
    >"$OUT/analysis/$name.stdout" 2>"$OUT/analysis/$name.log"
  mv "$OUT/analysis/$name.stdout" "$OUT/analysis/$name/stdout.txt"
}
log "analyze"
# with PARALLEL > 1 the four run at once (on the GPU scale's 116M model, one after
# another on 4 threads, they did not finish in the 3.5 minutes left)
spawn analyze qv_best q_proj,v_proj "${best_runs[@]}"
spawn analyze all_best "$ALLMOD" "${best_runs[@]}"
spawn analyze qv_all q_proj,v_proj "${all_runs[@]}"
spawn analyze all_all "$ALLMOD" "${all_runs[@]}"
wait
cat "$OUT/analysis/qv_best/stdout.txt"

# 4. artefacts worth committing
cp "$OUT/analysis/qv_best/decomposition.svg" "$DOCS/decomposition_qv.svg"
cp "$OUT/analysis/qv_best/decomposition.csv" "$DOCS/decomposition_qv.csv"
cp "$OUT/analysis/qv_best/stdout.txt" "$DOCS/analyze_qv.txt"
cp "$OUT/analysis/all_best/decomposition.svg" "$DOCS/decomposition_all.svg"
cp "$OUT/analysis/all_best/stdout.txt" "$DOCS/analyze_all.txt"
cp "$OUT/analysis/qv_all/stdout.txt" "$DOCS/analyze_qv_every_run.txt"
cp "$OUT/analysis/all_all/stdout.txt" "$DOCS/analyze_all_every_run.txt"
for v in "${VARIANTS[@]}"; do
  lr=$($PY best "$OUT" "$v" "$SEED0")
  "$D" plot "$OUT/runs/${v}_lr${lr}_s$SEED0" --out "$DOCS/loss_$v.svg" \
    --title "$v, lr $lr, seed $SEED0: Jargon File, $BASE" >/dev/null
done
$PY report "$OUT" "$DOCS" "$SEED0"
log "finished: tables in $DOCS/tables.md, figures in $DOCS/, runs in $OUT/runs/"
