#!/usr/bin/env bash
# gpu_study.sh — the GPU scale of the study (issue 7), in one call of the device
# tool: dorac pretrains a ~116M-parameter Llama-architecture model from random
# init on real text (.devstudy/, made here by tools/study/prepare_gpu_base.sh),
# then tools/study/run_study.sh runs the DoRA / LoRA / full fine-tuning study on
# it, on the same Jargon File task as the CPU scale, and everything small is
# packed under $OUT (the only thing that comes back).
#
#   here:   bash tools/device/prepare.sh && bash tools/study/prepare_gpu_base.sh
#   device: carry [.devbin, .devrt, .devstudy], command:
#           bash tools/study/gpu_study.sh probe   # sizes the full call (~3 min)
#           PRETRAIN_STEPS=N PARALLEL=P bash tools/study/gpu_study.sh full
#
# probe: decompresses the corpus, pretrains PROBE_PT_STEPS (30) steps and prints
#   tokens/s, then runs the study's path (run_study.sh, every flag as in the full
#   call) with PROBE_STEPS (50) steps for full / lora_r8 / dora_r8 at one lr and
#   one seed, one at a time and then the three at once, and prints each run's
#   wall time (training, checkpoints, both evals), the analysis time and an
#   estimate of the full call. Results: $OUT/study.log, probe.txt, study_probe.tar.gz.
# full: pretrains PRETRAIN_STEPS steps (default: PT_SECONDS (200) at PT_TOK_S
#   (150000) tokens/s), evaluates the model (held-out corpus split, greedy
#   samples), runs the study, packs $OUT/study_gpu.tar.gz and copies tables.md,
#   summary.csv, pretrain.json and study.log plainly.
#
# Time: every stage checks the clock against DEADLINE_S (540) seconds from the
# start of this script; no fine-tuning run starts after DEADLINE_S - PACK_S -
# TAIL_S (the study's STOP_AT; TAIL_S (100) leaves time for the runs in flight,
# the analysis and the tables), the study is killed at DEADLINE_S - PACK_S, and
# what exists is packed anyway (PACK_S, 25). Restart-safe: a stage whose output
# exists is not run again (the study keeps finished runs).
#
# Other knobs (environment): DORAC (.devbin/dorac), DEVICE (cuda), STUDY_DIR
# (.devstudy), WORK (/tmp: gpubase/, study-gpu/, gpustudy-data/ under it),
# PT_BATCH (32), PT_SEQ (512), PT_LR (6e-4), PT_WARMUP (5% of the steps),
# PT_WD (0.1), PT_SAVE_EVERY (a third of the steps; the fallback base if the
# pretraining is stopped by the clock), STEPS (200), SEEDS ("42 1 2"),
# FULL_GRID ("1e-4 3e-4 1e-3"), ADAPTER_GRID ("1e-3 3e-3 1e-2"), MAX_EXT (1),
# SAVE_EVERY (50), PARALLEL (1), VARIANTS (all six).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1
MODE=${1:-full}
case $MODE in probe|full) ;; *) echo "usage: $0 [probe|full]" >&2; exit 2 ;; esac
T0=$(date +%s)
OUT=${OUT:-/tmp/dorac-out}
mkdir -p "$OUT"
DEADLINE_S=${DEADLINE_S:-540}
END=$((T0 + DEADLINE_S))
PACK_S=${PACK_S:-25}
TAIL_S=${TAIL_S:-100}
SD=${STUDY_DIR:-.devstudy}
[ -f .devbin/bins.txz ] && (cd .devbin && tar xJf bins.txz)  # prepare.sh packs the binaries
D=${DORAC:-.devbin/dorac}
DEVICE=${DEVICE:-cuda}
NT=$(nproc)
W=${WORK:-/tmp}
DATA=$W/gpustudy-data
PACKDIR=$W/gpustudy-pack
LOG=$OUT/study.log
export LOG

log() { echo "[gpu-study $(date +%H:%M:%S) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
left() { echo $(( END - $(date +%s) )); }
secs() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }'; }

# runtime libraries the GPU machine lacks
. tools/device/runtime_env.sh

