#!/usr/bin/env bash
# cuda_run.sh — everything the GPU machine does for the CUDA backend, in one
# call of the device tool: correctness (every op against the CPU backend,
# the fixture models' loss and gradients, a short demo fine-tune on both
# backends) and the benchmark side by side with PEFT.
#
# Binaries are built here (no GPU needed to compile) and carried:
#   bash tools/device/prepare.sh          # builds .devbin/, fills .deps/ and .devbench/
#   device run: carry [.devbin, .devrt, .devbench], command:
#     bash tools/device/cuda_run.sh check bench   (also: shell, benchq, ratio, cli, dist, dist2, probe, clocks, lowrank, ncu, ncu_detail, profile, scale, blocking)
# Logs land in $OUT (check.log, ops.log, model.log, demo.log, bench.log, kernels_ncu.txt (ncu),
# peft_bench.jsonl, dorac_bench.jsonl, and with `profile`
# profile_<arch>.txt: where a DoRA step's wall time goes, from nsys).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/dorac-out}
mkdir -p "$OUT"
. tools/device/runtime_env.sh
BIN=.devbin
[ -f $BIN/bins.txz ] && (cd $BIN && tar xJf bins.txz)  # prepare.sh packs the binaries
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/check.log"

want() { for a in "${ARGS[@]}"; do [ "$a" = "$1" ] && return 0; done; return 1; }
ARGS=("$@")

if want check; then
  echo "== ops: CUDA vs CPU ==" | tee -a "$OUT/check.log"
  timeout 300 $BIN/test_backend_ops > "$OUT/ops.log" 2>&1; echo "test_backend_ops rc=$?" | tee -a "$OUT/check.log"
  grep -c " OK" "$OUT/ops.log" | sed 's/^/ops OK lines: /' | tee -a "$OUT/check.log"
  grep "FAIL" "$OUT/ops.log" | head -40 | tee -a "$OUT/check.log"
  # the low-rank pass's other ring depths (cuda_lowrank.cu; default 2);
  # CHECK_DEPTHS=0 skips them (when the device time is short)
  for st in $([ "${CHECK_DEPTHS:-1}" = 0 ] || echo 3 4); do
    DORAC_LOWRANK_STAGES=$st timeout 120 $BIN/test_backend_ops gemm lora_up_scale > "$OUT/ops_lowrank$st.log" 2>&1
    echo "test_backend_ops gemm lora_up_scale, ring depth $st: rc=$? $(tail -1 "$OUT/ops_lowrank$st.log")" |
      tee -a "$OUT/check.log"
    grep "FAIL" "$OUT/ops_lowrank$st.log" | head -10 | tee -a "$OUT/check.log"
  done
  echo "== models: CUDA vs CPU ==" | tee -a "$OUT/check.log"
  timeout 150 $BIN/test_cuda_model > "$OUT/model.log" 2>&1; echo "test_cuda_model rc=$?" | tee -a "$OUT/check.log"
  grep -i "fail" "$OUT/model.log" | head -20 | tee -a "$OUT/check.log"
  echo "== demo fine-tune, 40 steps, cpu vs cuda ==" | tee "$OUT/demo.log"
  for dev in cpu cuda; do
    timeout 100 $BIN/dorac train --model demo/base --data demo/data/jargon_train.jsonl \
      --eval-data demo/data/jargon_eval.jsonl --out /tmp/demo-$dev --steps 30 --batch-size 8 \
      --seq-len 128 --lr 1e-2 --rank 8 --device $dev --log-every 10 >> "$OUT/demo.log" 2>&1
    echo "demo $dev rc=$?" >> "$OUT/demo.log"
  done
  tail -n 14 "$OUT/demo.log"
fi

