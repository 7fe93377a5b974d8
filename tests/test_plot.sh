#!/usr/bin/env bash
# test_plot.sh — `dorac plot` and `dorac analyze` end to end.
#   plot: metrics.jsonl -> SVG at the default path and at --out, one vertex
#     per step and one marker per evaluation, a torn last line skipped, and
#     every bad input an exit code 1..3 with one stderr line naming the
#     file (and line) and no SVG written. (test_plot.c checks the SVG is
#     well-formed XML with a parser; here: balanced tags, xmllint if present.)
#   analyze: real `dorac train` runs (DoRA, LoRA, full; a few steps on the
#     llama-gqa fixture) -> the r table on stdout, the CSV with one row per
#     checkpoint and layer, the SVG with one marker per row; usage errors,
#     and errors found mid-way, which end with one "dorac: <message>" line
#     after the progress lines.
#
# usage: test_plot.sh DORAC_BINARY   (run from the repository root)
set -u
DORAC=${1:?usage: test_plot.sh path/to/dorac}
FIX=tests/fixtures/models
TMP=$(mktemp -d /tmp/dorac-plot-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect_error NAME CODE NEEDLE CMD...: exit code CODE, exactly one stderr line, containing NEEDLE
expect_error() {
  local name=$1 code=$2 needle=$3; shift 3
  checks=$((checks + 1))
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lines; lines=$(wc -l <"$TMP/err")
  if [ $rc -ne "$code" ]; then fail "$name: exit code $rc, expected $code"; cat "$TMP/err" >&2; return; fi
  if [ "$lines" -ne 1 ]; then fail "$name: $lines lines on stderr, expected 1"; cat "$TMP/err" >&2; return; fi
  if ! grep -q -- "$needle" "$TMP/err"; then fail "$name: message lacks '$needle': $(cat "$TMP/err")"; fi
}

# expect_failure NAME CODE NEEDLE CMD...: as expect_error, for commands that print progress lines
# to stderr before failing: the LAST stderr line is the one "dorac: <message>" line
expect_failure() {
  local name=$1 code=$2 needle=$3; shift 3
  checks=$((checks + 1))
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ $rc -ne "$code" ]; then fail "$name: exit code $rc, expected $code"; cat "$TMP/err" >&2; return; fi
  if grep -v '^dorac: analyze: ' "$TMP/err" | grep -vq "$needle"; then fail "$name: stray stderr lines: $(cat "$TMP/err")"; return; fi
  if ! tail -n 1 "$TMP/err" | grep -q -- "$needle"; then fail "$name: last line lacks '$needle': $(cat "$TMP/err")"; fi
}

# svg_ok FILE: starts with the XML prolog, ends with </svg>, balanced groups; xmllint when installed
svg_ok() {
  checks=$((checks + 1))
  [ -s "$1" ] || { fail "$1 is missing or empty"; return; }
  head -c 5 "$1" | grep -q '<?xml' || fail "$1 does not start with <?xml"
  [ "$(tail -n 1 "$1")" = "</svg>" ] || fail "$1 does not end with </svg>"
  local open close
  open=$(grep -o '<g ' "$1" | wc -l); close=$(grep -o '</g>' "$1" | wc -l)
  [ "$open" -eq "$close" ] || fail "$1: $open <g> and $close </g>"
  [ "$(grep -o '<svg ' "$1" | wc -l)" -eq 1 ] || fail "$1: not exactly one <svg>"
  if command -v xmllint >/dev/null 2>&1; then xmllint --noout "$1" 2>"$TMP/xmlerr" || fail "$1: xmllint: $(cat "$TMP/xmlerr")"; fi
}

# vertices FILE CLASS: vertices of the polyline(s) with that class
vertices() { grep -o "<polyline points=\"[^\"]*\" fill=\"none\" class=\"$2\"" "$1" | sed -E 's/<polyline points="([^"]*)".*/\1/' | tr ' ' '\n' | grep -c ,; }

# ---- plot ----
RUN="$TMP/run"
mkdir -p "$RUN"
for i in $(seq 1 12); do
  eval_part=""
  [ $((i % 4)) -eq 0 ] && eval_part=", \"eval_loss\": 3.$((9 - i / 4))"
  printf '{"step": %d, "loss": %d.%d, "lr": %de-5, "grad_norm": 1.0, "tokens_per_s": 100.0%s}\n' \
    "$i" $((5 - i / 4)) $((i % 10)) "$i" "$eval_part" >>"$RUN/metrics.jsonl"