log "mode $MODE, deadline ${DEADLINE_S}s, $NT cores, dorac $D, device $DEVICE"
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$LOG"
for f in config.json tokenizer.json corpus_train.jsonl.xz corpus_eval.jsonl.xz; do
  [ -s "$SD/$f" ] || { log "missing $SD/$f (run tools/study/prepare_gpu_base.sh here)"; exit 1; }
done
[ -x "$D" ] || { log "missing $D"; exit 1; }

# ---------------------------------------------------------------- 1. corpus
unxz() {  # unxz IN OUT
  [ -s "$2" ] && return 0
  if command -v xz >/dev/null; then xz -dc "$1" > "$2.tmp"
  else python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), sys.stdout.buffer)' "$1" > "$2.tmp"
  fi && mv "$2.tmp" "$2"
}
mkdir -p "$DATA"
t=$(date +%s.%N)
if ! unxz "$SD/corpus_train.jsonl.xz" "$DATA/train.jsonl" || ! unxz "$SD/corpus_eval.jsonl.xz" "$DATA/eval.jsonl"; then
  log "cannot decompress the corpus"; exit 1
fi
log "corpus: $(wc -l < "$DATA/train.jsonl") train / $(wc -l < "$DATA/eval.jsonl") eval documents, $(du -m "$DATA/train.jsonl" | cut -f1) MB, $(secs "$t") s"

