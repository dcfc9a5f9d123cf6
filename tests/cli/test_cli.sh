#!/usr/bin/env bash
# End-to-end tests of the minimoe command line: exit codes and messages for bad input, nothing
# overwritten by a refused command, every subcommand on a small run. kill -9 / --resume and
# failing writes: test_kill_resume.sh.
#
#   tests/cli/test_cli.sh path/to/minimoe
set -euo pipefail
minimoe=$(realpath "$1")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect_exit CODE PATTERN -- command...: the command exits with CODE and its stderr matches.
expect_exit() {
  local code=$1 pattern=$2
  shift 3
  local status=0
  "$@" >out.txt 2>err.txt || status=$?
  if [[ $status -ne $code ]]; then
    fail "'$*' exited with $status, expected $code; stderr: $(cat err.txt)"
  elif ! grep -q -- "$pattern" err.txt; then
    fail "'$*': stderr does not mention '$pattern': $(cat err.txt)"
  fi
}

# A small corpus of two domains, generated.
mkdir corpus
for i in $(seq 1 400); do echo "The cat number $i sat on the mat and looked at the moon."; done >corpus/story.txt
for i in $(seq 1 400); do echo "int value_$i = compute($i, $((i * 7 % 13)));"; done >corpus/code.txt
small=(--preset tiny --data corpus --tokenizer bytes --batch-size 2 --context 32 --threads 1
       --warmup 5 --eval-every 10 --eval-batches 2 --sample-tokens 0)

echo "--- bad input: exit code 2 and a message"
expect_exit 2 "not-a-flag" -- "$minimoe" train --not-a-flag
expect_exit 2 "A subcommand is required" -- "$minimoe"
expect_exit 2 "is not a directory" -- "$minimoe" train --data missing-dir --out run-x
expect_exit 2 "unknown preset 'huge'" -- "$minimoe" train --preset huge --data corpus --out run-x
expect_exit 2 "cannot open 'missing.safetensors'" -- "$minimoe" sample --ckpt missing.safetensors
expect_exit 2 "not a token id" -- sh -c "echo '1 2 x' | '$minimoe' tokenize --decode"
head -c 100 /dev/urandom >corrupt.safetensors
expect_exit 2 "corrupt.safetensors" -- "$minimoe" inspect corrupt.safetensors

echo "--- an uninterrupted run"
"$minimoe" train "${small[@]}" --steps 40 --checkpoint-every 5 --out run-a >/dev/null 2>log-a.txt ||
  fail "training run-a: $(cat log-a.txt)"
[[ -f run-a/model.safetensors && -f run-a/loss.svg && -f run-a/expert_load.svg ]] ||
  fail "run-a lacks its model or plots"
grep -q '"type":"eval"' run-a/metrics.jsonl || fail "run-a/metrics.jsonl has no evaluation"

echo "--- Ctrl-C: saved, exit code 130; --resume may change --eval-batches"
"$minimoe" train "${small[@]}" --steps 60 --out run-c >/dev/null 2>log-c.txt &
pid=$!
until grep -q '"step":12,' run-c/metrics.jsonl 2>/dev/null || ! kill -0 "$pid" 2>/dev/null; do
  sleep 0.05
done
kill -INT "$pid"
status=0
wait "$pid" || status=$?
((status == 130)) || fail "the interrupted run exited with $status, not 130: $(cat log-c.txt)"
grep -q "^interrupted: saved step" log-c.txt || fail "no 'interrupted' message: $(cat log-c.txt)"
# Each eval record's tokens per domain: 2 batches of 2 x 32 before, 1 batch after the resume.
# eval_tokens [N]: of every eval record, or of the last N.
eval_tokens() {
  grep '"type":"eval"' run-c/metrics.jsonl | tail -n "${1:-+1}" | grep -o '"tokens":[0-9]*' | sort -u
}
[[ "$(eval_tokens)" == '"tokens":128' ]] || fail "evaluations before the resume: $(eval_tokens)"
"$minimoe" train --resume --out run-c --eval-batches 1 >/dev/null 2>log-c2.txt ||
  fail "resuming run-c: $(cat log-c2.txt)"