done
checks=$((checks + 1))
"$DORAC" plot "$RUN" 2>"$TMP/err" || fail "plot: $(cat "$TMP/err")"
grep -q "wrote $RUN/loss.svg (12 steps, 3 eval points)" "$TMP/err" || fail "plot message: $(cat "$TMP/err")"
svg_ok "$RUN/loss.svg"
checks=$((checks + 1))
[ "$(vertices "$RUN/loss.svg" train-loss)" -eq 12 ] || fail "train-loss has $(vertices "$RUN/loss.svg" train-loss) vertices, expected 12"
[ "$(vertices "$RUN/loss.svg" train-loss-smoothed)" -eq 12 ] || fail "smoothed line should have 12 vertices"
[ "$(vertices "$RUN/loss.svg" lr)" -eq 12 ] || fail "lr line should have 12 vertices"
[ "$(grep -c 'class="eval-loss"' "$RUN/loss.svg")" -eq 3 ] || fail "expected 3 eval-loss markers"
grep -q '>run</text>' "$RUN/loss.svg" || fail "the title should be the folder's name"

# --out, --out=, the folder after the flags, a title; a torn last line changes nothing
printf '{"step": 13, "loss": 2.' >>"$RUN/metrics.jsonl"
checks=$((checks + 1))
"$DORAC" plot --out "$TMP/a.svg" --title 'my <run>' "$RUN/" 2>"$TMP/err" || fail "plot --out: $(cat "$TMP/err")"
svg_ok "$TMP/a.svg"
[ "$(vertices "$TMP/a.svg" train-loss)" -eq 12 ] || fail "the torn last line should be skipped"
grep -q 'my &lt;run&gt;' "$TMP/a.svg" || fail "the title should be escaped"
"$DORAC" plot "$RUN" --out="$TMP/b.svg" 2>"$TMP/err" || fail "plot --out=: $(cat "$TMP/err")"
svg_ok "$TMP/b.svg"
"$DORAC" plot --help >"$TMP/help" || fail "plot --help"
grep -q -- "--out" "$TMP/help" || fail "plot --help lacks --out"

# bad input: exit codes, one line naming the file (and line), no SVG left behind
BAD="$TMP/bad"
mkdir -p "$BAD"
printf '{"step": 1, "loss": 4.0}\n{"step": 2, "loss": }\n{"step": 3, "loss": 3.0}\n' >"$BAD/metrics.jsonl"
expect_error "bad middle line" 1 "metrics.jsonl:2:" "$DORAC" plot "$BAD"
printf '{"step": 1, "loss": 4.0}\n{"step": 2, "loss": 3.0\n' >"$BAD/metrics.jsonl"
expect_error "bad last line, terminated" 1 "metrics.jsonl:2:" "$DORAC" plot "$BAD"
printf '{"step": 1, "loss": 4.0}\n{"step": "two", "loss": 3.0}\n' >"$BAD/metrics.jsonl"
expect_error "string step" 1 "metrics.jsonl:2: 'step' must be" "$DORAC" plot "$BAD"
printf '{"step": 1, "loss": 4.0, "lr": "x"}\n' >"$BAD/metrics.jsonl"
expect_error "string lr" 1 "metrics.jsonl:1: 'lr' must be a number" "$DORAC" plot "$BAD"
: >"$BAD/metrics.jsonl"
expect_error "empty metrics" 1 "no records" "$DORAC" plot "$BAD"
rm "$BAD/metrics.jsonl"
expect_error "no metrics.jsonl" 3 "$BAD/metrics.jsonl" "$DORAC" plot "$BAD"
checks=$((checks + 1))
[ ! -e "$BAD/loss.svg" ] || fail "a failed plot left $BAD/loss.svg"
ls -a "$BAD" | grep -q tmp && fail "a failed plot left a temporary file in $BAD"
expect_error "no such folder" 3 "$TMP/nope: no such folder" "$DORAC" plot "$TMP/nope"
expect_error "no folder" 2 "plot needs the training output folder" "$DORAC" plot
expect_error "two folders" 2 "plot takes one folder" "$DORAC" plot "$RUN" "$BAD"
expect_error "unknown flag" 2 "unknown flag '--bogus'" "$DORAC" plot "$RUN" --bogus
expect_error "unwritable --out" 3 "$TMP/nope/x.svg" "$DORAC" plot "$RUN" --out "$TMP/nope/x.svg"