if want shell; then
  # the end-to-end shell tests (tests/test_*.sh) with the CUDA build: their
  # runs take --device auto, i.e. this GPU, unless a test names one, so
  # losses compare at BF16's tolerance (DORAC_TEST_BF16; shell.log, and each
  # failing test's last lines)
  : > "$OUT/shell.log"
  for t in tests/test_*.sh; do
    name=$(basename $t .sh)
    DORAC_TEST_BF16=1 timeout 300 bash $t $BIN/dorac > /tmp/$name.log 2>&1
    rc=$?
    echo "$name rc=$rc: $(tail -n 1 /tmp/$name.log)" | tee -a "$OUT/shell.log"
    [ $rc = 0 ] || tail -n 25 /tmp/$name.log | sed 's/^/    /' >> "$OUT/shell.log"
  done
fi

if want cli; then
  # every subcommand that takes --device, on both backends (results in cli.log)
  F=tests/fixtures/models
  {
    for dev in cpu cuda; do
      echo "-- $dev"
      $BIN/dorac eval --model $F/llama-gqa --data $F/eval.jsonl --device $dev --json
      $BIN/dorac eval --model $F/gpt2 --adapter $F/gpt2/adapters/dora --data $F/eval.jsonl --device $dev --json
      rm -rf /tmp/merged-$dev
      $BIN/dorac merge --model $F/gpt2 --adapter $F/gpt2/adapters/dora --out /tmp/merged-$dev --device $dev &&
        $BIN/dorac eval --model /tmp/merged-$dev --data $F/eval.jsonl --device cpu --json
      $BIN/dorac generate --model demo/base --prompt "In the beginning" --max-new-tokens 24 --temperature 0 \
        --device $dev
      echo "rc=$?"
    done
  } > "$OUT/cli.log" 2>&1
  cat "$OUT/cli.log"
fi

if want dist; then
  # data parallel on one GPU: the collectives (NCCL with a world of 1, and
  # the TCP ones) and a training run told it is rank 0 of 1 (dist.log)
  {
    timeout 120 $BIN/test_dist; echo "test_dist rc=$?"
    RANK=0 WORLD_SIZE=1 LOCAL_RANK=0 MASTER_PORT=29517 timeout 60 $BIN/dorac train --model demo/base \
      --data demo/data/jargon_train.jsonl --out /tmp/dist1 --steps 10 --batch-size 8 --seq-len 128 --lr 1e-2 \
      --rank 8 --device cuda --log-every 5; echo "world-1 train rc=$?"
    timeout 120 $BIN/dorac train --model demo/base --data demo/data/jargon_train.jsonl --out /tmp/dist2 --steps 10 \
      --batch-size 4 --seq-len 128 --lr 1e-2 --rank 8 --device cpu --nproc-per-node 2 --log-every 5
    echo "2 CPU processes rc=$?"
  } > "$OUT/dist.log" 2>&1
  cat "$OUT/dist.log"
fi

