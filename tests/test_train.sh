#!/usr/bin/env bash
# test_train.sh — `dorac train` end to end on a fixture model:
#  1. a run killed with SIGKILL (for real) and resumed with --resume auto
#     gives bit-identical per-step losses to an uninterrupted run;
#  2. kills at random moments, many of them during checkpoint saves, never
#     leave a checkpoint-N folder that is incomplete, and every one loads;
#  3. a non-finite loss stops the run with exit 1 and a one-line message,
#     keeping the last checkpoint intact;
#  4. outputs: adapter/ loads with dorac eval, --merge-at-end writes merged/,
#     metrics.jsonl has one record per step with the documented fields;
#  5. contradictory or unknown flags exit 2 with one line.
#
# usage: test_train.sh DORAC_BINARY   (run from the repository root)
set -u
DORAC=${1:?usage: test_train.sh path/to/dorac}
MODEL=tests/fixtures/models/llama-gqa
DATA=tests/fixtures/train/kjv_genesis.jsonl
EVAL=tests/fixtures/models/eval.jsonl
TMP=$(mktemp -d /tmp/dorac-train-XXXXXX)
trap 'kill -9 $(jobs -p) 2>/dev/null; rm -rf "$TMP"' EXIT
failures=0
checks=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
check() { checks=$((checks + 1)); }

COMMON=(--model "$MODEL" --data "$DATA" --batch-size 4 --seq-len 32 --rank 4 --lr 3e-3
        --dropout 0.1 --threads 2 --seed 7)

losses() { sed -E 's/.*"step": ([0-9]+), "loss": ([^,]+),.*/\1 \2/' "$1/metrics.jsonl"; }

# ---- 1. uninterrupted reference run ----
check
"$DORAC" train "${COMMON[@]}" --steps 24 --save-every 3 --keep 0 --out "$TMP/ref" --eval-data "$EVAL" --eval-every 12 --merge-at-end \
  >"$TMP/ref.out" 2>"$TMP/ref.err" || fail "reference run: $(tail -n 3 "$TMP/ref.err")"
[ "$(wc -l <"$TMP/ref/metrics.jsonl")" -eq 24 ] || fail "metrics.jsonl should have 24 records"
for k in step loss lr grad_norm tokens_per_s; do
  grep -q "\"$k\"" "$TMP/ref/metrics.jsonl" || fail "metrics.jsonl lacks $k"
done
[ "$(grep -c eval_loss "$TMP/ref/metrics.jsonl")" -eq 2 ] || fail "eval_loss should appear at steps 12 and 24"
for f in adapter/adapter_config.json adapter/adapter_model.safetensors merged/model.safetensors merged/config.json; do
  [ -f "$TMP/ref/$f" ] || fail "missing $f"
done
"$DORAC" eval --model "$MODEL" --adapter "$TMP/ref/adapter" --data "$EVAL" --json >"$TMP/a.json" 2>/dev/null || fail "eval adapter"
"$DORAC" eval --model "$TMP/ref/merged" --data "$EVAL" --json >"$TMP/m.json" 2>/dev/null || fail "eval merged"
la=$(sed -E 's/.*"loss": ([^,]+),.*/\1/' "$TMP/a.json"); lm=$(sed -E 's/.*"loss": ([^,]+),.*/\1/' "$TMP/m.json")
# relative 1e-5 in fp32; DORAC_TEST_BF16=1 (the GPU: BF16 weights and activations, merged
# weights rounded once more; test_cli.sh says more) 1e-3
awk -v a="$la" -v b="$lm" -v t="$([ "${DORAC_TEST_BF16:-0}" = 1 ] && echo 1e-3 || echo 1e-5)" \
  'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d < t * a) }' || fail "merged eval $lm != adapter eval $la"
grep -q "eval loss" "$TMP/ref.out" || fail "the summary should report eval loss before and after"

# ---- 1b. same settings again: bit-identical (determinism) ----
check
"$DORAC" train "${COMMON[@]}" --steps 24 --out "$TMP/again" >/dev/null 2>&1 || fail "second run"
[ "$(losses "$TMP/again")" = "$(losses "$TMP/ref")" ] || fail "a repeated run differs from the first"

# ---- 1c. killed for real, resumed: identical losses ----
check
"$DORAC" train "${COMMON[@]}" --steps 24 --save-every 3 --keep 0 --out "$TMP/killed" >/dev/null 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  [ -f "$TMP/killed/checkpoint-9/trainer_state.json" ] && break
  sleep 0.05
done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
[ -d "$TMP/killed/checkpoint-9" ] || fail "no checkpoint-9 before the kill"
[ -d "$TMP/killed/adapter" ] && fail "the killed run should not have finished"
"$DORAC" train "${COMMON[@]}" --steps 24 --save-every 3 --keep 0 --out "$TMP/killed" --resume auto >/dev/null 2>"$TMP/resume.err" ||
  fail "resume: $(tail -n 2 "$TMP/resume.err")"
