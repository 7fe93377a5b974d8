#!/usr/bin/env bash
# test_cli.sh — the dorac binary end to end: eval against the transformers
# fixture loss, merge -> eval equals adapter -> eval, inspect, and every bad
# input of the models issue, each of which must exit 1..3 (never a signal)
# with one line on stderr naming the file, and leave no output folder.
#
# usage: test_cli.sh DORAC_BINARY   (run from the repository root)
set -u
DORAC=${1:?usage: test_cli.sh path/to/dorac}
FIX=tests/fixtures/models
TMP=$(mktemp -d /tmp/dorac-cli-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect_error NAME NEEDLE CMD...: exit code 1..3, exactly one stderr line, containing NEEDLE
expect_error() {
  local name=$1 needle=$2; shift 2
  checks=$((checks + 1))
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lines; lines=$(wc -l <"$TMP/err")
  if [ $rc -lt 1 ] || [ $rc -gt 3 ]; then fail "$name: exit code $rc, expected 1..3"; cat "$TMP/err" >&2; return; fi
  if [ "$lines" -ne 1 ]; then fail "$name: $lines lines on stderr, expected 1"; cat "$TMP/err" >&2; return; fi
  [ -n "${VERBOSE:-}" ] && echo "$name: rc=$rc: $(cat "$TMP/err")" >&2
  if ! grep -q -- "$needle" "$TMP/err"; then fail "$name: message lacks '$needle': $(cat "$TMP/err")"; fi
}

# json_field FILE KEY: a number from a one-line JSON object
json_field() { sed -E "s/.*\"$2\": ([-0-9.e+]+).*/\1/" "$1"; }

near() { awk -v a="$1" -v b="$2" -v t="$3" 'BEGIN { d = a - b; if (d < 0) d = -d; exit !(d <= t) }'; }
# The loss tolerances: fp32 (the CPU) by default. DORAC_TEST_BF16=1 (tools/device/cuda_run.sh
# shell, where --device auto picks the GPU): BF16 weights and activations round each value to
# 8 significant bits (2^-9 relative), and a merged model's weights are rounded once more, so
# losses agree to 1e-3 of their size (seen on the H200: 7e-5 against transformers, 1.6e-4
# merged against adapter)
if [ "${DORAC_TEST_BF16:-0}" = 1 ]; then TOL_REF=4e-3 TOL_MERGE=4e-3; else TOL_REF=1e-4 TOL_MERGE=1e-5; fi

# ---- eval matches transformers' loss (fixtures/models/*/expected.safetensors: base.loss) ----
want_llama=3.991938   # llama-gqa base.loss, tests/fixtures/models/manifest.json
checks=$((checks + 1))
"$DORAC" eval --model $FIX/llama-gqa --data $FIX/eval.jsonl --json >"$TMP/eval.json" 2>"$TMP/err" || fail "eval: $(cat "$TMP/err")"
got=$(json_field "$TMP/eval.json" loss)
near "$got" "$want_llama" $TOL_REF || fail "eval loss $got, transformers says $want_llama"
grep -q '"tokens": 42' "$TMP/eval.json" || fail "eval should count 42 target tokens: $(cat "$TMP/eval.json")"

# ---- merge -> eval equals adapter -> eval ----
checks=$((checks + 1))
"$DORAC" eval --model $FIX/gpt2 --adapter $FIX/gpt2/adapters/dora --data $FIX/eval.jsonl --json >"$TMP/a.json" 2>"$TMP/err" || fail "eval adapter: $(cat "$TMP/err")"
"$DORAC" merge --model $FIX/gpt2 --adapter $FIX/gpt2/adapters/dora --out "$TMP/merged" 2>"$TMP/err" || fail "merge: $(cat "$TMP/err")"
"$DORAC" eval --model "$TMP/merged" --data $FIX/eval.jsonl --json >"$TMP/m.json" 2>"$TMP/err" || fail "eval merged: $(cat "$TMP/err")"
near "$(json_field "$TMP/a.json" loss)" "$(json_field "$TMP/m.json" loss)" $TOL_MERGE || fail "merged eval $(cat "$TMP/m.json") != adapter eval $(cat "$TMP/a.json")"
for f in config.json tokenizer.json model.safetensors; do [ -f "$TMP/merged/$f" ] || fail "merged folder lacks $f"; done
"$DORAC" merge --model $FIX/llama-gqa --adapter $FIX/llama-gqa/adapters/lora --out "$TMP/bf16" --dtype bf16 2>/dev/null || fail "merge --dtype bf16"
"$DORAC" eval --model "$TMP/bf16" --data $FIX/eval.jsonl --json >"$TMP/b.json" 2>/dev/null || fail "eval bf16 merged"

# ---- inspect ----
checks=$((checks + 1))
"$DORAC" inspect --model $FIX/qwen2 --adapter $FIX/qwen2/adapters/dora >"$TMP/inspect" 2>&1 || fail "inspect: $(cat "$TMP/inspect")"
grep -q "qwen2, 3 layers" "$TMP/inspect" || fail "inspect lacks the architecture: $(cat "$TMP/inspect")"
grep -q "adapter .*dora" "$TMP/inspect" || fail "inspect lacks the method"
grep -q "21 modules" "$TMP/inspect" || fail "inspect lacks the module count"

# ---- bad input: each gives 1..3, one line naming the file, and no output ----
M="$TMP/model"
cp -r $FIX/llama-gqa "$M"
st="$M/model.safetensors"
size=$(stat -c %s "$st")

cp "$st" "$TMP/orig.safetensors"
head -c $((size / 2)) "$TMP/orig.safetensors" >"$st"
expect_error "truncated safetensors" "model.safetensors" "$DORAC" eval --model "$M" --data $FIX/eval.jsonl

# header length claims more bytes than the file has (perl is in every Debian)
perl -e 'open(I,"<",$ARGV[0]);binmode I;local $/;my $d=<I>;substr($d,0,8)=pack("Q<",1<<40);
         open(O,">",$ARGV[1]);binmode O;print O $d' "$TMP/orig.safetensors" "$st"
expect_error "header larger than file" "model.safetensors" "$DORAC" eval --model "$M" --data $FIX/eval.jsonl

# edit_header PERL_SUBST: rewrite the JSON header, padded back to its length with spaces
edit_header() {
  perl -e 'open(I,"<",$ARGV[0]);binmode I;local $/;my $d=<I>;my $n=unpack("Q<",substr($d,0,8));
           my $h=substr($d,8,$n); my $k=0; '"$1"'; $h.=" " x ($n-length($h));
           substr($d,8,$n)=$h; open(O,">",$ARGV[1]);binmode O;print O $d' "$TMP/orig.safetensors" "$st"
}
# two norm weights of the same size: the second now points at the first one's bytes
edit_header 'my ($o) = $h =~ /"model\.layers\.0\.input_layernorm\.weight":\{[^}]*"data_offsets":(\[\d+,\d+\])/;
             $h =~ s/("model\.layers\.0\.post_attention_layernorm\.weight":\{[^}]*"data_offsets":)\[\d+,\d+\]/$1$o/'
expect_error "overlapping offsets" "overlap" "$DORAC" eval --model "$M" --data $FIX/eval.jsonl
edit_header '$h =~ s/"dtype":"F32"/"dtype":"Q32"/'
expect_error "bad dtype" "Q32" "$DORAC" eval --model "$M" --data $FIX/eval.jsonl
cp "$TMP/orig.safetensors" "$st"

# config.json: not UTF-8, and a missing field
cp "$M/config.json" "$TMP/config.orig"
printf '{"model_type": "llama\xff\xfe"}' >"$M/config.json"
expect_error "non-UTF-8 config" "config.json" "$DORAC" eval --model "$M" --data $FIX/eval.jsonl
grep -v '"hidden_size"' "$TMP/config.orig" >"$M/config.json"
expect_error "config missing a field" "hidden_size" "$DORAC" eval --model "$M" --data $FIX/eval.jsonl
cp "$TMP/config.orig" "$M/config.json"

# an adapter for another model: merge must fail and leave nothing behind
expect_error "adapter for another model" "transformer.h.0" "$DORAC" merge --model "$M" --adapter $FIX/gpt2/adapters/dora --out "$TMP/never"
[ ! -e "$TMP/never" ] || fail "a failed merge left $TMP/never behind"
ls -a "$TMP" | grep -q '\.never\.tmp' && fail "a failed merge left a temporary folder"

# a malformed JSONL line, reported with file and line number
{ head -n 1 $FIX/eval.jsonl; echo '{"input_ids": [1, 2, "three"]}'; } >"$TMP/bad.jsonl"
expect_error "malformed JSONL" "bad.jsonl:2" "$DORAC" eval --model "$M" --data "$TMP/bad.jsonl"
checks=$((checks + 1))
"$DORAC" eval --model "$M" --data "$TMP/bad.jsonl" --skip-bad-lines --json >"$TMP/skip.json" 2>/dev/null || fail "--skip-bad-lines should succeed"
grep -q '"skipped_lines": 1' "$TMP/skip.json" || fail "--skip-bad-lines should count 1: $(cat "$TMP/skip.json")"

# a model folder that does not exist
expect_error "missing model folder" "no-such-model" "$DORAC" eval --model "$TMP/no-such-model" --data $FIX/eval.jsonl
expect_error "missing model folder (merge)" "no-such-model" "$DORAC" merge --model "$TMP/no-such-model" --adapter $FIX/gpt2/adapters/dora --out "$TMP/never2"
[ ! -e "$TMP/never2" ] || fail "a failed merge left $TMP/never2 behind"

# flags
expect_error "unknown flag" "--bogus" "$DORAC" eval --bogus
expect_error "missing value" "--model" "$DORAC" eval --model
expect_error "unknown command" "frobnicate" "$DORAC" frobnicate

# devices: an unknown name is an error; cuda either runs (a CUDA build on a
# machine with a GPU) or says in one line why it cannot
expect_error "unknown device" "unknown device 'tpu'" "$DORAC" eval --model $FIX/llama-gqa --data $FIX/eval.jsonl --device tpu
expect_error "unknown device (train)" "unknown device" "$DORAC" train --model $FIX/llama-gqa --data $FIX/eval.jsonl --out "$TMP/never3" --steps 1 --device cuda:x
[ ! -e "$TMP/never3/adapter" ] || fail "a failed train wrote an adapter"
checks=$((checks + 1))
if ! "$DORAC" eval --model $FIX/llama-gqa --data $FIX/eval.jsonl --device cuda >"$TMP/out" 2>"$TMP/err"; then
  [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -q "cuda" "$TMP/err" || fail "--device cuda failed without a one-line reason: $(cat "$TMP/err")"
fi

if [ $failures -ne 0 ]; then echo "FAILED: $failures of $checks checks" >&2; exit 1; fi
echo "ok: $checks checks" >&2