# One dorac training run of the benchmark: 12 steps (BENCH_STEPS), a JSON line (median
# tokens/s over steps 4-12, peak memory) appended to dorac_bench.jsonl.
# Args: arch method B T targets, then how to get the model (--model DIR, or
# --init random --config FILE).
bench_one() {
  local arch=$1 method=$2 B=$3 T=$4 targets=$5
  shift 5
  local extra="--rank 16 --alpha 32 --targets $targets"
  [ $method = full ] && extra=""
  rm -rf /tmp/run
  timeout 150 $BIN/dorac train "$@" --data /tmp/ids_$arch.jsonl --out /tmp/run \
    --method $method $extra --batch-size $B --seq-len $T --no-pack --long truncate --steps ${BENCH_STEPS:-12} --warmup 0 \
    --lr 1e-4 --device cuda --log-every 1 > /tmp/train.log 2>&1
  local rc=$?
  python3 - "$arch" "$method" "$B" "$T" "$rc" >> "$OUT/dorac_bench.jsonl" <<'PY'
import json, sys, re
arch, method, B, T, rc = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rec = dict(engine="dorac", arch=arch, mode=method, B=B, T=T, rc=rc)
try:
    steps = [json.loads(l) for l in open("/tmp/run/metrics.jsonl") if l.strip()]
    tps = sorted(s["tokens_per_s"] for s in steps[3:])
    rec["tok_s"] = round(tps[len(tps) // 2]) if tps else None
    rec["losses"] = [round(s["loss"], 4) for s in steps[:3]] + [round(steps[-1]["loss"], 4)]
except Exception as e:
    rec["error"] = str(e)
log = open("/tmp/train.log").read()
m = re.search(r"peak memory ([0-9.]+) GiB", log)
rec["peak_gib"] = float(m.group(1)) if m else None
if rc: rec["log_tail"] = log[-600:]
print(json.dumps(rec))
PY
  tail -n 1 "$OUT/dorac_bench.jsonl" | tee -a "$OUT/bench.log"
}

# random token rows for both benchmark shapes
make_bench_ids() {
  python3 - <<'PY'
import json, random
random.seed(0)
for arch, V, T, rows in (("gpt2", 50257, 1024, 256), ("llama1b", 128256, 2048, 128)):
    with open(f"/tmp/ids_{arch}.jsonl", "w") as f:
        for _ in range(rows):
            f.write(json.dumps({"input_ids": [random.randrange(V) for _ in range(T)]}) + "\n")
PY
}

BENCH_SPECS=("gpt2 8 1024 c_attn,c_proj,c_fc" "llama1b 4 2048 all-linear")

if want bench; then
  echo "== PEFT anchor (same GPU, same run) ==" | tee "$OUT/bench.log"
  rm -rf /tmp/models
  PYTHONUNBUFFERED=1 timeout 300 python3 .devbench/peft_bench.py --only model --save-models /tmp/models \
    2>&1 | grep '^{' | tee -a "$OUT/bench.log"
  make_bench_ids
  : > "$OUT/dorac_bench.jsonl"
  for spec in "${BENCH_SPECS[@]}"; do
    set -- $spec
    for method in lora dora full; do bench_one $1 $method $2 $3 $4 --model /tmp/models/$1; done
  done
fi

# Random-init models of the benchmark shapes (the configs peft_bench.py
# saves), in /tmp/rq_<arch>/model: one full fine-tuning step at lr 1e-9 from
# --init random, saved in BF16. Args: the archs (default both); prints the
# tail of a failed init's log.
make_rq_models() {
  local want_archs="${*:-gpt2 llama1b}" spec
  python3 - <<'PY'
import json
llama = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256, hidden_size=2048,
             intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32, num_key_value_heads=8,
             head_dim=64, max_position_embeddings=4096, rms_norm_eps=1e-5, hidden_act="silu",
             tie_word_embeddings=True, rope_theta=500000.0, bos_token_id=0, eos_token_id=0)
gpt2 = dict(architectures=["GPT2LMHeadModel"], model_type="gpt2", vocab_size=50257, n_embd=768, n_layer=12,
            n_head=12, n_positions=1024, n_inner=None, activation_function="gelu_new", layer_norm_epsilon=1e-5,
            tie_word_embeddings=True, bos_token_id=50256, eos_token_id=50256)
json.dump(llama, open("/tmp/cfg_llama1b.json", "w"))
json.dump(gpt2, open("/tmp/cfg_gpt2.json", "w"))
PY
  make_bench_ids
  for spec in "${BENCH_SPECS[@]}"; do
    set -- $spec
    case " $want_archs " in *" $1 "*) ;; *) continue ;; esac
    [ -d /tmp/rq_$1/model ] && continue
    rm -rf /tmp/rq_$1
    $BIN/dorac train --init random --config /tmp/cfg_$1.json --method full --data /tmp/ids_$1.jsonl \
      --out /tmp/rq_$1 --steps 1 --lr 1e-9 --batch-size 1 --seq-len $3 --no-pack --long truncate \
      --save-dtype bf16 --device cuda > /tmp/rq_init.log 2>&1 || tail -3 /tmp/rq_init.log
  done
}

