#!/usr/bin/env bash
# Fault injection of minimoe train. SIGKILL at random moments (checkpoints are written every 1
# to 3 steps, so many kills land inside a write), then --resume until the run completes: the
# latest checkpoint must load, the metrics must hold every step before it exactly once, and the
# finished run must match an uninterrupted one. Writes that fail (disk full, a run directory
# that cannot be made) must stop with a message and a nonzero exit code, leaving the last
# checkpoint as it was.
#
#   tests/cli/test_kill_resume.sh path/to/minimoe [rounds]
#
# Each round kills one run up to 3 times. $MINIMOE_KILL_ROUNDS overrides rounds (default 3).
set -euo pipefail
minimoe=$(realpath "$1")
rounds=${MINIMOE_KILL_ROUNDS:-${2:-3}}
work=$(mktemp -d)
mounted=""
cleanup() {
  if [[ -n "$mounted" ]]; then umount "$mounted" || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

mkdir corpus
for i in $(seq 1 400); do echo "The cat number $i sat on the mat and looked at the moon."; done >corpus/story.txt
for i in $(seq 1 400); do echo "int value_$i = compute($i, $((i * 7 % 13)));"; done >corpus/code.txt
# Steps of a single sequence of 16 tokens: the checkpoints (16 MB) dominate the run's time,
# and the sanitizer builds stay quick.
steps=20
small=(--preset tiny --data corpus --tokenizer bytes --batch-size 1 --context 16 --threads 1
       --warmup 5 --eval-every 10 --eval-batches 1 --sample-tokens 0)

# "STEP LOSS" of every train record, and the eval records whole (they hold no timings).
losses() { grep '"type":"train"' "$1" | sed -E 's/.*"loss":([^,]*),.*"step":([0-9]+),.*/\2 \1/'; }
evals() { grep '"type":"eval"' "$1"; }
# The step of a checkpoint, from `minimoe inspect`; fails when the checkpoint does not load.
checkpoint_step() {
  "$minimoe" inspect "$1" 2>/dev/null | sed -nE 's/^training: step ([0-9]+) of .*/\1/p' | grep .
}
# Waits until the trainer $pid, which started at step $1, has logged a random later step (or
# has exited), except one time in four, then up to 0.3 s more: the kill lands in a start or a
# resume, a step, an evaluation or a checkpoint write.
wait_random_moment() {
  if (($1 < steps && RANDOM % 4 > 0)); then
    local step=$(($1 + RANDOM % (steps - $1)))
    while kill -0 "$pid" 2>/dev/null && ! grep -qs "\"step\":$step," run/metrics.jsonl; do
      sleep 0.02
    done
  fi
  sleep "0.$(printf %03d $((RANDOM % 300)))"
}

echo "--- an uninterrupted run"
"$minimoe" train "${small[@]}" --steps "$steps" --checkpoint-every 1 --out run-ref >/dev/null 2>log-ref.txt ||
  fail "the uninterrupted run: $(cat log-ref.txt)"
reference_losses=$(losses run-ref/metrics.jsonl)
reference_evals=$(evals run-ref/metrics.jsonl)
[[ $(wc -l <<<"$reference_losses") -eq $steps ]] || fail "the uninterrupted run has no $steps steps"
checkpoint_bytes=$(stat -c %s run-ref/checkpoint.safetensors)

echo "--- kill -9 at random moments, up to 3 times a run, then --resume to the end ($rounds rounds)"
kills=0 in_checkpoint=0 in_write=0 resumes=0
# start_run ARGS...: a trainer on ./run in the background; its stderr goes to log.txt.
start_run() {
  "$minimoe" train "$@" >/dev/null 2>log.txt &
  pid=$!
}
# A resumed trainer must say it continues from the step of the checkpoint it found.
check_resumed_at() {
  if [[ -n "$1" ]] && grep -q "^resuming" log.txt &&
     ! grep -q "^resuming run/checkpoint.safetensors at step $1 of $steps\$" log.txt; then
    fail "round $round: resumed from the wrong step: $(grep '^resuming' log.txt), expected $1"
  fi
}
for round in $(seq 1 "$rounds"); do
  every=$((1 + round % 3))
  rm -rf run
  start_run "${small[@]}" --steps "$steps" --checkpoint-every "$every" --out run
  expected="" running=1
  for kill in 1 2 3; do
    wait_random_moment "${expected:-0}"
    kill -9 "$pid" 2>/dev/null || true
    status=0
    wait "$pid" 2>/dev/null || status=$?
    running=0
    check_resumed_at "$expected"
    ((status == 0)) && break  # it finished first
    if ((status != 137)); then
      fail "round $round: the trainer exited with $status: $(cat log.txt)"
      break
    fi
    kills=$((kills + 1))
    [[ -e run/checkpoint.safetensors.tmp.$pid ]] && in_checkpoint=$((in_checkpoint + 1))
    compgen -G "run/*.tmp.$pid" >/dev/null && in_write=$((in_write + 1))
    if [[ ! -f run/checkpoint.safetensors ]]; then  # killed before the first checkpoint
      start_run "${small[@]}" --steps "$steps" --checkpoint-every "$every" --out run --force
      expected="" running=1
      continue
    fi
    if ! step=$(checkpoint_step run/checkpoint.safetensors); then
      fail "round $round, kill $kill: the checkpoint does not load"
      break
    fi
    # Nothing before the checkpoint is lost: its steps are in the metrics, each once.
    [[ "$(losses run/metrics.jsonl | awk -v n="$step" '$1 < n')" == \
       "$(head -n "$step" <<<"$reference_losses")" ]] ||
      fail "round $round, kill $kill: the metrics do not hold steps 0 to $((step - 1)) once each"
    start_run --resume --out run --threads 1
    expected=$step running=1
    resumes=$((resumes + 1))
  done
  if ((running)); then
    wait "$pid" || fail "round $round: the last run failed: $(cat log.txt)"
    check_resumed_at "$expected"
  fi
  [[ -f run/model.safetensors && "$(checkpoint_step run/checkpoint.safetensors)" == "$steps" ]] ||
    fail "round $round: the run did not complete: $(cat log.txt)"
  if [[ "$(losses run/metrics.jsonl)" != "$reference_losses" ]]; then
    fail "round $round: the losses differ from the uninterrupted run's"
    diff <(echo "$reference_losses") <(losses run/metrics.jsonl) | head -5 >&2
  fi
  [[ "$(evals run/metrics.jsonl)" == "$reference_evals" ]] ||
    fail "round $round: the evaluations differ from the uninterrupted run's"
  if grep -qv '^{.*}$' run/metrics.jsonl; then fail "round $round: metrics.jsonl has a cut line"; fi
  if compgen -G 'run/*.tmp.*' >/dev/null; then fail "round $round: a temporary was left behind"; fi
done
echo "    $kills kills ($in_write inside a file write, $in_checkpoint of a checkpoint), $resumes" \
  "resumes, $rounds runs completed"

# expect_write_failure PATTERN -- command...: the command exits with 2 and its stderr matches.
expect_write_failure() {
  local pattern=$1
  shift 2
  local status=0
  "$@" >/dev/null 2>err.txt || status=$?
  ((status == 1)) || fail "'$*' exited with $status, expected 1: $(cat err.txt)"
  grep -q -- "$pattern" err.txt || fail "'$*': stderr does not mention '$pattern': $(cat err.txt)"
}
# check_intact DIR STEP: DIR's checkpoint loads and holds STEP; no temporary is left.
check_intact() {
  [[ "$(checkpoint_step "$1/checkpoint.safetensors")" == "$2" ]] ||
    fail "$1's checkpoint does not load or does not hold step $2"
  if compgen -G "$1/*.tmp.*" >/dev/null; then fail "a temporary file was left in $1"; fi
}

echo "--- a run directory that cannot be made"
touch not-a-dir
expect_write_failure "not-a-dir/run" -- "$minimoe" train "${small[@]}" --steps 5 --out not-a-dir/run

echo "--- disk full while writing a checkpoint (/dev/full)"
# A run stopped (SIGTERM) after its first checkpoint, then resumed with the temporary file of
# its next checkpoint, named after the writer's pid (which exec keeps), pointing at /dev/full.
"$minimoe" train "${small[@]}" --steps 200 --checkpoint-every 5 --out run-full >/dev/null \
  2>err.txt &
pid=$!
until [[ -f run-full/checkpoint.safetensors ]] || ! kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
kill -TERM "$pid" 2>/dev/null || true
status=0
wait "$pid" || status=$?
# 143 = 128 + SIGTERM: stopped after saving (0 if it finished first)
((status == 0 || status == 143)) || fail "the stopped run exited with $status: $(cat err.txt)"
if step=$(checkpoint_step run-full/checkpoint.safetensors); then
  before=$(sha256sum run-full/checkpoint.safetensors)
  # shellcheck disable=SC2016  # $$ is the inner shell's pid
  expect_write_failure "cannot write 'run-full/checkpoint.safetensors'.*No space left on device" \
    -- bash -c 'ln -s /dev/full "run-full/checkpoint.safetensors.tmp.$$" && exec "$0" "$@"' \
    "$minimoe" train --resume --out run-full --threads 1
  [[ "$(sha256sum run-full/checkpoint.safetensors)" == "$before" ]] ||
    fail "the failed write changed the checkpoint"
  check_intact run-full "$step"
else
  fail "the stopped run left no checkpoint that loads: $(cat err.txt)"
fi

echo "--- disk full on a small file system (tmpfs)"
# Room for the token files, the metrics and one and a half checkpoints: the checkpoint of
# step 5 fits, that of step 10 does not while the first is still there.
mkdir small-fs
if mount -t tmpfs -o size=$((checkpoint_bytes * 3 / 2 + 1048576)) tmpfs small-fs 2>/dev/null; then
  mounted=$work/small-fs
  expect_write_failure "cannot write 'small-fs/run/checkpoint.safetensors'.*No space left on device" \
    -- "$minimoe" train "${small[@]}" --steps "$steps" --checkpoint-every 5 --out small-fs/run
  check_intact small-fs/run 5
else
  echo "    skipped: cannot mount a tmpfs here (needs root)"
fi

if ((failures > 0)); then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo "all kill/resume tests passed"
