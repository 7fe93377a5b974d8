#!/usr/bin/env bash
# test_generate.sh — `dorac generate` end to end on the fixture models:
# text comes out, a seed reproduces it and another seed changes it, greedy
# with an un-merged adapter equals greedy on the merged model, --prompt-file
# equals --prompt, the output is valid UTF-8 even when sampling wildly, and
# every bad flag exits 2 (bad input 1..3) with one line on stderr.
#
# usage: test_generate.sh DORAC_BINARY   (run from the repository root)
set -u
DORAC=${1:?usage: test_generate.sh path/to/dorac}
FIX=tests/fixtures/models
TMP=$(mktemp -d /tmp/dorac-generate-XXXXXX)
trap 'rm -rf "$TMP"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }

# expect_error NAME CODES NEEDLE CMD...: exit code in CODES ("2" or "1-3"),
# exactly one stderr line containing NEEDLE, nothing on stdout
expect_error() {
  local name=$1 codes=$2 needle=$3; shift 3
  checks=$((checks + 1))
  "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  local lo=${codes%-*} hi=${codes#*-}
  if [ $rc -lt "$lo" ] || [ $rc -gt "$hi" ]; then fail "$name: exit code $rc, expected $codes"; cat "$TMP/err" >&2; return; fi
  local lines; lines=$(wc -l <"$TMP/err")
  if [ "$lines" -ne 1 ]; then fail "$name: $lines lines on stderr, expected 1"; cat "$TMP/err" >&2; return; fi
  [ -s "$TMP/out" ] && fail "$name: wrote to stdout: $(head -c 200 "$TMP/out")"
  [ -n "${VERBOSE:-}" ] && echo "$name: rc=$rc: $(cat "$TMP/err")" >&2
  grep -q -- "$needle" "$TMP/err" || fail "$name: message lacks '$needle': $(cat "$TMP/err")"
}

# gen OUTFILE ARGS...: runs generate, stdout to OUTFILE, fails the check on a non-zero exit
gen() {
  local out=$1; shift
  checks=$((checks + 1))
  "$DORAC" generate "$@" >"$out" 2>"$TMP/gen.err" || { fail "generate $*: exit $?: $(cat "$TMP/gen.err")"; return 1; }
  return 0
}

P="And God said, Let there be"

# ---- text comes out, with a one-line summary on stderr ----
for m in llama-gqa qwen2 gpt2 mistral; do
  gen "$TMP/$m.txt" --model $FIX/$m --prompt "$P" --max-new-tokens 20 --seed 1 || continue
  [ -s "$TMP/$m.txt" ] || fail "$m: no text generated"
  grep -q "prompt tokens" "$TMP/gen.err" || fail "$m: no summary line: $(cat "$TMP/gen.err")"
  [ "$(wc -l <"$TMP/gen.err")" -eq 1 ] || fail "$m: more than one line on stderr: $(cat "$TMP/gen.err")"
done
gen "$TMP/dora.txt" --model $FIX/qwen2 --adapter $FIX/qwen2/adapters/dora --prompt "$P" --temperature 0 --max-new-tokens 12
[ -s "$TMP/dora.txt" ] || fail "qwen2 + dora: no text generated"

# ---- --max-new-tokens bounds the count (the summary says how many) ----
gen "$TMP/n.txt" --model $FIX/gpt2 --prompt "$P" --max-new-tokens 7 --ignore-eos --temperature 0.8
grep -q " 7 new tokens" "$TMP/gen.err" || fail "--max-new-tokens 7 --ignore-eos should give 7 tokens: $(cat "$TMP/gen.err")"

# ---- a seed reproduces the text; another seed changes it ----
gen "$TMP/s1.txt" --model $FIX/llama-gqa --prompt "$P" --max-new-tokens 40 --seed 7 --top-p 0.95 --top-k 50
gen "$TMP/s2.txt" --model $FIX/llama-gqa --prompt "$P" --max-new-tokens 40 --seed 7 --top-p 0.95 --top-k 50 --threads 1
gen "$TMP/s3.txt" --model $FIX/llama-gqa --prompt "$P" --max-new-tokens 40 --seed 8 --top-p 0.95 --top-k 50
cmp -s "$TMP/s1.txt" "$TMP/s2.txt" || fail "the same seed gave different text: '$(cat "$TMP/s1.txt")' vs '$(cat "$TMP/s2.txt")'"
cmp -s "$TMP/s1.txt" "$TMP/s3.txt" && fail "seeds 7 and 8 gave the same text: '$(cat "$TMP/s1.txt")'"