if want benchq; then
  # dorac alone (no PEFT run), LoRA and DoRA on randomly initialised models
  # of the same shapes: for quick iterations; the recorded table comes from
  # `bench`
  echo "== dorac only, random-init models ==" | tee -a "$OUT/bench.log"
  make_rq_models
  [ -f "$OUT/dorac_bench.jsonl" ] || : > "$OUT/dorac_bench.jsonl"
  for spec in "${BENCH_SPECS[@]}"; do
    set -- $spec
    for method in lora dora; do bench_one $1 $method $2 $3 $4 --model /tmp/rq_$1/model; done
  done
fi

if want dist2; then
  # two GPUs (nvidia-h200-x2), NCCL between two processes (dist2.log):
  # the CPU data-parallel checks (tests/test_train_dist.sh, test_train_zero.sh)
  # on the GPUs, where 1 and 2 processes agree to bf16 tolerance (each
  # script's GPU default, or DIST_TOL: docs/PERF.md's data-parallel section) and everything else
  # (overlap on/off, resume, ZeRO-1 sharded vs replicated) bit for bit; then
  # the Llama-1B shape's tokens/s on 1 and 2 GPUs, B=4 a GPU (dist2.jsonl)
  {
    nvidia-smi -L
    env ${DIST_TOL:+DORAC_TEST_TOL=$DIST_TOL} DORAC_TEST_DEVICE=cuda timeout 300 bash tests/test_train_dist.sh $BIN/dorac
    echo "test_train_dist.sh on 2 GPUs rc=$?"
    env ${DIST_TOL:+DORAC_TEST_TOL=$DIST_TOL} DORAC_TEST_DEVICE=cuda timeout 300 bash tests/test_train_zero.sh $BIN/dorac
    echo "test_train_zero.sh on 2 GPUs rc=$?"
  } > "$OUT/dist2.log" 2>&1
  cat "$OUT/dist2.log"
  make_rq_models llama1b
  [ -f "$OUT/dorac_bench.jsonl" ] || : > "$OUT/dorac_bench.jsonl"
  for method in ${DIST_METHODS:-dora lora}; do  # DIST_METHODS=none: the checks alone
    [ $method = none ] && continue
    for n in 1 2; do
      bench_one llama1b $method 4 2048 all-linear --model /tmp/rq_llama1b/model --nproc-per-node $n > /dev/null
      tail -n 1 "$OUT/dorac_bench.jsonl" | sed "s/^{/{\"gpus\": $n, /" | tee -a "$OUT/dist2.jsonl"
    done
  done
fi

# A 4-layer model of the Llama-1B shape in /tmp/l4run/model (random, BF16)
# and 16 rows of random ids, for the ncu targets.
make_l4_model() {
  [ -d /tmp/l4run/model ] && return 0
  python3 - <<'PY'
import json, random
c = dict(architectures=["LlamaForCausalLM"], model_type="llama", vocab_size=128256, hidden_size=2048,
         intermediate_size=8192, num_hidden_layers=4, num_attention_heads=32, num_key_value_heads=8,
         head_dim=64, max_position_embeddings=4096, rms_norm_eps=1e-5, hidden_act="silu",
         tie_word_embeddings=True, rope_theta=500000.0, bos_token_id=0, eos_token_id=0)
json.dump(c, open("/tmp/l4.json", "w"))
random.seed(0)
with open("/tmp/ids_l4.jsonl", "w") as f:
    for _ in range(16):
        f.write(json.dumps({"input_ids": [random.randrange(128256) for _ in range(2048)]}) + "\n")
PY
  rm -rf /tmp/l4run
  $BIN/dorac train --init random --config /tmp/l4.json --method full --data /tmp/ids_l4.jsonl --out /tmp/l4run \
    --steps 1 --lr 1e-9 --batch-size 1 --seq-len 2048 --no-pack --long truncate --save-dtype bf16 --device cuda \
    > /tmp/l4init.log 2>&1 || tail -3 /tmp/l4init.log
}