[[ "$(eval_tokens 1)" == '"tokens":64' ]] ||
  fail "--eval-batches 1 on --resume was not used: $(eval_tokens 1)"

echo "--- refused commands leave the run alone"
before=$(sha256sum run-a/checkpoint.safetensors)
expect_exit 2 "already holds a run" -- "$minimoe" train "${small[@]}" --steps 40 --out run-a
expect_exit 2 "cannot change on --resume" -- "$minimoe" train --resume --out run-a --lr 0.1
expect_exit 2 "cannot change on --resume" -- "$minimoe" train --resume --out run-a --precision bf16
expect_exit 2 "precision" -- "$minimoe" train "${small[@]}" --out run-p --precision fp16
expect_exit 2 "no checkpoint" -- "$minimoe" train --resume --out run-none
long_prompt=$(printf 'word %.0s' $(seq 1 100))
expect_exit 2 "context" -- "$minimoe" sample --ckpt run-a/model.safetensors --prompt "$long_prompt"
[[ "$(sha256sum run-a/checkpoint.safetensors)" == "$before" ]] || fail "run-a's checkpoint changed"

echo "--- sample, eval, inspect, analyze"
"$minimoe" sample --ckpt run-a/model.safetensors --prompt "The cat" --tokens 20 --seed 1 >s1.txt
"$minimoe" sample --ckpt run-a/checkpoint.safetensors --prompt "The cat" --tokens 20 --seed 1 >s2.txt
cmp -s s1.txt s2.txt || fail "the same seed sampled different text"
grep -q "^The cat" s1.txt || fail "the sample does not start with its prompt"
"$minimoe" eval --ckpt run-a/model.safetensors --data corpus --threads 1 >eval.txt
grep -q "^story" eval.txt && grep -q "^all" eval.txt || fail "eval printed no per-domain table"
"$minimoe" inspect run-a/checkpoint.safetensors >inspect.txt
grep -q "training: step 40 of 40" inspect.txt || fail "inspect does not show the training state"
"$minimoe" analyze --ckpt run-a/model.safetensors --data corpus --tokens 2048 >analyze.txt
grep -q "specialisation" analyze.txt && [[ -f run-a/routing.svg ]] || fail "analyze printed no analysis"
echo "hello, world" | "$minimoe" tokenize >ids.txt
[[ "$(cat ids.txt)" == "104 101 108 108 111 44 32 119 111 114 108 100 10" ]] || fail "tokenize: $(cat ids.txt)"
[[ "$("$minimoe" tokenize --decode <ids.txt)" == "hello, world" ]] || fail "tokenize --decode"

echo "--- --profile and --recompute"
"$minimoe" train "${small[@]}" --steps 6 --out run-p --profile --recompute >/dev/null 2>profile.txt ||
  fail "training with --profile: $(cat profile.txt)"
grep -q "^experts .*%" profile.txt && grep -q "^attention" profile.txt &&
  grep -q "memory: .* MiB resident" profile.txt || fail "--profile printed no table: $(cat profile.txt)"

echo "--- --precision bf16"
"$minimoe" train "${small[@]}" --steps 4 --out run-b --precision bf16 >/dev/null 2>bf16.txt ||
  fail "training with --precision bf16: $(cat bf16.txt)"
grep -q "^matrix products: bf16 (.*bf16 kernel)" bf16.txt || fail "no bf16 kernel: $(cat bf16.txt)"
grep -q "^matrix products: fp32" log-a.txt || fail "fp32 is not the default: $(cat log-a.txt)"

echo "--- compare"
"$minimoe" compare run-a run-p --out compare.svg >compare.txt 2>/dev/null || fail "compare failed"
grep -q "^| run-a | [0-9.]*M | [0-9.]*M | 40 |" compare.txt && grep -q "^| run-p |" compare.txt ||
  fail "compare printed no table: $(cat compare.txt)"
grep -q "<svg" compare.svg || fail "compare wrote no plot"
expect_exit 2 "holds no metrics.jsonl" -- "$minimoe" compare corpus

if ((failures > 0)); then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "all CLI tests passed"