# ---- greedy: --top-k 1 equals --temperature 0; adapter un-merged equals merged ----
gen "$TMP/g0.txt" --model $FIX/gpt2 --adapter $FIX/gpt2/adapters/dora --prompt "$P" --temperature 0 --max-new-tokens 24
gen "$TMP/g1.txt" --model $FIX/gpt2 --adapter $FIX/gpt2/adapters/dora --prompt "$P" --top-k 1 --seed 3 --max-new-tokens 24
cmp -s "$TMP/g0.txt" "$TMP/g1.txt" || fail "--top-k 1 differs from greedy: '$(cat "$TMP/g1.txt")' vs '$(cat "$TMP/g0.txt")'"
checks=$((checks + 1))
"$DORAC" merge --model $FIX/gpt2 --adapter $FIX/gpt2/adapters/dora --out "$TMP/merged" 2>"$TMP/err" || fail "merge: $(cat "$TMP/err")"
gen "$TMP/gm.txt" --model "$TMP/merged" --prompt "$P" --temperature 0 --max-new-tokens 24
cmp -s "$TMP/g0.txt" "$TMP/gm.txt" || fail "greedy with the adapter '$(cat "$TMP/g0.txt")' != merged '$(cat "$TMP/gm.txt")'"
gen "$TMP/gb.txt" --model $FIX/gpt2 --prompt "$P" --temperature 0 --max-new-tokens 24
cmp -s "$TMP/g0.txt" "$TMP/gb.txt" && fail "the adapter did not change greedy output: '$(cat "$TMP/gb.txt")'"

# ---- --prompt-file reads the same prompt ----
printf '%s' "$P" >"$TMP/prompt.txt"
gen "$TMP/f.txt" --model $FIX/llama-gqa --prompt-file "$TMP/prompt.txt" --max-new-tokens 40 --seed 7 --top-p 0.95 --top-k 50
cmp -s "$TMP/s1.txt" "$TMP/f.txt" || fail "--prompt-file differs from --prompt"

# ---- valid UTF-8 on stdout even when the model emits stray bytes (high temperature) ----
for seed in 1 2 3; do
  gen "$TMP/wild.txt" --model $FIX/gpt2 --prompt "caf$(printf '\xc3\xa9') " --temperature 5 --max-new-tokens 50 --seed $seed --ignore-eos
  checks=$((checks + 1))
  iconv -f UTF-8 -t UTF-8 "$TMP/wild.txt" >/dev/null 2>&1 || fail "seed $seed: output is not valid UTF-8"
done

# ---- bad flags: exit 2, one line ----
M="--model $FIX/gpt2"
expect_error "unknown flag" 2 "--bogus" "$DORAC" generate $M --prompt x --bogus
expect_error "no prompt" 2 "prompt" "$DORAC" generate $M
expect_error "two prompts" 2 "prompt" "$DORAC" generate $M --prompt x --prompt-file "$TMP/prompt.txt"
expect_error "no model" 2 "--model" "$DORAC" generate --prompt x
expect_error "negative temperature" 2 "temperature" "$DORAC" generate $M --prompt x --temperature -1
expect_error "temperature not a number" 2 "temperature" "$DORAC" generate $M --prompt x --temperature hot
expect_error "top-p 0" 2 "top-p" "$DORAC" generate $M --prompt x --top-p 0
expect_error "top-p above 1" 2 "top-p" "$DORAC" generate $M --prompt x --top-p 1.5
expect_error "negative top-k" 2 "top-k" "$DORAC" generate $M --prompt x --top-k -3
expect_error "max-new-tokens 0" 2 "max-new-tokens" "$DORAC" generate $M --prompt x --max-new-tokens 0
expect_error "missing value" 2 "--seed" "$DORAC" generate $M --prompt x --seed
expect_error "flag twice" 2 "twice" "$DORAC" generate $M --prompt x --prompt y

# ---- bad input: exit 1..3, one line ----
expect_error "missing model folder" 1-3 "no-such-model" "$DORAC" generate --model "$TMP/no-such-model" --prompt x
expect_error "missing adapter folder" 1-3 "no-such-adapter" "$DORAC" generate $M --adapter "$TMP/no-such-adapter" --prompt x
expect_error "missing prompt file" 1-3 "no-such-file" "$DORAC" generate $M --prompt-file "$TMP/no-such-file"
# gpt2 has 64 positions
expect_error "too long" 1-3 "max_position_embeddings" "$DORAC" generate $M --prompt "$P" --max-new-tokens 60
mkdir -p "$TMP/notok"
cp $FIX/gpt2/config.json $FIX/gpt2/model.safetensors "$TMP/notok/"
expect_error "no tokenizer" 1-3 "tokenizer" "$DORAC" generate --model "$TMP/notok" --prompt x

if [ $failures -ne 0 ]; then echo "FAILED: $failures of $checks checks" >&2; exit 1; fi
echo "ok: $checks checks" >&2