if want lowrank; then
  # the adapter's one-pass products (bench/bench_lowrank.c): cuda_lowrank.cu
  # at ring depths 2, 3, 4 against what it replaces (lowrank.log)
  {
    DORAC_LOWRANK_OFF=1 $BIN/bench_lowrank
    for s in 2 3 4; do DORAC_LOWRANK_STAGES=$s $BIN/bench_lowrank; done
  } 2>&1 | tee "$OUT/lowrank.log"
fi

if want ncu && command -v ncu >/dev/null; then
  # GPU time by kernel (ncu, one metric, no replay) of 2 training steps on
  # 4 layers of the Llama-1B shape, LoRA and DoRA r16 all-linear: where
  # DoRA's extra time goes (kernels_ncu.txt; bench/ncu_kernels.py sums it)
  make_l4_model
  : > "$OUT/kernels_ncu.txt"
  for method in lora dora; do
    rm -rf /tmp/run
    timeout 240 ncu --csv --print-units base --metrics gpu__time_duration.sum $BIN/dorac train \
      --model /tmp/l4run/model --data /tmp/ids_l4.jsonl --out /tmp/run --method $method --rank 16 --alpha 32 \
      --targets all-linear --batch-size 4 --seq-len 2048 --no-pack --long truncate --steps 2 --warmup 0 \
      --lr 1e-4 --device cuda 2>/dev/null | grep '^"' > /tmp/ncu_$method.csv
    echo "ncu $method rc=$? rows $(wc -l < /tmp/ncu_$method.csv)"
  done
  python3 bench/ncu_kernels.py /tmp/ncu_lora.csv /tmp/ncu_dora.csv | tee "$OUT/kernels_ncu.txt"
fi

if want ncu_detail && command -v ncu >/dev/null; then
  # why the largest non-GEMM kernels run below the memory bandwidth: ncu's
  # detailed sections (throughput, memory workload, warp stalls, occupancy)
  # for two launches each of lora_up_scale, the DoRA column-sum passes and
  # the attention, one DoRA step of the 4-layer model
  make_l4_model
  rm -rf /tmp/run
  # NCU_DETAIL_K: another kernel-name regex (default: the four below)
  timeout 240 ncu --set detailed --launch-count ${NCU_DETAIL_N:-8} \
    -k "regex:${NCU_DETAIL_K:-lora_up_scale|dora_colsum_partial|attention_backward_dkv|attention_forward}" $BIN/dorac train \
    --model /tmp/l4run/model --data /tmp/ids_l4.jsonl --out /tmp/run --method dora --rank 16 --alpha 32 \
    --targets all-linear --batch-size 4 --seq-len 2048 --no-pack --long truncate --steps 1 --warmup 0 \
    --lr 1e-4 --device cuda > "$OUT/ncu_detail.txt" 2>&1
  echo "ncu_detail rc=$? lines $(wc -l < "$OUT/ncu_detail.txt")"
fi

if want ratio; then
  # the DoRA/LoRA step ratio, which one benchmark run measures only to about
  # +-2% (docs/PERF.md, eleventh run): LoRA and DoRA alternated RATIO_REPS
  # times (default 3) on the models `bench` made (or random-init ones), each the
  # median of its steps 4-12; the mean ratio at the end (ratio.jsonl)
  for spec in "${BENCH_SPECS[@]}"; do
    set -- $spec
    case " ${RATIO_ARCHS:-llama1b} " in *" $1 "*) ;; *) continue ;; esac
    model=/tmp/models/$1; [ -d $model ] || { make_rq_models $1; model=/tmp/rq_$1/model; }
    [ -d $model ] || { echo "ratio: no $1 model"; continue; }
    for rep in $(seq 1 "${RATIO_REPS:-3}"); do
      for method in lora dora; do
        OUT_SAVE=$OUT; OUT=/tmp/ratio_out; mkdir -p $OUT; : > $OUT/dorac_bench.jsonl
        bench_one $1 $method $2 $3 $4 --model $model > /dev/null
        sed "s/^{/{\"rep\": $rep, /" $OUT/dorac_bench.jsonl >> "$OUT_SAVE/ratio.jsonl"
        OUT=$OUT_SAVE
      done
    done
    python3 - "$OUT/ratio.jsonl" "$1" <<'PY' | tee -a "$OUT/bench.log"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