grep -q "resumed from" "$TMP/resume.err" || fail "resume should say where it resumed from"
if [ "$(losses "$TMP/killed")" != "$(losses "$TMP/ref")" ]; then
  fail "resumed losses differ from the uninterrupted run"
  diff <(losses "$TMP/ref") <(losses "$TMP/killed") | head -n 6 >&2
fi
cmp -s "$TMP/ref/adapter/adapter_model.safetensors" "$TMP/killed/adapter/adapter_model.safetensors" ||
  fail "resumed final adapter differs from the uninterrupted one"

# ---- 2. random kills, many during saves (save every step) ----
check
"$DORAC" train "${COMMON[@]}" --steps 1 --save-every 1 --out "$TMP/chaos" >/dev/null 2>&1 || fail "chaos: first step"
for i in $(seq 1 8); do
  "$DORAC" train "${COMMON[@]}" --steps 24 --save-every 1 --keep 3 --out "$TMP/chaos" --resume auto >/dev/null 2>&1 &
  pid=$!
  sleep "0.$((RANDOM % 9 + 1))"
  kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
  for c in "$TMP"/chaos/checkpoint-*; do
    [ -d "$c" ] || continue
    for f in trainer_state.json optimizer.safetensors adapter_config.json adapter_model.safetensors; do
      [ -f "$c/$f" ] || fail "kill $i left $c without $f"
    done
  done
done
latest=$(ls -d "$TMP"/chaos/checkpoint-* 2>/dev/null | sort -t- -k2 -n | tail -n 1)
[ -n "$latest" ] || fail "no checkpoint survived the kills"
[ "${latest##*-}" -gt 1 ] 2>/dev/null || fail "the killed runs made no progress (latest: $latest)"
[ -n "$latest" ] && { "$DORAC" eval --model "$MODEL" --adapter "$latest" --data "$EVAL" >/dev/null 2>&1 || fail "$latest does not load"; }

# ---- 2b. --keep K keeps the newest K checkpoints and leaves no temporary folders ----
check
"$DORAC" train "${COMMON[@]}" --steps 5 --save-every 1 --keep 2 --out "$TMP/keep" >/dev/null 2>&1 || fail "keep run"
[ "$(ls -d "$TMP"/keep/checkpoint-* | xargs -n1 basename | tr '\n' ' ')" = "checkpoint-4 checkpoint-5 " ] ||
  fail "--keep 2 should leave checkpoint-4 and checkpoint-5: $(ls "$TMP/keep")"
[ -z "$(ls -A "$TMP/keep" | grep '^\.')" ] || fail "temporary folders left behind: $(ls -A "$TMP/keep")"

# ---- 3. a non-finite loss stops the run, the last checkpoint survives ----
check
"$DORAC" train --model "$MODEL" --data "$DATA" --steps 20 --batch-size 4 --seq-len 32 --rank 4 --lr 1e30 \
  --max-grad-norm 0 --warmup 0 --save-every 1 --out "$TMP/nan" >/dev/null 2>"$TMP/nan.err"
rc=$?
[ $rc -eq 1 ] || fail "a non-finite loss should exit 1, got $rc"
grep -q "non-finite" "$TMP/nan.err" || fail "the message should say non-finite: $(cat "$TMP/nan.err")"
[ -f "$TMP/nan/checkpoint-1/trainer_state.json" ] || fail "checkpoint-1 should survive"
[ -d "$TMP/nan/adapter" ] && fail "a failed run must not write adapter/"

# ---- 5. flags ----
expect_usage() {
  check
  "$DORAC" train "$@" >/dev/null 2>"$TMP/err"; local rc=$?
  [ $rc -eq 2 ] || fail "train $*: exit $rc, expected 2"
  [ "$(wc -l <"$TMP/err")" -eq 1 ] || fail "train $*: expected one line, got: $(cat "$TMP/err")"
}
expect_usage --model "$MODEL" --data "$DATA" --out "$TMP/x" --epochs 2 --steps 3
expect_usage --model "$MODEL" --data "$DATA" --out "$TMP/x" --method full --rank 8
expect_usage --model "$MODEL" --data "$DATA" --out "$TMP/x" --init random
expect_usage --model "$MODEL" --data "$DATA" --out "$TMP/x" --method lora --norm-grad exact
expect_usage --model "$MODEL" --data "$DATA" --out "$TMP/x" --method sgd
expect_usage --model "$MODEL" --data "$DATA" --out "$TMP/x" --lr fast
expect_usage --model "$MODEL" --data "$DATA" --out "$TMP/x" --frobnicate
"$DORAC" train --help | grep -q -- "--norm-grad" || fail "--help should document --norm-grad"
[ -e "$TMP/x" ] && fail "a usage error must not create the output folder"

if [ $failures -ne 0 ]; then echo "FAILED: $failures problems in $checks checks" >&2; exit 1; fi
echo "ok: $checks checks" >&2