# ---------------------------------------------------------------- 2. pretraining
PT_BATCH=${PT_BATCH:-32}
PT_SEQ=${PT_SEQ:-512}
PT_LR=${PT_LR:-6e-4}
PT_WD=${PT_WD:-0.1}
pretrain() {  # pretrain OUTDIR STEPS TIMEOUT_S SAVE_EVERY EVAL_EVERY
  local dir=$1 steps=$2 tmo=$3 save=$4 ev=$5 rc resume=()
  local warm=${PT_WARMUP:-$(( steps / 20 > 10 ? steps / 20 : 10 ))}
  if [ "$tmo" -lt 30 ]; then log "pretraining: no time left (${tmo}s)"; return 1; fi
  ls -d "$dir"/checkpoint-* >/dev/null 2>&1 && resume=(--resume auto)
  log "pretraining: $steps steps of $PT_BATCH x $PT_SEQ tokens, lr $PT_LR cosine, warmup $warm, wd $PT_WD, at most ${tmo}s ${resume[*]}"
  timeout -k 10 "$tmo" "$D" train --init random --config "$SD/config.json" --tokenizer "$SD" --method full \
    --data "$DATA/train.jsonl" --eval-data "$DATA/eval.jsonl" --out "$dir" --batch-size "$PT_BATCH" \
    --seq-len "$PT_SEQ" --steps "$steps" --lr "$PT_LR" --schedule cosine --warmup "$warm" --weight-decay "$PT_WD" \
    --eval-every "$ev" --eval-batch-size 16 --save-every "$save" --keep 1 --save-dtype bf16 --seed 1 \
    --device "$DEVICE" --threads "$NT" --log-every 50 "${resume[@]}" >>"$dir.log" 2>&1
  rc=$?
  tail -n 3 "$dir.log" | tee -a "$LOG"
  return $rc
}
tok_s() {  # median tokens/s of a metrics.jsonl after its first 3 steps ("?" without one)
  [ -s "$1" ] || { echo "?"; return; }
  python3 - "$1" <<'PY'
import json, sys
r = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
t = sorted(x["tokens_per_s"] for x in r[3:] if "tokens_per_s" in x) or [0]
print(round(t[len(t) // 2]))
PY
}

# ---------------------------------------------------------------- 4. packing
pack() {  # pack NAME: everything small into $OUT/NAME.tar.gz
  local name=$1 st=$PACKDIR/$1
  rm -rf "$st" && mkdir -p "$st"
  cp "$SD/MANIFEST.json" "$SD/config.json" "$st/" 2>/dev/null
  for pt in "$W/gpubase" "$W/gpubase-probe"; do
    [ -d "$pt" ] || continue
    local b
    b=$st/$(basename "$pt")
    mkdir -p "$b"
    cp "$pt/metrics.jsonl" "$pt".log "$pt"/*.json "$pt"/*.txt "$b/" 2>/dev/null
  done
  for s in "$W/study-gpu" "$W/study-probe" "$W/study-probe-par"; do
    [ -d "$s" ] || continue
    local b
    b=$st/$(basename "$s")
    mkdir -p "$b/runs" "$b/analysis"
    cp "$s"/*.json "$s"/*.txt "$b/" 2>/dev/null
    cp -r "$s/docs" "$b/docs" 2>/dev/null
    for r in "$s"/runs/*/; do
      [ -d "$r" ] || continue
      mkdir -p "$b/runs/$(basename "$r")"
      cp "$r"/result.json "$r"/metrics.jsonl "$r"/eval.json "$r"/defs.json "$b/runs/$(basename "$r")/" 2>/dev/null
    done
    for l in "$s"/runs/*.log; do [ -f "$l" ] && tail -n 40 "$l" > "$b/runs/$(basename "$l")"; done
    for a in "$s"/analysis/*/; do
      [ -d "$a" ] || continue
      mkdir -p "$b/analysis/$(basename "$a")"
      cp "$a"/stdout.txt "$a"/*.csv "$a"/*.svg "$b/analysis/$(basename "$a")/" 2>/dev/null
    done
    cp "$s"/analysis/*.log "$b/analysis/" 2>/dev/null
  done
  cp "$LOG" "$st/study.log"
  tar -C "$PACKDIR" -czf "$OUT/$name.tar.gz" "$name"
  if [ "$(stat -c %s "$OUT/$name.tar.gz")" -gt $((15 * 1048576)) ]; then  # the every-run CSVs are the bulk
    tar -C "$PACKDIR" -czf "$OUT/$name.tar.gz" --exclude='*_all/decomposition.csv' --exclude='metrics.jsonl' "$name"
  fi
  log "packed $OUT/$name.tar.gz ($(du -k "$OUT/$name.tar.gz" | cut -f1) KiB)"
}

study() {  # study OUTDIR BASE [VAR=VALUE...]: run_study.sh under the clock
  local sout=$1 base=$2 tmo rc
  shift 2
  tmo=$(( $(left) - PACK_S ))
  if [ "$tmo" -lt 20 ]; then log "no time left for the study"; return 1; fi
  log "study: OUT=$sout BASE=$base $* (killed after ${tmo}s, no run starts after $((tmo - TAIL_S))s)"
  env BASE="$base" DEVICE="$DEVICE" DORAC="$D" OUT="$sout" DOCS="$sout/docs" DROP_OPTIMIZER=1 \
    STOP_AT=$(( $(date +%s) + tmo - TAIL_S )) "$@" \
    timeout -k 10 "$tmo" bash tools/study/run_study.sh 2>&1 | tee -a "$sout.stdout" | grep --line-buffered '^\[study' | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  log "study: exit $rc"
  if [ ! -s "$sout/docs/tables.md" ] && [ -s "$sout/base_eval.json" ] && ls "$sout"/runs/*/result.json >/dev/null 2>&1; then
    log "study: no tables (stopped early?), writing them from the finished runs"
    timeout 30 python3 tools/study/study.py report "$sout" "$sout/docs" "${SEEDS%% *}" > "$sout/report.txt" 2>&1
  fi
  mkdir -p "$sout"; cp "$sout.stdout" "$sout/run_study_stdout.txt" 2>/dev/null
  return "$rc"
}

SEEDS=${SEEDS:-42 1 2}
if [ "$MODE" = probe ]; then
  # ------------------------------------------------------------ probe
  trap 'pack study_probe' EXIT
  PB=$W/gpubase-probe
  n=${PROBE_PT_STEPS:-30}
  if [ ! -s "$PB/model/model.safetensors" ]; then
    rm -rf "$PB" "$PB.log"
    t=$(date +%s.%N)
    pretrain "$PB" "$n" 240 0 "$n"
    log "probe pretraining: $n steps in $(secs "$t") s wall (load, train, eval, bf16 save), $(tok_s "$PB/metrics.jsonl") tokens/s"
  fi
  [ -s "$PB/model/model.safetensors" ] || { log "probe pretraining failed"; exit 1; }
  cp "$SD/tokenizer.json" "$SD/tokenizer_config.json" "$PB/model/" 2>/dev/null
  PS=${PROBE_STEPS:-50}
  common=(STEPS="$PS" SEEDS=42 VARIANTS="full lora_r8 dora_r8" FULL_GRID=3e-4 ADAPTER_GRID=3e-3 MAX_EXT=0
          SAVE_EVERY="${SAVE_EVERY:-50}")
  t=$(date +%s.%N)
  study "$W/study-probe" "$PB/model" "${common[@]}" PARALLEL=1 THREADS="$NT"
  log "probe study, one run at a time: $(secs "$t") s"
  t=$(date +%s.%N)
  study "$W/study-probe-par" "$PB/model" "${common[@]}" PARALLEL=3 THREADS=$(( NT / 3 > 0 ? NT / 3 : 1 ))
  log "probe study, 3 runs at once: $(secs "$t") s"
  python3 - "$W" "$PS" "$(tok_s "$PB/metrics.jsonl")" "$PT_BATCH" "$PT_SEQ" <<'PY' | tee "$OUT/probe.txt" | tee -a "$LOG"
import glob, json, os, re, sys
w, ps, tps, B, T = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
tps = float(tps) if tps.replace(".", "").isdigit() else 0.0
print(f"pretraining: {tps:.0f} tokens/s at {B} x {T} = {tps / (B * T):.2f} steps/s: PRETRAIN_STEPS for S seconds = "
      f"S x {tps / (B * T):.2f} (plus ~15 s of start, corpus load, eval and bf16 save)")
# runs of the full study per probed kind: grid 3 + at most 1 extension, + 2 seeds
N = {"full": 6, "lora_r8": 12, "dora_r8": 18}  # lora_r8/r16; dora_r4/r8/r16
tot = {}
for s in ("study-probe", "study-probe-par"):
    runs, est = 0.0, 0.0
    for p in sorted(glob.glob(f"{w}/{s}/runs/*/result.json")):
        r = json.load(open(p))
        m = [json.loads(l) for l in open(os.path.join(os.path.dirname(p), "metrics.jsonl")) if l.strip()]
        k = min(4, len(m) - 1)
        step_s = (m[-1]["elapsed_s"] - m[k]["elapsed_s"]) / max(1, len(m) - 1 - k) if m else 0.0
        e200 = r["wall_s"] + (200 - ps) * step_s
        runs += r["wall_s"]
        est += N.get(r["variant"], 0) * e200
        print(f"{s}: {r['variant']}: {r['status']}, wall {r['wall_s']:.1f} s (train {r.get('train_s')} s, "
              f"{1000 * step_s:.1f} ms/step; the rest is start, checkpoints, 2 evals); held-out {r.get('eval_loss')}; "
              f"200 steps ~ {e200:.1f} s")
    log = open(f"{w}/{s}.stdout").read() if os.path.exists(f"{w}/{s}.stdout") else ""
    a = re.findall(r"\+(\d+)s\] analyze", log)
    f = re.findall(r"\+(\d+)s\] finished", log)
    first = re.findall(r"\+(\d+)s\] \S+: training", log)
    an = int(f[0]) - int(a[0]) if a and f else -1
    print(f"{s}: setup (defs, base evals) {first[0] if first else '?'} s; analyze + plots + tables {an} s (3 runs)")
    tot[s] = (runs, est)
if "study-probe" in tot:
    runs, est = tot["study-probe"]
    print(f"full study estimate, 36 runs at most, one at a time: {est:.0f} s of runs")
    if "study-probe-par" in tot and runs > 0:
        pw = re.findall(r"probe study, 3 runs at once: ([0-9.]+) s", open(os.environ["LOG"]).read())
        sw = re.findall(r"probe study, one run at a time: ([0-9.]+) s", open(os.environ["LOG"]).read())
        if pw and sw:
            print(f"3 at once took {float(pw[-1]):.0f} s vs {float(sw[-1]):.0f} s one at a time (whole probe study): "
                  f"PARALLEL=3 ~ {est * float(pw[-1]) / float(sw[-1]):.0f} s of runs")
PY
  exit 0
fi

# ---------------------------------------------------------------- full
trap 'pack study_gpu; for f in tables.md summary.csv; do cp "$W/study-gpu/docs/$f" "$OUT/" 2>/dev/null; done; cp "$W/gpubase/pretrain.json" "$OUT/" 2>/dev/null' EXIT
PT=$W/gpubase
B=$PT/model
STEPS_PT=${PRETRAIN_STEPS:-$(( ${PT_SECONDS:-200} * ${PT_TOK_S:-150000} / (PT_BATCH * PT_SEQ) ))}
if [ ! -s "$B/model.safetensors" ]; then
  t=$(date +%s.%N)
  tmo=$(( $(left) - PACK_S - ${STUDY_MIN_S:-150} ))
  se=${PT_SAVE_EVERY:-$(( STEPS_PT / 3 + 1 ))}
  pretrain "$PT" "$STEPS_PT" "$tmo" "$se" "${PT_EVAL_EVERY:-$(( STEPS_PT / 4 > 1 ? STEPS_PT / 4 : 1 ))}"
  rc=$?
  log "pretraining: exit $rc after $(secs "$t") s, $(tok_s "$PT/metrics.jsonl") tokens/s"
  if [ ! -s "$B/model.safetensors" ]; then
    ck=$(find "$PT" -maxdepth 1 -name 'checkpoint-*' -type d | tail -n 1)  # --keep 1: one at most
    if [ -n "$ck" ]; then
      log "pretraining stopped by the clock: the base is $ck (f32, not annealed)"
      mkdir -p "$B" && cp "$ck"/config.json "$ck"/model.safetensors "$B/" && echo "$ck (f32, not annealed)" > "$PT/base_from.txt"
    else
      log "no pretrained model; nothing to study"; exit 1
    fi
  fi
fi
cp "$SD/tokenizer.json" "$SD/tokenizer_config.json" "$B/"
rm -rf "$PT"/checkpoint-*   # 1.4 GB each; the study needs the disk
if [ ! -s "$PT/pretrain.json" ]; then
  "$D" eval --model "$B" --data "$DATA/eval.jsonl" --batch-size 16 --device "$DEVICE" --threads "$NT" --json \
    > "$PT/eval.json" 2>>"$PT.log"
  { for p in "And it came to pass" "LAWYER, n." "computer"; do
      echo "== $p"; "$D" generate --model "$B" --prompt "$p" --max-new-tokens 48 --temperature 0 --device "$DEVICE" 2>&1
    done; } > "$PT/samples.txt"
  python3 - "$PT" "$SD/MANIFEST.json" <<'PY' > "$PT/pretrain.json"
import json, os, sys
pt, man = sys.argv[1], json.load(open(sys.argv[2]))
bf = os.path.join(pt, "base_from.txt")
m = [json.loads(l) for l in open(pt + "/metrics.jsonl") if l.strip()]
t = sorted(x["tokens_per_s"] for x in m[3:]) or [0]
ev = json.load(open(pt + "/eval.json")) if open(pt + "/eval.json").read().strip() else {}
print(json.dumps({"base": open(bf).read().strip() if os.path.exists(bf) else "final model (bf16)",
                  "parameters": man["parameters"]["total"], "steps": m[-1]["step"], "tokens": sum(x["tokens"] for x in m),
                  "corpus_train_tokens": man["train_tokens"], "train_s": m[-1]["elapsed_s"],
                  "tokens_per_s_median": t[len(t) // 2], "loss_first": m[0]["loss"],
                  "loss_last50": sum(x["loss"] for x in m[-50:]) / len(m[-50:]),
                  "eval_curve": [[x["step"], x["eval_loss"]] for x in m if "eval_loss" in x],
                  "heldout_eval": ev}, indent=1))
PY
  log "pretrained: $(tr -d '\n ' < "$PT/pretrain.json" | cut -c1-400)"
fi
PAR=${PARALLEL:-1}
knobs=(STEPS="${STEPS:-200}" SEEDS="$SEEDS" FULL_GRID="${FULL_GRID:-1e-4 3e-4 1e-3}"
       ADAPTER_GRID="${ADAPTER_GRID:-1e-3 3e-3 1e-2}" MAX_EXT="${MAX_EXT:-1}" SAVE_EVERY="${SAVE_EVERY:-50}"
       PARALLEL="$PAR" THREADS=$(( NT / PAR > 0 ? NT / PAR : 1 )))
[ -n "${VARIANTS:-}" ] && knobs+=(VARIANTS="$VARIANTS")
study "$W/study-gpu" "$B" "${knobs[@]}"
log "done"