rows = [r for r in rows if r.get("arch") == sys.argv[2] and r.get("tok_s")]
pairs = {}
for r in rows: pairs.setdefault(r["rep"], {})[r["mode"]] = r["tok_s"]
ratios = [p["lora"] / p["dora"] for p in pairs.values() if "lora" in p and "dora" in p]
if ratios:
    print(f"{sys.argv[2]}: DoRA/LoRA step ratio per pair " + " ".join(f"{x:.3f}" for x in ratios)
          + f", mean {sum(ratios) / len(ratios):.3f}")
PY
  done
fi

if want probe; then
  # whether cuBLASLt folds the adapter's forward pass into the frozen GEMM
  # (bench/probe_lt_epilogue.cu: alpha vector, bias, GELU epilogues on BF16)
  timeout 120 $BIN/probe_lt_epilogue 2>&1 | tee "$OUT/probe.log"
fi

if want clocks; then
  # the SM clock and power while the Llama-1B shape trains with DoRA
  # (clocks.csv, sampled every 200 ms; CLOCK_STEPS steps, default 48):
  # ncu's per-kernel times (profile) run at the idle GPU's clocks, the
  # benchmark at the loaded GPU's
  model=/tmp/models/llama1b; [ -d $model ] || { make_rq_models llama1b; model=/tmp/rq_llama1b/model; }
  nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader \
    -lms 200 > "$OUT/clocks.csv" 2>&1 &
  smi=$!
  BENCH_STEPS=${CLOCK_STEPS:-48} bench_one llama1b dora 4 2048 all-linear --model $model > /dev/null
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  tail -n 1 "$OUT/dorac_bench.jsonl" | sed 's/^{/{"clocks": 1, /' | tee -a "$OUT/bench.log"
  python3 - "$OUT/clocks.csv" <<'PY' | tee -a "$OUT/bench.log"
import sys
rows = []
for line in open(sys.argv[1]):
    f = [x.strip() for x in line.split(",")]
    try: rows.append((float(f[1].split()[0]), float(f[2].split()[0]), float(f[3].split()[0]), float(f[4])))
    except (ValueError, IndexError): pass
busy = [r for r in rows if r[2] > 300]  # samples under load (W)
if busy:
    sm = sorted(r[0] for r in busy); pw = sorted(r[2] for r in busy)
    print(f"clocks under load ({len(busy)} of {len(rows)} samples): SM MHz median {sm[len(sm)//2]:.0f} "
          f"(min {sm[0]:.0f}, max {sm[-1]:.0f}; max clock {busy[0][1]:.0f}), power W median {pw[len(pw)//2]:.0f} "
          f"(max {pw[-1]:.0f}), temperature max {max(r[3] for r in busy):.0f} C")
else:
    print(f"clocks: no sample under load among {len(rows)}")
PY
fi

if want scale; then
  # GPT-2 DoRA at B = 2, 4, 8, 16 (T = 1024): step time against tokens, whose
  # intercept is the step's cost that does not grow with the batch (launches,
  # host work, waits)
  [ -s /tmp/ids_gpt2.jsonl ] || make_bench_ids
  model=/tmp/models/gpt2; [ -d $model ] || model=/tmp/rq_gpt2/model
  for B in 2 4 8 16; do bench_one gpt2 dora $B 1024 c_attn,c_proj,c_fc --model $model; done