# ---- analyze on real training runs ----
TRAIN=(--model $FIX/llama-gqa --data $FIX/eval.jsonl --steps 6 --save-every 2 --keep 0 --batch-size 2 --seq-len 16
       --warmup 0 --threads 1)
for method in dora lora; do
  "$DORAC" train "${TRAIN[@]}" --method $method --lr 1e-2 --targets q_proj,v_proj --rank 4 --out "$TMP/$method" \
    >"$TMP/train.log" 2>&1 || fail "train $method: $(tail -3 "$TMP/train.log")"
done
"$DORAC" train "${TRAIN[@]}" --method full --lr 1e-3 --out "$TMP/full" >"$TMP/train.log" 2>&1 ||
  fail "train full: $(tail -3 "$TMP/train.log")"
checks=$((checks + 1))
"$DORAC" analyze --base $FIX/llama-gqa --runs "$TMP/dora" "$TMP/lora" "$TMP/full" --out "$TMP/an" --threads 1 \
  >"$TMP/table" 2>"$TMP/err" || fail "analyze: $(cat "$TMP/err")"
for row in '^dora +dora +3 +12 ' '^lora +lora +3 +12 ' '^full +full +3 +12 ' '^FT +1 +12 ' '^LoRA +1 +12 ' '^DoRA +1 +12 '; do
  grep -Eq "$row" "$TMP/table" || fail "the r table lacks a row /$row/: $(cat "$TMP/table")"
done
grep -Eq '^DoRA +1 +12 +[-+][01]\.[0-9]{3} +-0\.31$' "$TMP/table" || fail "DoRA's r and the paper's value: $(cat "$TMP/table")"
[ "$(wc -l <"$TMP/an/decomposition.csv")" -eq 37 ] || fail "the CSV should have 1 + 3 runs x 3 checkpoints x 4 layers lines"
grep -q "^$TMP/lora,lora,checkpoint-6,6,model.layers.1.self_attn.v_proj,v_proj," "$TMP/an/decomposition.csv" ||
  fail "CSV row missing: $(head -3 "$TMP/an/decomposition.csv")"
svg_ok "$TMP/an/decomposition.svg"
[ "$(grep -c 'class="point"' "$TMP/an/decomposition.svg")" -eq 36 ] || fail "the figure should have 36 points"
[ "$(grep -c "analyze: $TMP/dora/checkpoint-" "$TMP/err")" -eq 3 ] || fail "progress lines: $(cat "$TMP/err")"
# the trained LoRA really moved: its rows are not all zero
awk -F, 'NR > 1 && $2 == "lora" && $8 + 0 > 0 { found = 1 } END { exit !found }' "$TMP/an/decomposition.csv" ||
  fail "LoRA's dD should be positive after training"

# --modules, then errors
checks=$((checks + 1))
"$DORAC" analyze --base $FIX/llama-gqa --runs "$TMP/full" --modules o_proj,layers.0.mlp.up_proj --out "$TMP/an2" \
  >"$TMP/table" 2>"$TMP/err" || fail "analyze --modules: $(cat "$TMP/err")"
[ "$(wc -l <"$TMP/an2/decomposition.csv")" -eq 10 ] || fail "--modules o_proj,layers.0.mlp.up_proj: 1 + 3 x 3 lines"
expect_error "analyze: no --base" 2 "needs --base" "$DORAC" analyze --runs "$TMP/dora"
expect_error "analyze: no --runs" 2 "needs --runs" "$DORAC" analyze --base $FIX/llama-gqa
expect_error "analyze: missing run" 3 "$TMP/nope" "$DORAC" analyze --base $FIX/llama-gqa --runs "$TMP/nope" --out "$TMP/an3"
expect_error "analyze: unknown module" 1 "'bogus_proj' names no linear layer" \
  "$DORAC" analyze --base $FIX/llama-gqa --runs "$TMP/dora" --modules bogus_proj --out "$TMP/an3"
expect_failure "analyze: module not adapted" 1 "adapts none of the modules o_proj" \
  "$DORAC" analyze --base $FIX/llama-gqa --runs "$TMP/lora" --modules o_proj --out "$TMP/an3"
expect_failure "analyze: wrong base" 1 "gpt2" "$DORAC" analyze --base $FIX/gpt2 --runs "$TMP/dora" --out "$TMP/an3"
checks=$((checks + 1))
[ ! -e "$TMP/an3" ] || fail "a failed analyze created its output folder"

echo "test_plot.sh: $checks checks, $failures failures" >&2
[ "$failures" -eq 0 ]