fi

if want blocking; then
  # GPT-2 LoRA and DoRA with every launch waited for (CUDA_LAUNCH_BLOCKING):
  # the step then takes the host's time plus the GPU's, so that with the
  # GPU's own (profile) the host's work per step follows (blocking.jsonl)
  [ -s /tmp/ids_gpt2.jsonl ] || make_bench_ids
  model=/tmp/models/gpt2; [ -d $model ] || model=/tmp/rq_gpt2/model
  for method in lora dora; do
    CUDA_LAUNCH_BLOCKING=1 bench_one gpt2 $method 8 1024 c_attn,c_proj,c_fc --model $model
    tail -n 1 "$OUT/dorac_bench.jsonl" | sed 's/^{/{"blocking": 1, /' >> "$OUT/blocking.jsonl"
  done
fi

if want profile; then
  # where a step's wall time goes (profile_<arch>.txt, bench/nsys_steps.py):
  # GPU busy against wall per step, idle gaps and the host calls during
  # them, API calls and kernels per step; 8 DoRA steps of each benchmark
  # shape, on the models `bench` (or `benchq`) made
  NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys \
    /usr/local/cuda/nsight-systems*/bin/nsys 2>/dev/null | head -1)
  [ -z "$NSYS" ] && [ ! -s /tmp/ids_gpt2.jsonl ] && make_bench_ids
  for spec in "${BENCH_SPECS[@]}"; do
    set -- $spec
    case " ${PROFILE_ARCHS:-gpt2 llama1b} " in *" $1 "*) ;; *) continue ;; esac  # PROFILE_ARCHS: which shapes
    model=/tmp/models/$1; [ -d $model ] || { make_rq_models $1; model=/tmp/rq_$1/model; }
    [ -d $model ] || { echo "profile: no $1 model"; continue; }
    for method in ${PROFILE_METHODS:-dora}; do  # PROFILE_METHODS: e.g. "dora lora"
    sfx=$([ $method = dora ] || echo _$method)
    run_args=(train --model $model --data /tmp/ids_$1.jsonl --out /tmp/run --method $method --rank 16 --alpha 32
      --targets $4 --batch-size $2 --seq-len $3 --no-pack --long truncate --warmup 0 --lr 1e-4 --device cuda)
    rm -rf /tmp/run /tmp/prof_$1.*
    if [ -n "$NSYS" ]; then
      timeout 200 $NSYS profile -t cuda -o /tmp/prof_$1 --force-overwrite true $BIN/dorac "${run_args[@]}" \
        --steps 8 > /tmp/nsys_$1.log 2>&1
      echo "nsys $1 rc=$?"
      timeout 120 $NSYS export --type sqlite --force-overwrite true -o /tmp/prof_$1.sqlite /tmp/prof_$1.nsys-rep \
        >> /tmp/nsys_$1.log 2>&1
      python3 bench/nsys_steps.py /tmp/prof_$1.sqlite 4 > "$OUT/profile_$1$sfx.txt" 2>&1 || tail -5 /tmp/nsys_$1.log
      head -8 "$OUT/profile_$1$sfx.txt"
    else
      # no nsys on the machine: each kernel's time at the GPU's own clocks
      # and a warm L2 (ncu serialises kernels, so the sum is the GPU's busy
      # time), per optimizer step
      echo "profile: no nsys; ncu kernel times per step instead"
      timeout 240 ncu --csv --print-units base --cache-control none --clock-control none \
        --metrics gpu__time_duration.sum $BIN/dorac "${run_args[@]}" --steps 3 --log-every 1 \
        2>/dev/null | grep '^"' > /tmp/ncu_p$1.csv
      python3 bench/ncu_steps.py /tmp/ncu_p$1.csv 60 > "$OUT/profile_$1$sfx.txt"
      head -5 "$OUT/profile_$1$sfx.txt"
    fi
    done
  done
fi
